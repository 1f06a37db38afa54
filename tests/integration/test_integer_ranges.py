"""Property: an integer field of any kind, through any write verb, is stored in range or refused.

Random integers (the int32 and int64 edges, 2**64, 2**200 and anything in +-2**70) go into
integer fields of every stored built-in kind by create, update, merge, strategic and JSON
patch and server-side apply, over HTTPS against a server of the test's own. An out-of-range
value is refused as upstream refuses it (400 where the body is decoded, 422 for a patch) and
changes nothing; an in-range one is never refused for its number, and what is stored fits.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k8slite.api import fieldvalidation, schemas
from k8slite.api.resources import RESOURCES, ResourceType
from k8slite.api.schemas import Definition, Node
from tests.conftest import ServerHandle, start_apiserver
from tests.integration.csr_helpers import csr_object, csr_pem
from tests.polling import wait_for

NS = "ranges"
Path_ = tuple[str | int, ...]
_RBAC = "rbac.authorization.k8s.io"
# A valid object of each stored kind, for the fields around the one under test.
_BASES: dict[str, dict[str, Any]] = {
    "Pod": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}},
    "Service": {"spec": {"ports": [{"port": 80}]}},
    "Lease": {"spec": {"holderIdentity": "x"}},
    "EndpointSlice": {"addressType": "IPv4", "endpoints": []},
    "Event": {
        "involvedObject": {"kind": "Pod", "name": "x", "namespace": NS},
        "reason": "R",
        "message": "m",
        "type": "Normal",
    },
    "RoleBinding": {"roleRef": {"apiGroup": _RBAC, "kind": "ClusterRole", "name": "view"}},
    "ClusterRoleBinding": {"roleRef": {"apiGroup": _RBAC, "kind": "ClusterRole", "name": "view"}},
}
for _kind in ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet"):
    _BASES[_kind] = {
        "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "template": {
                "metadata": {"labels": {"app": "a"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        }
    }
_BASES["ReplicationController"] = {
    "spec": {
        "selector": {"app": "a"},
        "template": _BASES["ReplicaSet"]["spec"]["template"],
    }
}
_BASES["PodDisruptionBudget"] = {"spec": {"minAvailable": 1}}
_BASES["HorizontalPodAutoscaler"] = {
    "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d"}, "maxReplicas": 3}
}
_JOB_TEMPLATE = {
    "spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}
}
_BASES["Job"] = {"spec": {"template": _JOB_TEMPLATE}}
_BASES["CronJob"] = {
    "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": _JOB_TEMPLATE}}}
}
_BASES["PersistentVolume"] = {
    "spec": {
        "capacity": {"storage": "1Gi"},
        "accessModes": ["ReadWriteOnce"],
        "hostPath": {"path": "/tmp/x"},
    }
}
_BASES["PersistentVolumeClaim"] = {
    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
}
_BASES["ValidatingAdmissionPolicy"] = {
    "spec": {
        "matchConstraints": {
            "resourceRules": [
                {
                    "apiGroups": ["apps"],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE"],
                    "resources": ["deployments"],
                }
            ]
        },
        "validations": [{"expression": "true"}],
    }
}
_BASES["ValidatingAdmissionPolicyBinding"] = {
    "spec": {"policyName": "ranges", "validationActions": ["Deny"]}
}
_BASES["APIService"] = {
    "spec": {
        "group": "ranges.example.com",
        "version": "v1",
        "groupPriorityMinimum": 100,
        "versionPriority": 10,
    }
}
_BASES["ControllerRevision"] = {"revision": 1, "data": {"spec": {}}}
_BASES["CustomResourceDefinition"] = {
    "spec": {
        "group": "ranges.example.com",
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object"}},
            }
        ],
    }
}
_BASES["StorageClass"] = {"provisioner": "example.com/x"}
_BASES["CertificateSigningRequest"] = {"spec": csr_object("base", csr_pem("ranges"))["spec"]}
EDGES = [2**64, 2**200, -(2**63) - 1, -(2**63), 2**63 - 1, 2**63, 2**31, 2**31 - 1, -(2**31) - 1]
VERBS = ("create", "update", "merge", "strategic", "json", "apply")


def _int_paths(defn: Definition, prefix: Path_ = (), depth: int = 0) -> Iterator[tuple[Path_, str]]:
    """Each integer field reachable through structs and first list items, with its format."""
    if depth > 6:
        return
    for name, node in defn.fields.items():
        yield from _node_paths(node, (*prefix, name), depth)


def _node_paths(node: Node, path: Path_, depth: int) -> Iterator[tuple[Path_, str]]:
    if node.kind == "integer":
        yield path, node.fmt or "int32"
    elif node.kind == "list" and node.elem is not None:
        yield from _node_paths(node.elem, (*path, 0), depth + 1)
    elif node.kind == "struct" and node.definition is not None:
        yield from _int_paths(node.definition, path, depth + 1)


def _stored_kinds() -> list[tuple[ResourceType, list[tuple[Path_, str]]]]:
    out = []
    for rt in RESOURCES:
        defn = schemas.root(rt)
        # Reviews (create only) are never stored; read-only kinds (the flowcontrol defaults)
        # take no writes.
        if defn is None or not {"create", "update"} <= set(rt.verbs):
            continue
        out.append((rt, sorted(_int_paths(defn), key=str)))
    return out


KINDS = _stored_kinds()


def _url(rt: ResourceType, name: str = "") -> str:
    base = f"/api/{rt.version}" if not rt.group else f"/apis/{rt.group}/{rt.version}"
    ns = f"/namespaces/{NS}" if rt.namespaced else ""
    return f"{base}{ns}/{rt.plural}" + (f"/{name}" if name else "")


def _set(obj: Any, path: Path_, value: int) -> None:
    """Put value at path, making the structs and first list items on the way."""
    for key, nxt in zip(path, path[1:], strict=False):
        if isinstance(key, int):
            if not obj:
                # Most keyed lists merge on "name"; elsewhere the unknown field is dropped.
                obj.append([] if isinstance(nxt, int) else {"name": "n0"})
            obj = obj[0]
        else:
            if not isinstance(obj.get(key), list | dict):
                obj[key] = [] if isinstance(nxt, int) else {}
            obj = obj[key]
    last = path[-1]
    if isinstance(last, int):
        obj[:] = [value]
    else:
        obj[last] = value


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    handle = start_apiserver(Path(tmp_path_factory.mktemp("int-ranges")) / "data")
    with handle.client() as c:
        assert c.post("/api/v1/namespaces", json={"metadata": {"name": NS}}).status_code == 201
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def api(server: ServerHandle) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def _write(
    api: httpx.Client, rt: ResourceType, verb: str, obj: dict[str, Any], top: str
) -> httpx.Response:
    name = obj["metadata"]["name"]
    if verb == "create":
        return api.post(_url(rt), json=obj)
    if verb == "update":
        return api.put(_url(rt, name), json=obj)
    if verb == "json":
        ctype, patch = (
            "application/json-patch+json",
            [{"op": "add", "path": f"/{top}", "value": obj[top]}],
        )
    elif verb == "apply":
        ctype, patch = (
            "application/apply-patch+yaml",
            {
                "apiVersion": rt.api_version,
                "kind": rt.kind,
                "metadata": {"name": name},
                top: obj[top],
            },
        )
        # An applied configuration carries no managedFields (upstream refuses them).
        patch["metadata"] = {k: v for k, v in patch["metadata"].items() if k != "managedFields"}
    else:
        ctype = (
            f"application/{verb}-merge-patch+json"
            if verb == "strategic"
            else "application/merge-patch+json"
        )
        patch = {top: obj[top]}
    params = {"fieldManager": "ranges", "force": "true"} if verb == "apply" else {}
    return api.patch(
        _url(rt, name), content=json.dumps(patch), headers={"content-type": ctype}, params=params
    )


# Kinds the API server itself writes a condition on after each create (the CRD and
# aggregation controllers): the test writes after that one write, which would race it.
_SETTLES_ON = {"CustomResourceDefinition": "Established", "APIService": "Available"}


def _settled(api: httpx.Client, rt: ResourceType, name: str, ctype: str) -> dict[str, Any]:
    """The object once the API server's controller has written its `ctype` condition."""

    def ready() -> dict[str, Any] | None:
        obj: dict[str, Any] = api.get(_url(rt, name)).json()
        conditions = (obj.get("status") or {}).get("conditions") or []
        return obj if any(c["type"] == ctype for c in conditions) else None

    return wait_for(ready, timeout=30, what=f"{rt.kind} {name} condition {ctype}")


