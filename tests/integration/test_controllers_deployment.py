"""Deployments and ReplicaSets against a real API server and controller manager, with the
real kubectl for the rollout commands."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import trio

from k8slite.client import ApiClient, NotFound
from k8slite.client.resource import DEPLOYMENTS, EVENTS, PODS, REPLICASETS
from k8slite.component.objects import Obj
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


@pytest.fixture(scope="module")
def manager(module_apiserver: ServerHandle) -> Iterator[ManagerHandle]:
    handle = start_controller_manager(module_apiserver)
    yield handle
    handle.stop()


@pytest.fixture
async def kube(module_apiserver: ServerHandle, manager: ManagerHandle) -> AsyncIterator[ApiClient]:
    async with ApiClient(admin_config(module_apiserver)) as client:
        yield client


@pytest.fixture
async def ns(kube: ApiClient) -> str:
    return await create_namespace(kube, "dep")


@pytest.fixture
async def kubelet(kube: ApiClient, ns: str, nursery: trio.Nursery) -> FakeKubelet:
    fake = FakeKubelet(
        kube,
        ns,
        ["node-1", "node-2", "node-3"],
        ready_delay=0.2,
        never_ready=frozenset({"never-ready:1"}),
    )
    await nursery.start(fake.run)
    return fake


# ------------------------------------------------------------------- helpers


async def get_deploy(kube: ApiClient, ns: str, name: str = "web") -> Obj:
    return await kube.get(DEPLOYMENTS, name, namespace=ns)


async def replica_sets(kube: ApiClient, ns: str) -> list[Obj]:
    return list((await kube.list(REPLICASETS, namespace=ns))["items"])


async def active_pods(kube: ApiClient, ns: str) -> list[Obj]:
    return pods_of((await kube.list(PODS, namespace=ns))["items"])


def condition(obj: Obj, ctype: str) -> Obj:
    for cond in (obj.get("status") or {}).get("conditions") or ():
        if cond["type"] == ctype:
            return dict(cond)
    return {}


def image_of(obj: Obj) -> str:
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])


def revision(obj: Obj) -> str:
    return str(
        (obj["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", "")
    )


async def rolled_out(kube: ApiClient, ns: str, name: str = "web") -> Obj | None:
    """The Deployment once its newest template is fully rolled out and available."""
    d = await get_deploy(kube, ns, name)
    s = d.get("status") or {}
    want = d["spec"]["replicas"]
    done = (
        s.get("observedGeneration", 0) >= d["metadata"]["generation"]
        and s.get("updatedReplicas", 0) == want
        and s.get("replicas", 0) == want
        and s.get("availableReplicas", 0) == want
    )
    return d if done else None


async def events_for(kube: ApiClient, ns: str, name: str) -> list[Obj]:
    listed = await kube.list(EVENTS, namespace=ns, field_selector=f"involvedObject.name={name}")
    return list(listed["items"])


class PodCensus:
    """Follows every change to the namespace's pods and keeps the extremes seen."""

    def __init__(self) -> None:
        self.pods: dict[str, Obj] = {}
        self.max_total = 0
        self.min_available: int | None = None
        self.events = 0

    def observe(self) -> None:
        active = pods_of(list(self.pods.values()))
        self.max_total = max(self.max_total, len(active))
        available = sum(1 for p in active if is_ready(p))
        self.min_available = (
            available if self.min_available is None else min(self.min_available, available)
        )

    async def run(
        self,
        kube: ApiClient,
        ns: str,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listed = await kube.list(PODS, namespace=ns)
        self.pods = {p["metadata"]["name"]: p for p in listed["items"]}
        self.observe()
        rv = listed["metadata"]["resourceVersion"]
        async with kube.watch(
            PODS, namespace=ns, resource_version=rv, timeout_seconds=600
        ) as events:
            task_status.started()
            async for etype, obj in events:
                if etype == "DELETED":
                    self.pods.pop(obj["metadata"]["name"], None)
                elif etype in ("ADDED", "MODIFIED"):
                    self.pods[obj["metadata"]["name"]] = obj
                self.events += 1
                self.observe()


# --------------------------------------------------------------------- tests


async def test_deployment_of_five_becomes_available(
    kube: ApiClient, ns: str, kubelet: FakeKubelet
) -> None:
    await kube.create(DEPLOYMENTS, deployment("web", 5), namespace=ns)
    d = await wait_for(lambda: rolled_out(kube, ns), message="5 available")
    status = d["status"]
    assert status["availableReplicas"] == 5 and status["readyReplicas"] == 5
    assert "unavailableReplicas" not in status
    assert condition(d, "Available")["reason"] == "MinimumReplicasAvailable"
    progressing = await wait_for(
        lambda: _progressing_reason(kube, ns, "NewReplicaSetAvailable"),
        message="NewReplicaSetAvailable",
    )
    assert progressing["status"] == "True"
    [rs] = await replica_sets(kube, ns)
    pod_hash = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{pod_hash}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": pod_hash}
    assert revision(rs) == revision(d) == "1"
    [ref] = rs["metadata"]["ownerReferences"]
    assert ref["kind"] == "Deployment" and ref["uid"] == d["metadata"]["uid"]
    assert ref["controller"] is True and ref["blockOwnerDeletion"] is True
    assert rs["status"]["fullyLabeledReplicas"] == 5
    assert rs["status"]["observedGeneration"] == rs["metadata"]["generation"]
    pods = await active_pods(kube, ns)
    assert len(pods) == 5
    for pod in pods:
        assert pod["metadata"]["generateName"] == f"web-{pod_hash}-"
        assert pod["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
    scaled = [e for e in await events_for(kube, ns, "web") if e["reason"] == "ScalingReplicaSet"]
    assert [e["message"] for e in scaled] == [f"Scaled up replica set web-{pod_hash} from 0 to 5"]
    assert scaled[0]["source"]["component"] == "deployment-controller"
    created = [
        e
        for e in await events_for(kube, ns, rs["metadata"]["name"])
        if e["reason"] == "SuccessfulCreate"
    ]
    assert len(created) == 5 and created[0]["message"].startswith("Created pod: web-")


async def _progressing_reason(kube: ApiClient, ns: str, reason: str) -> Obj | None:
    cond = condition(await get_deploy(kube, ns), "Progressing")
    return cond if cond.get("reason") == reason else None


async def test_rolling_update_keeps_within_surge_and_availability(
    kube: ApiClient, ns: str, kubelet: FakeKubelet, nursery: trio.Nursery
) -> None:
    body = deployment(
        "web",
        5,
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
    )
    await kube.create(DEPLOYMENTS, body, namespace=ns)
    await wait_for(lambda: rolled_out(kube, ns), message="5 available")
    census = PodCensus()
    await nursery.start(census.run, kube, ns)
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "nginx:1.28",
                            "ports": [{"name": "http", "containerPort": 8080}],
                        }
                    ]
                }
            }
        }
    }
    await kube.patch(DEPLOYMENTS, "web", patch, namespace=ns)
    d = await wait_for(lambda: rolled_out(kube, ns), timeout=60, message="rollout")
    assert image_of(d) == "nginx:1.28" and revision(d) == "2"
    await wait_for(
        lambda: (
            len(census.pods) == 5
            and all(
                p["spec"]["containers"][0]["image"] == "nginx:1.28" for p in census.pods.values()
            )
        ),
        message="only new pods left",
    )
    assert census.events > 20  # every change of every pod was seen
    assert census.max_total <= 6, census.max_total
    assert census.min_available is not None and census.min_available >= 5
    by_image = {image_of(rs): rs for rs in await replica_sets(kube, ns)}
    assert by_image["nginx:1.27"]["spec"]["replicas"] == 0
    assert revision(by_image["nginx:1.28"]) == "2"
    messages = [
        e["message"]
        for e in await events_for(kube, ns, "web")
        if e["reason"] == "ScalingReplicaSet"
    ]
    old = by_image["nginx:1.27"]["metadata"]["name"]
    assert f"Scaled down replica set {old} from 5 to 4" in messages


