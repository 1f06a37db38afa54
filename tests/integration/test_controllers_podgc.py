"""The pod garbage collector against a real API server and controller manager."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from k8slite.client import ApiClient, NotFound
from k8slite.client.resource import NODES, PODS
from k8slite.component.objects import Obj
from tests.conftest import ServerHandle
from tests.integration.controller_harness import (
    ManagerHandle,
    admin_config,
    create_namespace,
    start_controller_manager,
    wait_for,
)


@pytest.fixture(scope="module")
def manager(module_apiserver: ServerHandle) -> Iterator[ManagerHandle]:
    handle = start_controller_manager(
        module_apiserver,
        "--controllers=pod-garbage-collector",
        "--terminated-pod-gc-threshold=2",
        "--pod-gc-quarantine=1s",
    )
    yield handle
    handle.stop()


@pytest.fixture
async def kube(module_apiserver: ServerHandle, manager: ManagerHandle) -> AsyncIterator[ApiClient]:
    async with ApiClient(admin_config(module_apiserver)) as client:
        yield client


def pod(name: str, node: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox:1.35"}]},
    }


async def exists(kube: ApiClient, ns: str, name: str) -> bool:
    try:
        await kube.get(PODS, name, namespace=ns)
    except NotFound:
        return False
    return True


async def test_pods_of_a_gone_node_are_failed_and_deleted(kube: ApiClient) -> None:
    ns = await create_namespace(kube, "podgc")
    await kube.create(
        NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gc-present"}}
    )
    try:
        created = await kube.create(PODS, pod("orphan", "gc-missing"), namespace=ns)
        await kube.create(PODS, pod("kept", "gc-present"), namespace=ns)
        # Every change of the orphan until it is gone: marked Failed first, then deleted.
        seen: list[Obj] = []
        with trio.fail_after(60):
            async with kube.watch(
                PODS,
                namespace=ns,
                field_selector="metadata.name=orphan",
                resource_version=created["metadata"]["resourceVersion"],
            ) as events:
                async for etype, obj in events:
                    seen.append(obj)
                    if etype == "DELETED":
                        break
        last = seen[-1]
        assert last["status"]["phase"] == "Failed"
        cond = next(c for c in last["status"]["conditions"] if c["type"] == "DisruptionTarget")
        assert (cond["reason"], cond["message"]) == (
            "DeletionByPodGC",
            "PodGC: node no longer exists",
        )
        assert await exists(kube, ns, "kept")
    finally:
        await kube.delete(NODES, "gc-present")


async def test_oldest_terminated_pods_beyond_the_threshold_go(kube: ApiClient) -> None:
    ns = await create_namespace(kube, "podgc")
    names = ["t0", "t1", "t2", "t3"]
    await kube.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gc-node"}})
    try:
        for name in names:
            created = await kube.create(PODS, pod(name, "gc-node"), namespace=ns)
            created["status"] = {"phase": "Succeeded"}
            await kube.update_status(PODS, created)

        async def two_left() -> list[str] | None:
            items = (await kube.list(PODS, namespace=ns))["items"]
            left = sorted(p["metadata"]["name"] for p in items)
            return left if len(left) == 2 else None

        # The threshold is cluster-wide: this namespace's four are the only terminated pods.
        left = await wait_for(two_left, timeout=60, interval=0.2, message="two pods left")
        assert left == ["t2", "t3"]
    finally:
        await kube.delete(NODES, "gc-node")
