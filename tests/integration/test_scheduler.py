"""The scheduler against a real API server: placement, failure reporting, bursts, failover."""

from __future__ import annotations

import dataclasses
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import trio

from k8slite.api.quantity import milli_value
from k8slite.client import ApiClient, ClientConfig, load_kubeconfig
from k8slite.client.resource import EVENTS, LEASES, NAMESPACES, NODES, PODS
from k8slite.component.objects import Obj
from k8slite.scheduler.plugins import Profile
from k8slite.scheduler.queue import QueuedPod
from k8slite.scheduler.scheduler import Scheduler
from tests.conftest import ServerHandle
from tests.launch import after, launch, stop

T = TypeVar("T")
NS = "sched"


def scheduler_config(server: ServerHandle) -> ClientConfig:
    """The scheduler's own identity (system:kube-scheduler), aimed at the test server."""
    config = load_kubeconfig(server.kubeconfig_for("scheduler"))
    return dataclasses.replace(config, server=server.url, qps=0)


def admin_config(server: ServerHandle) -> ClientConfig:
    return dataclasses.replace(load_kubeconfig(server.kubeconfig), server=server.url, qps=0)


async def wait_for(
    probe: Callable[[], Awaitable[T | None]], timeout: float = 20.0, message: str = "condition"
) -> T:
    with trio.move_on_after(timeout):
        while True:
            got = await probe()
            if got:
                return got
            await trio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {message}")


async def make_node(
    api: ApiClient,
    name: str,
    *,
    cpu: str = "4",
    memory: str = "8Gi",
    pods: str = "110",
    labels: dict[str, str] | None = None,
    taints: list[Obj] | None = None,
    unschedulable: bool = False,
    images: list[Obj] | None = None,
) -> None:
    spec: Obj = {"taints": taints or []}
    if unschedulable:
        spec["unschedulable"] = True
    await api.create(
        NODES,
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/hostname": name, **(labels or {})},
            },
            "spec": spec,
        },
    )
    resources = {"cpu": cpu, "memory": memory, "pods": pods}
    await api.patch(
        NODES,
        name,
        {
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "images": images or [],
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            }
        },
        subresource="status",
    )


def pod_body(
    name: str,
    *,
    cpu: str = "100m",
    memory: str = "64Mi",
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> Obj:
    container: Obj = {
        "name": "app",
        "image": "busybox:1.36",
        "resources": {"requests": {"cpu": cpu, "memory": memory}},
    }
    if "ports" in spec:
        container["ports"] = spec.pop("ports")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels or {}},
        "spec": {"containers": [container], **spec},
    }


async def node_of(api: ApiClient, name: str) -> str | None:
    pod = await api.get(PODS, name, namespace=NS)
    return (pod.get("spec") or {}).get("nodeName")


async def bound(api: ApiClient, *names: str, timeout: float = 20.0) -> dict[str, str]:
    async def probe() -> dict[str, str] | None:
        nodes = {n: await node_of(api, n) for n in names}
        return nodes if all(nodes.values()) else None  # type: ignore[return-value]

    return await wait_for(probe, timeout, f"pods {names} to be bound")


async def condition_of(api: ApiClient, name: str) -> Obj | None:
    pod = await api.get(PODS, name, namespace=NS)
    for c in (pod.get("status") or {}).get("conditions") or ():
        if c.get("type") == "PodScheduled":
            return c
    return None


@pytest.fixture
async def api(fresh_apiserver: ServerHandle) -> AsyncIterator[ApiClient]:
    async with ApiClient(admin_config(fresh_apiserver)) as client:
        await client.create(NAMESPACES, {"metadata": {"name": NS}})
        yield client


@pytest.fixture
async def running(fresh_apiserver: ServerHandle) -> AsyncIterator[Scheduler]:
    """An in-process scheduler with the scheduler's credentials, on a fresh server."""
    async with ApiClient(scheduler_config(fresh_apiserver)) as client:
        scheduler = Scheduler(client, Profile(), host="test")
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            yield scheduler
            nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- placement