async def test_rollout_undo_history_and_status_with_kubectl(
    kube: ApiClient, ns: str, kubelet: FakeKubelet, module_apiserver: ServerHandle
) -> None:
    await kube.create(DEPLOYMENTS, deployment("web", 3), namespace=ns)
    out = await kubectl(
        module_apiserver, "-n", ns, "rollout", "status", "deployment/web", "--timeout=60s"
    )
    assert 'deployment "web" successfully rolled out' in out
    await kubectl(module_apiserver, "-n", ns, "set", "image", "deployment/web", "app=nginx:1.28")
    out = await kubectl(
        module_apiserver, "-n", ns, "rollout", "status", "deployment/web", "--timeout=60s"
    )
    assert "successfully rolled out" in out
    history = await kubectl(module_apiserver, "-n", ns, "rollout", "history", "deployment/web")
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2"]
    first = await kubectl(
        module_apiserver, "-n", ns, "rollout", "history", "deployment/web", "--revision=1"
    )
    assert "nginx:1.27" in first
    out = await kubectl(module_apiserver, "-n", ns, "rollout", "undo", "deployment/web")
    assert "deployment.apps/web rolled back" in out
    d = await wait_for(lambda: rolled_out(kube, ns), timeout=60, message="rollback")
    assert image_of(d) == "nginx:1.27"
    await wait_for(lambda: _revision_is(kube, ns, "3"), message="revision 3")
    by_image = {image_of(rs): rs for rs in await replica_sets(kube, ns)}
    assert len(by_image) == 2
    back = by_image["nginx:1.27"]
    assert revision(back) == "3"
    assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert back["spec"]["replicas"] == 3 and by_image["nginx:1.28"]["spec"]["replicas"] == 0
    history = await kubectl(module_apiserver, "-n", ns, "rollout", "history", "deployment/web")
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["2", "3"]


