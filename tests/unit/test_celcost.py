"""The CEL cost estimator: its parser reads what the binding compiles, its estimates grow
with the sizes a schema allows, and the runtime limits (per call, per request) apply."""

from __future__ import annotations

from typing import Any

import cel
import pytest

from k8slite.api import celcost
from k8slite.api.celcost import CostModel, SchemaShape, ValuesShape
from k8slite.api.structural import CompiledSchema, structural_errors
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
    # Strings: a tenth of the longest a comparison can traverse (maxLength counts code
    # points, up to 4 bytes each); contains multiplies.
    text = {"type": "string", "maxLength": 1000}
    assert CostModel.of("self.s == self.t").cost({"self": _shape(s=text, t=text)}) == 5 + 400
    assert CostModel.of("self.s.contains(self.t)").cost({"self": _shape(s=text, t=text)}) == (
        5 + 400 * 400
    )
    # A map's keys have no size in upstream's estimate: a regex on each costs little.
    labels = {"type": "object", "maxProperties": 16, "additionalProperties": {"type": "string"}}
    rule = CostModel.of("self.labels.all(k, k.matches('^[a-z]+$'))")
    assert rule.cost({"self": _shape(labels=labels)}) == 1 + 1 + 16 * (2 + 1 + 1 + 1 * 2)


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
    # Each evaluation is within the per-call limit (about 450,000 on two lists of 300), and
    # each rule within the static limit times twelve items; but two rules on twelve full
    # items are not within the request's 10,000,000.
    numbers = {"type": "array", "maxItems": 300, "items": {"type": "integer"}}
    item = {
        "type": "object",
        "properties": {"xs": numbers, "ys": numbers},
        "x-kubernetes-validations": [
            {"rule": "self.xs.all(x, self.ys.exists(y, x == y))", "message": "first"},
            {"rule": "self.ys.all(y, self.xs.exists(x, x == y))", "message": "second"},
        ],
    }
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {"items": {"type": "array", "maxItems": 12, "items": item}},
            }
        },
    }
    errs = FieldErrors()
    structural_errors(schema, "spec.versions[0].schema.openAPIV3Schema", errs)
    assert errs.causes == []
    full = {"xs": list(range(300)), "ys": list(range(300))}
    per_call = CostModel.of(item["x-kubernetes-validations"][0]["rule"]).cost(  # type: ignore[index]
        {"self": ValuesShape([full])}
    )
    assert per_call < celcost.PER_CALL_LIMIT and 2 * 12 * per_call > celcost.RUNTIME_BUDGET
    obj = {"spec": {"items": [full] * 12}}
    errs = FieldErrors()
    CompiledSchema(schema).validate(obj, errs)
    stopped = celcost.RUNTIME_BUDGET // per_call  # evaluations paid for; the next is not
    assert [f"{c['field']}: {c['message']}" for c in errs.causes] == [
        f'spec.items[{stopped // 2}]: Invalid value: "object": validation failed due to '
        "running out of cost budget, no further validation rules will be run"
    ]
    errs = FieldErrors()
    CompiledSchema(schema).validate({"spec": {"items": [full] * 3}}, errs)
    assert errs.causes == []


def test_root_rules_see_metadata_as_upstream() -> None:
    # metadata.name has no bound in upstream's estimate (as long as a request), yet a short
    # regular expression on it stays within the limit.
    schema = {
        "type": "object",
        "x-kubernetes-validations": [{"rule": "self.metadata.name.matches('^[a-z]+(-[a-z]+)*$')"}],
        "properties": {"spec": {"type": "object"}},
    }
    errs = FieldErrors()
    structural_errors(schema, "spec.versions[0].schema.openAPIV3Schema", errs)
    assert errs.causes == []
    rule = CostModel.of("self.metadata.name.matches('^[a-z]+(-[a-z]+)*$')")
    cost = rule.cost({"self": SchemaShape(schema, root=True)})
    assert celcost.PER_CALL_LIMIT < cost < celcost.STATIC_EXPRESSION_LIMIT
