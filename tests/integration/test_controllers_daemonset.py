"""DaemonSets against a real API server, controller manager and scheduler, with the real
kubectl for get and the rollout commands; a fake kubelet runs the bound pods."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import trio

from k8slite.client import ApiClient, Conflict, load_kubeconfig
from k8slite.client.resource import CONTROLLERREVISIONS, DAEMONSETS, EVENTS, NODES, PODS
from k8slite.component.objects import Obj
from k8slite.scheduler.plugins import Profile
from k8slite.scheduler.scheduler import Scheduler
from tests.conftest import ServerHandle
from tests.integration.controller_harness import (
    FakeKubelet,
    ManagerHandle,
    admin_config,
    create_namespace,
    is_ready,
    kubectl,
    pods_of,
    start_controller_manager,
    wait_for,
)

# Nodes here never heartbeat: the node lifecycle controllers would taint them unreachable.
MANAGER_FLAGS = ("--controllers=*,-nodelifecycle,-taint-eviction-controller",)
SELECTOR_KEY = "ds-test"


@pytest.fixture(scope="module")
def manager(module_apiserver: ServerHandle) -> Iterator[ManagerHandle]:
    handle = start_controller_manager(module_apiserver, *MANAGER_FLAGS)
    yield handle
    handle.stop()


@pytest.fixture
async def kube(module_apiserver: ServerHandle, manager: ManagerHandle) -> AsyncIterator[ApiClient]:
    async with ApiClient(admin_config(module_apiserver)) as client:
        yield client


@pytest.fixture
async def scheduler(module_apiserver: ServerHandle, nursery: trio.Nursery) -> AsyncIterator[None]:
    """The default scheduler, in process, with its own identity."""
    config = load_kubeconfig(module_apiserver.kubeconfig_for("scheduler"))
    async with ApiClient(dataclasses.replace(config, qps=0)) as client:
        await nursery.start(Scheduler(client, Profile(), host="test").run)
        yield


@pytest.fixture
async def ns(kube: ApiClient, scheduler: None) -> str:
    return await create_namespace(kube, "ds")


@pytest.fixture
async def kubelet(kube: ApiClient, ns: str, nursery: trio.Nursery) -> FakeKubelet:
    # No nodes of its own to bind to: the scheduler binds, the fake only runs pods.
    fake = FakeKubelet(kube, ns, [], ready_delay=0.2)
    await nursery.start(fake.run)
    return fake


# ------------------------------------------------------------------- helpers


async def make_nodes(
    kube: ApiClient, ns: str, *names: str, taints: list[Obj] | None = None
) -> None:
    """Ready nodes labelled for this test's DaemonSets only (nodes are cluster-wide)."""
    for name in names:
        await kube.create(
            NODES,
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": {"kubernetes.io/hostname": name, SELECTOR_KEY: ns},
                },
                "spec": {"taints": taints or []},
            },
        )
        resources = {"cpu": "4", "memory": "8Gi", "pods": "110"}
        await kube.patch(
            NODES,
            name,
            {
                "status": {
                    "capacity": resources,
                    "allocatable": resources,
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                }
            },
            subresource="status",
        )


def daemonset(ns: str, name: str = "agent", image: str = "busybox:1.35", **spec: object) -> Obj:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {SELECTOR_KEY: ns},
                    "containers": [{"name": "app", "image": image}],
                },
            },
            **spec,
        },
    }


async def active_pods(kube: ApiClient, ns: str) -> list[Obj]:
    return pods_of((await kube.list(PODS, namespace=ns))["items"])


def image_of(pod: Obj) -> str:
    return str(pod["spec"]["containers"][0]["image"])


async def rolled_out(kube: ApiClient, ns: str, want: int, name: str = "agent") -> Obj | None:
    """The DaemonSet once want nodes run an updated, available pod and nothing else runs."""
    ds = await kube.get(DAEMONSETS, name, namespace=ns)
    s = ds.get("status") or {}
    done = (
        s.get("observedGeneration", 0) >= ds["metadata"]["generation"]
        and s.get("desiredNumberScheduled") == want
        and s.get("updatedNumberScheduled") == want
        and s.get("numberAvailable") == want
        and len(await active_pods(kube, ns)) == want
    )
    return ds if done else None


