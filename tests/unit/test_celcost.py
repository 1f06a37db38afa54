"""The CEL cost estimator: its parser reads what the binding compiles, its estimates grow
with the sizes a schema allows, and the runtime limits (per call, per request) apply."""

from __future__ import annotations

from typing import Any

import cel
import pytest

from k8slite.api import celcost
from k8slite.api.celcost import CostModel, SchemaShape, ValuesShape
from k8slite.api.structural import CompiledSchema
from k8slite.api.validation import FieldErrors

EXPRESSIONS = [
    "self.replicas <= 50 || self.paused",
    "self.containers.all(c, c.name != 'init')",
    "!has(self.port) || self.port != 22",
    "'port ' + string(self.port) + ' is taken'",
    "self.m.exists(k, self.m[k] == 'v')",
    "[1, 2, 3].map(x, x * 2).filter(y, y > 2).size() == 2",
    "{'a': 1, 'b': [1, 2]}.size() == 2",
    "self.a ? self.b : self.c[0] - -1",
    "oldSelf.hasValue() && oldSelf.value() == self",
    "math.greatest(1, 2) == 2 && strings.quote('a') != ''",
    "r'\\d+' != b'x' && '''multi''' in ['multi'] && 0x1Fu > 1u && 1.5e3 > .5",
    "self.name.matches('^[a-z]+$') && self.list.exists_one(e, e in [1, 2])",
]


@pytest.mark.parametrize("source", EXPRESSIONS)
def test_parses_what_the_binding_compiles(source: str) -> None:
    cel.compile(source)
    assert CostModel.of(source).tree is not None


def _shape(**props: Any) -> SchemaShape:
    return SchemaShape({"type": "object", "properties": props})


def test_estimate_follows_schema_bounds() -> None:
    rule = CostModel.of("self.groups.all(g, g.all(n, n.startsWith('team-')))")
    bounded = _shape(
        groups={
            "type": "array",
            "maxItems": 10,
            "items": {"type": "array", "maxItems": 10, "items": {"type": "string"}},
        }
    )
    # 10 groups of 10 names: per name 1 (n) + 1 (call) + 1 (prefix/10) + 2 (loop), and so on.
    assert rule.cost({"self": bounded}) == 1 + 1 + 10 * (2 + 1 + 10 * (2 + 1 + 1 + 1))
    unbounded = _shape(
        groups={"type": "array", "items": {"type": "array", "items": {"type": "string"}}}
    )
    assert rule.cost({"self": unbounded}) > 100 * celcost.STATIC_EXPRESSION_LIMIT
    # Strings: a tenth of the longest a comparison can traverse; contains multiplies.
    text = {"type": "string", "maxLength": 1000}
    assert CostModel.of("self.s == self.t").cost({"self": _shape(s=text, t=text)}) == 105
    assert CostModel.of("self.s.contains(self.t)").cost({"self": _shape(s=text, t=text)}) == (
        1 + 1 + 1 + 1 + 1 + 100 * 100
    )


def test_runtime_estimate_uses_the_request_values() -> None:
    rule = CostModel.of("self.names.all(a, self.names.all(b, a == b))")
    assert rule.cost({"self": ValuesShape([{"names": ["x"] * 10}])}) < rule.cost(
        {"self": ValuesShape([{"names": ["x"] * 100}])}
    )


def test_unreadable_expression_has_no_estimate() -> None:
    assert CostModel.of("self.a +").tree is None
    assert CostModel.of("self.a +").cost({}) == 0


def test_factor_wording() -> None:
    assert celcost.exceeds_message("estimated rule cost", 12_000_000, 10_000_000).startswith(
        "estimated rule cost exceeds budget by factor of 1.200000x (try"
    )
    assert "factor of 2.5x" in celcost.exceeds_message("x", 25, 10)
    assert "factor of more than 100x" in celcost.exceeds_message("x", 1001, 10)


def test_request_budget_stops_further_rules() -> None:
    # Each evaluation is within the per-call limit (about 900,000 on 9,480-character
    # strings), eleven items of two rules are not within the request's 10,000,000.
    text = {"type": "string", "maxLength": 9480}
    item = {
        "type": "object",
        "properties": {"s": text, "t": text},
        "x-kubernetes-validations": [
            {"rule": "!self.s.contains(self.t)", "message": "first"},
            {"rule": "!self.t.contains(self.s)", "message": "second"},
        ],
    }
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {"items": {"type": "array", "maxItems": 11, "items": item}},
            }
        },
    }
    obj = {"spec": {"items": [{"s": "a" * 9480, "t": "b" * 9480} for _ in range(11)]}}
    errs = FieldErrors()
    CompiledSchema(schema).validate(obj, errs)
    assert [f"{c['field']}: {c['message']}" for c in errs.causes] == [
        'spec.items[5]: Invalid value: "object": validation failed due to running out of cost '
        "budget, no further validation rules will be run"
    ]
    few = {"spec": {"items": obj["spec"]["items"][:3]}}
    errs = FieldErrors()
    CompiledSchema(schema).validate(few, errs)
    assert errs.causes == []


def test_root_rules_see_bounded_metadata() -> None:
    # metadata.name is at most 253 characters: a regular expression on it is affordable.
    from k8slite.api.structural import structural_errors

    schema = {
        "type": "object",
        "x-kubernetes-validations": [{"rule": "self.metadata.name.matches('^[a-z]+(-[a-z]+)*$')"}],
        "properties": {"spec": {"type": "object"}},
    }
    errs = FieldErrors()
    structural_errors(schema, "spec.versions[0].schema.openAPIV3Schema", errs)
    assert errs.causes == []
    rule = CostModel.of("self.metadata.name.matches('^[a-z]+(-[a-z]+)*$')")
    assert rule.cost({"self": SchemaShape(schema, root=True)}) < 1000
