"""A small real cluster around a test API server: a controller manager, the scheduler and
fake-runtime kubelets, for tests that need pods scheduled and run on several nodes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from k8slite.client import ApiClient
from k8slite.client.resource import NODES
from tests.conftest import ServerHandle
from tests.integration.controller_harness import ManagerHandle, start_controller_manager
from tests.integration.kubelet_harness import KubeletProcess, unique_node
from tests.integration.test_scheduler import SchedulerProcess, start_scheduler


@contextlib.contextmanager
def nodes_with_control_plane(
    server: ServerHandle,
    workdir: Path,
    prefix: str,
    count: int = 2,
    *,
    manager_flags: tuple[str, ...] = (),
    kubelet_flags: tuple[str, ...] = (),
) -> Iterator[list[str]]:
    """Start the controller manager, the scheduler and `count` fake-runtime kubelets (with
    these extra flags); yield the node names; stop them all on the way out."""
    manager: ManagerHandle = start_controller_manager(server, *manager_flags)
    scheduler: SchedulerProcess | None = None
    kubelets: list[KubeletProcess] = []
    try:
        scheduler = start_scheduler(server, workdir / "scheduler.log")
        for i in range(count):
            (workdir / f"k{i}").mkdir()
            kubelet = KubeletProcess(
                server, unique_node(prefix), "fake", workdir / f"k{i}", *kubelet_flags
            )
            kubelet.start()
            kubelets.append(kubelet)
        yield [k.node for k in kubelets]
    finally:
        for kubelet in kubelets:
            kubelet.stop()
        if scheduler is not None:
            scheduler.stop()
        manager.stop()


async def ready_nodes(kube: ApiClient, nodes: list[str]) -> bool:
    """True once every named node reports Ready."""
    for name in nodes:
        node = await kube.get(NODES, name)
        conditions = (node.get("status") or {}).get("conditions") or ()
        if not any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return False
    return True
