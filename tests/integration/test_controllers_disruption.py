"""ReplicationControllers, PodDisruptionBudgets, the Eviction API and `kubectl drain`
against a real API server and controller manager, with the real kubectl and the official
Python client (pods run on the fake kubelet of controller_harness)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trio

from k8slite.api.resources import lookup
from k8slite.client import ApiClient, NotFound
from k8slite.client.resource import (
    DEPLOYMENTS,
    EVENTS,
    NODES,
    PODDISRUPTIONBUDGETS,
    PODS,
    REPLICATIONCONTROLLERS,
    Resource,
)
from k8slite.component.objects import Obj, get_condition
from tests.conftest import ServerHandle
from tests.integration.controller_harness import (
    FakeKubelet,
    ManagerHandle,
    admin_config,
    create_namespace,
    deployment,
    is_ready,
    kubectl,
    pods_of,
    start_controller_manager,
    wait_for,
)

k8s = pytest.importorskip("kubernetes")

# No node heartbeats here: the node lifecycle and taint eviction controllers stay off.
CONTROLLERS = "--controllers=replicaset,deployment,replicationcontroller,disruption"


@pytest.fixture(scope="module")
def manager(module_apiserver: ServerHandle) -> Iterator[ManagerHandle]:
    handle = start_controller_manager(module_apiserver, CONTROLLERS)
    yield handle
    handle.stop()


@pytest.fixture
async def kube(module_apiserver: ServerHandle, manager: ManagerHandle) -> AsyncIterator[ApiClient]:
    async with ApiClient(admin_config(module_apiserver)) as client:
        yield client


@pytest.fixture
async def nodes(kube: ApiClient) -> AsyncIterator[list[str]]:
    """Two Ready nodes for the fake kubelet (drain reads and cordons them)."""
    names = [f"drain-{os.urandom(3).hex()}-{i}" for i in range(2)]
    for name in names:
        await kube.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    yield names
    for name in names:
        try:
            await kube.delete(NODES, name)
        except NotFound:
            pass


@pytest.fixture
async def ns(kube: ApiClient) -> str:
    return await create_namespace(kube, "pdb")


@pytest.fixture
async def kubelet(kube: ApiClient, ns: str, nodes: list[str], nursery: trio.Nursery) -> FakeKubelet:
    fake = FakeKubelet(kube, ns, nodes, ready_delay=0.1)
    await nursery.start(fake.run)
    return fake


def pdb(name: str, labels: dict[str, str], **spec: Any) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": labels}, **spec},
    }


async def ready_pods(kube: ApiClient, ns: str, labels: str) -> list[Obj]:
    listed = await kube.list(PODS, namespace=ns, label_selector=labels)
    return [p for p in pods_of(listed["items"]) if is_ready(p)]


async def pdb_status(kube: ApiClient, ns: str, name: str, **want: Any) -> Obj | None:
    """The budget's status once every field in `want` has the wanted value."""
    obj = await kube.get(PODDISRUPTIONBUDGETS, name, namespace=ns)
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"]["generation"]:
        return None
    return status if all(status.get(k) == v for k, v in want.items()) else None


def table(output: str) -> list[list[str]]:
    import re

    return [re.split(r"\s{2,}", line.strip()) for line in output.strip().splitlines()]


# ------------------------------------------------------------ ReplicationController


