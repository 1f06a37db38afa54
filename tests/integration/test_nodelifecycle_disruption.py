"""Node lifecycle against a real API server and controller manager: when every node of the
cluster goes silent, no NoExecute taint stays or is added (full disruption); once one comes
back the others are tainted at --node-eviction-rate."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from k8slite.client import ApiClient
from k8slite.client.resource import NODES
from k8slite.component.objects import Obj
from tests.conftest import ServerHandle
from tests.integration.controller_harness import (
    ManagerHandle,
    admin_config,
    start_controller_manager,
    wait_for,
)
from tests.integration.test_controllers_nodelifecycle import FakeNodes, condition

GRACE = 3  # --node-monitor-grace-period


@pytest.fixture(scope="module")
def manager(module_apiserver: ServerHandle) -> Iterator[ManagerHandle]:
    handle = start_controller_manager(
        module_apiserver,
        "--node-monitor-period=0.5s",
        f"--node-monitor-grace-period={GRACE}s",
        f"--node-startup-grace-period={GRACE}s",
        "--node-eviction-rate=2",
    )
    yield handle
    handle.stop()


@pytest.fixture
async def kube(module_apiserver: ServerHandle, manager: ManagerHandle) -> AsyncIterator[ApiClient]:
    async with ApiClient(admin_config(module_apiserver)) as client:
        yield client


def taint_pairs(node: Obj) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints") or ()}


UNREACHABLE_NO_EXECUTE = ("node.kubernetes.io/unreachable", "NoExecute")
UNREACHABLE_NO_SCHEDULE = ("node.kubernetes.io/unreachable", "NoSchedule")


async def test_all_nodes_silent_is_no_eviction_then_rate_limited(
    kube: ApiClient, manager: ManagerHandle, nursery: trio.Nursery
) -> None:
    suffix = os.urandom(2).hex()
    names = [f"dz-{suffix}-{i}" for i in range(3)]
    nodes = FakeNodes(kube, names)
    await nodes.register()
    await nursery.start(nodes.run)

    async def metric(name: str) -> float | None:
        text = await trio.to_thread.run_sync(manager.metrics)
        match = re.search(rf'^{name}\{{zone=""\}} (\S+)$', text, re.MULTILINE)
        return float(match.group(1)) if match else None

    async def zone_of_3() -> bool:
        return await metric("node_collector_zone_size") == 3

    await wait_for(zone_of_3, timeout=30, message="a zone of 3 nodes")

    # One node goes silent first: its zone is Normal (1 of 3), so it is tainted.
    nodes.silent.add(names[0])

    async def first_tainted() -> bool:
        return UNREACHABLE_NO_EXECUTE in taint_pairs(await kube.get(NODES, names[0]))

    await wait_for(first_tainted, timeout=GRACE + 30, message="the first lost node tainted")

    # Then every node: Unknown and NoSchedule-tainted, and no NoExecute taint left.
    nodes.silent.update(names)

    async def all_unknown_and_unschedulable() -> bool:
        for name in names:
            node = await kube.get(NODES, name)
            if condition(node, "Ready").get("status") != "Unknown":
                return False
            if UNREACHABLE_NO_SCHEDULE not in taint_pairs(node):
                return False
        return True

    await wait_for(all_unknown_and_unschedulable, timeout=GRACE + 30, message="all Unknown")

    async def health_zero() -> bool:
        return await metric("node_collector_zone_health") == 0

    await wait_for(health_zero, timeout=20, message="zone health 0")

    # Full disruption takes the first node's taint away.
    async def none_tainted() -> bool:
        for name in names:
            if UNREACHABLE_NO_EXECUTE in taint_pairs(await kube.get(NODES, name)):
                return False
        return True

    await wait_for(none_tainted, timeout=20, message="no NoExecute taint")
    # At 2 nodes/s an undamped queue would taint them within a second; watch for 3.
    with trio.move_on_after(3):
        while True:
            for name in names:
                node = await kube.get(NODES, name)
                assert UNREACHABLE_NO_EXECUTE not in taint_pairs(node), "full disruption"
            await trio.sleep(0.2)

    # One node comes back: the zone (3 nodes, 2 not ready) is Normal; the other two are
    # tainted at the eviction rate.
    before = await metric("node_collector_evictions_total") or 0
    back, lost = names[0], names[1:]
    nodes.silent.discard(back)
    await nodes.post_ready(back)

    async def lost_tainted() -> bool:
        for name in lost:
            if UNREACHABLE_NO_EXECUTE not in taint_pairs(await kube.get(NODES, name)):
                return False
        return True

    await wait_for(lost_tainted, timeout=30, message="the lost nodes NoExecute-tainted")
    assert UNREACHABLE_NO_EXECUTE not in taint_pairs(await kube.get(NODES, back))
    assert await metric("node_collector_evictions_total") == before + 2
