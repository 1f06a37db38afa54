"""The proxy: watches Services and EndpointSlices and keeps a proxier's rules in step."""

from __future__ import annotations

import ipaddress
import json
import logging
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import trio

from k8slite.client import (
    ApiClient,
    DeletedFinalStateUnknown,
    SharedInformerFactory,
    load_kubeconfig,
    object_key,
)
from k8slite.client.resource import ENDPOINTSLICES, NODES, SERVICES
from k8slite.component.events import NORMAL, EventBroadcaster
from k8slite.component.objects import Obj, annotations_of, labels_of, meta
from k8slite.component.serving import (
    ComponentServer,
    Request,
    Response,
    ServingOptions,
    serve,
    split_host_port,
)
from k8slite.proxy.metrics import ProxyMetrics
from k8slite.proxy.nftables import NftablesConfig, NftablesProxier
from k8slite.proxy.routing import Network, RoutingError, ServiceRangeGuard, parse_ranges
from k8slite.proxy.serviceports import SERVICE_NAME_LABEL, ServicePort, service_ports
from k8slite.proxy.userspace import UserspaceProxier

log = logging.getLogger(__name__)

TRIGGER_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
_SERVICE_INDEX = "service"
MODES = ("userspace", "nftables")
# After a sync that could not apply everything, try again this soon.
_RETRY_AFTER = 1.0


@dataclass
class ProxyConfig:
    kubeconfig: Path | None = None
    mode: str = "userspace"
    hostname: str = "localhost"
    service_cluster_ip_range: str = "10.96.0.0/12"
    cluster_cidr: str | None = None
    masquerade_all: bool = False
    # Empty: NodePorts answer on all of the host's addresses. "primary": on the Node's
    # InternalIPs. Otherwise CIDRs: on the host's addresses inside them.
    nodeport_addresses: list[str] = field(default_factory=list)
    metrics_bind_address: str = "127.0.0.1:10249"
    healthz_bind_address: str = "0.0.0.0:10256"
    # At most one sync per min_sync_period (bursts of changes are batched); a full resync
    # at least every sync_period.
    min_sync_period: float = 0.1
    sync_period: float = 30.0


@dataclass
class ProxyServing:
    """What run() reports once the first sync is done."""

    metrics: tuple[str, int]
    healthz: tuple[str, int]


class Proxier(Protocol):
    mode: str

    async def run(self, *, task_status: trio.TaskStatus[None] = ...) -> None: ...

    async def sync(
        self, ports: list[ServicePort], nodeport_ips: tuple[str, ...] | None
    ) -> bool: ...

    async def cleanup(self) -> None: ...


def _service_index(obj: Obj) -> list[str]:
    name = labels_of(obj).get(SERVICE_NAME_LABEL)
    return [f"{meta(obj).get('namespace')}/{name}"] if name else []


def _trigger_time(new: Obj, old: Obj | None) -> float:
    """When the change behind this EndpointSlice update happened (wall clock seconds)."""
    value = annotations_of(new).get(TRIGGER_ANNOTATION)
    previous = annotations_of(old or {}).get(TRIGGER_ANNOTATION)
    if value and value != previous:
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            pass
    return time.time()


async def local_addresses() -> list[str]:
    """The host's interface addresses (`ip -j addr`)."""
    done = await trio.run_process(["ip", "-j", "addr", "show"], capture_stdout=True)
    out = []
    for link in json.loads(done.stdout or b"[]"):
        for info in link.get("addr_info") or ():
            if info.get("local"):
                out.append(str(info["local"]))
    return out


def make_proxier(
    config: ProxyConfig, metrics: ProxyMetrics, ranges: list[Network]
) -> UserspaceProxier | NftablesProxier:
    if config.mode == "userspace":
        return UserspaceProxier(metrics)
    if config.mode == "nftables":
        cidr = ipaddress.ip_network(config.cluster_cidr) if config.cluster_cidr else None
        return NftablesProxier(
            NftablesConfig(ranges, cluster_cidr=cidr, masquerade_all=config.masquerade_all)
        )
    raise ValueError(f"unknown proxy mode {config.mode!r}; want one of {', '.join(MODES)}")