def pods_by_node(pods: list[Obj]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for pod in pods:
        out.setdefault(pod["spec"].get("nodeName") or "", []).append(pod["metadata"]["name"])
    return out


# ------------------------------------------------------------------- tests


async def test_one_pod_per_eligible_node(
    kube: ApiClient, ns: str, kubelet: FakeKubelet, module_apiserver: ServerHandle
) -> None:
    nodes = [f"{ns}-{i}" for i in range(3)]
    await make_nodes(kube, ns, *nodes)
    await make_nodes(
        kube, ns, f"{ns}-gpu", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]
    )
    # Cordoned nodes still run daemons: the daemon pods tolerate unschedulable.
    await make_nodes(
        kube,
        ns,
        f"{ns}-cordoned",
        taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}],
    )
    await kube.create(DAEMONSETS, daemonset(ns), namespace=ns)
    ds = await wait_for(lambda: rolled_out(kube, ns, 4), message="4 daemon pods")
    pods = await active_pods(kube, ns)
    placed = pods_by_node(pods)
    assert sorted(placed) == sorted([*nodes, f"{ns}-cordoned"])
    assert all(len(names) == 1 for names in placed.values())
    status = ds["status"]
    assert status["currentNumberScheduled"] == 4 and status["numberMisscheduled"] == 0
    assert status["numberReady"] == 4 and status.get("numberUnavailable", 0) == 0
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    assert ds["spec"]["revisionHistoryLimit"] == 10

    pod = pods[0]
    labels = pod["metadata"]["labels"]
    assert labels["pod-template-generation"] == "1"
    # Bound by the scheduler through the node affinity the controller pins.
    terms = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert terms["nodeSelectorTerms"] == [
        {
            "matchFields": [
                {"key": "metadata.name", "operator": "In", "values": [pod["spec"]["nodeName"]]}
            ]
        }
    ]
    keys = {(t.get("key"), t.get("effect")) for t in pod["spec"]["tolerations"]}
    assert ("node.kubernetes.io/unreachable", "NoExecute") in keys
    assert ("node.kubernetes.io/unschedulable", "NoSchedule") in keys
    ref = pod["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["controller"]) == ("DaemonSet", "agent", True)

    revisions = (await kube.list(CONTROLLERREVISIONS, namespace=ns))["items"]
    assert [r["revision"] for r in revisions] == [1]
    assert (
        revisions[0]["metadata"]["labels"]["controller-revision-hash"]
        == (labels["controller-revision-hash"])
    )
    assert revisions[0]["metadata"]["name"] == f"agent-{labels['controller-revision-hash']}"

    out = await kubectl(module_apiserver, "get", "ds", "-n", ns)
    header, row = out.splitlines()
    assert header.split() == [
        "NAME",
        "DESIRED",
        "CURRENT",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "NODE",
        "SELECTOR",
        "AGE",
    ]
    assert row.split()[:7] == ["agent", "4", "4", "4", "4", "4", f"{SELECTOR_KEY}={ns}"]
    out = await kubectl(module_apiserver, "get", "controllerrevisions", "-n", ns)
    assert out.splitlines()[0].split() == ["NAME", "CONTROLLER", "REVISION", "AGE"]
    assert out.splitlines()[1].split()[1:3] == ["daemonset.apps/agent", "1"]

    out = await kubectl(module_apiserver, "describe", "ds", "agent", "-n", ns)
    assert "Desired Number of Nodes Scheduled: 4" in out
    assert "4 Running / 0 Waiting / 0 Succeeded / 0 Failed" in out

    # A new node gets its pod; a NoExecute taint the pods do not tolerate removes one.
    await make_nodes(kube, ns, f"{ns}-late")
    await wait_for(lambda: rolled_out(kube, ns, 5), message="a pod on the new node")
    await kube.patch(
        NODES,
        nodes[0],
        {"spec": {"taints": [{"key": "evict", "effect": "NoExecute"}]}},
    )
    await wait_for(lambda: rolled_out(kube, ns, 4), message="the tainted node's pod to go")
    assert nodes[0] not in pods_by_node(await active_pods(kube, ns))

    events = (await kube.list(EVENTS, namespace=ns, field_selector="involvedObject.name=agent"))[
        "items"
    ]
    reasons = {e["reason"] for e in events}
    assert {"SuccessfulCreate", "SuccessfulDelete"} <= reasons
    assert all(e["source"]["component"] == "daemonset-controller" for e in events)


class Census:
    """Follows the namespace's pods; the fewest nodes with a ready pod seen while rolling."""

    def __init__(self, kube: ApiClient, ns: str) -> None:
        self.kube = kube
        self.ns = ns
        self.min_ready_nodes: int | None = None
        self.max_pods_per_node = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listed = await self.kube.list(PODS, namespace=self.ns)
        pods = {p["metadata"]["name"]: p for p in listed["items"]}
        task_status.started()
        async with self.kube.watch(
            PODS, namespace=self.ns, resource_version=listed["metadata"]["resourceVersion"]
        ) as events:
            async for etype, obj in events:
                if etype == "DELETED":
                    pods.pop(obj["metadata"]["name"], None)
                elif etype in ("ADDED", "MODIFIED"):
                    pods[obj["metadata"]["name"]] = obj
                else:
                    continue
                self._observe(pods)

    def _observe(self, pods: dict[str, Obj]) -> None:
        live = [p for p in pods.values() if not p["metadata"].get("deletionTimestamp")]
        ready_nodes = {p["spec"].get("nodeName") for p in live if is_ready(p)}
        count = len(ready_nodes)
        self.min_ready_nodes = (
            count if self.min_ready_nodes is None else min(self.min_ready_nodes, count)
        )
        per_node = pods_by_node(live)
        self.max_pods_per_node = max(
            [self.max_pods_per_node, *(len(v) for k, v in per_node.items() if k)]
        )


async def test_rolling_update_history_and_undo(
    kube: ApiClient,
    ns: str,
    kubelet: FakeKubelet,
    nursery: trio.Nursery,
    module_apiserver: ServerHandle,
) -> None:
    server = module_apiserver
    await make_nodes(kube, ns, *(f"{ns}-{i}" for i in range(3)))
    await kube.create(DAEMONSETS, daemonset(ns, image="busybox:1.35"), namespace=ns)
    await wait_for(lambda: rolled_out(kube, ns, 3), message="3 daemon pods")
    census = Census(kube, ns)
    await nursery.start(census.run)

    await kubectl(server, "set", "image", "-n", ns, "ds/agent", "app=busybox:1.36")
    out = await kubectl(server, "rollout", "status", "-n", ns, "ds/agent", "--timeout=60s")
    assert 'daemon set "agent" successfully rolled out' in out
    ds = await wait_for(lambda: rolled_out(kube, ns, 3), message="the update to finish")
    assert {image_of(p) for p in await active_pods(kube, ns)} == {"busybox:1.36"}
    assert ds["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "2"
    assert {
        p["metadata"]["labels"]["pod-template-generation"] for p in await active_pods(kube, ns)
    } == {"2"}
    # maxUnavailable 1: never more than one node without a ready pod, never two pods on one.
    assert census.min_ready_nodes == 2
    assert census.max_pods_per_node == 1

    out = await kubectl(server, "rollout", "history", "-n", ns, "ds/agent")
    rows = [line.split()[0] for line in out.splitlines()[2:] if line.strip()]
    assert rows == ["1", "2"]
    out = await kubectl(server, "rollout", "history", "-n", ns, "ds/agent", "--revision=1")
    assert "busybox:1.35" in out

    out = await kubectl(server, "rollout", "undo", "-n", ns, "ds/agent")
    assert "daemonset.apps/agent rolled back" in out
    await wait_for(lambda: rolled_out(kube, ns, 3), message="the undo to finish")

    async def back_on_old_image() -> bool:
        return {image_of(p) for p in await active_pods(kube, ns)} == {"busybox:1.35"}

    await wait_for(back_on_old_image, message="pods of the first template")
    # The first revision came back as the newest: revisions 2 and 3 remain.
    revisions = (await kube.list(CONTROLLERREVISIONS, namespace=ns))["items"]
    assert sorted(r["revision"] for r in revisions) == [2, 3]
    out = await kubectl(server, "rollout", "history", "-n", ns, "ds/agent")
    assert [line.split()[0] for line in out.splitlines()[2:] if line.strip()] == ["2", "3"]

    # rollout restart stamps the template: every pod is replaced, one node at a time.
    before = {p["metadata"]["name"] for p in await active_pods(kube, ns)}
    out = await kubectl(server, "rollout", "restart", "-n", ns, "ds/agent")
    assert "daemonset.apps/agent restarted" in out
    ds = await wait_for(lambda: rolled_out(kube, ns, 3), message="the restart to finish")
    annotations = ds["spec"]["template"]["metadata"]["annotations"]
    assert "kubectl.kubernetes.io/restartedAt" in annotations

    async def all_replaced() -> bool:
        names = {p["metadata"]["name"] for p in await active_pods(kube, ns)}
        return len(names) == 3 and not names & before

    await wait_for(all_replaced, message="every pod replaced")
    assert census.min_ready_nodes == 2


async def change_daemonset(kube: ApiClient, ns: str, change: Callable[[Obj], None]) -> None:
    """Read, change and write the DaemonSet, again on a conflict (client-go's
    RetryOnConflict): the controller writes its status at any moment."""
    for _ in range(10):
        ds = await kube.get(DAEMONSETS, "agent", namespace=ns)
        change(ds)
        try:
            await kube.update(DAEMONSETS, ds)
            return
        except Conflict:
            continue
    raise AssertionError("the DaemonSet kept changing under 10 updates")


async def test_on_delete_and_surge(kube: ApiClient, ns: str, kubelet: FakeKubelet) -> None:
    nodes = [f"{ns}-{i}" for i in range(2)]
    await make_nodes(kube, ns, *nodes)
    body = daemonset(ns, updateStrategy={"type": "OnDelete"})
    await kube.create(DAEMONSETS, body, namespace=ns)
    await wait_for(lambda: rolled_out(kube, ns, 2), message="2 daemon pods")

    def new_image(ds: Obj) -> None:
        ds["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:1.36"

    await change_daemonset(kube, ns, new_image)

    async def observed() -> Obj | None:
        got = await kube.get(DAEMONSETS, "agent", namespace=ns)
        s = got.get("status") or {}
        return got if s.get("observedGeneration") == got["metadata"]["generation"] else None

    ds = await wait_for(observed, message="the new generation observed")
    # OnDelete: nothing is replaced until a pod is deleted by hand.
    assert ds["status"].get("updatedNumberScheduled", 0) == 0
    pods = await active_pods(kube, ns)
    assert {image_of(p) for p in pods} == {"busybox:1.35"}
    victim = pods[0]
    await kube.delete(PODS, victim["metadata"]["name"], namespace=ns)

    async def replaced() -> bool:
        now = await active_pods(kube, ns)
        on_node = [p for p in now if p["spec"].get("nodeName") == victim["spec"]["nodeName"]]
        return len(now) == 2 and len(on_node) == 1 and image_of(on_node[0]) == "busybox:1.36"

    await wait_for(replaced, message="the deleted pod replaced from the new template")

    # Surge: a new pod comes up beside each old one before the old one goes.
    def surge(ds: Obj) -> None:
        ds["spec"]["updateStrategy"] = {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        }
        ds["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:1.37"

    await change_daemonset(kube, ns, surge)
    await wait_for(lambda: rolled_out(kube, ns, 2), timeout=60, message="the surge rollout")
    assert {image_of(p) for p in await active_pods(kube, ns)} == {"busybox:1.37"}


async def test_validation_and_defaults(
    kube: ApiClient, ns: str, module_apiserver: ServerHandle
) -> None:
    server = module_apiserver
    bad = daemonset(ns)
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    bad["spec"]["updateStrategy"] = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0},
    }
    path = f"/apis/apps/v1/namespaces/{ns}/daemonsets"
    with server.client() as http:
        r = http.post(path, json=bad)
        assert r.status_code == 422, r.text
        fields = {c["field"]: c["message"] for c in r.json()["details"]["causes"]}
        assert fields["spec.template.metadata.labels"].endswith(
            "`selector` does not match template `labels`"
        )
        assert fields["spec.updateStrategy.rollingUpdate.maxUnavailable"].endswith(
            "may not be 0 when `maxSurge` is 0"
        )
        r = http.post(path, json=daemonset(ns, updateStrategy={"type": "Sometimes"}))
        assert r.status_code == 422
        assert r.json()["details"]["causes"][0]["message"] == (
            'Unsupported value: "Sometimes": supported values: "OnDelete", "RollingUpdate"'
        )
        r = http.post(path, json=daemonset(ns))
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["metadata"]["generation"] == 1
        assert created["metadata"]["annotations"] == {
            "deprecated.daemonset.template.generation": "1"
        }
        created["spec"]["selector"] = {"matchLabels": {"app": "agent", "x": "y"}}
        created["spec"]["template"]["metadata"]["labels"]["x"] = "y"
        r = http.put(f"{path}/agent", json=created)
        assert r.status_code == 422
        causes = r.json()["details"]["causes"]
        assert [c["field"] for c in causes] == ["spec.selector"]
        assert causes[0]["message"].endswith("field is immutable")
