"""k8slite-dns as a component: informers, the DNS listeners and the serving endpoints."""

from __future__ import annotations

import gc
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path

import trio

from k8slite.client import ApiClient, SharedInformerFactory, load_kubeconfig
from k8slite.component.serving import (
    PING,
    Check,
    ComponentServer,
    Request,
    Response,
    ServingOptions,
    serve,
    text,
)
from k8slite.dns.cache import AnswerCache
from k8slite.dns.forward import Forwarder, Upstream, without_self
from k8slite.dns.metrics import DnsMetrics
from k8slite.dns.resolve import PodMode, Resolver
from k8slite.dns.server import DnsServer, udp_socket
from k8slite.dns.store import RecordStore
from k8slite.dns.watch import ClusterWatcher

log = logging.getLogger(__name__)

# Until the informers have synced every cluster name would be NXDOMAIN, and clients would
# cache that; so the DNS ports are answered only then (bound at start, so a taken port
# fails at once). After this long, a warning says why not yet.
_SYNC_WARNING = 30.0


@dataclass
class DnsConfig:
    kubeconfig: Path | None = None
    bind_address: str = "0.0.0.0"
    dns_port: int = 53
    cluster_domain: str = "cluster.local"
    upstreams: list[Upstream] = field(default_factory=list)
    pods: PodMode = PodMode.INSECURE
    cache_size: int = 10_000
    serving: ServingOptions = field(default_factory=ServingOptions)


@dataclass
class DnsServing:
    """Where run() listens, reported once the caches have synced."""

    dns: tuple[str, int]
    serving_url: str


def _server_label(host: str, port: int) -> str:
    """CoreDNS's `server` label: dns://:53 for every address, dns://10.0.0.10:53 for one."""
    if host in ("0.0.0.0", "::", ""):
        host = ""
    elif ":" in host:
        host = f"[{host}]"
    return f"dns://{host}:{port}"


def bind_dns(host: str, port: int) -> tuple[socket.socket, list[trio.SocketListener], int]:
    """The UDP socket and TCP listeners on one port (port 0: one free for both)."""
    for _ in range(20):
        udp = udp_socket(host, port)
        bound = udp.getsockname()[1]
        tcp = socket.socket(udp.family, socket.SOCK_STREAM)
        try:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, bound))
            tcp.listen(1024)
        except OSError:
            tcp.close()
            udp.close()
            if port:
                raise
            continue  # the free UDP port is taken for TCP: try another
        return udp, [trio.SocketListener(trio.socket.from_stdlib_socket(tcp))], bound
    raise OSError(f"no port free for both UDP and TCP on {host}")


async def run(
    config: DnsConfig, *, task_status: trio.TaskStatus[DnsServing] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve DNS until cancelled."""
    store = RecordStore(config.cluster_domain)
    resolver = Resolver(store, config.pods)
    udp, listeners, port = bind_dns(config.bind_address, config.dns_port)
    with udp:
        metrics = DnsMetrics(_server_label(config.bind_address, port))
        metrics.records.set_function(lambda: store.record_count)
        upstreams = without_self(config.upstreams, config.bind_address, port)
        if not upstreams:
            log.warning("no upstream resolvers: names outside %s get SERVFAIL", store.zone)
        server = DnsServer(resolver, Forwarder(upstreams), metrics, AnswerCache(config.cache_size))
        async with ApiClient(load_kubeconfig(config.kubeconfig)) as client:
            factory = SharedInformerFactory(client)
            # Its informer handlers keep it alive.
            ClusterWatcher(factory, store, config.pods is PodMode.VERIFIED, metrics)
            synced = trio.Event()

            def not_synced() -> str | None:
                return None if synced.is_set() else "informers have not synced"

            async def coredns_health(req: Request) -> Response:
                return Response(200, b"OK")  # CoreDNS's health plugin: alive

            async def coredns_ready(req: Request) -> Response:
                return Response(200, b"OK") if synced.is_set() else text(503, "kubernetes")

            app = ComponentServer(
                checks={
                    "/healthz": (PING,),
                    "/livez": (PING,),
                    "/readyz": (PING, Check("informer-sync", not_synced)),
                },
                registry=metrics.registry,
                configz={"dns": lambda: config},
                routes={"/health": coredns_health, "/ready": coredns_ready},
                authorize=config.serving.authorizer(),
            )
            async with trio.open_nursery() as nursery:
                serving_url, _ = await nursery.start(serve, app, config.serving)
                await factory.start(nursery)
                with trio.move_on_after(_SYNC_WARNING) as waited:
                    await factory.wait_for_cache_sync()
                if waited.cancelled_caught:
                    log.warning("informers not synced after %.0fs; still waiting", _SYNC_WARNING)
                    await factory.wait_for_cache_sync()
                synced.set()
                # The synced caches and records are hundreds of thousands of objects that
                # live as long as the server: out of the collector's sight, a full
                # collection no longer stops answers for a few hundred milliseconds.
                gc.collect()
                gc.freeze()
                log.info(
                    "synced: %d records; serving %s on %s port %d",
                    store.record_count,
                    store.zone,
                    config.bind_address,
                    port,
                )
                nursery.start_soon(server.serve_udp, udp)
                nursery.start_soon(server.serve_tcp, listeners)
                task_status.started(DnsServing((config.bind_address, port), serving_url))
