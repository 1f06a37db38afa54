"""Run the API server: storage, caches, TLS and hypercorn, as one structured Trio task."""

from __future__ import annotations

import gc
import logging
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from wsgiref.handlers import format_date_time

import trio
from hypercorn.config import Config as HypercornConfig

from k8slite import datadir, pki
from k8slite.apiserver import clusterinfo
from k8slite.apiserver.aggregator import Aggregator
from k8slite.apiserver.allocators import ServiceAllocator
from k8slite.apiserver.app import ApiServerApp
from k8slite.apiserver.authn import Authenticator
from k8slite.apiserver.bootstrap import ensure_default_storage_class, ensure_kubernetes_service
from k8slite.apiserver.bootstrapauth import BootstrapTokenAuthenticator
from k8slite.apiserver.core import WATCH_CACHE_CAPACITY, WATCH_CACHE_WINDOW, ApiCore
from k8slite.apiserver.crdcontroller import CrdController
from k8slite.apiserver.identity import IdentityLease
from k8slite.apiserver.limits import (
    MAX_MUTATING_REQUESTS_INFLIGHT,
    MAX_REQUESTS_INFLIGHT,
    REQUEST_TIMEOUT,
)
from k8slite.apiserver.metrics import ApiMetrics, MeteredStore
from k8slite.apiserver.peers import LeaseEndpointReconciler
from k8slite.apiserver.podlogs import KubeletConnector
from k8slite.apiserver.policies import PolicyEvaluator
from k8slite.apiserver.saadmission import ServiceAccountAdmission
from k8slite.apiserver.security import secure_app
from k8slite.apiserver.serviceaccounts import ServiceAccountTokens
from k8slite.apiserver.tls import serve
from k8slite.apiserver.watch import bookmark_ticker
from k8slite.apiserver.webhooks import WebhookDispatcher
from k8slite.serviceaccount.claims import DEFAULT_ISSUER
from k8slite.serviceaccount.jwt import load_private_key, load_public_keys
from k8slite.storage import Store
from k8slite.storage.etcd import DEFAULT_COMPACTION_INTERVAL, DEFAULT_PREFIX, EtcdStore, EtcdTLS
from k8slite.storage.rocksdb import RocksStore

log = logging.getLogger(__name__)

# The admission plugins with something to do here that upstream enables by default.
ADMISSION_PLUGINS = (
    "ServiceAccount",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
)
DEFAULT_ADMISSION_PLUGINS = ADMISSION_PLUGINS
# Upstream's --storage-backend names etcd "etcd3"; RocksDB stays our embedded default.
STORAGE_BACKENDS = ("rocksdb", "etcd3")


@dataclass
class ApiServerConfig:
    data_dir: Path = Path(".k8slite")
    bind_address: str = "127.0.0.1"
    secure_port: int = 8080
    tls_cert_file: Path | None = None
    tls_private_key_file: Path | None = None
    client_ca_file: Path | None = None
    watch_cache_size: int = WATCH_CACHE_CAPACITY
    watch_cache_window: float = WATCH_CACHE_WINDOW
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
    # Service-account tokens (upstream's flags): the keys that verify them (default
    # DIR/pki/sa.pub), the key that signs them (DIR/pki/sa.key), the issuers (the first
    # signs), the audiences the API accepts (default: the issuers), the longest lifetime.
    service_account_key_files: list[Path] = field(default_factory=list)
    service_account_signing_key_file: Path | None = None
    service_account_issuers: list[str] = field(default_factory=lambda: [DEFAULT_ISSUER])
    api_audiences: list[str] = field(default_factory=list)
    service_account_max_token_expiration: float = 0.0
    service_account_jwks_uri: str = ""
    service_account_extend_token_expiration: bool = True
    # Upstream's admission plugins this server runs on top of its fixed checks.
    admission_plugins: tuple[str, ...] = DEFAULT_ADMISSION_PLUGINS
    # Storage: RocksDB in DIR/db, or etcd (upstream's --storage-backend and --etcd-* flags).
    storage_backend: str = "rocksdb"
    etcd_servers: list[str] = field(default_factory=list)
    etcd_tls: EtcdTLS | None = None
    etcd_prefix: str = DEFAULT_PREFIX
    etcd_compaction_interval: float = DEFAULT_COMPACTION_INTERVAL
    # Upstream's --event-ttl: Events disappear this long after their last write (on etcd,
    # through a lease; RocksDB keeps them until deleted).
    event_ttl: float = 3600.0
    # Upstream's --enable-bootstrap-token-auth: bootstrap tokens authenticate, and (as
    # kubeadm's init does) kube-public/cluster-info is published for joining nodes.
    enable_bootstrap_token_auth: bool = False
    # Paths open to requests without credentials (upstream: AuthenticationConfiguration
    # anonymous.conditions); empty: none, every request must authenticate.
    anonymous_auth_paths: list[str] = field(default_factory=list)

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"


