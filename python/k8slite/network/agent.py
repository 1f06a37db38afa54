"""The node network agent: connects this node's pod bridge to every other node's pod CIDR.

It follows Node objects through an informer and, on each change (and every resync
period), makes the host match them: the bridge `k8slite0` holds the gateway of this node's
spec.podCIDR; each other node's pod CIDR is routed to that node, directly to its address
(host-gw, all nodes on one L2 segment) or over a VXLAN device (any IP network between
them); traffic from pods to outside the pod network is masqueraded. What it needs from the
others it reads from their Nodes: podCIDR, the InternalIP and, for VXLAN, the MAC of their
VXLAN device, which each agent publishes in its own Node's annotations.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from k8slite.client import (
    ApiClient,
    ApiConnectionError,
    ApiError,
    SharedInformerFactory,
    load_kubeconfig,
)
from k8slite.client.resource import NODES
from k8slite.component.objects import Obj
from k8slite.component.serving import PING, Check, ComponentServer, ServingOptions, serve
from k8slite.network import ipcmd, routes
from k8slite.network.bridge import DEFAULT_BRIDGE, ensure_bridge
from k8slite.network.metrics import AgentMetrics

log = logging.getLogger(__name__)

BACKENDS = ("host-gw", "vxlan")
_PREFIX = "network.k8slite.io/"
BACKEND_TYPE = _PREFIX + "backend-type"
PUBLIC_IP = _PREFIX + "public-ip"
VTEP_MAC = _PREFIX + "vtep-mac"
_RETRY = 1.0
_API_ERRORS = (ApiError, ApiConnectionError)


@dataclass
class AgentConfig:
    node_name: str
    cluster_cidr: str
    kubeconfig: Path | None = None
    backend: str = "host-gw"
    bridge: str = DEFAULT_BRIDGE
    # The address other nodes reach this one at (default: the Node's InternalIP).
    public_ip: str | None = None
    vni: int = 1
    resync_period: float = 30.0
    metrics_bind_address: str = "127.0.0.1:10271"


@dataclass
class AgentServing:
    url: str


def internal_ip(node: Obj) -> str | None:
    for a in (node.get("status") or {}).get("addresses") or ():
        if a.get("type") == "InternalIP" and ":" not in str(a.get("address", "")):
            return str(a["address"])
    return None


def pod_cidr(node: Obj) -> str | None:
    """The node's IPv4 pod CIDR (dual-stack nodes: the IPv4 one)."""
    spec = node.get("spec") or {}
    for cidr in spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []):
        if ":" not in cidr:
            return str(cidr)
    return None


def peer_of(node: Obj) -> routes.Peer | None:
    """What routing to a node needs, or None while it lacks a pod CIDR or an address."""
    annotations = (node.get("metadata") or {}).get("annotations") or {}
    cidr, ip = pod_cidr(node), annotations.get(PUBLIC_IP) or internal_ip(node)
    if not cidr or not ip:
        return None
    mac = annotations.get(VTEP_MAC, "") if annotations.get(BACKEND_TYPE) == "vxlan" else ""
    return routes.Peer(node["metadata"]["name"], cidr, ip, mac)


