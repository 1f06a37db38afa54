"""Node authorization: a kubelet changes only its own Node, Lease and pods, reads what they use."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerHandle, start_apiserver

LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """A server of our own: the Node objects and bound pods made here would confuse others."""
    handle = start_apiserver(Path(tmp_path_factory.mktemp("node-authz")) / "data")
    yield handle
    handle.stop()


@pytest.fixture
def admin(server: ServerHandle) -> Iterator[httpx.Client]:
    with server.client("admin") as c:
        yield c


@pytest.fixture
def node1(server: ServerHandle) -> Iterator[httpx.Client]:
    with server.client("node-node1") as c:
        yield c


@pytest.fixture
def node2(server: ServerHandle) -> Iterator[httpx.Client]:
    with server.client("node-node2") as c:
        yield c


def _message(r: httpx.Response, code: int = 403) -> str:
    assert r.status_code == code, r.text
    return str(r.json()["message"])


def _pod(name: str, node: str | None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}], **spec}
    if node:
        body["nodeName"] = node
    return {"metadata": {"name": name}, "spec": body}


def _unique(prefix: str) -> str:
    return f"{prefix}-{os.urandom(3).hex()}"


def _ensure_nodes(admin: httpx.Client) -> None:
    for name in ("node1", "node2"):
        r = admin.post("/api/v1/nodes", json={"metadata": {"name": name}})
        assert r.status_code in (201, 409), r.text


def test_node_changes_only_its_own_node(admin: httpx.Client, node1: httpx.Client) -> None:
    _ensure_nodes(admin)
    merge = {"content-type": "application/merge-patch+json"}
    label = {"metadata": {"labels": {"touched": "yes"}}}
    assert node1.patch("/api/v1/nodes/node1", json=label, headers=merge).status_code == 200
    assert (
        node1.patch("/api/v1/nodes/node1/status", json={"status": {}}, headers=merge).status_code
        == 200
    )
    expected = 'nodes "node2" is forbidden: node "node1" is not allowed to modify node "node2"'
    assert _message(node1.patch("/api/v1/nodes/node2", json=label, headers=merge)) == expected
    assert (
        _message(node1.patch("/api/v1/nodes/node2/status", json={"status": {}}, headers=merge))
        == expected
    )
    current = admin.get("/api/v1/nodes/node2").json()
    assert _message(node1.put("/api/v1/nodes/node2", json=current)) == expected
    r = node1.post("/api/v1/nodes", json={"metadata": {"name": "node2"}})
    assert _message(r) == expected
    r = node1.delete("/api/v1/nodes/node2")
    assert (
        _message(r) == 'nodes "node2" is forbidden: User "system:node:node1" cannot delete '
        'resource "nodes" in API group "" at the cluster scope'
    )
    # Reading other nodes is fine.
    assert node1.get("/api/v1/nodes/node2").status_code == 200


NODE_ONE = "/api/v1/nodes/node1"
MERGE = {"content-type": "application/merge-patch+json"}


def _merged(obj: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch applied by hand, to send the same change as a whole PUT."""
    for key, value in patch.items():
        if value is None:
            obj.pop(key, None)
        elif isinstance(value, dict) and isinstance(obj.get(key), dict):
            _merged(obj[key], value)
        else:
            obj[key] = value
    return obj


