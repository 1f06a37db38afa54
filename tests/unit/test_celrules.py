"""CEL rules of CRD schemas: messages, reasons, fieldPath, transition rules and the
projection of self onto the fields a rule selects."""

from __future__ import annotations

from typing import Any

import pytest

from k8slite.api.celrules import CelError, compile_expression
from k8slite.api.structural import CompiledSchema
from k8slite.api.validation import FieldErrors


def _messages(
    schema: dict[str, Any], obj: dict[str, Any], old: dict[str, Any] | None = None
) -> list[str]:
    errs = FieldErrors()
    CompiledSchema(schema).validate(obj, errs, old)
    return [f"{c['field']}: {c['message']}" for c in errs.causes]


def _spec_schema(*rules: dict[str, Any], **props: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "x-kubernetes-validations": list(rules),
                "properties": props
                or {"a": {"type": "integer"}, "b": {"type": "integer"}, "name": {"type": "string"}},
            }
        },
    }


def test_message_reason_field_path_and_default_message() -> None:
    schema = _spec_schema(
        {"rule": "self.a <= self.b", "message": "a must not exceed b"},
        {"rule": "self.name != 'x'", "reason": "FieldValueForbidden", "fieldPath": ".name"},
        {"rule": "self.a > 0", "messageExpression": "'a is ' + string(self.a)"},
        {"rule": "self.b < 100", "messageExpression": "self.missing"},
    )
    got = _messages(schema, {"spec": {"a": 0, "b": -1, "name": "x"}})
    assert got == [
        'spec: Invalid value: "object": a must not exceed b',
        "spec.name: Forbidden: failed rule: self.name != 'x'",
        'spec: Invalid value: "object": a is 0',
    ]
    # A messageExpression that errs falls back to the default message.
    assert _messages(schema, {"spec": {"a": 1, "b": 200, "name": "y"}}) == [
        'spec: Invalid value: "object": failed rule: self.b < 100'
    ]
    assert _messages(schema, {"spec": {"a": 1, "b": 2, "name": "y"}}) == []


def test_transition_rules_see_the_correlated_old_value() -> None:
    schema = _spec_schema(
        name={
            "type": "string",
            "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "immutable"}],
        },
        items={
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["k"],
            "items": {
                "type": "object",
                "properties": {"k": {"type": "string"}, "v": {"type": "integer"}},
                "x-kubernetes-validations": [
                    {"rule": "self.v >= oldSelf.v", "message": "no decrease"}
                ],
            },
        },
        first={
            "type": "integer",
            "x-kubernetes-validations": [
                {
                    "rule": "oldSelf.hasValue() || self == 1",
                    "optionalOldSelf": True,
                    "message": "starts at 1",
                }
            ],
        },
    )
    new = {"spec": {"name": "a", "items": [{"k": "x", "v": 1}, {"k": "y", "v": 5}]}}
    assert _messages(schema, new) == []  # a create: no old value, transition rules skip
    assert _messages(schema, {"spec": {"first": 2}}) == [
        'spec.first: Invalid value: "integer": starts at 1'
    ]
    old = {"spec": {"name": "b", "items": [{"k": "y", "v": 9}], "first": 2}}
    assert _messages(schema, {**new, "spec": {**new["spec"], "first": 3}}, old) == [
        'spec.name: Invalid value: "string": immutable',
        'spec.items[1]: Invalid value: "object": no decrease',
    ]


def test_projection_keeps_semantics() -> None:
    expr = compile_expression("has(self.a) && self.a > 1")
    assert expr.fields == frozenset({"a"})
    assert expr.project({"a": 2, "b": {"big": [1, 2]}}) == {"a": 2}
    assert compile_expression("size(self) == 2").fields is None
    assert compile_expression("self['a'] == 1").fields is None


def test_compile_errors() -> None:
    with pytest.raises(CelError, match="Syntax error"):
        compile_expression("self.a <=")