async def test_replication_controller_scales_with_kubectl(
    module_apiserver: ServerHandle, kube: ApiClient, ns: str, kubelet: FakeKubelet
) -> None:
    rc = {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": "rc"},
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {"labels": {"app": "rc"}},
                "spec": {"containers": [{"name": "app", "image": "busybox:1.35"}]},
            },
        },
    }
    created = await kube.create(REPLICATIONCONTROLLERS, rc, namespace=ns)
    # Upstream's defaults: the selector and the RC's labels come from the template.
    assert created["spec"]["selector"] == {"app": "rc"}
    assert created["metadata"]["labels"] == {"app": "rc"}
    await wait_for(lambda: _ready_count(kube, ns, 2), 30, message="2 ready pods")
    pod = (await ready_pods(kube, ns, "app=rc"))[0]
    ref = pod["metadata"]["ownerReferences"][0]
    assert (ref["apiVersion"], ref["kind"], ref["name"], ref["controller"]) == (
        "v1",
        "ReplicationController",
        "rc",
        True,
    )

    await kubectl(module_apiserver, "-n", ns, "scale", "rc", "rc", "--replicas=4")
    await wait_for(lambda: _ready_count(kube, ns, 4), 30, message="4 ready pods")
    await wait_for(lambda: _rc_ready(kube, ns, 4), 30, message="rc status 4 ready")
    rows = table(await kubectl(module_apiserver, "-n", ns, "get", "rc"))
    assert rows[0] == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert rows[1][:4] == ["rc", "4", "4", "4"]
    scale = json.loads(
        await kubectl(module_apiserver, "-n", ns, "get", "--raw", _scale_path(ns, "rc"))
    )
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"]["replicas"] == 4 and scale["status"]["selector"] == "app=rc"

    await kubectl(module_apiserver, "-n", ns, "scale", "rc", "rc", "--replicas=1")
    await wait_for(lambda: _active_count(kube, ns, 1), 30, message="1 active pod")
    await wait_for(lambda: _rc_ready(kube, ns, 1), 30, message="rc status 1 ready")


def _scale_path(ns: str, name: str) -> str:
    return f"/api/v1/namespaces/{ns}/replicationcontrollers/{name}/scale"


async def _ready_count(kube: ApiClient, ns: str, n: int) -> bool:
    return len(await ready_pods(kube, ns, "app=rc")) == n


async def _active_count(kube: ApiClient, ns: str, n: int) -> bool:
    listed = await kube.list(PODS, namespace=ns, label_selector="app=rc")
    return len(pods_of(listed["items"])) == n


async def _rc_ready(kube: ApiClient, ns: str, n: int) -> bool:
    rc = await kube.get(REPLICATIONCONTROLLERS, "rc", namespace=ns)
    status = rc.get("status") or {}
    return status.get("replicas") == n and status.get("readyReplicas") == n


# ------------------------------------------------------------------ budget status


