"""A small real cluster around a test API server: a controller manager, the scheduler and
kubelets (fake runtime unless told otherwise), for tests and benches that need pods
scheduled and run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from k8slite.client import ApiClient
from k8slite.client.resource import NODES
from tests.conftest import ServerHandle
from tests.integration.controller_harness import ManagerHandle, start_controller_manager
from tests.integration.kubelet_harness import (
    KubeletProcess,
    remove_docker_leftovers,
    retire_node,
    unique_node,
    wait_idle,
)
from tests.integration.test_scheduler import SchedulerProcess, start_scheduler


@contextlib.contextmanager
def nodes_with_control_plane(
    server: ServerHandle,
    workdir: Path,
    prefix: str,
    count: int = 2,
    runtime: str = "fake",
    *,
    manager_flags: tuple[str, ...] = (),
    kubelet_flags: tuple[str, ...] = (),
) -> Iterator[list[str]]:
    """Start the controller manager, the scheduler and `count` kubelets of `runtime` (with
    these extra flags); yield the node names; stop them all on the way out. Real runtimes'
    pods are deleted first (and for Docker the containers and pod network removed), so
    nothing is left running."""
    manager: ManagerHandle = start_controller_manager(server, *manager_flags)
    scheduler: SchedulerProcess | None = None
    kubelets: list[KubeletProcess] = []
    network = f"k8slite-t-{unique_node(prefix)}"
    extra = ("--docker-network", network) if runtime == "docker" else ()
    try:
        scheduler = start_scheduler(server, workdir / "scheduler.log")
        for i in range(count):
            (workdir / f"k{i}").mkdir()
            kubelet = KubeletProcess(
                server, unique_node(prefix), runtime, workdir / f"k{i}", *extra, *kubelet_flags
            )
            kubelets.append(kubelet)
            kubelet.start()
        yield [k.node for k in kubelets]
    finally:
        for kubelet in kubelets:
            if runtime != "fake" and kubelet.proc is not None:
                retire_node(server, kubelet.node, timeout=300)
                wait_idle(kubelet, timeout=300)
            kubelet.stop()
        if runtime == "docker":
            remove_docker_leftovers([k.node for k in kubelets], network)
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
