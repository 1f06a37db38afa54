"""Two controller managers, one lease: kill -9 the leader in the middle of a scale-up; the
standby takes over within the lease duration, and the pods come out exact, never more."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from k8slite.client import ApiClient
from k8slite.client.resource import DEPLOYMENTS, LEASES, PODS
from k8slite.component.objects import Obj
from tests.conftest import ServerHandle
from tests.integration.controller_harness import (
    FakeKubelet,
    ManagerHandle,
    admin_config,
    create_namespace,
    deployment,
    pods_of,
    start_controller_manager,
    wait_for,
)

LEASE, RENEW, RETRY = 5.0, 4.0, 0.5
# Slow the controllers' writes so a scale-up takes seconds and can be interrupted.
HA_FLAGS = (
    f"--leader-elect-lease-duration={LEASE}s",
    f"--leader-elect-renew-deadline={RENEW}s",
    f"--leader-elect-retry-period={RETRY}s",
    "--kube-api-qps=5",
    "--kube-api-burst=1",
)
TARGET = 30


@pytest.fixture
def managers(module_apiserver: ServerHandle) -> Iterator[list[ManagerHandle]]:
    started: list[ManagerHandle] = []
    for name in ("cm-a", "cm-b"):
        started.append(start_controller_manager(module_apiserver, *HA_FLAGS, name=name))
    yield started
    for handle in started:
        handle.stop()


@pytest.fixture
async def kube(module_apiserver: ServerHandle) -> AsyncIterator[ApiClient]:
    async with ApiClient(admin_config(module_apiserver)) as client:
        yield client


async def holder(kube: ApiClient) -> str:
    lease = await kube.get(LEASES, "kube-controller-manager", namespace="kube-system")
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


async def the_leader(managers: list[ManagerHandle]) -> ManagerHandle | None:
    leaders = [m for m in managers if m.alive() and await trio.to_thread.run_sync(m.is_leader)]
    return leaders[0] if len(leaders) == 1 else None


class PodCount:
    """Follows the namespace's pods and remembers the most that were ever active at once."""

    def __init__(self) -> None:
        self.pods: dict[str, Obj] = {}
        self.most = 0

    @property
    def active(self) -> int:
        return len(pods_of(list(self.pods.values())))

    async def run(
        self,
        kube: ApiClient,
        ns: str,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listed = await kube.list(PODS, namespace=ns)
        self.pods = {p["metadata"]["name"]: p for p in listed["items"]}
        async with kube.watch(
            PODS,
            namespace=ns,
            timeout_seconds=600,
            resource_version=listed["metadata"]["resourceVersion"],
        ) as events:
            task_status.started()
            async for etype, obj in events:
                if etype == "DELETED":
                    self.pods.pop(obj["metadata"]["name"], None)
                elif etype in ("ADDED", "MODIFIED"):
                    self.pods[obj["metadata"]["name"]] = obj
                self.most = max(self.most, self.active)


async def test_standby_takes_over_a_scale_up_without_duplicates(
    kube: ApiClient,
    managers: list[ManagerHandle],
    module_apiserver: ServerHandle,
    nursery: trio.Nursery,
) -> None:
    ns = await create_namespace(kube, "ha")
    kubelet = FakeKubelet(kube, ns, ["node-1", "node-2"])
    await nursery.start(kubelet.run)
    await kube.create(DEPLOYMENTS, deployment("web", 1), namespace=ns)
    leader = await wait_for(lambda: the_leader(managers), timeout=30, message="one leader")
    [standby] = [m for m in managers if m is not leader]
    first_holder = await holder(kube)

    async def available(n: int) -> bool:
        d = await kube.get(DEPLOYMENTS, "web", namespace=ns)
        return int((d.get("status") or {}).get("availableReplicas") or 0) == n

    await wait_for(lambda: available(1), message="first replica")
    count = PodCount()
    await nursery.start(count.run, kube, ns)
    await kube.patch(DEPLOYMENTS, "web", {"spec": {"replicas": TARGET}}, namespace=ns)
    await wait_for(lambda: count.active >= 8, interval=0.02, message="scale-up under way")
    await trio.to_thread.run_sync(leader.kill9)
    killed_at = trio.current_time()
    at_kill = count.active
    assert at_kill < TARGET, "the leader must die in the middle of the scale-up"

    async def new_holder() -> str | None:
        current = await holder(kube)
        return current if current not in ("", first_holder) else None

    await wait_for(new_holder, timeout=LEASE * 4, interval=0.05, message="a new leader")
    took = trio.current_time() - killed_at
    # The standby waits out the lease from its last sighting of a renewal, then retries
    # every retry period (jittered by up to 1.2x); a second covers the requests.
    assert took <= LEASE + (1 + 1.2) * RETRY + 1.0, took
    assert await trio.to_thread.run_sync(standby.is_leader)

    await wait_for(lambda: available(TARGET), timeout=90, message=f"{TARGET} available")
    await trio.sleep(1.0)  # a late duplicate would show up now
    assert count.active == TARGET
    assert count.most == TARGET, f"at some moment {count.most} pods existed"
    pods = pods_of((await kube.list(PODS, namespace=ns))["items"])
    assert len(pods) == TARGET


async def test_clean_shutdown_hands_over_at_once(
    kube: ApiClient, managers: list[ManagerHandle]
) -> None:
    leader = await wait_for(lambda: the_leader(managers), timeout=30, message="one leader")
    [standby] = [m for m in managers if m is not leader]
    before = await holder(kube)
    stopped_at = trio.current_time()
    await trio.to_thread.run_sync(leader.stop)

    async def taken() -> bool:
        return await holder(kube) not in ("", before)

    await wait_for(taken, timeout=LEASE * 2, interval=0.05, message="handover")
    # Released, so the standby need not wait out the lease.
    assert trio.current_time() - stopped_at < LEASE
    assert await trio.to_thread.run_sync(standby.is_leader)