async def test_places_by_fit_taints_affinity_and_ports(api: ApiClient, running: Scheduler) -> None:
    await make_node(api, "small", cpu="1", memory="2Gi")
    await make_node(api, "big", cpu="8", memory="16Gi", labels={"disk": "ssd"})
    await make_node(
        api,
        "gpu",
        cpu="8",
        memory="16Gi",
        labels={"gpu": "true"},
        taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}],
    )
    await make_node(api, "cordoned", cpu="8", memory="16Gi", unschedulable=True)

    await api.create(PODS, pod_body("huge", cpu="4"))
    await api.create(
        PODS,
        pod_body(
            "ssd",
            affinity={
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "disk", "operator": "In", "values": ["ssd"]}
                                ]
                            }
                        ]
                    }
                }
            },
        ),
    )
    await api.create(
        PODS,
        pod_body(
            "trainer",
            nodeSelector={"gpu": "true"},
            tolerations=[
                {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
            ],
        ),
    )
    got = await bound(api, "huge", "ssd", "trainer")
    assert got == {"huge": "big", "ssd": "big", "trainer": "gpu"}

    # Two pods wanting host port 8080 cannot share a node.
    port = [{"containerPort": 80, "hostPort": 8080}]
    await api.create(PODS, pod_body("web-1", ports=port))
    await api.create(PODS, pod_body("web-2", ports=port))
    got = await bound(api, "web-1", "web-2")
    assert sorted(got.values()) == ["big", "small"]

    # Anti-affinity on the hostname: one db per node; the third has nowhere to go.
    anti = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"app": "db"}},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        }
    }
    for i in range(2):
        await api.create(PODS, pod_body(f"db-{i}", labels={"app": "db"}, affinity=anti))
    got = await bound(api, "db-0", "db-1")
    assert sorted(got.values()) == ["big", "small"]
    await api.create(PODS, pod_body("db-2", labels={"app": "db"}, affinity=anti))
    cond = await wait_for(lambda: condition_of(api, "db-2"), message="db-2's condition")
    assert cond["status"] == "False" and cond["reason"] == "Unschedulable"
    assert cond["message"] == (
        "0/4 nodes are available: 1 node(s) had untolerated taint(s), 1 node(s) were "
        "unschedulable, 2 node(s) didn't match pod anti-affinity rules. no new claims to "
        "deallocate, preemption: 0/4 nodes are available: 2 No preemption victims found for "
        "incoming pod, 2 Preemption is not helpful for scheduling."
    )
    # A pod without terms is kept off both nodes by the db pods' own anti-affinity.
    await api.create(PODS, pod_body("db-helper", labels={"app": "db"}))
    cond = await wait_for(lambda: condition_of(api, "db-helper"), message="db-helper")
    assert "2 node(s) didn't satisfy existing pods anti-affinity rules" in cond["message"]

    # Pods for another scheduler are left alone.
    await api.create(PODS, pod_body("elsewhere", schedulerName="other-scheduler"))
    await trio.sleep(1.0)
    assert await node_of(api, "elsewhere") is None
    assert await condition_of(api, "elsewhere") is None

    # Deleting db-0 frees its node for db-2 (an assigned-pod delete requeues it).
    await api.delete(PODS, "db-helper", namespace=NS, grace_period_seconds=0)
    freed = (await api.get(PODS, "db-0", namespace=NS))["spec"]["nodeName"]
    await api.delete(PODS, "db-0", namespace=NS, grace_period_seconds=0)
    got = await bound(api, "db-2")
    assert got["db-2"] == freed
    metrics = running.registry

    async def scheduled() -> bool:
        # Counted once the binding is acknowledged, which can trail the pod's nodeName.
        value = metrics.get_sample_value(
            "scheduler_schedule_attempts_total",
            {"result": "scheduled", "profile": "default-scheduler"},
        )
        return (value or 0) >= 8

    await wait_for(scheduled, message="8 scheduled attempts counted")


