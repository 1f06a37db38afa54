"""Hollow nodes: thousands of fake-runtime kubelets in one process, for scale tests.

Every hollow node has its own Node, Lease heartbeat and pod workers over a FakeRuntime, but
they share a few API clients (HTTP/2 connections, node i on client i mod their number),
one pod informer (all bound pods, handed to the node they are bound to) and one scheduler
of heartbeats, so a node costs a few kilobytes and no task of its own while idle.

Why several connections: hypercorn writes all of one HTTP/2 connection's responses from
one task, so on a busy API server (benches/density.py at 1,000 nodes) a single connection
made the hollow nodes' requests wait 5-11 s at the median (p99 28-42 s) where the other
components' HTTP/1.1 requests waited 0.6-0.8 s: heartbeats came 2 minutes apart, nodes
went Unknown and their pods were evicted. Real kubelets each have a connection of their own.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from k8slite.client import ApiClient, DeletedFinalStateUnknown, SharedInformerFactory
from k8slite.client.informer import strip_managed_fields
from k8slite.client.resource import PODS
from k8slite.component.events import EventBroadcaster, EventRecorder
from k8slite.component.objects import Obj
from k8slite.kubelet.config import KubeletConfig
from k8slite.kubelet.containers import WorkerEnv
from k8slite.kubelet.kubelet import image_list
from k8slite.kubelet.machine import NodeInfo, architecture
from k8slite.kubelet.node import API_ERRORS, NodeStatusManager
from k8slite.kubelet.podworkers import PodWorkers
from k8slite.kubelet.runtime.fake import FakeRuntime

log = logging.getLogger(__name__)

# What a hollow node says it has, unless --capacity says otherwise.
DEFAULT_CAPACITY = {
    "cpu": "4",
    "memory": "16Gi",
    "ephemeral-storage": "100Gi",
    "pods": "110",
    "hugepages-1Gi": "0",
    "hugepages-2Mi": "0",
}
# Pod CIDRs of hollow nodes: one /24 each out of this range (shared address space, so no
# hollow pod IP is anybody's real address).
DEFAULT_POD_CIDR_BASE = "100.64.0.0/10"


@dataclass
class HollowNodesConfig:
    count: int
    template: KubeletConfig  # node_name is the prefix; per-node fields are filled in
    pod_cidr_base: str = DEFAULT_POD_CIDR_BASE
    # Requests in flight at once for heartbeats, status and registration.
    concurrency: int = 32
    # How long containers of run-to-completion pods (Jobs) run before exiting 0.
    completion_seconds: float = 1.0


class HollowNode:
    """One simulated kubelet: a Node, its Lease, and pod workers over a fake runtime."""

    __slots__ = ("name", "node", "runtime", "workers")

    def __init__(
        self,
        client: ApiClient,
        config: KubeletConfig,
        info: NodeInfo,
        capacity: dict[str, str],
        events: EventRecorder,
        completion_seconds: float,
    ) -> None:
        self.name = config.node_name
        self.runtime = FakeRuntime(
            config.node_name,
            pod_cidr=config.pod_cidr or "10.0.0.0/24",
            node_ip=config.node_ip,
            completion_seconds=completion_seconds,
            # Hollow workers sleep until told: wake the pod's when its container exits.
            on_exit_due=lambda uid, seconds: self.workers.wake_after(uid, seconds + 0.01),
        )
        self.workers = PodWorkers(
            WorkerEnv(
                config=config,
                client=client,
                runtime=self.runtime,
                events=events,
                allocatable=capacity,
            )
        )
        self.node = NodeStatusManager(
            client,
            config,
            info=info,
            capacity=capacity,
            runtime_version="fake://0.1.0",
            kubelet_port=0,
            images=lambda: image_list(self.runtime),
        )


def node_configs(config: HollowNodesConfig) -> list[KubeletConfig]:
    base = ipaddress.ip_network(config.pod_cidr_base)
    subnets = base.subnets(new_prefix=24)
    out = []
    for i in range(config.count):
        cidr = str(next(subnets))
        out.append(
            dataclasses.replace(
                config.template,
                node_name=f"{config.template.node_name}{i}",
                pod_cidr=cidr,
                runtime="fake",
                port=None,
                healthz_port=None,
                sync_frequency=0.0,
            )
        )
    return out


class HollowNodes:
    """Runs many HollowNodes; `run()` reports once all are registered with a Lease."""

    def __init__(self, clients: ApiClient | list[ApiClient], config: HollowNodesConfig) -> None:
        clients = clients if isinstance(clients, list) else [clients]
        client = self.client = clients[0]
        self.config = config
        t = config.template
        self.info = NodeInfo(
            machine_id="",
            system_uuid="",
            boot_id="hollow",
            kernel_version="hollow",
            os_image="K8s-Lite hollow node",
            operating_system="linux",
            architecture=architecture(),
        )
        capacity = {**DEFAULT_CAPACITY, "pods": str(t.max_pods), **t.capacity}
        # One broadcaster for all: one writer task, and its queue bounds what a burst costs.
        self.events = EventBroadcaster(client)
        self.nodes = [
            HollowNode(
                clients[i % len(clients)],
                c,
                self.info,
                capacity,
                self.events.recorder("kubelet", host=c.node_name),
                config.completion_seconds,
            )
            for i, c in enumerate(node_configs(config))
        ]
        self.by_name = {n.name: n for n in self.nodes}
        self.limiter = trio.CapacityLimiter(config.concurrency)

    @property
    def heartbeats(self) -> int:
        return sum(n.node.heartbeats for n in self.nodes)

    def _pod_added(self, pod: Obj) -> None:
        node = self.by_name.get((pod.get("spec") or {}).get("nodeName") or "")
        if node is not None:
            node.workers.update(pod)

    def _pod_deleted(self, pod: Obj | DeletedFinalStateUnknown) -> None:
        obj = pod.obj if isinstance(pod, DeletedFinalStateUnknown) else pod
        node = self.by_name.get((obj.get("spec") or {}).get("nodeName") or "")
        if node is not None:
            node.workers.remove(obj)

    async def _call(self, fn: Callable[[], Awaitable[Any]], token: object) -> None:
        try:
            await fn()
        except API_ERRORS as e:
            log.warning("%s failed: %s", getattr(fn, "__qualname__", fn), e)
        finally:
            self.limiter.release_on_behalf_of(token)

    async def register(self) -> None:
        async def one(node: HollowNode) -> None:
            async with self.limiter:
                await node.node.register()
                delay = 0.1
                while True:
                    try:
                        await node.node.renew_lease()
                        return
                    except API_ERRORS as e:
                        log.warning("node %s: first heartbeat failed: %s", node.name, e)
                    await trio.sleep(delay)
                    delay = min(2 * delay, 5.0)

        async with trio.open_nursery() as nursery:
            for node in self.nodes:
                nursery.start_soon(one, node)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        t = self.config.template
        await self.register()
        log.info("%d hollow nodes registered", len(self.nodes))
        factory = SharedInformerFactory(self.client, transform=strip_managed_fields)
        # Every bound pod: a set of node names is no field selector; filter here.
        pods = factory.informer(PODS, field_selector="spec.nodeName!=")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.events.run)
            for node in self.nodes:
                await nursery.start(node.workers.run)
            pods.add_event_handler(
                on_add=self._pod_added,
                on_update=lambda old, new: self._pod_added(new),
                on_delete=self._pod_deleted,
            )
            await factory.start(nursery)
            await factory.wait_for_cache_sync()
            nursery.start_soon(self._every, t.node_lease_renew_interval, "renew_lease")
            # Nothing changes a hollow node's status but its images, so it is computed only
            # when a report is due anyway (a real kubelet samples every update period).
            nursery.start_soon(self._every, t.node_status_report_frequency, "sync_status")
            task_status.started()

    async def _every(self, period: float, method: str) -> None:
        """Call node.<method>() for every node once per period, spread evenly over it."""
        n = len(self.nodes)
        step = period / max(n, 1)
        due = trio.current_time() + period
        async with trio.open_nursery() as nursery:
            while True:
                for node in self.nodes:
                    await trio.sleep_until(due)
                    due += step
                    # Waiting for a free slot here is the back-pressure: a slow API server
                    # makes heartbeats late rather than piling up requests.
                    token = object()
                    await self.limiter.acquire_on_behalf_of(token)
                    nursery.start_soon(self._call, getattr(node.node, method), token)