def _node_patches() -> list[tuple[dict[str, Any], str]]:
    """Changes a kubelet may not make to its own Node, each with upstream's reason."""
    restricted = "node-restriction.kubernetes.io/secure"
    return [
        (
            {"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}}},
            "is not allowed to modify labels: node-role.kubernetes.io/control-plane",
        ),
        (
            {"metadata": {"labels": {restricted: "yes", "sub.k8s.io/x": "1"}}},
            f"is not allowed to modify labels: {restricted}, sub.k8s.io/x",
        ),
        ({"spec": {"taints": None}}, 'node "node1" is not allowed to modify taints'),
        (
            {"spec": {"taints": [{"key": "k", "effect": "NoExecute"}]}},
            'node "node1" is not allowed to modify taints',
        ),
        (
            {
                "metadata": {
                    "ownerReferences": [
                        {"apiVersion": "v1", "kind": "Namespace", "name": "gone", "uid": "1"}
                    ]
                }
            },
            'node "node1" is not allowed to modify ownerReferences',
        ),
        (
            {"spec": {"configSource": {"configMap": {"name": "c", "namespace": "kube-system"}}}},
            'node "node1" is not allowed to update configSource to a new non-nil configSource',
        ),
    ]


def test_node_may_not_relabel_untaint_or_reown_itself(
    admin: httpx.Client, node1: httpx.Client
) -> None:
    _ensure_nodes(admin)
    taint = {"key": "dedicated", "value": "x", "effect": "NoSchedule"}
    r = admin.patch(
        NODE_ONE,
        json={
            "metadata": {"labels": {"node-role.kubernetes.io/worker": ""}},
            "spec": {"taints": [taint]},
        },
        headers=MERGE,
    )
    assert r.status_code == 200, r.text
    before = admin.get(NODE_ONE).json()
    strategic = {"content-type": "application/strategic-merge-patch+json"}
    for patch, why in _node_patches():
        expected = f'nodes "node1" is forbidden: {why}'
        assert _message(node1.patch(NODE_ONE, json=patch, headers=MERGE)) == expected
        assert _message(node1.patch(NODE_ONE, json=patch, headers=strategic)) == expected
        # The same change as a whole PUT and a dry run: refused just the same.
        changed = _merged(json.loads(json.dumps(before)), patch)
        assert _message(node1.put(NODE_ONE, json=changed)) == expected
        r = node1.put(NODE_ONE, json=changed, params={"dryRun": "All"})
        assert _message(r) == expected
    # Removing an admin's label is a change too.
    r = node1.patch(
        NODE_ONE,
        json={"metadata": {"labels": {"node-role.kubernetes.io/worker": None}}},
        headers=MERGE,
    )
    assert _message(r) == (
        'nodes "node1" is forbidden: is not allowed to modify labels: '
        "node-role.kubernetes.io/worker"
    )
    apply = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "node1", "labels": {"node-role.kubernetes.io/evil": ""}},
    }
    r = node1.patch(
        NODE_ONE,
        content=json.dumps(apply),
        params={"fieldManager": "kubelet"},
        headers={"content-type": "application/apply-patch+yaml"},
    )
    assert _message(r) == (
        'nodes "node1" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/evil'
    )
    after = admin.get(NODE_ONE).json()
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after == before
    # What a kubelet sets is still its own: kubelet labels, any label outside Kubernetes'
    # domains, and an unchanged taint list.
    allowed = {
        "kubernetes.io/hostname": "node1",
        "topology.kubernetes.io/zone": "z1",
        "node.kubernetes.io/instance-type": "big",
        "beta.kubernetes.io/instance-type": "big",
        "failure-domain.beta.kubernetes.io/region": "r1",
        "kubelet.kubernetes.io/x": "1",
        "sub.node.kubernetes.io/y": "2",
        "example.com/tier": "web",
    }
    r = node1.patch(NODE_ONE, json={"metadata": {"labels": allowed}}, headers=MERGE)
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["taints"] == [taint]
    current = r.json()
    current["metadata"]["labels"]["example.com/tier"] = "db"
    assert node1.put(NODE_ONE, json=current).status_code == 200


