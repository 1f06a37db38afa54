"""Structural schemas of custom resources: pruning, defaulting and validation messages,
on the examples of upstream's "Extend the Kubernetes API with CustomResourceDefinitions"."""

from __future__ import annotations

from typing import Any

import pytest

from k8slite.api.apiextensions_v1 import CustomResourceDefinitionStrategy
from k8slite.api.customresource import json_path, make_printer, name_conflicts, served_kinds
from k8slite.api.structural import CompiledSchema
from k8slite.api.validation import FieldErrors

# The CronTab schema of upstream's documentation (validation and defaulting sections).
CRONTAB: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "cronSpec": {
                    "type": "string",
                    "pattern": r"^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$",
                    "default": "5 0 * * *",
                },
                "image": {"type": "string"},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
            },
        }
    },
}


def _validate(schema: dict[str, Any], obj: dict[str, Any]) -> list[str]:
    errs = FieldErrors()
    CompiledSchema(schema).validate(obj, errs)
    return [f"{c['field']}: {c['message']}" for c in errs.causes]


def test_upstream_crontab_validation_example() -> None:
    # Upstream's doc: cronSpec "* * * *" and replicas 15 are refused with these messages.
    bad = {"spec": {"cronSpec": "* * * *", "image": "my-awesome-cron-image", "replicas": 15}}
    assert _validate(CRONTAB, bad) == [
        r"spec.cronSpec: Invalid value: "
        r'"* * * *": spec.cronSpec in body should match '
        r"'^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'",
        "spec.replicas: Invalid value: 15: spec.replicas in body should be less than or "
        "equal to 10",
    ]
    good = {"spec": {"cronSpec": "* * * * */5", "image": "img", "replicas": 5}}
    assert _validate(CRONTAB, good) == []


def test_type_required_enum_and_format_messages() -> None:
    schema = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["mode"],
                "properties": {
                    "mode": {"type": "string", "enum": ["a", "b"]},
                    "replicas": {"type": "integer", "format": "int32"},
                    "when": {"type": "string", "format": "date-time"},
                    "tags": {"type": "array", "maxItems": 1, "items": {"type": "string"}},
                    "name": {"type": "string", "maxLength": 3, "minLength": 2},
                    "ratio": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
                },
            }
        },
    }
    assert _validate(schema, {}) == ["spec: Required value"]
    found = _validate(
        schema,
        {
            "spec": {
                "mode": "x",
                "replicas": "string",
                "when": "yesterday",
                "tags": ["a", "b"],
                "name": "toolong",
                "ratio": 0,
            }
        },
    )
    assert found == [
        'spec.mode: Unsupported value: "x": supported values: "a", "b"',
        'spec.replicas: Invalid value: "string": spec.replicas in body must be of type '
        'integer: "string"',
        'spec.when: Invalid value: "yesterday": spec.when in body must be of type date-time: '
        '"yesterday"',
        "spec.tags: Too many: 2: must have at most 1 items",
        "spec.name: Too long: may not be more than 3 bytes",
        "spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0",
    ]
    assert _validate(schema, {"spec": {"replicas": 2**31}}) == [
        "spec.mode: Required value",
        "spec.replicas: Invalid value: 2147483648: spec.replicas in body must be of type "
        "int32: 2147483648",
    ]


def test_pruning_keeps_metadata_and_preserved_fields() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"known": {"type": "string"}}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    obj = {
        "apiVersion": "x.example.com/v1",
        "kind": "X",
        "metadata": {"name": "n", "labels": {"a": "b"}},
        "spec": {"known": "k", "unknown": 1},
        "free": {"anything": {"goes": True}},
        "labels": {"any": "key"},
        "top": 1,
    }
    unknown = CompiledSchema(schema).prune(obj)
    assert sorted(unknown) == ["spec.unknown", "top"]
    assert obj == {
        "apiVersion": "x.example.com/v1",
        "kind": "X",
        "metadata": {"name": "n", "labels": {"a": "b"}},
        "spec": {"known": "k"},
        "free": {"anything": {"goes": True}},
        "labels": {"any": "key"},
    }


