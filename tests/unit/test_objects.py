"""component/objects.py: metadata accessors, owner references, keys and conditions."""

from __future__ import annotations

from types import MappingProxyType

from k8slite.component import objects
from k8slite.component.objects import Obj

POD: Obj = {
    "metadata": {
        "name": "web-1",
        "namespace": "prod",
        "uid": "u-1",
        "resourceVersion": "42",
        "generation": 3,
        "labels": {"app": "web"},
        "annotations": {"note": "x"},
        "deletionTimestamp": "2026-01-01T00:00:00Z",
        "ownerReferences": [
            {"kind": "Other", "name": "o", "uid": "u-o"},
            {"kind": "ReplicaSet", "name": "web", "uid": "u-rs", "controller": True},
        ],
    }
}


def test_fields_of_a_full_object() -> None:
    assert objects.meta(POD) is POD["metadata"]
    assert objects.name_of(POD) == "web-1"
    assert objects.namespace_of(POD) == "prod"
    assert objects.uid_of(POD) == "u-1"
    assert objects.resource_version_of(POD) == "42"
    assert objects.generation_of(POD) == 3
    assert objects.labels_of(POD) == {"app": "web"}
    assert objects.annotations_of(POD) == {"note": "x"}
    assert objects.deletion_timestamp(POD) == "2026-01-01T00:00:00Z"
    assert objects.is_deleting(POD)
    assert [r["uid"] for r in objects.owner_references(POD)] == ["u-o", "u-rs"]
    assert objects.key_of(POD) == "prod/web-1"


def test_missing_and_null_fields_read_as_empty_and_create_nothing() -> None:
    for obj in ({}, {"metadata": None}, {"metadata": {"labels": None, "annotations": None}}):
        before = repr(obj)
        assert objects.meta(obj) == (obj.get("metadata") or {})
        assert objects.name_of(obj) == ""
        assert objects.namespace_of(obj) == ""
        assert objects.uid_of(obj) == ""
        assert objects.resource_version_of(obj) == ""
        assert objects.generation_of(obj) == 0
        assert objects.labels_of(obj) == {}
        assert objects.annotations_of(obj) == {}
        assert objects.owner_references(obj) == []
        assert objects.controller_ref(obj) is None
        assert objects.deletion_timestamp(obj) is None
        assert not objects.is_deleting(obj)
        assert repr(obj) == before


def test_accessors_take_any_mapping() -> None:
    view = MappingProxyType({"metadata": {"name": "n", "namespace": "ns"}})
    assert objects.key_of(view) == "ns/n"


def test_key_of_a_cluster_scoped_object_is_its_name() -> None:
    assert objects.key_of({"metadata": {"name": "node-1"}}) == "node-1"
    assert objects.key_of({"metadata": {"name": "node-1", "namespace": ""}}) == "node-1"


def test_controller_ref_is_the_controlling_owner() -> None:
    ref = objects.controller_ref(POD)
    assert ref is not None and ref["uid"] == "u-rs"
    no_controller = {"metadata": {"ownerReferences": [{"uid": "a", "controller": False}]}}
    assert objects.controller_ref(no_controller) is None


def test_get_condition_by_type() -> None:
    status = {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "No"}]}
    assert objects.get_condition(status, "X") == {"type": "X", "status": "No"}
    assert objects.get_condition(status, "Missing") is None
    assert objects.get_condition(None, "Ready") is None
    assert objects.get_condition({"conditions": None}, "Ready") is None


def test_set_condition_appends_a_new_type() -> None:
    status: Obj = {}
    cond = {"type": "Ready", "status": "True", "lastTransitionTime": "t1"}
    assert objects.set_condition(status, cond)
    assert status == {"conditions": [cond]}
    assert status["conditions"][0] is not cond  # the caller's dict is not stored


def test_set_condition_keeps_transition_time_when_status_holds() -> None:
    status: Obj = {
        "conditions": [
            {"type": "A", "status": "True"},
            {"type": "Ready", "status": "True", "reason": "Old", "lastTransitionTime": "t1"},
            {"type": "B", "status": "False"},
        ]
    }
    new = {"type": "Ready", "status": "True", "reason": "New", "lastTransitionTime": "t2"}
    assert objects.set_condition(status, new)
    assert [c["type"] for c in status["conditions"]] == ["A", "Ready", "B"]
    assert status["conditions"][1] == {**new, "lastTransitionTime": "t1"}


def test_set_condition_takes_the_new_transition_time_when_status_changes() -> None:
    status: Obj = {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "t1"}]}
    new = {"type": "Ready", "status": "False", "lastTransitionTime": "t2"}
    assert objects.set_condition(status, new)
    assert status["conditions"] == [new]


def test_set_condition_reports_no_change() -> None:
    cond = {"type": "Ready", "status": "True", "reason": "R", "lastTransitionTime": "t1"}
    status: Obj = {"conditions": [dict(cond)]}
    assert not objects.set_condition(status, {**cond, "lastTransitionTime": "t9"})
    assert status["conditions"] == [cond]