async def test_pdb_status_follows_pods(
    module_apiserver: ServerHandle, kube: ApiClient, ns: str, kubelet: FakeKubelet
) -> None:
    await kube.create(DEPLOYMENTS, deployment("web", replicas=3), namespace=ns)
    await kube.create(
        PODDISRUPTIONBUDGETS, pdb("web", {"app": "web"}, minAvailable=2), namespace=ns
    )
    status = await wait_for(
        lambda: pdb_status(kube, ns, "web", currentHealthy=3, disruptionsAllowed=1),
        30,
        message="3 healthy, 1 allowed",
    )
    assert (status["desiredHealthy"], status["expectedPods"]) == (2, 3)
    cond = get_condition(status, "DisruptionAllowed")
    assert cond is not None
    assert (cond["status"], cond["reason"]) == ("True", "SufficientPods")
    rows = table(await kubectl(module_apiserver, "-n", ns, "get", "pdb"))
    assert rows[0] == ["NAME", "MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS", "AGE"]
    assert rows[1][:4] == ["web", "2", "N/A", "1"]

    # A percentage of the Deployment's scale (the pods' controller's, through its RS).
    await kube.patch(
        PODDISRUPTIONBUDGETS,
        "web",
        {"spec": {"minAvailable": None, "maxUnavailable": "34%"}},
        namespace=ns,
    )
    status = await wait_for(
        lambda: pdb_status(kube, ns, "web", desiredHealthy=1, disruptionsAllowed=2),
        30,
        message="maxUnavailable 34% of 3",
    )
    assert status["expectedPods"] == 3

    await kube.patch(
        DEPLOYMENTS,
        "web",
        {"spec": {"replicas": 1}},
        namespace=ns,
    )
    status = await wait_for(
        lambda: pdb_status(kube, ns, "web", currentHealthy=1, expectedPods=1),
        30,
        message="scaled to 1",
    )
    assert (status["desiredHealthy"], status["disruptionsAllowed"]) == (0, 1)

    # A pod nobody controls is left out of a percentage (an UnmanagedPods warning)...
    await kube.create(PODS, _bare_pod("loner", {"app": "web"}), namespace=ns)
    status = await wait_for(
        lambda: pdb_status(kube, ns, "web", currentHealthy=2, expectedPods=1),
        30,
        message="the loner counted as healthy, not expected",
    )
    assert status["disruptionsAllowed"] == 2
    await wait_for(
        lambda: _event(kube, ns, "web", "UnmanagedPods"), 30, message="UnmanagedPods event"
    )

    # ...but a pod whose controller cannot be found makes the budget uncomputable: no
    # disruptions, and the condition says why.
    ghost = _bare_pod("ghost", {"app": "web"})
    ghost["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "v1",
            "kind": "ReplicationController",
            "name": "gone",
            "uid": "00000000-0000-0000-0000-000000000000",
            "controller": True,
        }
    ]
    await kube.create(PODS, ghost, namespace=ns)
    status = await wait_for(
        lambda: _sync_failed(kube, ns, "web"), 30, message="SyncFailed condition"
    )
    assert status["disruptionsAllowed"] == 0
    cond = get_condition(status, "DisruptionAllowed")
    assert cond is not None and cond["message"] == 'found no controllers for pod "ghost"'

    # Selecting no pods: nothing expected, nothing allowed.
    await kube.patch(
        PODDISRUPTIONBUDGETS,
        "web",
        {"spec": {"selector": {"matchLabels": {"app": "web", "tier": "x"}}}},
        namespace=ns,
    )
    status = await wait_for(
        lambda: pdb_status(kube, ns, "web", expectedPods=0, disruptionsAllowed=0),
        30,
        message="no pods selected",
    )
    cond = get_condition(status, "DisruptionAllowed")
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", "InsufficientPods")


async def _event(kube: ApiClient, ns: str, name: str, reason: str) -> bool:
    listed = await kube.list(EVENTS, namespace=ns, field_selector=f"involvedObject.name={name}")
    return any(e.get("reason") == reason for e in listed["items"])


async def _sync_failed(kube: ApiClient, ns: str, name: str) -> Obj | None:
    status = (await kube.get(PODDISRUPTIONBUDGETS, name, namespace=ns)).get("status") or {}
    cond = get_condition(status, "DisruptionAllowed")
    return status if cond is not None and cond.get("reason") == "SyncFailed" else None


