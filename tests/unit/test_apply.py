"""Server-side apply field sets and managedFields bookkeeping, without a server."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from k8slite.api import fieldsets, schemas
from k8slite.api.apply import (
    ApplyError,
    ApplyRequest,
    Manager,
    record_update,
    server_side_apply,
)
from k8slite.api.errors import ApiError
from k8slite.api.resources import lookup
from k8slite.api.schemas import Node

DEPLOY = Node("struct", definition=schemas.root(lookup("apps", "v1", "deployments")))  # type: ignore[arg-type]
CM = Node("struct", definition=schemas.root(lookup("", "v1", "configmaps")))  # type: ignore[arg-type]


def deployment(
    replicas: int = 1,
    image: str = "nginx",
    labels: dict[str, str] | None = None,
    containers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            **({"labels": labels} if labels else {}),
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers or [{"name": "web", "image": image}]},
            },
        },
    }


def managers(obj: dict[str, Any]) -> dict[tuple[str, str], set[fieldsets.Path]]:
    return {
        (e["manager"], e["operation"]): fieldsets.decode(e["fieldsV1"])
        for e in obj["metadata"].get("managedFields", [])
    }


def apply(
    live: dict[str, Any] | None,
    config: dict[str, Any],
    manager: str = "kubectl",
    force: bool = False,
) -> dict[str, Any]:
    return server_side_apply(live, ApplyRequest(config, manager, force, "apps/v1"), DEPLOY)


def created_by(manager: str, obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    record_update(obj, None, Manager(manager), "apps/v1", DEPLOY)
    return obj


def test_fieldsv1_round_trip_and_dot_marker() -> None:
    paths = {
        ("f:metadata", "f:labels"),
        ("f:metadata", "f:labels", "f:app"),
        ("f:spec", "f:replicas"),
    }
    encoded = fieldsets.encode(paths)
    assert encoded == {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {"f:replicas": {}},
    }
    assert fieldsets.decode(encoded) == paths


def test_create_records_an_update_manager_owning_every_field() -> None:
    obj = created_by("kubectl-create", deployment())
    [entry] = obj["metadata"]["managedFields"]
    assert entry["manager"] == "kubectl-create" and entry["operation"] == "Update"
    assert entry["apiVersion"] == "apps/v1" and entry["fieldsType"] == "FieldsV1"
    fields = entry["fieldsV1"]
    container = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}']
    assert container == {".": {}, "f:image": {}, "f:name": {}}
    assert fields["f:spec"]["f:selector"] == {}  # LabelSelector is atomic
    assert "f:name" not in fields.get("f:metadata", {})  # identity fields are not owned


def test_apply_owns_exactly_what_it_sets() -> None:
    obj = apply(None, deployment())
    sets = managers(obj)
    assert ("f:spec", "f:replicas") in sets[("kubectl", "Apply")]
    assert obj["spec"]["replicas"] == 1


def test_conflict_with_update_manager_and_force() -> None:
    live = created_by("kubectl-create", deployment(replicas=1))
    with pytest.raises(ApiError) as e:
        apply(live, deployment(replicas=3))
    assert e.value.code == 409
    assert e.value.message == (
        'Apply failed with 1 conflict: conflict with "kubectl-create" using apps/v1: .spec.replicas'
    )
    assert e.value.details["causes"][0] == {  # type: ignore[index]
        "reason": "FieldManagerConflict",
        "message": 'conflict with "kubectl-create" using apps/v1',
        "field": ".spec.replicas",
    }
    forced = apply(live, deployment(replicas=3), force=True)
    assert forced["spec"]["replicas"] == 3
    sets = managers(forced)
    assert ("f:spec", "f:replicas") in sets[("kubectl", "Apply")]
    assert ("f:spec", "f:replicas") not in sets[("kubectl-create", "Update")]


def test_same_value_is_shared_not_a_conflict() -> None:
    live = created_by("kubectl-create", deployment(replicas=2))
    obj = apply(live, deployment(replicas=2))
    sets = managers(obj)
    assert ("f:spec", "f:replicas") in sets[("kubectl", "Apply")]
    assert ("f:spec", "f:replicas") in sets[("kubectl-create", "Update")]


def test_fields_dropped_from_the_configuration_are_removed() -> None:
    first = apply(None, deployment(labels={"a": "1", "b": "2"}))
    second = apply(first, deployment(labels={"a": "1"}))
    assert second["metadata"]["labels"] == {"a": "1"}
    third = apply(second, deployment())
    assert "labels" not in third["metadata"]


def test_dropped_fields_owned_by_another_manager_stay() -> None:
    first = apply(None, deployment(labels={"a": "1"}), manager="one")
    both = apply(first, deployment(labels={"a": "1"}), manager="two")
    after = apply(both, deployment(), manager="one")
    assert after["metadata"]["labels"] == {"a": "1"}


def test_keyed_list_elements_merge_and_prune() -> None:
    two = [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]
    first = apply(None, deployment(containers=two))
    other = apply(
        first, deployment(containers=[{"name": "c", "image": "z"}]), manager="sidecar-injector"
    )
    names = [c["name"] for c in other["spec"]["template"]["spec"]["containers"]]
    assert names == ["a", "b", "c"]
    only_a = apply(other, deployment(containers=[{"name": "a", "image": "x"}]))
    names = [c["name"] for c in only_a["spec"]["template"]["spec"]["containers"]]
    assert names == ["a", "c"]


def test_update_takes_ownership_from_the_applier() -> None:
    live = apply(None, deployment(replicas=1))
    changed = copy.deepcopy(live)
    changed["spec"]["replicas"] = 5
    record_update(changed, live, Manager("kubectl-scale"), "apps/v1", DEPLOY)
    sets = managers(changed)
    assert ("f:spec", "f:replicas") in sets[("kubectl-scale", "Update")]
    assert ("f:spec", "f:replicas") not in sets[("kubectl", "Apply")]


def test_unchanged_update_keeps_managed_fields_identical() -> None:
    live = created_by("a", deployment())
    again = copy.deepcopy(live)
    record_update(again, live, Manager("a"), "apps/v1", DEPLOY)
    assert again["metadata"]["managedFields"] == live["metadata"]["managedFields"]
    other = copy.deepcopy(live)
    record_update(other, live, Manager("b"), "apps/v1", DEPLOY)
    assert [e["manager"] for e in other["metadata"]["managedFields"]] == ["a"]


def test_reset_managed_fields_with_an_empty_entry() -> None:
    live = created_by("a", deployment())
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"] = [{}]
    record_update(new, live, Manager("b"), "apps/v1", DEPLOY)
    assert "managedFields" not in new["metadata"]


def test_applied_keyed_list_element_needs_its_key() -> None:
    with pytest.raises(ApplyError, match='omits key field "name"'):
        apply(None, deployment(containers=[{"image": "x"}]))


def test_port_protocol_defaults_for_the_key() -> None:
    obj = apply(
        None, deployment(containers=[{"name": "a", "image": "x", "ports": [{"containerPort": 80}]}])
    )
    fields = obj["metadata"]["managedFields"][0]["fieldsV1"]
    ports = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"a"}']["f:ports"]
    assert list(ports) == ['k:{"containerPort":80,"protocol":"TCP"}']


def test_configmap_data_keys_are_owned_per_key() -> None:
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {"a": "1", "b": "2"},
    }
    obj = server_side_apply(None, ApplyRequest(cm, "m", False, "v1"), CM)
    assert fieldsets.decode(obj["metadata"]["managedFields"][0]["fieldsV1"]) == {
        ("f:data", "f:a"),
        ("f:data", "f:b"),
    }