@dataclass
class Serving:
    """What run() reports once it listens: the URL clients use."""

    url: str
    port: int


class _Config(HypercornConfig):
    """hypercorn's configuration, with the Date header formatted once a second rather than
    for every response (1% of a create's CPU, docs/performance.md)."""

    _date_second = -1
    _date = b""

    def response_headers(self, protocol: str) -> list[tuple[bytes, bytes]]:
        if (
            not self.include_date_header
            or self.include_server_header
            or self.alt_svc_headers
            or self._quic_addresses
        ):
            return super().response_headers(protocol)
        now = int(time.time())
        if now != self._date_second:
            self._date = format_date_time(now).encode("ascii")
            self._date_second = now
        return [(b"date", self._date)]


def _hypercorn_config(config: ApiServerConfig) -> HypercornConfig:
    hc = _Config()
    hc.bind = [f"{config.bind_address}:{config.secure_port}"]
    hc.certfile = str(config.tls_cert_file or config.pki_dir / "server.pem")
    hc.keyfile = str(config.tls_private_key_file or config.pki_dir / "server.key")
    hc.ca_certs = str(config.client_ca_file or config.pki_dir / "ca.pem")
    # A client certificate, if presented, must be signed by the cluster CA, or there is no
    # connection; without one, a request must carry a bearer token (no anonymous access).
    hc.verify_mode = ssl.CERT_OPTIONAL
    # Slow or silent clients: the handshake must finish in 10 s; a connection that does not
    # finish sending a request's headers counts as idle (keep_alive_timeout); bodies are
    # bounded by the request timeout.
    hc.ssl_handshake_timeout = 10
    hc.accesslog = None
    # Upstream's API server names no server software in its answers (nor do the other
    # components here, component/serving.py).
    hc.include_server_header = False
    hc.errorlog = log
    hc.keep_alive_timeout = 90
    # hypercorn closes a connection after 1,000 requests by default, failing the HTTP/2
    # streams in flight on it; Kubernetes clients keep one connection for hours.
    hc.keep_alive_max_requests = 2**62
    hc.graceful_timeout = 2
    # Bodies are limited by the handler (413 with a Status), not by a connection reset.
    hc.h11_max_incomplete_size = 64 * 1024
    return hc


# Python's cyclic collector runs its youngest generation every 700 net allocations of
# container objects, several times per request here (a create decodes, defaults, validates
# and encodes a few thousand dicts and lists, nearly all freed by reference counting), and
# each run walks what is young and alive then, most of it the requests in flight: 15% of a
# create's CPU (docs/performance.md). Every 10,000 it is a fifth of that cost; the
# garbage it waits for is at most ten thousand objects.
GC_THRESHOLD_0 = 10_000