class NodeNetworkAgent:
    """One sync makes the host match the Nodes in the informer's cache (level-based)."""

    def __init__(self, config: AgentConfig, client: ApiClient, metrics: AgentMetrics) -> None:
        if config.backend not in BACKENDS:
            raise ValueError(f"unknown backend {config.backend!r}; choose one of {BACKENDS}")
        self.config = config
        self.client = client
        self.metrics = metrics
        self.factory = SharedInformerFactory(client)
        self.nodes = self.factory.informer(NODES)
        self.dirty = trio.Event()
        self.synced = False
        self.last_error = ""
        self._masquerade_applied = -float("inf")  # when the table was last written
        self._vxlan_cleared = False  # host-gw: a VXLAN device left by an earlier run removed
        self._off_link: set[str] = set()
        self.nodes.add_event_handler(
            on_add=lambda _: self.dirty.set(),
            on_update=lambda old, new: self._changed(old, new),
            on_delete=lambda _: self.dirty.set(),
        )

    def _changed(self, old: Obj, new: Obj) -> None:
        # Status heartbeats change nothing we route by.
        annotations = [(o.get("metadata") or {}).get("annotations") for o in (old, new)]
        if peer_of(old) != peer_of(new) or annotations[0] != annotations[1]:
            self.dirty.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        ipcmd.enable_forwarding()
        async with trio.open_nursery() as nursery:
            await self.factory.start(nursery)
            await self.factory.wait_for_cache_sync()
            task_status.started()
            while True:
                self.dirty = trio.Event()
                try:
                    await self.sync()
                    period = self.config.resync_period
                except (ipcmd.NetworkError, *_API_ERRORS) as e:
                    self.metrics.sync_failures.inc()
                    self.last_error = str(e)
                    log.warning("sync failed: %s; retrying in %.0fs", e, _RETRY)
                    period = _RETRY
                with trio.move_on_after(period):
                    await self.dirty.wait()

    async def sync(self) -> None:
        c = self.config
        start = time.perf_counter()
        own = self.nodes.get(c.node_name)
        cidr = pod_cidr(own) if own else None
        public_ip = c.public_ip or (internal_ip(own) if own else None)
        if own is None or not cidr or not public_ip:
            log.info("node %s has no pod CIDR or InternalIP yet; waiting", c.node_name)
            return
        uplink, mtu = await routes.device_of(public_ip)
        peers = self._peers()
        annotations = {BACKEND_TYPE: c.backend, PUBLIC_IP: public_ip}
        if c.backend == "vxlan":
            mtu -= routes.VXLAN_OVERHEAD
            mac = await routes.ensure_vxlan(c.vni, public_ip, uplink, mtu, cidr)
            annotations[VTEP_MAC] = mac
            device = routes.vxlan_device(c.vni)
            changes = await routes.sync_vxlan_peers(device, peers)
            changes += await routes.sync_routes(routes.vxlan_routes(peers, device))
        else:
            if not self._vxlan_cleared:
                await routes.remove_vxlan(c.vni)
                self._vxlan_cleared = True
            peers = self._on_link(peers, await routes.connected_networks(uplink))
            changes = await routes.sync_routes(routes.host_gw_routes(peers))
        await ensure_bridge(c.bridge, cidr, mtu)
        # Rewritten whole at start and once a resync period (one atomic transaction), so a
        # table someone flushed comes back.
        if time.monotonic() - self._masquerade_applied >= c.resync_period:
            await routes.apply_masquerade(c.cluster_cidr)
            self._masquerade_applied = time.monotonic()
        await self._publish(own, annotations)
        self.metrics.changes.inc(changes)
        self.metrics.peers.set(len(peers))
        self.metrics.sync_duration.observe(time.perf_counter() - start)
        self.metrics.last_sync.set(time.time())
        if changes or not self.synced:
            log.info(
                "synced %s: pod CIDR %s on %s, %d other nodes, %d kernel changes",
                c.backend,
                cidr,
                c.bridge,
                len(peers),
                changes,
            )
        self.synced = True
        self.last_error = ""

    def _on_link(
        self, peers: list[routes.Peer], networks: list[ipaddress.IPv4Network]
    ) -> list[routes.Peer]:
        """host-gw routes only to nodes on our own subnet (as flannel's host-gw); the others
        are said once each: they need --backend vxlan."""
        out = []
        for peer in peers:
            if any(ipaddress.ip_address(peer.public_ip) in net for net in networks):
                out.append(peer)
            elif peer.name not in self._off_link:
                log.warning(
                    "node %s (%s) is not on this node's subnet: host-gw cannot route its pod "
                    "CIDR %s; use --backend vxlan",
                    peer.name,
                    peer.public_ip,
                    peer.pod_cidr,
                )
                self._off_link.add(peer.name)
        return out

    def _peers(self) -> list[routes.Peer]:
        out = []
        for node in self.nodes.list():
            if node["metadata"]["name"] == self.config.node_name:
                continue
            peer = peer_of(node)
            if peer is not None:
                out.append(peer)
        return sorted(out, key=lambda p: p.name)

    async def _publish(self, own: Obj, annotations: dict[str, str]) -> None:
        """Our backend, address and VTEP on our Node, for the other agents to read."""
        have = (own.get("metadata") or {}).get("annotations") or {}
        patch: dict[str, str | None] = {k: v for k, v in annotations.items() if have.get(k) != v}
        if VTEP_MAC in have and VTEP_MAC not in annotations:
            patch[VTEP_MAC] = None  # left from a run in VXLAN mode: a merge patch removes it
        if patch:
            await self.client.patch(
                NODES, self.config.node_name, {"metadata": {"annotations": patch}}
            )


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def run(
    config: AgentConfig, *, task_status: trio.TaskStatus[AgentServing] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the agent until cancelled; reports where /metrics and /healthz are served."""
    metrics = AgentMetrics()
    async with ApiClient(load_kubeconfig(config.kubeconfig)) as client:
        agent = NodeNetworkAgent(config, client, metrics)

        def not_synced() -> str | None:
            if agent.synced:
                return None
            return agent.last_error or "the node's network is not programmed yet"

        app = ComponentServer(
            checks={
                "/healthz": (PING,),
                "/livez": (PING,),
                "/readyz": (PING, Check("network-programmed", not_synced)),
            },
            registry=metrics.registry,
            configz={"netagent": lambda: config},
        )
        host, port = _host_port(config.metrics_bind_address)
        async with trio.open_nursery() as nursery:
            url, _ = await nursery.start(serve, app, ServingOptions(host, port, secure=False))
            await nursery.start(agent.run)
            task_status.started(AgentServing(url))


async def cleanup(config: AgentConfig) -> None:
    """Remove what the agent made: its routes, the VXLAN device, the masquerade table and
    the bridge (for when the node leaves the pod network for good)."""
    await routes.sync_routes({})
    await routes.remove_vxlan(config.vni)
    await routes.remove_masquerade()
    await ipcmd.ignore_missing("link", "del", config.bridge)