def test_node_registers_only_with_kubelet_labels(admin: httpx.Client, node2: httpx.Client) -> None:
    admin.delete("/api/v1/nodes/node2")
    assert admin.get("/api/v1/nodes/node2").status_code == 404
    labels = {
        "kubernetes.io/hostname": "node2",
        "node-role.kubernetes.io/control-plane": "",
        "node-restriction.kubernetes.io/pool": "secure",
    }
    body = {"metadata": {"name": "node2", "labels": labels}}
    assert _message(node2.post("/api/v1/nodes", json=body)) == (
        'nodes "node2" is forbidden: node "node2" is not allowed to set the following labels: '
        "node-restriction.kubernetes.io/pool, node-role.kubernetes.io/control-plane"
    )
    source = {"configMap": {"name": "c", "namespace": "kube-system", "kubeletConfigKey": "k"}}
    with_source = {"metadata": {"name": "node2"}, "spec": {"configSource": source}}
    assert _message(node2.post("/api/v1/nodes", json=with_source)) == (
        'nodes "node2" is forbidden: node "node2" is not allowed to create pods with a non-nil '
        "configSource"
    )
    assert admin.get("/api/v1/nodes/node2").status_code == 404
    # Registering with taints (--register-with-taints) and kubelet labels is fine.
    body["metadata"]["labels"] = {"kubernetes.io/hostname": "node2", "tier": "test"}
    body["spec"] = {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}
    assert node2.post("/api/v1/nodes", json=body).status_code == 201


def test_node_changes_only_its_own_lease(node1: httpx.Client, node2: httpx.Client) -> None:
    for client, name in ((node1, "node1"), (node2, "node2")):
        r = client.post(LEASES, json={"metadata": {"name": name}, "spec": {"holderIdentity": name}})
        assert r.status_code in (201, 409), r.text
    mine = node1.get(f"{LEASES}/node1").json()
    mine["spec"]["leaseDurationSeconds"] = 40
    assert node1.put(f"{LEASES}/node1", json=mine).status_code == 200
    theirs = node2.get(f"{LEASES}/node2").json()
    r = node1.put(f"{LEASES}/node2", json=theirs)
    assert _message(r) == (
        'leases.coordination.k8s.io "node2" is forbidden: User "system:node:node1" cannot '
        'update resource "leases" in API group "coordination.k8s.io" in the namespace '
        '"kube-node-lease": can only access node lease with the same name as the requesting '
        "node"
    )
    assert _message(node1.get(f"{LEASES}/node2")).endswith(
        "can only access node lease with the same name as the requesting node"
    )
    r = node1.delete(f"{LEASES}/node2")
    assert r.status_code == 403
    r = node1.post(LEASES, json={"metadata": {"name": "node3"}})
    assert (
        _message(r) == 'leases.coordination.k8s.io "node3" is forbidden: can only access '
        "node lease with the same name as the requesting node"
    )
    r = node1.get("/apis/coordination.k8s.io/v1/namespaces/default/leases/node1")
    assert _message(r).endswith('can only access leases in the "kube-node-lease" system namespace')


def test_node_changes_only_pods_bound_to_it(admin: httpx.Client, node1: httpx.Client) -> None:
    ns = "default"
    mine, theirs, unbound = _unique("on-node1"), _unique("on-node2"), _unique("unbound")
    for name, node in ((mine, "node1"), (theirs, "node2"), (unbound, None)):
        assert admin.post(f"/api/v1/namespaces/{ns}/pods", json=_pod(name, node)).status_code == 201
    status = {"status": {"phase": "Running"}}
    merge = {"content-type": "application/merge-patch+json"}
    r = node1.patch(f"/api/v1/namespaces/{ns}/pods/{mine}/status", json=status, headers=merge)
    assert r.status_code == 200, r.text
    claims = {"status": {"resourceClaimStatuses": [{"name": "gpu", "resourceClaimName": "x"}]}}
    r = node1.patch(f"/api/v1/namespaces/{ns}/pods/{mine}/status", json=claims, headers=merge)
    assert _message(r) == (
        f'pods "{mine}" is forbidden: node "node1" cannot update resource claim statues'
    )
    for other in (theirs, unbound):
        r = node1.patch(f"/api/v1/namespaces/{ns}/pods/{other}/status", json=status, headers=merge)
        assert (
            _message(r) == f'pods "{other}" is forbidden: node "node1" can only update pod '
            f"status for pods with spec.nodeName set to itself"
        )
        r = node1.delete(f"/api/v1/namespaces/{ns}/pods/{other}")
        assert (
            _message(r) == f'pods "{other}" is forbidden: node "node1" can only delete '
            f"pods with spec.nodeName set to itself"
        )
        r = node1.post(
            f"/api/v1/namespaces/{ns}/pods/{other}/eviction",
            json={"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": other}},
        )
        assert (
            # Upstream's message leaves this node name unquoted.
            _message(r) == f'pods "{other}" is forbidden: node node1 can only evict '
            f"pods with spec.nodeName set to itself"
        )
    current = admin.get(f"/api/v1/namespaces/{ns}/pods/{mine}").json()
    r = node1.put(f"/api/v1/namespaces/{ns}/pods/{mine}", json=current)
    assert (
        _message(r) == f'pods "{mine}" is forbidden: User "system:node:node1" cannot update '
        f'resource "pods" in API group "" in the namespace "{ns}"'
    )
    # Its own pods it may delete (the kubelet's final delete after termination).
    r = node1.delete(f"/api/v1/namespaces/{ns}/pods/{mine}", params={"gracePeriodSeconds": "0"})
    assert r.status_code == 200, r.text


