"""Run the API server: storage, caches, TLS and hypercorn, as one structured Trio task."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import trio
from hypercorn.config import Config as HypercornConfig

from k8slite import datadir, pki
from k8slite.apiserver.allocators import ServiceAllocator
from k8slite.apiserver.app import ApiServerApp
from k8slite.apiserver.bootstrap import ensure_default_storage_class, ensure_kubernetes_service
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.limits import (
    MAX_MUTATING_REQUESTS_INFLIGHT,
    MAX_REQUESTS_INFLIGHT,
    REQUEST_TIMEOUT,
)
from k8slite.apiserver.metrics import ApiMetrics, MeteredStore
from k8slite.apiserver.podlogs import KubeletConnector
from k8slite.apiserver.security import secure_app
from k8slite.apiserver.tls import serve
from k8slite.apiserver.watch import bookmark_ticker
from k8slite.storage.rocksdb import RocksStore

log = logging.getLogger(__name__)


@dataclass
class ApiServerConfig:
    data_dir: Path = Path(".k8slite")
    bind_address: str = "127.0.0.1"
    secure_port: int = 8080
    tls_cert_file: Path | None = None
    tls_private_key_file: Path | None = None
    client_ca_file: Path | None = None
    watch_cache_size: int = 10_000
    extra_sans: list[str] = field(default_factory=list)
    service_cluster_ip_range: str = "10.96.0.0/12"
    service_node_port_range: tuple[int, int] = (30000, 32767)
    # The address the `kubernetes` service's endpoints point at (default: the bind address,
    # or 127.0.0.1 when binding every address).
    advertise_address: str | None = None
    # One JSON line per mutating request (upstream's --audit-log-path); None: no audit log.
    audit_log_path: Path | None = None
    max_requests_inflight: int = MAX_REQUESTS_INFLIGHT
    max_mutating_requests_inflight: int = MAX_MUTATING_REQUESTS_INFLIGHT
    request_timeout: float = REQUEST_TIMEOUT

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"


@dataclass
class Serving:
    """What run() reports once it listens: the URL clients use."""

    url: str
    port: int


def _hypercorn_config(config: ApiServerConfig) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [f"{config.bind_address}:{config.secure_port}"]
    hc.certfile = str(config.tls_cert_file or config.pki_dir / "server.pem")
    hc.keyfile = str(config.tls_private_key_file or config.pki_dir / "server.key")
    hc.ca_certs = str(config.client_ca_file or config.pki_dir / "ca.pem")
    # Mutual TLS: no certificate signed by the cluster CA, no connection (no anonymous).
    hc.verify_mode = ssl.CERT_REQUIRED
    # Slow or silent clients: the handshake must finish in 10 s; a connection that does not
    # finish sending a request's headers counts as idle (keep_alive_timeout); bodies are
    # bounded by the request timeout.
    hc.ssl_handshake_timeout = 10
    hc.accesslog = None
    hc.errorlog = log
    hc.keep_alive_timeout = 90
    # hypercorn closes a connection after 1,000 requests by default, failing the HTTP/2
    # streams in flight on it; Kubernetes clients keep one connection for hours.
    hc.keep_alive_max_requests = 2**62
    hc.graceful_timeout = 2
    # Bodies are limited by the handler (413 with a Status), not by a connection reset.
    hc.h11_max_incomplete_size = 64 * 1024
    return hc


def _ensure_certificates(config: ApiServerConfig) -> None:
    """The cluster PKI from the first start; kubeconfigs name this server's own port.

    With an ephemeral port (0) the URL is not known yet, so existing files are left as
    they are and only a missing PKI is made.
    """
    if config.secure_port:
        host = config.bind_address if config.bind_address not in ("0.0.0.0", "::") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        pki.ensure_pki(
            config.pki_dir,
            sans=config.extra_sans,
            server_url=f"https://{host}:{config.secure_port}",
        )
    elif not (config.pki_dir / "server.pem").exists():
        pki.ensure_pki(config.pki_dir, sans=config.extra_sans)


async def run(
    config: ApiServerConfig, *, task_status: trio.TaskStatus[Serving] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until cancelled."""
    # Its data holds every Secret: the owner's alone, as etcd keeps its data dir.
    datadir.private_data_dir(config.data_dir)
    datadir.private_tree(config.data_dir / "db")
    if config.tls_cert_file is None:
        _ensure_certificates(config)
    if config.pki_dir.exists():
        pki.secure_dir(config.pki_dir)
    metrics = ApiMetrics()
    async with RocksStore(config.data_dir / "db") as raw_store:
        store = MeteredStore(raw_store, metrics)
        core = ApiCore(store, config.watch_cache_size)  # type: ignore[arg-type]
        allocator = ServiceAllocator(
            store,
            config.service_cluster_ip_range,  # type: ignore[arg-type]
            config.service_node_port_range,
        )
        core.registries[("", "services")].allocator = allocator
        allocator.warm()
        core.warm()
        await core.ensure_system_namespaces()
        app = ApiServerApp(core, metrics)
        app.resources.kubelets = KubeletConnector.from_pki(config.pki_dir)
        secured = await secure_app(
            app,
            core,
            audit_log_path=config.audit_log_path,
            max_requests_inflight=config.max_requests_inflight,
            max_mutating_requests_inflight=config.max_mutating_requests_inflight,
            request_timeout=config.request_timeout,
        )
        hc = _hypercorn_config(config)
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(serve, secured, hc)
            nursery.start_soon(bookmark_ticker, core.registries.values())
            url = binds[0]
            port = int(url.rsplit(":", 1)[1])
            local = (
                config.bind_address if config.bind_address not in ("0.0.0.0", "::") else "127.0.0.1"
            )
            serving = Serving(f"https://{local}:{port}", port)
            await ensure_kubernetes_service(
                core, allocator.kubernetes_ip, config.advertise_address or local, port
            )
            await ensure_default_storage_class(core)
            log.info("k8slite-apiserver serving on %s", serving.url)
            task_status.started(serving)