def test_defaulting_as_upstream_documents() -> None:
    schema = CompiledSchema(CRONTAB)
    obj: dict[str, Any] = {"spec": {"image": "img"}}
    schema.apply_defaults(obj)
    assert obj == {"spec": {"image": "img", "cronSpec": "5 0 * * *", "replicas": 1}}
    # An absent parent object gets no defaults of its children (upstream's rule).
    empty: dict[str, Any] = {}
    schema.apply_defaults(empty)
    assert empty == {}


def test_int_or_string_nullable_and_list_map_keys() -> None:
    schema = {
        "type": "object",
        "properties": {
            "port": {"x-kubernetes-int-or-string": True},
            "note": {"type": "string", "nullable": True},
            "ports": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}}},
            },
        },
    }
    assert _validate(schema, {"port": 80, "note": None, "ports": [{"name": "a"}]}) == []
    assert _validate(schema, {"port": "http"}) == []
    assert _validate(schema, {"port": True, "ports": [{"name": "a"}, {"name": "a"}]}) == [
        'port: Invalid value: "boolean": port in body must be of type integer,string: "boolean"',
        'ports[1]: Duplicate value: map["name"="a"]',
    ]


def test_one_of_any_of_not() -> None:
    schema = {
        "type": "object",
        "properties": {
            "v": {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
                "not": {"required": ["c"]},
            }
        },
    }
    assert _validate(schema, {"v": {"a": "1"}}) == []
    assert _validate(schema, {"v": {"a": "1", "b": "2"}}) == [
        'v: Invalid value: "object": v in body must validate one and only one schema '
        "(oneOf). Found 2 valid alternatives"
    ]


def _crd(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "group": "stable.example.com",
        "scope": "Namespaced",
        "names": {"plural": "crontabs", "kind": "CronTab"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": CRONTAB},
            }
        ],
    }
    base.update(spec)
    return {"metadata": {"name": "crontabs.stable.example.com"}, "spec": base}


def _crd_errors(crd: dict[str, Any]) -> list[str]:
    strategy = CustomResourceDefinitionStrategy()
    strategy.default(crd)
    errs = FieldErrors()
    strategy.validate(crd, errs, namespaced=False)
    return [f"{c['field']}: {c['message']}" for c in errs.causes]


def test_crd_validation_messages() -> None:
    assert _crd_errors(_crd()) == []
    crd = _crd(group="example")
    crd["metadata"]["name"] = "crontabs.example"
    assert _crd_errors(crd) == [
        'spec.group: Invalid value: "example": should be a domain with at least one dot'
    ]
    wrong_name = _crd()
    wrong_name["metadata"]["name"] = "crontab.stable.example.com"
    assert _crd_errors(wrong_name) == [
        'metadata.name: Invalid value: "crontab.stable.example.com": '
        'must be spec.names.plural+"."+spec.group'
    ]
    no_schema = _crd(versions=[{"name": "v1", "served": True, "storage": True}])
    assert _crd_errors(no_schema) == [
        "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"
    ]
    untyped = _crd(
        versions=[
            {
                "name": "v1",
                "served": True,
                "storage": False,
                "schema": {"openAPIV3Schema": {"properties": {"spec": {}}}},
            }
        ]
    )
    assert _crd_errors(untyped) == [
        "spec.versions[0].schema.openAPIV3Schema.type: Required value: must not be empty at "
        "the root",
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must "
        "not be empty for specified object fields",
        'spec.versions: Invalid value: "v1": must have exactly one version marked as storage '
        "version",
    ]