async def test_unschedulable_until_a_node_is_added(api: ApiClient, running: Scheduler) -> None:
    await make_node(
        api, "cp", taints=[{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    )
    for name in ("w1", "w2"):
        await make_node(api, name, cpu="2")
        # Already running there: bound directly, as a kubelet-created pod would be.
        await api.create(PODS, pod_body(f"busy-{name}", cpu="1500m", nodeName=name))
    await api.create(PODS, pod_body("web-1", cpu="1"))
    expected = (
        "0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 Insufficient "
        "cpu. no new claims to deallocate, preemption: 0/3 nodes are available: 1 "
        "Preemption is not helpful for scheduling, 2 No preemption victims found for "
        "incoming pod."
    )
    cond = await wait_for(lambda: condition_of(api, "web-1"), message="PodScheduled=False")
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "Unschedulable", expected)

    async def failed_event() -> Obj | None:
        items = (await api.list(EVENTS, namespace=NS, field_selector="involvedObject.name=web-1"))[
            "items"
        ]
        return next((e for e in items if e["reason"] == "FailedScheduling"), None)

    event = await wait_for(failed_event, message="a FailedScheduling event")
    assert event["type"] == "Warning" and event["message"] == expected
    assert event["source"] == {"component": "default-scheduler"}
    assert event["involvedObject"]["kind"] == "Pod"

    await make_node(api, "w3", cpu="2")
    got = await bound(api, "web-1", timeout=10)
    assert got == {"web-1": "w3"}

    async def scheduled_event() -> Obj | None:
        items = (await api.list(EVENTS, namespace=NS, field_selector="involvedObject.name=web-1"))[
            "items"
        ]
        return next((e for e in items if e["reason"] == "Scheduled"), None)

    event = await wait_for(scheduled_event, message="a Scheduled event")
    assert event["message"] == f"Successfully assigned {NS}/web-1 to w3"
    assert event["type"] == "Normal"
    scheduled = await condition_of(api, "web-1")
    assert scheduled is not None and scheduled["status"] == "True"


async def test_no_nodes_message(api: ApiClient, running: Scheduler) -> None:
    await api.create(PODS, pod_body("lonely"))
    cond = await wait_for(lambda: condition_of(api, "lonely"), message="PodScheduled=False")
    assert cond["message"] == "no nodes available to schedule pods"


async def test_burst_of_1000_pods_never_overcommits(api: ApiClient, running: Scheduler) -> None:
    nodes = [f"n{i:02}" for i in range(20)]
    for name in nodes:
        await make_node(api, name, cpu="1", memory="4Gi")
    # 20 nodes of 1000m take 40 pods of 25m each: 800 fit, 200 must wait.
    total, fits = 1000, 800

    async def create(first: int) -> None:
        for i in range(first, total, 25):
            await api.create(PODS, pod_body(f"p{i:04}", cpu="25m", memory="16Mi"))

    async with trio.open_nursery() as nursery:
        for first in range(25):
            nursery.start_soon(create, first)

    async def settled() -> list[Obj] | None:
        items = (await api.list(PODS, namespace=NS))["items"]
        done = sum(1 for p in items if p["spec"].get("nodeName"))
        failed = sum(
            1
            for p in items
            if any(
                c.get("reason") == "Unschedulable"
                for c in p.get("status", {}).get("conditions") or ()
            )
        )
        return items if done == fits and failed == total - fits else None

    items = await wait_for(settled, timeout=120, message="800 bound and 200 unschedulable")
    per_node: dict[str, int] = {}
    for p in items:
        node = p["spec"].get("nodeName")
        if node:
            cpu = milli_value(p["spec"]["containers"][0]["resources"]["requests"]["cpu"])
            per_node[node] = per_node.get(node, 0) + cpu
    assert set(per_node) == set(nodes)
    assert all(v <= 1000 for v in per_node.values()), per_node
    # The cache agrees with the server.
    for name in nodes:
        info = running.table.node_info(name)
        assert info is not None and info["requested"]["cpu"] == per_node[name]


async def test_binding_refused_keeps_the_real_binding(api: ApiClient, running: Scheduler) -> None:
    await make_node(api, "n1")
    await make_node(api, "n2")
    # Another scheduler's pod, so that the running loop leaves it to this test.
    pod = await api.create(PODS, pod_body("raced", schedulerName="someone-else"))
    qp = QueuedPod("sched/raced", pod, timestamp=0.0, initial=0.0, attempts=1)
    running.cache.assume(pod, "n2", running.cache.spec_of(pod))
    # Someone else binds it first; our binding then gets 409 Conflict.
    await api.create(
        PODS,
        {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": "raced", "namespace": NS},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"},
        },
        namespace=NS,
        subresource="binding",
    )
    await running._binds.acquire_on_behalf_of(qp)
    await running._bind(qp, "n2", time.perf_counter())
    assert not running.cache.is_assumed("sched/raced")

    async def accounted() -> str | None:
        return running.table.pod_node("sched/raced")

    assert await wait_for(accounted, message="the real binding accounted") == "n1"
    assert (
        running.registry.get_sample_value(
            "scheduler_schedule_attempts_total", {"result": "error", "profile": "default-scheduler"}
        )
        == 1.0
    )
    assert "sched/raced" not in running.queue