class Proxy:
    """Turns the informers' view into service ports and hands them to the proxier."""

    def __init__(
        self,
        config: ProxyConfig,
        client: ApiClient,
        proxier: Proxier,
        guard: ServiceRangeGuard,
        metrics: ProxyMetrics,
    ) -> None:
        self.config = config
        self.client = client
        self.proxier = proxier
        self.guard = guard
        self.metrics = metrics
        factory = SharedInformerFactory(client)
        self.factory = factory
        self.services = factory.informer(SERVICES)
        self.slices = factory.informer(ENDPOINTSLICES, indexers={_SERVICE_INDEX: _service_index})
        self.nodes = (
            factory.informer(NODES, field_selector=f"metadata.name={config.hostname}")
            if config.nodeport_addresses == ["primary"]
            else None
        )
        # Service keys whose ports must be recomputed, and when their change began.
        self._dirty: set[str] = set()
        self._triggers: dict[str, float] = {}
        self._ports: dict[str, list[ServicePort]] = {}
        self._reported: dict[str, tuple[str, ...]] = {}
        self._wake = trio.Event()
        self.last_synced: float | None = None  # wall clock of the last successful sync
        self._pending_since: float | None = None
        self._watch_handlers()

    # ------------------------------------------------------------------ changes

    def _watch_handlers(self) -> None:
        def service_changed(obj: Obj | DeletedFinalStateUnknown, *_: Any) -> None:
            self.metrics.service_changes.inc()
            self._mark(object_key(obj), time.time())

        def slice_changed(new: Obj | DeletedFinalStateUnknown, old: Obj | None = None) -> None:
            self.metrics.endpoint_changes.inc()
            obj = new.obj if isinstance(new, DeletedFinalStateUnknown) else new
            when = (
                _trigger_time(obj, old)
                if not isinstance(new, DeletedFinalStateUnknown)
                else time.time()
            )
            for key in _service_index(obj) + (_service_index(old) if old else []):
                self._mark(key, when)

        self.services.add_event_handler(
            on_add=service_changed,
            on_update=lambda old, new: service_changed(new),
            on_delete=service_changed,
        )
        self.slices.add_event_handler(
            on_add=slice_changed,
            on_update=lambda old, new: slice_changed(new, old),
            on_delete=slice_changed,
        )
        if self.nodes is not None:
            self.nodes.add_event_handler(
                on_add=lambda _: self._wake.set(),
                on_update=lambda *_: self._wake.set(),
                on_delete=lambda _: self._wake.set(),
            )

    def _mark(self, key: str, when: float) -> None:
        self._dirty.add(key)
        self._triggers[key] = min(when, self._triggers.get(key, when))
        if self._pending_since is None:
            self._pending_since = time.time()
        self._wake.set()

    # --------------------------------------------------------------------- sync

    def _recompute(self, keys: Iterable[str]) -> None:
        for key in keys:
            namespace, _, name = key.partition("/")
            service = self.services.get(name, namespace)
            if service is None:
                self._ports.pop(key, None)
                self._reported.pop(key, None)
                continue
            slices = self.slices.indexer.by_index(_SERVICE_INDEX, key)
            ports, problems = service_ports(service, slices, self.guard.__contains__)
            self._ports[key] = ports
            if problems and tuple(problems) != self._reported.get(key):
                for problem in problems:
                    log.warning("service %s: %s; not proxied", key, problem)
            self._reported[key] = tuple(problems)

    async def _nodeport_ips(self) -> tuple[str, ...] | None:
        wanted = self.config.nodeport_addresses
        if not wanted:
            return None
        if wanted == ["primary"]:
            assert self.nodes is not None
            node = self.nodes.get(self.config.hostname)
            addresses = ((node or {}).get("status") or {}).get("addresses") or ()
            return tuple(
                a["address"]
                for a in addresses
                if a.get("type") == "InternalIP" and a.get("address")
            )
        nets = [ipaddress.ip_network(c, strict=False) for c in wanted]
        return tuple(
            ip for ip in await local_addresses() if any(ipaddress.ip_address(ip) in n for n in nets)
        )

    async def sync_once(self) -> bool:
        dirty, self._dirty = self._dirty, set()
        triggers, self._triggers = self._triggers, {}
        self._wake = trio.Event()
        started = time.perf_counter()
        self._recompute(dirty)
        ports = [sp for key in sorted(self._ports) for sp in self._ports[key]]
        ok = await self.proxier.sync(ports, await self._nodeport_ips())
        self.metrics.sync_duration.observe(time.perf_counter() - started)
        now = time.time()
        if not ok:
            self.metrics.sync_failures.inc()
            for key, when in triggers.items():  # still to be programmed
                self._triggers[key] = min(when, self._triggers.get(key, when))
            return False
        self.metrics.last_sync.set(now)
        self.metrics.service_ports.set(len(ports))
        if self.last_synced is not None:
            # Not for the first sync: the initial list replays changes made long before
            # this proxy started, which says nothing about how fast it programs.
            for when in triggers.values():
                self.metrics.programming_duration.observe(max(0.0, now - when))
        self.last_synced = now
        self._pending_since = time.time() if self._dirty else None
        return True

    async def run_sync_loop(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Sync now, then on every change (batched by min_sync_period) and every sync_period."""
        self._dirty |= {object_key(s) for s in self.services.list()}
        last_guard_check = trio.current_time()
        started = False
        while True:
            ok = await self.sync_once()
            if not started:
                task_status.started()
                started = True
            next_sync = trio.current_time() + self.config.min_sync_period
            with trio.move_on_after(self.config.sync_period if ok else _RETRY_AFTER):
                await self._wake.wait()
            await trio.sleep_until(next_sync)
            if trio.current_time() - last_guard_check >= self.config.sync_period:
                # Someone may have removed the route; put it back or stop.
                await self.guard.ensure()
                last_guard_check = trio.current_time()

    # ------------------------------------------------------------------ health

    async def healthz(self, req: Request) -> Response:
        """Upstream's shape: healthy once synced, and while no change waits too long."""
        now = time.time()
        stale = (
            self._pending_since is not None
            and now - self._pending_since > 2 * self.config.sync_period
        )
        healthy = self.last_synced is not None and not stale
        body = {
            "lastUpdated": _rfc3339(self.last_synced),
            "currentTime": _rfc3339(now),
            "nodeName": self.config.hostname,
            "nodeHealthy": healthy,
        }
        return Response(200 if healthy else 503, json.dumps(body).encode(), "application/json")


def _rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts).astimezone().isoformat()