async def _revision_is(kube: ApiClient, ns: str, want: str) -> bool:
    return revision(await get_deploy(kube, ns)) == want


async def test_pause_resume_and_restart_with_kubectl(
    kube: ApiClient, ns: str, kubelet: FakeKubelet, module_apiserver: ServerHandle
) -> None:
    await kube.create(DEPLOYMENTS, deployment("web", 2), namespace=ns)
    await wait_for(lambda: rolled_out(kube, ns), message="available")
    out = await kubectl(module_apiserver, "-n", ns, "rollout", "pause", "deployment/web")
    assert "deployment.apps/web paused" in out
    await wait_for(lambda: _progressing_reason(kube, ns, "DeploymentPaused"), message="paused")
    await kubectl(module_apiserver, "-n", ns, "set", "image", "deployment/web", "app=nginx:1.28")
    await trio.sleep(1.0)
    assert len(await replica_sets(kube, ns)) == 1, "a paused Deployment must not roll out"
    out = await kubectl(module_apiserver, "-n", ns, "rollout", "resume", "deployment/web")
    assert "deployment.apps/web resumed" in out
    out = await kubectl(
        module_apiserver, "-n", ns, "rollout", "status", "deployment/web", "--timeout=60s"
    )
    assert "successfully rolled out" in out
    assert {image_of(rs) for rs in await replica_sets(kube, ns)} == {"nginx:1.27", "nginx:1.28"}
    out = await kubectl(module_apiserver, "-n", ns, "rollout", "restart", "deployment/web")
    assert "deployment.apps/web restarted" in out
    out = await kubectl(
        module_apiserver, "-n", ns, "rollout", "status", "deployment/web", "--timeout=60s"
    )
    assert "successfully rolled out" in out
    d = await get_deploy(kube, ns)
    assert "kubectl.kubernetes.io/restartedAt" in d["spec"]["template"]["metadata"]["annotations"]
    assert revision(d) == "3" and len(await replica_sets(kube, ns)) == 3


async def test_scale_up_and_down(
    kube: ApiClient, ns: str, kubelet: FakeKubelet, module_apiserver: ServerHandle
) -> None:
    await kube.create(DEPLOYMENTS, deployment("web", 2), namespace=ns)
    await wait_for(lambda: rolled_out(kube, ns), message="2 available")
    await kubectl(module_apiserver, "-n", ns, "scale", "deployment/web", "--replicas=7")
    await wait_for(lambda: rolled_out(kube, ns), message="7 available")
    assert len(await active_pods(kube, ns)) == 7
    await kubectl(module_apiserver, "-n", ns, "scale", "deployment/web", "--replicas=1")
    d = await wait_for(lambda: rolled_out(kube, ns), message="1 available")
    assert d["status"]["replicas"] == 1
    await wait_for(lambda: _count_is(kube, ns, 1), message="one pod left")
    [rs] = await replica_sets(kube, ns)
    name = rs["metadata"]["name"]
    annotations = rs["metadata"]["annotations"]
    assert annotations["deployment.kubernetes.io/desired-replicas"] == "1"
    assert annotations["deployment.kubernetes.io/max-replicas"] == "2"
    # Events are written in the background: wait for them rather than read them once.
    wanted = {
        f"Scaled up replica set {name} from 2 to 7",
        f"Scaled down replica set {name} from 7 to 1",
    }

    async def scaled() -> bool:
        return wanted <= {e["message"] for e in await events_for(kube, ns, "web")}

    async def six_deleted() -> bool:
        events = await events_for(kube, ns, name)
        return len([e for e in events if e["reason"] == "SuccessfulDelete"]) == 6

    await wait_for(scaled, message="the scaling events")
    await wait_for(six_deleted, message="six SuccessfulDelete events")