def _tune_collector() -> None:
    """Fewer young collections; what the server loaded at start out of the collector's sight.

    The caches filled at start live as long as the server: frozen (gc.freeze), a full
    collection no longer walks them."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD_0, older, oldest)


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
    else:
        pki.ensure_service_account_key(config.pki_dir)


def _service_account_tokens(config: ApiServerConfig, core: ApiCore) -> ServiceAccountTokens:
    key_files = config.service_account_key_files or [
        pki.service_account_key_paths(config.pki_dir)[1]
    ]
    signing = (
        config.service_account_signing_key_file or pki.service_account_key_paths(config.pki_dir)[0]
    )
    keys = [key for path in key_files for key in load_public_keys(path)]
    return ServiceAccountTokens(
        core,
        load_private_key(signing),
        keys,
        list(config.service_account_issuers),
        list(config.api_audiences or config.service_account_issuers),
        jwks_uri=config.service_account_jwks_uri,
        max_expiration=int(config.service_account_max_token_expiration),
        extend_expiration=config.service_account_extend_token_expiration,
    )


def open_store(config: ApiServerConfig) -> Store:
    """The configured backend, to open with `async with`."""
    if config.storage_backend == "etcd3":
        return EtcdStore(
            config.etcd_servers,
            prefix=config.etcd_prefix,
            tls=config.etcd_tls,
            compaction_interval=config.etcd_compaction_interval,
        )
    return RocksStore(config.data_dir / "db")


async def run(
    config: ApiServerConfig, *, task_status: trio.TaskStatus[Serving] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until cancelled."""
    # Its data holds every Secret: the owner's alone, as etcd keeps its data dir.
    datadir.private_data_dir(config.data_dir)
    if config.storage_backend == "rocksdb":
        datadir.private_tree(config.data_dir / "db")
    if config.tls_cert_file is None:
        _ensure_certificates(config)
    if config.pki_dir.exists():
        pki.secure_dir(config.pki_dir)
    metrics = ApiMetrics()
    async with open_store(config) as raw_store:
        store = MeteredStore(raw_store, metrics)
        core = ApiCore(store, config.watch_cache_size, config.watch_cache_window)  # type: ignore[arg-type]
        allocator = ServiceAllocator(
            store,
            config.service_cluster_ip_range,  # type: ignore[arg-type]
            config.service_node_port_range,
        )
        core.registries[("", "services")].allocator = allocator
        core.registries[("", "events")].ttl = max(1, round(config.event_ttl))
        allocator.warm()
        core.warm()
        await core.ensure_system_namespaces()
        _tune_collector()
        app = ApiServerApp(core, metrics)
        app.resources.kubelets = KubeletConnector.from_pki(config.pki_dir)
        tokens = _service_account_tokens(config, core)
        app.resources.token_request = tokens.token_request
        if config.enable_bootstrap_token_auth:
            tokens.agnostic.append(BootstrapTokenAuthenticator(core).authenticate)
        app.resources.virtual[("authentication.k8s.io", "tokenreviews")] = tokens.token_review
        tokens.register_discovery(app.quart)
        aggregator = Aggregator(core, app.resources, config.pki_dir)
        if "ServiceAccount" in config.admission_plugins:
            core.registries[("", "pods")].admit = ServiceAccountAdmission(core).admit
        plugins = set(config.admission_plugins)
        if plugins & {"MutatingAdmissionWebhook", "ValidatingAdmissionWebhook"} or (
            "ValidatingAdmissionPolicy" in plugins
        ):
            webhooks = WebhookDispatcher(
                core,
                mutating="MutatingAdmissionWebhook" in plugins,
                validating="ValidatingAdmissionWebhook" in plugins,
            )
            if "ValidatingAdmissionPolicy" in plugins:
                webhooks.policies = PolicyEvaluator(core)
            app.resources.webhooks = webhooks
        secured = await secure_app(
            app,
            core,
            audit_log_path=config.audit_log_path,
            max_requests_inflight=config.max_requests_inflight,
            max_mutating_requests_inflight=config.max_mutating_requests_inflight,
            request_timeout=config.request_timeout,
            authn=Authenticator(
                *tokens.agnostic,
                tokens.authenticator.authenticate,
                anonymous_paths=frozenset(config.anonymous_auth_paths),
            ),
        )
        hc = _hypercorn_config(config)
        peers: LeaseEndpointReconciler | None = None
        try:
            async with trio.open_nursery() as nursery:
                binds = await nursery.start(serve, secured, hc)
                nursery.start_soon(bookmark_ticker, core.custom.values())
                nursery.start_soon(CrdController(core).run)
                nursery.start_soon(aggregator.run)
                nursery.start_soon(bookmark_ticker, core.registries.values())
                url = binds[0]
                port = int(url.rsplit(":", 1)[1])
                local = (
                    config.bind_address
                    if config.bind_address not in ("0.0.0.0", "::")
                    else "127.0.0.1"
                )
                serving = Serving(f"https://{local}:{port}", port)
                advertised = config.advertise_address or local
                tokens.jwks_uri = tokens.jwks_uri or (
                    f"https://{f'[{advertised}]' if ':' in advertised else advertised}:{port}"
                    "/openid/v1/jwks"
                )
                shared = config.storage_backend == "etcd3"
                await ensure_kubernetes_service(
                    core, allocator.kubernetes_ip, advertised, port, endpoints=not shared
                )
                if shared:
                    # Several API servers may share this etcd: the endpoints list the live ones.
                    peers = LeaseEndpointReconciler(core, advertised, port)
                    await peers.reconcile()
                    nursery.start_soon(peers.run)
                    identity = IdentityLease(core, port)
                    await identity.renew()
                    nursery.start_soon(identity.run)
                await ensure_default_storage_class(core)
                if config.enable_bootstrap_token_auth:
                    host = f"[{advertised}]" if ":" in advertised else advertised
                    ca_file = config.client_ca_file or config.pki_dir / "ca.pem"
                    await clusterinfo.publish(core, f"https://{host}:{port}", ca_file.read_bytes())
                log.info("k8slite-apiserver serving on %s", serving.url)
                task_status.started(serving)
        finally:
            if peers is not None:
                # Leaving: out of the endpoints now, not when our lease runs out.
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await peers.remove()