async def run(
    config: ProxyConfig, *, task_status: trio.TaskStatus[ProxyServing] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the proxy until cancelled; reports where metrics and healthz listen after the
    first sync."""
    ranges = parse_ranges(config.service_cluster_ip_range)
    guard = ServiceRangeGuard(ranges)
    await guard.ensure()  # before anything else: no service packet may leave the machine
    log.info("service range %s routed to this host", config.service_cluster_ip_range)
    metrics = ProxyMetrics()
    proxier = make_proxier(config, metrics, ranges)
    if isinstance(proxier, NftablesProxier):
        await proxier.check()
    elif shutil.which("nft"):
        # Rules an nftables-mode proxy left behind (killed, not stopped) would still
        # rewrite service traffic, to endpoints that may be long gone.
        await NftablesProxier(NftablesConfig(ranges)).cleanup()
    async with ApiClient(load_kubeconfig(config.kubeconfig)) as client:
        proxy = Proxy(config, client, proxier, guard, metrics)
        async with trio.open_nursery() as nursery:
            # Plain HTTP as upstream's kube-proxy serves them; routes replace the component
            # base's own health checks with the proxy's JSON answer.
            async def proxy_mode(req: Request) -> Response:
                return Response(200, proxier.mode.encode())

            metrics_app = ComponentServer(
                checks={},
                registry=metrics.registry,
                configz={"kubeproxy.config.k8s.io": lambda: config},
                routes={"/healthz": proxy.healthz, "/proxyMode": proxy_mode},
            )
            healthz_app = ComponentServer(
                checks={}, routes={"/healthz": proxy.healthz, "/livez": proxy.healthz}
            )
            metrics_at = await _serve(nursery, metrics_app, config.metrics_bind_address, 10249)
            healthz_at = await _serve(nursery, healthz_app, config.healthz_bind_address, 10256)
            await nursery.start(proxier.run)
            await proxy.factory.start(nursery)
            await proxy.factory.wait_for_cache_sync()
            await nursery.start(proxy.run_sync_loop)
            events = EventBroadcaster(client, registry=metrics.registry)
            nursery.start_soon(events.run)
            # As upstream's kube-proxy: an Event on our Node, whose reference has the
            # hostname for uid.
            node = {
                "kind": "Node",
                "apiVersion": "v1",
                "metadata": {"name": config.hostname, "uid": config.hostname},
            }
            recorder = events.recorder("kube-proxy", host=config.hostname)
            recorder.event(node, NORMAL, "Starting", "Starting k8slite-proxy.")
            log.info("%s proxy synced", proxier.mode)
            task_status.started(ProxyServing(metrics_at, healthz_at))


async def _serve(
    nursery: trio.Nursery, app: ComponentServer, address: str, default_port: int
) -> tuple[str, int]:
    """Serve `app` on plain HTTP at `address` (port 0 picks one); (host, port) bound."""
    host, port = split_host_port(address, default_port)
    _, bound = await nursery.start(serve, app, ServingOptions(host, port, secure=False))
    return host, bound


async def cleanup(config: ProxyConfig) -> None:
    """`--cleanup`: remove the rules and the routing guard a proxy leaves behind."""
    ranges = parse_ranges(config.service_cluster_ip_range)
    await NftablesProxier(NftablesConfig(ranges)).cleanup()
    await ServiceRangeGuard(ranges).remove()


__all__ = ["MODES", "Proxy", "ProxyConfig", "ProxyServing", "RoutingError", "cleanup", "run"]