async def _count_is(kube: ApiClient, ns: str, n: int) -> bool:
    return len(await active_pods(kube, ns)) == n


async def test_recreate_never_overlaps_old_and_new(
    kube: ApiClient, ns: str, kubelet: FakeKubelet, nursery: trio.Nursery
) -> None:
    await kube.create(
        DEPLOYMENTS, deployment("web", 3, strategy={"type": "Recreate"}), namespace=ns
    )
    await wait_for(lambda: rolled_out(kube, ns), message="available")
    census = PodCensus()
    overlaps: list[set[str]] = []
    base_observe = census.observe

    def observe() -> None:
        base_observe()
        # Terminating pods count too: Recreate waits until old pods are really gone.
        images = {p["spec"]["containers"][0]["image"] for p in census.pods.values()}
        if len(images) > 1:
            overlaps.append(images)

    census.observe = observe  # type: ignore[method-assign]
    await nursery.start(census.run, kube, ns)
    await kubectl_set_image(kube, ns, "nginx:1.28")
    d = await wait_for(lambda: rolled_out(kube, ns), timeout=60, message="recreated")
    assert image_of(d) == "nginx:1.28"
    assert not overlaps


async def kubectl_set_image(kube: ApiClient, ns: str, image: str) -> None:
    d = await get_deploy(kube, ns)
    d["spec"]["template"]["spec"]["containers"][0]["image"] = image
    await kube.update(DEPLOYMENTS, d)


async def test_progress_deadline_exceeded(
    kube: ApiClient, ns: str, kubelet: FakeKubelet, module_apiserver: ServerHandle
) -> None:
    body = deployment("web", 2, image="never-ready:1", progressDeadlineSeconds=2)
    await kube.create(DEPLOYMENTS, body, namespace=ns)
    cond = await wait_for(
        lambda: _progressing_reason(kube, ns, "ProgressDeadlineExceeded"),
        timeout=30,
        message="deadline exceeded",
    )
    assert cond["status"] == "False"
    assert cond["message"].endswith("has timed out progressing.")
    assert condition(await get_deploy(kube, ns), "Available")["status"] == "False"
    out = await kubectl(
        module_apiserver,
        "-n",
        ns,
        "rollout",
        "status",
        "deployment/web",
        "--timeout=20s",
        check=False,
    )
    assert 'deployment "web" exceeded its progress deadline' in out


async def test_revision_history_limit_cleans_old_replica_sets(
    kube: ApiClient, ns: str, kubelet: FakeKubelet
) -> None:
    await kube.create(DEPLOYMENTS, deployment("web", 1, revisionHistoryLimit=1), namespace=ns)
    for image in ("nginx:1.28", "nginx:1.29", "nginx:1.30"):
        await wait_for(lambda: rolled_out(kube, ns), timeout=60, message="rollout")
        await kubectl_set_image(kube, ns, image)
    await wait_for(lambda: rolled_out(kube, ns), timeout=60, message="last rollout")
    images = await wait_for(lambda: _rs_images_if_count(kube, ns, 2), message="cleanup")
    assert images == {"nginx:1.29", "nginx:1.30"}


async def _rs_images_if_count(kube: ApiClient, ns: str, n: int) -> set[str] | None:
    sets = await replica_sets(kube, ns)
    return {image_of(rs) for rs in sets} if len(sets) == n else None


async def test_replicaset_adopts_orphans_and_releases_mismatches(
    kube: ApiClient, ns: str, kubelet: FakeKubelet
) -> None:
    orphan = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "orphan", "labels": {"app": "solo"}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
    }
    await kube.create(PODS, orphan, namespace=ns)
    rs_body = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "solo"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "solo"}},
            "template": {
                "metadata": {"labels": {"app": "solo"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
            },
        },
    }
    rs = await kube.create(REPLICASETS, rs_body, namespace=ns)
    await wait_for(lambda: _rs_ready(kube, ns, "solo", 3), message="3 ready")
    pods = await active_pods(kube, ns)
    assert len(pods) == 3, "the orphan counts towards the replicas"
    adopted = next(p for p in pods if p["metadata"]["name"] == "orphan")
    [ref] = adopted["metadata"]["ownerReferences"]
    assert ref["uid"] == rs["metadata"]["uid"] and ref["controller"] is True
    adopted["metadata"]["labels"] = {"app": "elsewhere"}
    await kube.update(PODS, adopted)
    await wait_for(lambda: _count_is(kube, ns, 4), message="replacement for released pod")
    released = await kube.get(PODS, "orphan", namespace=ns)
    assert not released["metadata"].get("ownerReferences")
    await wait_for(lambda: _rs_ready(kube, ns, "solo", 3), message="3 ready again")