def test_crd_defaults_and_served_kinds() -> None:
    crd = _crd()
    CustomResourceDefinitionStrategy().default(crd)
    names = crd["spec"]["names"]
    assert (names["singular"], names["listKind"]) == ("crontab", "CronTabList")
    assert crd["spec"]["conversion"] == {"strategy": "None"}
    crd["spec"]["versions"].append(
        {
            "name": "v2beta1",
            "served": True,
            "storage": False,
            "schema": {"openAPIV3Schema": CRONTAB},
        }
    )
    crd["spec"]["versions"].append(
        {"name": "v2", "served": True, "storage": False, "schema": {"openAPIV3Schema": CRONTAB}}
    )
    crd["metadata"]["resourceVersion"] = "1"
    kinds = served_kinds(crd)
    # Upstream's version priority: GA before beta, higher numbers first.
    assert [k.version for k in kinds] == ["v2", "v1", "v2beta1"]
    assert kinds[0].singular == "crontab" and kinds[0].namespaced


def test_protected_groups_and_built_in_names() -> None:
    crd = _crd(group="stable.k8s.io")
    crd["metadata"]["name"] = "crontabs.stable.k8s.io"
    assert _crd_errors(crd) == [
        "metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups "
        'must have approval annotation "api-approved.kubernetes.io", see '
        "https://github.com/kubernetes/enhancements/pull/1111"
    ]
    crd["metadata"]["annotations"] = {"api-approved.kubernetes.io": "unapproved, testing"}
    assert _crd_errors(crd) == []
    # Even approved, a CRD never takes a built-in kind's names.
    shadow = _crd(
        group="apiextensions.k8s.io", names={"plural": "customresourcedefinitions", "kind": "X"}
    )
    shadow["metadata"] = {"name": "customresourcedefinitions.apiextensions.k8s.io"}
    assert name_conflicts([shadow]) == {
        "customresourcedefinitions.apiextensions.k8s.io": (
            "PluralConflict",
            '"customresourcedefinitions" is already in use',
        )
    }


def test_name_conflicts_first_come_first_served() -> None:
    older = _crd()
    older["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    newer = _crd()
    newer["metadata"] = {
        "name": "other.stable.example.com",
        "creationTimestamp": "2024-01-02T00:00:00Z",
    }
    assert name_conflicts([newer, older]) == {
        "other.stable.example.com": ("PluralConflict", '"crontabs" is already in use')
    }


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (".spec.replicas", [3]),
        (".spec.items[0].name", ["a"]),
        (".spec.items[*].name", ["a", "b"]),
        (".metadata.labels['app.kubernetes.io/name']", ["x"]),
        (".spec.missing", []),
        ('.status.conditions[?(@.type=="Ready")].status', ["True"]),
        (".status.conditions[?(@.type!='Ready')].reason", ["Pending"]),
        (".status.conditions[?(@.observedGeneration==2)].type", ["Synced"]),
    ],
)
def test_printer_json_paths(path: str, expected: list[Any]) -> None:
    obj = {
        "metadata": {"labels": {"app.kubernetes.io/name": "x"}},
        "spec": {"replicas": 3, "items": [{"name": "a"}, {"name": "b"}]},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "observedGeneration": 1},
                {"type": "Synced", "reason": "Pending", "observedGeneration": 2},
            ]
        },
    }
    assert json_path(obj, path) == expected


def test_printer_columns_and_default_age() -> None:
    import datetime as dt

    now = dt.datetime(2024, 1, 1, 0, 10, tzinfo=dt.UTC)
    obj = {
        "metadata": {"name": "n", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"replicas": 3},
    }
    default = make_printer([])
    assert [c.name for c in default.columns] == ["Name", "Age"]
    assert default.row(obj, now) == ["n", "10m"]
    columns = make_printer(
        [
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Image", "type": "string", "jsonPath": ".spec.image", "priority": 1},
        ]
    )
    assert [(c.name, c.priority) for c in columns.columns] == [
        ("Name", 0),
        ("Replicas", 0),
        ("Image", 1),
    ]
    assert columns.row(obj, now) == ["n", 3, None]