def _base(rt: ResourceType, name: str) -> dict[str, Any]:
    base = {"apiVersion": rt.api_version, "kind": rt.kind, "metadata": {"name": name}}
    base.update(copy.deepcopy(_BASES.get(rt.kind, {})))
    if rt.kind == "APIService":
        # Its name is its version and group.
        base["spec"]["group"] = f"{name.replace('-', '')}.example.com"
        base["metadata"]["name"] = f"v1.{base['spec']['group']}"
    if rt.kind == "CustomResourceDefinition":
        # Its name is its plural and group, and its names must not clash with another's.
        plural = name.replace("-", "")
        base["spec"]["names"] = {"plural": plural, "kind": plural.capitalize()}
        base["metadata"]["name"] = f"{plural}.{base['spec']['group']}"
    return base


@pytest.mark.parametrize("rt", [k[0] for k in KINDS], ids=lambda rt: rt.kind)
def test_every_kind_has_a_valid_base(api: httpx.Client, rt: ResourceType) -> None:
    """The property test below samples kinds; a kind without a valid base fails here, always."""
    r = api.post(_url(rt), json=_base(rt, f"b-{os.urandom(4).hex()}"), params={"dryRun": "All"})
    assert r.status_code == 201, r.text


@settings(
    max_examples=240,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    case=st.sampled_from(KINDS).flatmap(lambda k: st.tuples(st.just(k[0]), st.sampled_from(k[1]))),
    verb=st.sampled_from(VERBS),
    value=st.one_of(st.sampled_from(EDGES), st.integers(-(2**70), 2**70)),
)
def test_integers_are_stored_in_range_or_refused(
    api: httpx.Client, case: tuple[ResourceType, tuple[Path_, str]], verb: str, value: int
) -> None:
    rt, (path, fmt) = case
    base = _base(rt, f"r-{os.urandom(4).hex()}")
    name = base["metadata"]["name"]
    if verb == "create":
        obj = base
    else:
        r = api.post(_url(rt), json=base)
        assert r.status_code == 201, r.text
        obj = r.json()
        if rt.kind in _SETTLES_ON:
            obj = _settled(api, rt, name, _SETTLES_ON[rt.kind])
    before = obj["metadata"].get("resourceVersion")
    obj = copy.deepcopy(obj)
    _set(obj, path, value)
    r = _write(api, rt, verb, obj, str(path[0]))
    low, high = fieldvalidation.INT_RANGES[fmt]
    after = api.get(_url(rt, name))
    # Upstream's own answers to a patch that does not fit the object's shape (a keyed list
    # element without its key): the number is never looked at.
    shape = ("merge key", "failed to create typed patch object")
    if not low <= value <= high:
        assert r.status_code >= 400, r.text
        if not any(s in r.text for s in shape):
            assert r.status_code == (400 if verb in ("create", "update") else 422), r.text
            assert f"json: cannot unmarshal number {value} into Go struct field" in r.text
        if verb == "create":
            assert after.status_code == 404
        else:
            assert after.json()["metadata"]["resourceVersion"] == before
        return
    assert r.status_code < 500 or shape[1] in r.text, r.text
    assert "cannot unmarshal number" not in r.text
    if after.status_code == 200:
        defn = schemas.root(rt)
        assert defn is not None
        stored = fieldvalidation.check(after.json(), defn, prune=False)
        assert stored.type_error is None, stored.type_error