async def _rs_ready(kube: ApiClient, ns: str, name: str, n: int) -> bool:
    rs = await kube.get(REPLICASETS, name, namespace=ns)
    status = rs.get("status") or {}
    return bool(status.get("readyReplicas") == n and status.get("replicas") == n)


async def test_status_printed_by_kubectl(
    kube: ApiClient, ns: str, kubelet: FakeKubelet, module_apiserver: ServerHandle
) -> None:
    await kube.create(DEPLOYMENTS, deployment("web", 2), namespace=ns)
    await wait_for(lambda: rolled_out(kube, ns), message="available")
    out = await kubectl(module_apiserver, "-n", ns, "get", "deployment", "web", "-o", "json")
    status = json.loads(out)["status"]
    assert (
        status["replicas"],
        status["updatedReplicas"],
        status["readyReplicas"],
        status["availableReplicas"],
    ) == (2, 2, 2, 2)
    described = await kubectl(module_apiserver, "-n", ns, "describe", "deployment", "web")
    assert "ScalingReplicaSet" in described and "deployment-controller" in described


async def test_health_and_metrics_are_served(
    kube: ApiClient, ns: str, kubelet: FakeKubelet, manager: ManagerHandle
) -> None:
    await kube.create(DEPLOYMENTS, deployment("web", 1), namespace=ns)
    await wait_for(lambda: rolled_out(kube, ns), message="available")
    assert manager.url.startswith("https://127.0.0.1:")
    metrics = await trio.to_thread.run_sync(manager.metrics)
    for needle in (
        'workqueue_adds_total{name="replicaset"}',
        'workqueue_depth{name="deployment"}',
        'workqueue_work_duration_seconds_count{name="garbage_collector_attempt_to_delete"}',
        'leader_election_master_status{name="kube-controller-manager"} 1.0',
        "controller_reconcile_errors_total",
        "process_resident_memory_bytes",
    ):
        assert needle in metrics, needle
    health = await trio.to_thread.run_sync(_get_health, manager.url)
    assert health == (200, "ok")


def _get_health(url: str) -> tuple[int, str]:
    with httpx.Client(verify=False, timeout=10) as client:
        r = client.get(f"{url}/healthz")
        return r.status_code, r.text


def replica_set(name: str, replicas: int, **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
            },
            **spec,
        },
    }


async def test_available_waits_for_min_ready_seconds(
    kube: ApiClient, ns: str, kubelet: FakeKubelet
) -> None:
    await kube.create(REPLICASETS, replica_set("slow", 3, minReadySeconds=4), namespace=ns)
    seen_ready_not_available = False

    async def available() -> bool:
        nonlocal seen_ready_not_available
        status = (await kube.get(REPLICASETS, "slow", namespace=ns)).get("status") or {}
        if status.get("readyReplicas") == 3 and status.get("availableReplicas", 0) < 3:
            seen_ready_not_available = True
        return bool(status.get("availableReplicas") == 3)

    await wait_for(available, timeout=30, interval=0.2, message="3 available")
    assert seen_ready_not_available, "pods count as available only after minReadySeconds"


async def test_scale_down_deletes_the_least_ready_pod_first(
    kube: ApiClient, ns: str, kubelet: FakeKubelet
) -> None:
    await kube.create(REPLICASETS, replica_set("pick", 2), namespace=ns)
    await wait_for(lambda: _rs_ready(kube, ns, "pick", 2), message="2 ready")
    keep = {p["metadata"]["name"] for p in await active_pods(kube, ns)}
    # An orphan that matches is adopted, making 3 for 2 replicas; it never becomes ready.
    laggard = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "laggard", "labels": {"app": "pick"}},
        "spec": {"containers": [{"name": "app", "image": "never-ready:1"}]},
    }
    await kube.create(PODS, laggard, namespace=ns)

    async def laggard_deleted() -> bool:
        try:
            pod = await kube.get(PODS, "laggard", namespace=ns)
        except NotFound:
            return True
        return bool(pod["metadata"].get("deletionTimestamp"))

    await wait_for(laggard_deleted, message="the unready pod deleted")
    assert {p["metadata"]["name"] for p in await active_pods(kube, ns)} == keep
