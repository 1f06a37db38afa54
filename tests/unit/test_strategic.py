"""Strategic merge patch against the served kinds' schemas: merge keys and directives."""

from __future__ import annotations

from typing import Any

import pytest

from k8slite.api import schemas
from k8slite.api.errors import ApiError
from k8slite.api.resources import lookup
from k8slite.api.strategic import strategic_merge_patch

POD = schemas.root(lookup("", "v1", "pods"))  # type: ignore[arg-type]
DEPLOY = schemas.root(lookup("apps", "v1", "deployments"))  # type: ignore[arg-type]


def pod(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": list(containers), **spec},
    }


def c(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "image": "img", **kw}


def names(obj: dict[str, Any], field: str = "containers") -> list[str]:
    return [x["name"] for x in obj["spec"][field]]


def test_containers_merge_by_name() -> None:
    out = strategic_merge_patch(
        pod(c("a"), c("b")), {"spec": {"containers": [{"name": "b", "image": "new"}]}}, POD
    )
    assert out["spec"]["containers"] == [c("a"), {"name": "b", "image": "new"}]


def test_new_item_goes_before_live_only_items_and_original_is_untouched() -> None:
    # Upstream orders patch items before items only the live list has unless the patch
    # carries $setElementOrder (as kubectl's generated patches do).
    original = pod(c("a"))
    out = strategic_merge_patch(original, {"spec": {"containers": [c("z")]}}, POD)
    assert names(out) == ["z", "a"]
    assert names(original) == ["a"]


def test_nested_keyed_lists_env_and_ports() -> None:
    original = pod(
        c(
            "a",
            env=[{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
            ports=[{"containerPort": 80}],
        )
    )
    patch = {
        "spec": {
            "containers": [
                {
                    "name": "a",
                    "env": [{"name": "Y", "value": "3"}],
                    "ports": [{"containerPort": 443}],
                }
            ]
        }
    }
    out = strategic_merge_patch(original, patch, POD)
    cont = out["spec"]["containers"][0]
    assert cont["env"] == [{"name": "X", "value": "1"}, {"name": "Y", "value": "3"}]
    assert cont["ports"] == [{"containerPort": 443}, {"containerPort": 80}]


def test_delete_directive_removes_element() -> None:
    out = strategic_merge_patch(
        pod(c("a"), c("b")), {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}, POD
    )
    assert names(out) == ["b"]


def test_replace_directive_in_list() -> None:
    out = strategic_merge_patch(
        pod(c("a"), c("b")), {"spec": {"containers": [c("z"), {"$patch": "replace"}]}}, POD
    )
    assert names(out) == ["z"]


def test_replace_and_delete_directives_in_map() -> None:
    original = pod(c("a"), nodeSelector={"x": "1", "y": "2"})
    out = strategic_merge_patch(
        original, {"spec": {"nodeSelector": {"z": "3", "$patch": "replace"}}}, POD
    )
    assert out["spec"]["nodeSelector"] == {"z": "3"}
    out = strategic_merge_patch(original, {"spec": {"nodeSelector": {"$patch": "delete"}}}, POD)
    assert out["spec"]["nodeSelector"] == {}


def test_null_deletes_field() -> None:
    out = strategic_merge_patch(pod(c("a"), hostname="h"), {"spec": {"hostname": None}}, POD)
    assert "hostname" not in out["spec"]


def test_atomic_list_is_replaced() -> None:
    original = pod(c("a", args=["1", "2"]), tolerations=[{"key": "k1"}, {"key": "k2"}])
    out = strategic_merge_patch(
        original,
        {"spec": {"tolerations": [{"key": "k3"}], "containers": [{"name": "a", "args": ["3"]}]}},
        POD,
    )
    assert out["spec"]["tolerations"] == [{"key": "k3"}]
    assert out["spec"]["containers"][0]["args"] == ["3"]


def test_set_element_order() -> None:
    original = pod(c("a"), c("b"), c("c"))
    out = strategic_merge_patch(
        original,
        {
            "spec": {
                "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}],
                "containers": [{"name": "a", "image": "x"}],
            }
        },
        POD,
    )
    assert names(out) == ["c", "a", "b"]
    assert out["spec"]["containers"][1]["image"] == "x"


def test_primitive_list_merge_and_delete_from_primitive_list() -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "finalizers": ["a", "b"]}}
    out = strategic_merge_patch(obj, {"metadata": {"finalizers": ["c", "a"]}}, POD)
    assert sorted(out["metadata"]["finalizers"]) == ["a", "b", "c"]
    out = strategic_merge_patch(
        obj, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, POD
    )
    assert out["metadata"]["finalizers"] == ["b"]


def test_retain_keys_clears_other_strategy_fields() -> None:
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}},
    }
    out = strategic_merge_patch(
        deploy,
        {
            "spec": {
                "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}
            }
        },
        DEPLOY,
    )
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_refuses_patch_fields_outside_the_list() -> None:
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"strategy": {"type": "RollingUpdate"}},
    }
    with pytest.raises(ApiError) as e:
        strategic_merge_patch(
            deploy,
            {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 2}}}},
            DEPLOY,
        )
    assert e.value.code == 400


def test_missing_merge_key_is_bad_request() -> None:
    with pytest.raises(ApiError) as e:
        strategic_merge_patch(pod(c("a")), {"spec": {"containers": [{"image": "x"}]}}, POD)
    assert e.value.code == 400
    assert "does not contain declared merge key: name" in e.value.message


def test_conditions_merge_by_type() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "PodScheduled", "status": "True"},
            ]
        },
    }
    out = strategic_merge_patch(
        obj, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, POD
    )
    assert out["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "PodScheduled", "status": "True"},
    ]


def test_volumes_retain_keys_per_element() -> None:
    original = pod(c("a"), volumes=[{"name": "v", "emptyDir": {}}])
    out = strategic_merge_patch(
        original,
        {
            "spec": {
                "volumes": [
                    {"name": "v", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}
                ]
            }
        },
        POD,
    )
    assert out["spec"]["volumes"] == [{"name": "v", "hostPath": {"path": "/x"}}]


def test_labels_merge_like_a_map() -> None:
    obj = {"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}}
    out = strategic_merge_patch(obj, {"metadata": {"labels": {"a": None, "c": "3"}}}, POD)
    assert out["metadata"]["labels"] == {"b": "2", "c": "3"}


def test_without_schema_lists_are_replaced() -> None:
    out = strategic_merge_patch({"spec": {"xs": [1, 2]}}, {"spec": {"xs": [3]}}, None)
    assert out == {"spec": {"xs": [3]}}
