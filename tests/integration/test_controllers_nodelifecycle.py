"""Node lifecycle and taint eviction: a node that stops renewing its Lease goes Unknown, is
tainted, and its pods are evicted after their toleration so their ReplicaSet replaces them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from k8slite.api.meta import now as now_text
from k8slite.client import ApiClient, Conflict, NotFound
from k8slite.client.resource import DEPLOYMENTS, EVENTS, LEASES, NODES, PODS
from k8slite.component.objects import Obj
from k8slite.leaderelection import micro_time
from tests.conftest import ServerHandle
from tests.integration.controller_harness import (
    FakeKubelet,
    ManagerHandle,
    admin_config,
    create_namespace,
    deployment,
    is_ready,
    pods_of,
    start_controller_manager,
    wait_for,
)

GRACE = 3  # --node-monitor-grace-period
TOLERATION = 2  # tolerationSeconds of the deployment's pods


@pytest.fixture(scope="module")
def manager(module_apiserver: ServerHandle) -> Iterator[ManagerHandle]:
    handle = start_controller_manager(
        module_apiserver,
        "--node-monitor-period=0.5s",
        f"--node-monitor-grace-period={GRACE}s",
        f"--node-startup-grace-period={GRACE}s",
        "--pod-eviction-timeout=5m",
    )
    yield handle
    handle.stop()


@pytest.fixture
async def kube(module_apiserver: ServerHandle, manager: ManagerHandle) -> AsyncIterator[ApiClient]:
    async with ApiClient(admin_config(module_apiserver)) as client:
        yield client


def node_conditions(status: str, stamp: str) -> list[Obj]:
    ready = {
        "type": "Ready",
        "status": status,
        "reason": "KubeletReady",
        "message": "kubelet is posting ready status",
        "lastHeartbeatTime": stamp,
        "lastTransitionTime": stamp,
    }
    pressures = [
        {
            "type": t,
            "status": "False",
            "reason": f"KubeletHas{r}",
            "message": "fine",
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }
        for t, r in (
            ("MemoryPressure", "SufficientMemory"),
            ("DiskPressure", "NoDiskPressure"),
            ("PIDPressure", "SufficientPID"),
        )
    ]
    return [*pressures, ready]


class FakeNodes:
    """Registers nodes and renews their Leases, as kubelets do, except for silent ones."""

    def __init__(self, client: ApiClient, names: list[str]) -> None:
        self.client = client
        self.names = names
        self.silent: set[str] = set()

    async def register(self) -> None:
        for name in self.names:
            await self.client.create(
                NODES,
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": name},
                    "status": {"conditions": node_conditions("True", now_text())},
                },
            )
            await self.client.create(
                LEASES,
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": name, "namespace": "kube-node-lease"},
                    "spec": {
                        "holderIdentity": name,
                        "leaseDurationSeconds": 40,
                        "renewTime": micro_time(),
                    },
                },
            )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            for name in self.names:
                if name in self.silent:
                    continue
                try:
                    lease = await self.client.get(LEASES, name, namespace="kube-node-lease")
                    lease["spec"]["renewTime"] = micro_time()
                    await self.client.update(LEASES, lease)
                except (Conflict, NotFound):
                    pass
            await trio.sleep(0.5)

    async def post_ready(self, name: str) -> None:
        while True:
            node = await self.client.get(NODES, name)
            node["status"]["conditions"] = node_conditions("True", now_text())
            try:
                await self.client.update_status(NODES, node)
                return
            except Conflict:
                continue  # the node controller wrote meanwhile


def condition(obj: Obj, ctype: str) -> Obj:
    return next(
        (c for c in (obj.get("status") or {}).get("conditions") or () if c["type"] == ctype), {}
    )


async def test_silent_node_is_tainted_and_its_pods_evicted(
    kube: ApiClient, nursery: trio.Nursery
) -> None:
    suffix = os.urandom(2).hex()
    lost, spare = f"lost-{suffix}", f"spare-{suffix}"
    nodes = FakeNodes(kube, [lost, spare])
    await nodes.register()
    await nursery.start(nodes.run)
    ns = await create_namespace(kube, "nl")
    kubelet = FakeKubelet(kube, ns, [lost])
    await nursery.start(kubelet.run)
    body = deployment("web", 3)
    body["spec"]["template"]["spec"]["tolerations"] = [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": TOLERATION}
        for key in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
    ]
    await kube.create(DEPLOYMENTS, body, namespace=ns)
    # A pod with the API server's default tolerations (300s) is not evicted this soon.
    patient = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "patient"},
        "spec": {"nodeName": lost, "containers": [{"name": "app", "image": "nginx:1.27"}]},
    }
    await kube.create(PODS, patient, namespace=ns)

    async def on(node: str, n: int) -> list[Obj] | None:
        pods = pods_of((await kube.list(PODS, namespace=ns))["items"])
        placed = [
            p
            for p in pods
            if p["spec"].get("nodeName") == node
            and is_ready(p)
            and p["metadata"]["name"] != "patient"
        ]
        return placed if len(placed) == n else None

    victims = await wait_for(lambda: on(lost, 3), message="3 pods on the node to lose")
    nodes.silent.add(lost)
    kubelet.dead.add(lost)
    kubelet.nodes.append(spare)

    async def unknown() -> Obj | None:
        node = await kube.get(NODES, lost)
        return node if condition(node, "Ready").get("status") == "Unknown" else None

    node = await wait_for(unknown, timeout=GRACE + 20, message="node Ready=Unknown")
    ready = condition(node, "Ready")
    assert ready["reason"] == "NodeStatusUnknown"
    assert ready["message"] == "Kubelet stopped posting node status."
    assert condition(node, "MemoryPressure")["status"] == "Unknown"

    async def tainted() -> list[Obj] | None:
        taints = ((await kube.get(NODES, lost)).get("spec") or {}).get("taints") or []
        return (
            taints
            if any(
                t["key"] == "node.kubernetes.io/unreachable" and t["effect"] == "NoExecute"
                for t in taints
            )
            else None
        )

    taints = await wait_for(tainted, message="unreachable taint")
    no_execute = next(t for t in taints if t["effect"] == "NoExecute")
    assert no_execute["timeAdded"]
    assert {(t["key"], t["effect"]) for t in taints} >= {
        ("node.kubernetes.io/unreachable", "NoSchedule")
    }

    await wait_for(lambda: on(spare, 3), timeout=30, message="3 replacements on the spare")
    for victim in victims:
        pod = await kube.get(PODS, victim["metadata"]["name"], namespace=ns)
        assert pod["metadata"].get("deletionTimestamp"), "evicted"
        assert condition(pod, "DisruptionTarget")["reason"] == "DeletionByTaintManager"
        assert condition(pod, "Ready")["status"] == "False", "marked not ready"
    patient_now = await kube.get(PODS, "patient", namespace=ns)
    assert not patient_now["metadata"].get("deletionTimestamp")
    reasons = {e["reason"] for e in (await kube.list(EVENTS, namespace=ns))["items"]}
    assert {"TaintManagerEviction", "NodeNotReady"} <= reasons
    node_events = (
        await kube.list(EVENTS, namespace="default", field_selector=f"involvedObject.name={lost}")
    )["items"]
    assert any(e["message"] == f"Node {lost} status is now: NodeNotReady" for e in node_events)

    # The kubelet comes back: the node is Ready again and the taints go.
    nodes.silent.discard(lost)
    await nodes.post_ready(lost)

    async def untainted() -> bool:
        node = await kube.get(NODES, lost)
        return not (node.get("spec") or {}).get("taints")

    await wait_for(untainted, timeout=20, message="taints removed")