def test_node_creates_only_its_mirror_pods(admin: httpx.Client, node1: httpx.Client) -> None:
    _ensure_nodes(admin)
    ns = "default"
    pods = f"/api/v1/namespaces/{ns}/pods"
    r = node1.post(pods, json=_pod("plain", "node1"))
    assert (
        _message(r) == 'pods "plain" is forbidden: pod does not have '
        '"kubernetes.io/config.mirror" annotation, node "node1" can only '
        "create mirror pods"
    )
    name = _unique("static")
    mirror = _pod(name, "node2")
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "hash"}
    r = node1.post(pods, json=mirror)
    assert _message(r).endswith(
        'node "node1" can only create pods with spec.nodeName set to itself'
    )
    mirror["spec"]["nodeName"] = "node1"
    # The kubelet's owner reference to its Node, and nothing else, as upstream requires.
    uid = admin.get("/api/v1/nodes/node1").json()["metadata"]["uid"]
    owner = {"apiVersion": "v1", "kind": "Node", "name": "node1", "uid": uid, "controller": True}
    owners: list[tuple[Any, str]] = [
        (None, 'node "node1" can only create pods with an owner reference set to itself'),
        (
            [owner, owner],
            'node "node1" can only create pods with a single owner reference set to itself',
        ),
        (
            [{**owner, "name": "node2"}],
            'node "node1" can only create pods with an owner reference set to itself',
        ),
        (
            [{**owner, "controller": False}],
            'node "node1" can only create pods with a controller owner reference set to itself',
        ),
        (
            [{**owner, "blockOwnerDeletion": True}],
            'node "node1" must not set blockOwnerDeletion on an owner reference',
        ),
        (
            [{**owner, "uid": "0000"}],
            f"node node1 UID mismatch: expected 0000 got {uid}",
        ),
    ]
    for refs, why in owners:
        mirror["metadata"]["ownerReferences"] = refs
        assert _message(node1.post(pods, json=mirror)) == f'pods "{name}" is forbidden: {why}'
    mirror["metadata"]["ownerReferences"] = [owner]
    mirror["spec"]["volumes"] = [
        {"name": "c", "configMap": {"name": "cm"}},
        {"name": "s", "secret": {"secretName": "stolen"}},
    ]
    r = node1.post(pods, json=mirror)
    assert _message(r).endswith('node "node1" can not create pods that reference secrets')
    mirror["spec"]["volumes"] = [{"name": "d", "persistentVolumeClaim": {"claimName": "x"}}]
    r = node1.post(pods, json=mirror)
    assert _message(r).endswith(
        'node "node1" can not create pods that reference persistentvolumeclaims'
    )
    assert admin.get(f"{pods}/{name}").status_code == 404
    del mirror["spec"]["volumes"]
    assert node1.post(pods, json=mirror).status_code == 201
    # Other pod subresources are not the node's.
    r = node1.post(f"{pods}/{name}/binding", json={"target": {"kind": "Node", "name": "node1"}})
    assert r.status_code == 403