def _bare_pod(name: str, labels: dict[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.35"}]},
    }


# ------------------------------------------------------------------- Eviction API


def _python_client(server: ServerHandle) -> Any:
    api_client = k8s.config.new_client_from_config(str(server.kubeconfig))
    return k8s.client.CoreV1Api(api_client)


def _evict(core: Any, ns: str, name: str, **delete_options: Any) -> Any:
    body = k8s.client.V1Eviction(
        metadata=k8s.client.V1ObjectMeta(name=name, namespace=ns),
        delete_options=k8s.client.V1DeleteOptions(**delete_options) if delete_options else None,
    )
    return core.create_namespaced_pod_eviction(name, ns, body)


HOLD = "k8slite.test/hold"


async def _release(kube: ApiClient, ns: str, name: str) -> None:
    try:
        await kube.patch(
            PODS,
            name,
            {"metadata": {"finalizers": None}},
            namespace=ns,
        )
    except NotFound:
        pass


async def test_eviction_api(
    module_apiserver: ServerHandle, kube: ApiClient, ns: str, kubelet: FakeKubelet
) -> None:
    core = _python_client(module_apiserver)
    for name in ("a", "b"):
        pod = _bare_pod(name, {"app": "solo"})
        pod["metadata"]["finalizers"] = [HOLD]  # evicted pods stay to be looked at
        await kube.create(PODS, pod, namespace=ns)
    await kube.create(
        PODDISRUPTIONBUDGETS, pdb("solo", {"app": "solo"}, minAvailable=2), namespace=ns
    )
    await wait_for(
        lambda: pdb_status(kube, ns, "solo", currentHealthy=2, disruptionsAllowed=0),
        30,
        message="2 healthy, none allowed",
    )
    try:
        # No disruption allowed: 429 with upstream's message and a DisruptionBudget cause.
        with pytest.raises(k8s.client.exceptions.ApiException) as refused:
            await trio.to_thread.run_sync(_evict, core, ns, "a")
        assert refused.value.status == 429
        body = json.loads(refused.value.body)
        assert body["kind"] == "Status" and body["reason"] == "TooManyRequests"
        assert body["message"] == (
            "Cannot evict pod as it would violate the pod's disruption budget."
        )
        assert body["details"]["causes"] == [
            {
                "reason": "DisruptionBudget",
                "message": "The disruption budget solo needs 2 healthy pods and has 2 currently",
            }
        ]
        assert not (await kube.get(PODS, "a", namespace=ns))["metadata"].get("deletionTimestamp")

        # One disruption allowed: 201, the budget spent on this pod, the pod marked and
        # terminating.
        await kube.patch(
            PODDISRUPTIONBUDGETS,
            "solo",
            {"spec": {"minAvailable": 1}},
            namespace=ns,
        )
        await wait_for(
            lambda: pdb_status(kube, ns, "solo", disruptionsAllowed=1), 30, message="1 allowed"
        )
        await trio.to_thread.run_sync(_evict, core, ns, "a")
        evicted = await kube.get(PODS, "a", namespace=ns)
        assert evicted["metadata"].get("deletionTimestamp")
        cond = get_condition(evicted.get("status"), "DisruptionTarget")
        assert cond is not None
        assert (cond["status"], cond["reason"], cond["message"]) == (
            "True",
            "EvictionByEvictionAPI",
            "Eviction API: evicting",
        )
        budget = (await kube.get(PODDISRUPTIONBUDGETS, "solo", namespace=ns))["status"]
        assert budget["disruptionsAllowed"] == 0
        with pytest.raises(k8s.client.exceptions.ApiException) as spent:
            await trio.to_thread.run_sync(_evict, core, ns, "b")
        assert spent.value.status == 429

        # Two budgets selecting one pod: upstream's 500.
        await kube.create(
            PODDISRUPTIONBUDGETS, pdb("other", {"app": "solo"}, maxUnavailable=1), namespace=ns
        )
        with pytest.raises(k8s.client.exceptions.ApiException) as two:
            await trio.to_thread.run_sync(_evict, core, ns, "b")
        assert two.value.status == 500
        assert json.loads(two.value.body)["message"] == (
            "This pod has more than one PodDisruptionBudget, which the eviction "
            "subresource does not support."
        )
    finally:
        for name in ("a", "b"):
            await _release(kube, ns, name)

    # A pending pod needs no budget; the eviction's delete options are honoured.
    kubelet.dead.add("ghost")
    pending = _bare_pod("pending", {"app": "solo"})
    pending["spec"]["nodeName"] = "ghost"
    await kube.create(PODS, pending, namespace=ns)
    with pytest.raises(k8s.client.exceptions.ApiException) as stale:
        await trio.to_thread.run_sync(
            lambda: _evict(core, ns, "pending", preconditions={"uid": "not-the-uid"})
        )
    assert stale.value.status == 409
    await trio.to_thread.run_sync(lambda: _evict(core, ns, "pending", grace_period_seconds=0))
    await wait_for(lambda: _gone(kube, ns, "pending"), 30, message="pending pod deleted")


async def test_concurrent_evictions_share_one_disruption(
    module_apiserver: ServerHandle, kube: ApiClient, ns: str, kubelet: FakeKubelet
) -> None:
    """Evictions racing for the budget's last disruption: the compare-and-swap of its
    status lets exactly one through."""
    core = _python_client(module_apiserver)
    names = ["p0", "p1", "p2", "p3"]
    for name in names:
        pod = _bare_pod(name, {"app": "race"})
        pod["metadata"]["finalizers"] = [HOLD]
        await kube.create(PODS, pod, namespace=ns)
    await kube.create(
        PODDISRUPTIONBUDGETS, pdb("race", {"app": "race"}, minAvailable=3), namespace=ns
    )
    await wait_for(
        lambda: pdb_status(kube, ns, "race", currentHealthy=4, disruptionsAllowed=1),
        30,
        message="4 healthy, 1 allowed",
    )
    codes: list[int] = []

    async def evict(name: str) -> None:
        try:
            await trio.to_thread.run_sync(_evict, core, ns, name)
            codes.append(201)
        except k8s.client.exceptions.ApiException as e:
            codes.append(e.status)

    try:
        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(evict, name)
        assert sorted(codes) == [201, 429, 429, 429]
        budget = (await kube.get(PODDISRUPTIONBUDGETS, "race", namespace=ns))["status"]
        assert budget["disruptionsAllowed"] == 0
        deleting = [
            p["metadata"]["name"]
            for p in (await kube.list(PODS, namespace=ns, label_selector="app=race"))["items"]
            if p["metadata"].get("deletionTimestamp")
        ]
        assert len(deleting) == 1
    finally:
        for name in names:
            await _release(kube, ns, name)


async def _gone(kube: ApiClient, ns: str, name: str) -> bool:
    try:
        await kube.get(PODS, name, namespace=ns)
    except NotFound:
        return True
    return False


# ------------------------------------------------------------------- kubectl drain


async def _node_of_pods(kube: ApiClient, ns: str, labels: str, nodes: list[str]) -> str:
    """A node holding at least one of the pods."""
    for pod in await ready_pods(kube, ns, labels):
        node = pod["spec"].get("nodeName")
        if node in nodes:
            return str(node)
    raise AssertionError("no pod on the test nodes")


async def _pods_on(kube: ApiClient, ns: str, node: str) -> list[str]:
    listed = await kube.list(PODS, namespace=ns, field_selector=f"spec.nodeName={node}")
    return sorted(p["metadata"]["name"] for p in pods_of(listed["items"]))


async def test_kubectl_drain_honours_budget(
    module_apiserver: ServerHandle,
    kube: ApiClient,
    ns: str,
    nodes: list[str],
    kubelet: FakeKubelet,
) -> None:
    await kube.create(DEPLOYMENTS, deployment("web", replicas=2), namespace=ns)
    await kube.create(
        PODDISRUPTIONBUDGETS, pdb("web", {"app": "web"}, minAvailable=2), namespace=ns
    )
    await wait_for(
        lambda: pdb_status(kube, ns, "web", currentHealthy=2, disruptionsAllowed=0),
        30,
        message="2 healthy, none allowed",
    )
    node = await _node_of_pods(kube, ns, "app=web", nodes)
    victims = await _pods_on(kube, ns, node)

    # The budget forbids: drain cordons, keeps retrying the eviction, and gives up at
    # its --timeout with the pods still there.
    out = await kubectl(
        module_apiserver, "drain", node, "--timeout=8s", "--pod-selector=app=web", check=False
    )
    assert f"node/{node} cordoned" in out
    assert "Cannot evict pod as it would violate the pod's disruption budget." in out
    assert "global timeout reached: 8s" in out
    assert f"node/{node} drained" not in out
    assert (await kube.get(NODES, node))["spec"].get("unschedulable") is True
    assert await _pods_on(kube, ns, node) == victims

    # Room for one disruption (a third replica): drain evicts and finishes.
    await kube.patch(DEPLOYMENTS, "web", {"spec": {"replicas": 3}}, namespace=ns)
    out = await kubectl(module_apiserver, "drain", node, "--timeout=60s", "--pod-selector=app=web")
    assert f"node/{node} drained" in out
    for name in victims:
        assert f"pod/{name} evicted" in out
        assert await _gone(kube, ns, name)

    await kubectl(module_apiserver, "uncordon", node)
    assert not (await kube.get(NODES, node))["spec"].get("unschedulable")


async def test_kubectl_drain_unmanaged_and_emptydir_pods(
    module_apiserver: ServerHandle,
    kube: ApiClient,
    ns: str,
    nodes: list[str],
    kubelet: FakeKubelet,
) -> None:
    node = nodes[0]
    bare = _bare_pod("bare", {"app": "bare"})
    bare["spec"]["nodeName"] = node
    scratch = _bare_pod("scratch", {"app": "scratch"})
    scratch["spec"]["nodeName"] = node
    scratch["spec"]["volumes"] = [{"name": "tmp", "emptyDir": {}}]
    scratch["metadata"]["ownerReferences"] = []
    for pod in (bare, scratch):
        await kube.create(PODS, pod, namespace=ns)
    await wait_for(lambda: _ready_names(kube, ns, {"bare", "scratch"}), 30, message="ready")

    # Without --force and --delete-emptydir-data drain refuses, naming both reasons.
    out = await kubectl(module_apiserver, "drain", node, "--timeout=20s", check=False)
    assert "cannot delete Pods that declare no controller (use --force to override)" in out
    assert f"{ns}/bare" in out
    assert "cannot delete Pods with local storage (use --delete-emptydir-data to override)" in out
    assert f"{ns}/scratch" in out
    assert f"node/{node} drained" not in out

    out = await kubectl(
        module_apiserver,
        "drain",
        node,
        "--force",
        "--delete-emptydir-data",
        "--grace-period=0",
        "--timeout=60s",
    )
    assert f"node/{node} drained" in out
    for name in ("bare", "scratch"):
        assert await _gone(kube, ns, name)
    await kubectl(module_apiserver, "uncordon", node)


async def _ready_names(kube: ApiClient, ns: str, names: set[str]) -> bool:
    listed = await kube.list(PODS, namespace=ns)
    return names <= {p["metadata"]["name"] for p in listed["items"] if is_ready(p)}


# drain recognises a DaemonSet's pod by reading its DaemonSet: the kind must be served.
@pytest.mark.skipif(
    lookup("apps", "v1", "daemonsets") is None, reason="DaemonSet is not served in this tree"
)
async def test_kubectl_drain_ignore_daemonsets(
    module_apiserver: ServerHandle,
    kube: ApiClient,
    ns: str,
    nodes: list[str],
    kubelet: FakeKubelet,
) -> None:
    daemonsets = Resource("apps", "v1", "daemonsets")
    labels = {"app": "agent"}
    ds = await kube.create(
        daemonsets,
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent"},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": _bare_pod("", labels)["spec"]},
            },
        },
        namespace=ns,
    )
    node = nodes[0]
    agent = _bare_pod("agent-pod", labels)
    agent["spec"]["nodeName"] = node
    agent["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "name": "agent",
            "uid": ds["metadata"]["uid"],
            "controller": True,
        }
    ]
    await kube.create(PODS, agent, namespace=ns)
    await wait_for(lambda: _ready_names(kube, ns, {"agent-pod"}), 30, message="agent ready")

    out = await kubectl(module_apiserver, "drain", node, "--timeout=20s", check=False)
    assert "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)" in out
    out = await kubectl(
        module_apiserver, "drain", node, "--ignore-daemonsets", "--timeout=60s", with_stderr=True
    )
    assert f"Warning: ignoring DaemonSet-managed Pods: {ns}/agent-pod" in out
    assert f"node/{node} drained" in out
    pod = await kube.get(PODS, "agent-pod", namespace=ns)
    assert not pod["metadata"].get("deletionTimestamp")
    await kubectl(module_apiserver, "uncordon", node)
