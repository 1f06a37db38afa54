"""The API server's Prometheus metrics, with upstream's names, in a registry per server."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from k8slite.metrics import component_registry
from k8slite.storage import Op, Store

_REQUEST_LABELS = ("verb", "group", "version", "resource", "subresource", "scope", "component")
_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,
    0.4,
    0.6,
    0.8,
    1.0,
    1.25,
    1.5,
    2,
    3,
    4,
    5,
    6,
    8,
    10,
    15,
    20,
    30,
    45,
    60,
)
# Upstream's buckets for apiserver_flowcontrol_request_wait_duration_seconds.
_WAIT_BUCKETS = (0, 0.005, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30)
_FLOW_LABELS = ("priority_level", "flow_schema")


class ApiMetrics:
    """Request counts and latencies, watchers, storage latency and stored object counts."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or component_registry()
        r = self.registry
        self.requests = Counter(
            "apiserver_request",
            "Requests by verb, resource and code.",
            (*_REQUEST_LABELS, "code"),
            registry=r,
        )
        self.latency = Histogram(
            "apiserver_request_duration_seconds",
            "Response latency by verb and resource.",
            _REQUEST_LABELS,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.watchers = Gauge(
            "apiserver_registered_watchers",
            "Open watches by kind.",
            ("group", "version", "kind"),
            registry=r,
        )
        self.longrunning = Gauge(
            "apiserver_longrunning_requests",
            "Long-running requests (watches) in flight.",
            ("verb", "group", "version", "resource"),
            registry=r,
        )
        self.storage = Histogram(
            "etcd_request_duration_seconds",
            "Storage operation latency (RocksDB or etcd).",
            ("operation", "type"),
            registry=r,
        )
        self.direct_writes = Counter(
            "apiserver_watch_direct_writes",
            "Watch chunks written straight onto the TLS connection (apiserver/directsend.py).",
            registry=r,
        )
        self.inflight = Gauge(
            "apiserver_current_inflight_requests",
            "Requests being served.",
            ("request_kind",),
            registry=r,
        )
        # API Priority and Fairness (apiserver/flowcontrol), upstream's names and labels.
        self.fc_executing = Gauge(
            "apiserver_flowcontrol_current_executing_requests",
            "Requests executing (holding a seat) by priority level and FlowSchema.",
            _FLOW_LABELS,
            registry=r,
        )
        self.fc_inqueue = Gauge(
            "apiserver_flowcontrol_current_inqueue_requests",
            "Requests waiting in a queue for a seat.",
            _FLOW_LABELS,
            registry=r,
        )
        self.fc_rejected = Counter(
            "apiserver_flowcontrol_rejected_requests",
            "Requests refused with 429 (reason: queue-full, concurrency-limit, time-out).",
            (*_FLOW_LABELS, "reason"),
            registry=r,
        )
        self.fc_dispatched = Counter(
            "apiserver_flowcontrol_dispatched_requests",
            "Requests given a seat.",
            _FLOW_LABELS,
            registry=r,
        )
        self.fc_wait = Histogram(
            "apiserver_flowcontrol_request_wait_duration_seconds",
            "Time requests waited for a seat (execute: whether they got one).",
            (*_FLOW_LABELS, "execute"),
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.body_reads = Gauge(
            "k8slite_apiserver_request_body_reads",
            "Requests whose body is still arriving; they hold no seat meanwhile.",
            registry=r,
        )

    def observe_request(
        self,
        verb: str,
        group: str,
        version: str,
        resource: str,
        subresource: str,
        scope: str,
        code: int,
        seconds: float,
    ) -> None:
        labels = (verb, group, version, resource, subresource, scope, "apiserver")
        self.requests.labels(*labels, str(code)).inc()
        if verb not in ("WATCH", "watch"):
            self.latency.labels(*labels).observe(seconds)

    def count_objects(self, counts: Callable[[], Iterable[tuple[str, int]]]) -> None:
        """Publish apiserver_storage_objects from the caches at scrape time."""
        self.registry.register(_ObjectCounts(counts))


class _ObjectCounts(Collector):
    def __init__(self, counts: Callable[[], Iterable[tuple[str, int]]]) -> None:
        self._counts = counts

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "apiserver_storage_objects", "Stored objects per resource.", labels=["resource"]
        )
        for resource, n in self._counts():
            family.add_metric([resource], n)
        yield family


class MeteredStore:
    """Wraps a Store to time its operations; everything else passes through."""

    def __init__(self, store: Store, metrics: ApiMetrics) -> None:
        self._store = store
        self._metrics = metrics
        # (operation, type) -> its histogram child: labels() costs more than observe().
        self._children: dict[tuple[str, str], Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def _observe(self, operation: str, key: str, seconds: float) -> None:
        labels = (operation, _type_of(key))
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self._metrics.storage.labels(*labels)
        child.observe(seconds)

    async def get(self, key: str) -> tuple[bytes, int] | None:
        start = time.perf_counter()
        try:
            return await self._store.get(key)
        finally:
            self._observe("get", key, time.perf_counter() - start)

    async def txn(self, ops: list[Op]) -> tuple[int, list[bytes]]:
        start = time.perf_counter()
        try:
            return await self._store.txn(ops)
        finally:
            operation = ops[0].verb if len(ops) == 1 else "txn"
            self._observe(operation, ops[0].key, time.perf_counter() - start)


def _type_of(key: str) -> str:
    parts = key.split("/")
    return parts[3] if len(parts) > 3 else key