def test_node_reads_only_what_its_pods_reference(
    admin: httpx.Client, node1: httpx.Client, node2: httpx.Client
) -> None:
    ns = "default"
    used, unused = _unique("used"), _unique("unused")
    env_cm, claim, sa = _unique("env-cm"), _unique("claim"), _unique("sa")
    for name in (used, unused):
        assert (
            admin.post(
                f"/api/v1/namespaces/{ns}/secrets", json={"metadata": {"name": name}}
            ).status_code
            == 201
        )
    assert (
        admin.post(
            f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": env_cm}}
        ).status_code
        == 201
    )
    assert (
        admin.post(
            f"/api/v1/namespaces/{ns}/serviceaccounts", json={"metadata": {"name": sa}}
        ).status_code
        == 201
    )
    pod = _pod(
        _unique("consumer"),
        None,
        serviceAccountName=sa,
        volumes=[
            {"name": "s", "secret": {"secretName": used}},
            {"name": "d", "persistentVolumeClaim": {"claimName": claim}},
        ],
    )
    pod["spec"]["containers"][0]["env"] = [
        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": env_cm, "key": "k"}}}
    ]
    pod_name = pod["metadata"]["name"]
    assert admin.post(f"/api/v1/namespaces/{ns}/pods", json=pod).status_code == 201
    secret = f"/api/v1/namespaces/{ns}/secrets/{used}"
    no_relation = "no relationship found between node 'node1' and this object"
    # Not bound yet: nothing to read.
    assert _message(node1.get(secret)).endswith(no_relation)
    # The scheduler binds it to node1: now node1 may read what the pod uses.
    with_binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod_name},
        "target": {"kind": "Node", "name": "node1"},
    }
    r = admin.post(f"/api/v1/namespaces/{ns}/pods/{pod_name}/binding", json=with_binding)
    assert r.status_code == 201, r.text
    assert node1.get(secret).status_code == 200
    assert node1.get(f"/api/v1/namespaces/{ns}/configmaps/{env_cm}").status_code == 200
    assert node1.get(f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}").status_code == 200
    assert node1.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}").status_code in (
        200,
        404,
    )  # allowed; PVCs may not be served at all
    watch_one = node1.get(
        f"/api/v1/namespaces/{ns}/secrets",
        params={"watch": "1", "timeoutSeconds": "1", "fieldSelector": f"metadata.name={used}"},
    )
    assert watch_one.status_code == 200
    assert _message(node1.get(f"/api/v1/namespaces/{ns}/secrets/{unused}")) == (
        f'secrets "{unused}" is forbidden: User "system:node:node1" cannot get resource '
        f'"secrets" in API group "" in the namespace "{ns}": {no_relation}'
    )
    assert _message(node1.get(f"/api/v1/namespaces/{ns}/secrets")).endswith("No Object name found")
    r = node2.get(secret)
    assert _message(r).endswith("no relationship found between node 'node2' and this object")
    r = node1.put(secret, json=admin.get(secret).json())
    assert _message(r).endswith("can only read resources of this type")
    # Gone with the pod.
    assert (
        admin.delete(
            f"/api/v1/namespaces/{ns}/pods/{pod_name}", params={"gracePeriodSeconds": "0"}
        ).status_code
        == 200
    )
    assert admin.get(f"/api/v1/namespaces/{ns}/pods/{pod_name}").status_code == 404
    assert _message(node1.get(secret)).endswith(no_relation)


def test_scheduler_cannot_delete_a_namespace(server: ServerHandle, admin: httpx.Client) -> None:
    name = _unique("victim")
    assert admin.post("/api/v1/namespaces", json={"metadata": {"name": name}}).status_code == 201
    with server.client("scheduler") as scheduler:
        r = scheduler.delete(f"/api/v1/namespaces/{name}")
    assert r.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'namespaces "{name}" is forbidden: User "system:kube-scheduler" cannot '
        f'delete resource "namespaces" in API group "" in the namespace "{name}"',
        "reason": "Forbidden",
        "details": {"name": name, "kind": "namespaces"},
        "code": 403,
    }
    assert admin.get(f"/api/v1/namespaces/{name}").json()["status"]["phase"] == "Active"
