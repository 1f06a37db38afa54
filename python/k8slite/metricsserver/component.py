"""k8slite-metrics-server as a component: scrape every kubelet, serve metrics.k8s.io."""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio

from k8slite.api.errors import ApiError as ServerApiError
from k8slite.apiserver.podlogs import kubelet_location
from k8slite.client import ApiClient, SharedInformerFactory, load_kubeconfig
from k8slite.client.resource import NODES, PODS
from k8slite.component.objects import Obj
from k8slite.component.serving import (
    PING,
    Check,
    ComponentServer,
    Request,
    Response,
    ServingOptions,
    serve,
)
from k8slite.metrics import component_registry
from k8slite.metricsserver.api import PREFIX, MetricsApi
from k8slite.metricsserver.auth import Authorizer
from k8slite.metricsserver.scrape import parse
from k8slite.metricsserver.store import MetricsStore

log = logging.getLogger(__name__)

# Kubelets scraped at once.
_CONCURRENCY = 32


@dataclass
class MetricsServerConfig:
    kubeconfig: Path | None = None
    # How often every kubelet is scraped (upstream's --metric-resolution, 15s).
    metric_resolution: float = 15.0
    kubelet_request_timeout: float = 10.0
    # Client certificate names trusted to say who the user is in X-Remote-* headers.
    requestheader_allowed_names: frozenset[str] = frozenset({"front-proxy-client"})
    serving: ServingOptions = field(default_factory=ServingOptions)


@dataclass
class MetricsServing:
    url: str
    port: int


class Scraper:
    """Scrapes /metrics/resource of every node's kubelet into the store, every resolution."""

    def __init__(
        self,
        store: MetricsStore,
        nodes: Callable[[], list[Obj]],
        http: httpx.AsyncClient,
        resolution: float,
    ) -> None:
        self.store = store
        self.nodes = nodes
        self.http = http
        self.resolution = resolution
        self.scrapes = 0  # rounds done (the readiness check waits for one)

    async def run(self) -> None:
        while True:
            started = trio.current_time()
            await self.scrape_all()
            self.scrapes += 1
            await trio.sleep_until(started + self.resolution)

    async def scrape_all(self) -> None:
        nodes = self.nodes()
        self.store.forget({n["metadata"]["name"] for n in nodes})
        limiter = trio.CapacityLimiter(_CONCURRENCY)

        async def one(node: Obj) -> None:
            async with limiter:
                await self.scrape(node)

        async with trio.open_nursery() as nursery:
            for node in nodes:
                nursery.start_soon(one, node)

    async def scrape(self, node: Obj) -> None:
        name = node["metadata"]["name"]
        try:
            host, port = kubelet_location(node)
        except ServerApiError as e:
            log.debug("not scraping %s: %s", name, e.message)
            return
        host = f"[{host}]" if ":" in host else host
        try:
            r = await self.http.get(f"https://{host}:{port}/metrics/resource")
        except httpx.HTTPError as e:
            log.warning("failed to scrape node %s: %s", name, e)
            return
        if r.status_code != 200:
            log.warning("failed to scrape node %s: %d %s", name, r.status_code, r.text[:200])
            return
        self.store.record(name, parse(r.text, time.time()))


async def run(
    config: MetricsServerConfig,
    *,
    task_status: trio.TaskStatus[MetricsServing] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the metrics API until cancelled."""
    client_config = load_kubeconfig(config.kubeconfig)
    ctx = client_config.ssl_context or ssl.create_default_context()
    store = MetricsStore()
    async with (
        ApiClient(client_config) as client,
        httpx.AsyncClient(
            verify=ctx, trust_env=False, timeout=config.kubelet_request_timeout
        ) as http,
    ):
        factory = SharedInformerFactory(client)
        nodes = factory.informer(NODES)
        pods = factory.informer(PODS)
        scraper = Scraper(store, nodes.list, http, config.metric_resolution)
        api = MetricsApi(store, nodes.list, pods.list, time.time)
        authorizer = Authorizer(client, config.requestheader_allowed_names)
        base = config.serving.authorizer()

        async def authorize(req: Request) -> Response | None:
            refused = await base(req) if base is not None else None
            return refused if refused is not None else await authorizer.authorize(req)

        def not_scraped() -> str | None:
            return None if scraper.scrapes else "no scrape has completed yet"

        app = ComponentServer(
            checks={
                "/healthz": (PING,),
                "/livez": (PING,),
                "/readyz": (PING, Check("metric-storage-ready", not_scraped)),
            },
            registry=component_registry(),
            configz={"metrics-server": lambda: config},
            routes={PREFIX: api.handle, PREFIX + "/": api.handle},
            authorize=authorize,
        )
        async with trio.open_nursery() as nursery:
            url, port = await nursery.start(serve, app, config.serving)
            await factory.start(nursery)
            await factory.wait_for_cache_sync()
            nursery.start_soon(scraper.run)
            log.info("metrics server serving on %s", url)
            task_status.started(MetricsServing(url, port))