# ------------------------------------------------------------------ the real binary


@dataclasses.dataclass
class SchedulerProcess:
    proc: subprocess.Popen[bytes]
    url: str

    def metrics(self) -> str:
        with httpx.Client(verify=False, timeout=10) as client:
            return client.get(f"{self.url}/metrics").text

    def leading(self) -> bool:
        return 'leader_election_master_status{name="kube-scheduler"} 1.0' in self.metrics()

    def stop(self) -> None:
        stop(self.proc)


def start_scheduler(server: ServerHandle, log: Path, *extra: str) -> SchedulerProcess:
    args = [
        sys.executable,
        "-m",
        "k8slite.cmd.scheduler",
        "--kubeconfig",
        str(server.kubeconfig_for("scheduler")),
        "--secure-port",
        "0",
        "--bind-address",
        "127.0.0.1",
        *extra,
    ]
    marker = "listening on "
    proc, line = launch(
        args, log, marker, what="scheduler", timeout=30, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    return SchedulerProcess(proc, after(line, marker))


ELECTION = (
    "--leader-elect=true",
    "--leader-elect-lease-duration=4s",
    "--leader-elect-renew-deadline=3s",
    "--leader-elect-retry-period=500ms",
)


async def test_leader_failover_between_two_schedulers(
    fresh_apiserver: ServerHandle, api: ApiClient, tmp_path: Path
) -> None:
    await make_node(api, "n1")
    a = start_scheduler(fresh_apiserver, tmp_path / "a.log", *ELECTION)
    b = start_scheduler(fresh_apiserver, tmp_path / "b.log", *ELECTION)
    try:
        with httpx.Client(verify=False, timeout=10) as client:
            assert client.get(f"{a.url}/healthz").text == "ok"
            assert client.get(f"{b.url}/nope").status_code == 404

        async def leader() -> SchedulerProcess | None:
            found = [s for s in (a, b) if await trio.to_thread.run_sync(s.leading)]
            return found[0] if len(found) == 1 else None

        first = await wait_for(leader, message="one leader")
        await api.create(PODS, pod_body("before"))
        assert await bound(api, "before") == {"before": "n1"}
        metrics = await trio.to_thread.run_sync(first.metrics)
        assert (
            'scheduler_schedule_attempts_total{profile="default-scheduler",result="scheduled"} 1.0'
        ) in metrics
        assert 'scheduler_pending_pods{queue="active"} 0.0' in metrics
        assert "scheduler_pod_scheduling_sli_duration_seconds_bucket" in metrics
        lease = await api.get(LEASES, "kube-scheduler", namespace="kube-system")
        holder = lease["spec"]["holderIdentity"]

        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        second = b if first is a else a
        await api.create(PODS, pod_body("after"))
        assert await bound(api, "after", timeout=30) == {"after": "n1"}
        assert await trio.to_thread.run_sync(second.leading)
        lease = await api.get(LEASES, "kube-scheduler", namespace="kube-system")
        assert lease["spec"]["holderIdentity"] != holder
    finally:
        a.stop()
        b.stop()


def test_serving_requires_client_certificates_outside_health(
    fresh_apiserver: ServerHandle, tmp_path: Path
) -> None:
    proc = start_scheduler(
        fresh_apiserver,
        tmp_path / "s.log",
        "--leader-elect=false",
        "--client-ca-file",
        str(fresh_apiserver.ca),
    )
    try:
        with httpx.Client(verify=False, timeout=10) as client:
            assert client.get(f"{proc.url}/healthz").status_code == 200
            assert client.get(f"{proc.url}/metrics").status_code == 403
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.load_cert_chain(*fresh_apiserver.cert("admin"))
        with httpx.Client(verify=ctx, timeout=10) as client:
            assert "scheduler_pending_pods" in client.get(f"{proc.url}/metrics").text
    finally:
        proc.stop()
