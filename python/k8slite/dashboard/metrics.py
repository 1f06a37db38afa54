"""The Metrics page's series, from the components' Prometheus metrics.

Every `interval` seconds the sampler scrapes, with the user's credentials:
- the API server's /metrics (`apiserver_request_total`, `apiserver_request_duration_seconds`);
- the scheduler's /metrics at the address `k8slite up` gives it (`--scheduler-metrics`; the
  scheduler serves it to anyone on loopback, with its self-signed certificate)
  (`scheduler_schedule_attempts_total{result="scheduled"}`);
- the kubelets' /metrics through the API server's nodes/<name>/proxy (RBAC decides:
  nodes/proxy), a few nodes at most (`kubelet_pod_start_duration_seconds`); hollow nodes
  serve none and are skipped for a while.

Counters become rates over the interval; histograms the interval's mean and 99th percentile
(from the buckets' increase, as Prometheus's histogram_quantile does). The points go to the
browsers as server-sent events: the history first, then each new point.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from k8slite.client import ApiClient, ApiConnectionError, ApiError
from k8slite.dashboard.hub import sse

log = logging.getLogger(__name__)

HISTORY = 120  # points kept per series (10 minutes at the default interval)
KUBELETS_MAX = 5  # nodes whose kubelet is scraped at once
SKIP_FOR = 120.0  # seconds a node whose kubelet did not answer is left out
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LE = re.compile(r'le="([^"]*)"')

# The series the page draws: id -> (title, unit).
SERIES = {
    "api_rate": ("API server requests", "req/s"),
    "api_latency_mean": ("API server latency, mean", "ms"),
    "api_latency_p99": ("API server latency, p99", "ms"),
    "sched_rate": ("Scheduler throughput", "pods/s"),
    "pod_start_mean": ("Pod start-up latency, mean", "s"),
    "pod_start_p99": ("Pod start-up latency, p99", "s"),
}


@dataclass
class Histogram:
    count: float = 0.0
    sum: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)

    def add(self, other: Histogram) -> None:
        self.count += other.count
        self.sum += other.sum
        for le, n in other.buckets.items():
            self.buckets[le] = self.buckets.get(le, 0.0) + n


@dataclass
class Scrape:
    counters: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)


def parse(text: str, counters: Iterable[str], histograms: Iterable[str], match: str = "") -> Scrape:
    """Sums over every label set of the named counters and histograms; `match`, when given,
    is a label text a counter's sample must hold (result="scheduled")."""
    wanted_counters = set(counters)
    wanted = set(histograms)
    out = Scrape()
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = _LINE.match(line)
        if m is None:
            continue
        name, labels, raw = m.group(1), m.group(2) or "", m.group(3)
        try:
            value = float(raw)
        except ValueError:
            continue
        if name in wanted_counters:
            if match and match not in labels:
                continue
            out.counters[name] = out.counters.get(name, 0.0) + value
            continue
        base, _, suffix = name.rpartition("_")
        if base not in wanted:
            continue
        h = out.histograms.setdefault(base, Histogram())
        if suffix == "count":
            h.count += value
        elif suffix == "sum":
            h.sum += value
        elif suffix == "bucket":
            le = _LE.search(labels)
            if le:
                bound = math.inf if le.group(1) == "+Inf" else float(le.group(1))
                h.buckets[bound] = h.buckets.get(bound, 0.0) + value
    return out


def quantile(q: float, before: Histogram, after: Histogram) -> float | None:
    """histogram_quantile over the increase between two scrapes (linear in the bucket)."""
    bounds = sorted(after.buckets)
    increase = [(b, after.buckets[b] - before.buckets.get(b, 0.0)) for b in bounds]
    total = increase[-1][1] if increase else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in increase:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            width = cumulative - below
            return lower + (bound - lower) * ((rank - below) / width if width else 1.0)
        lower, below = bound, cumulative
    return lower


def mean(before: Histogram, after: Histogram) -> float | None:
    n = after.count - before.count
    return (after.sum - before.sum) / n if n > 0 else None


class Sampler:
    def __init__(
        self,
        client: ApiClient,
        node_names: Callable[[], list[str]],
        interval: float = 5.0,
        scheduler_url: str | None = None,
    ) -> None:
        self.client = client
        self.node_names = node_names
        self.interval = interval
        self.scheduler_url = scheduler_url
        self.points: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self._subscribers: set[trio.MemorySendChannel[dict[str, Any]]] = set()
        self._previous: dict[str, Scrape] = {}
        self._previous_at = 0.0
        self._skipped: dict[str, float] = {}
        self._started = False
        # Which sources answered last time, for the page to say why a plot is empty.
        self.sources: dict[str, str] = {}

    def ensure_running(self, nursery: trio.Nursery) -> None:
        if not self._started:
            self._started = True
            nursery.start_soon(self.run)

    async def run(self) -> None:
        # A self-signed scheduler on loopback: nothing to verify it against.
        async with httpx.AsyncClient(verify=False, timeout=10) as plain:  # noqa: S501
            while True:
                started = trio.current_time()
                try:
                    await self.sample(plain)
                except Exception:  # noqa: BLE001 - one bad scrape must not end the page
                    log.exception("metrics sample failed")
                await trio.sleep_until(started + self.interval)

    async def _apiserver(self) -> Scrape | None:
        try:
            text = (await self.client.request_bytes("GET", "/metrics")).decode()
        except (ApiError, ApiConnectionError) as e:
            self.sources["apiserver"] = f"not readable: {e}"
            return None
        self.sources["apiserver"] = "ok"
        return parse(text, ["apiserver_request_total"], ["apiserver_request_duration_seconds"])

    async def _scheduler(self, plain: httpx.AsyncClient) -> Scrape | None:
        if not self.scheduler_url:
            self.sources["scheduler"] = "no address given (--scheduler-metrics)"
            return None
        try:
            response = await plain.get(self.scheduler_url)
            response.raise_for_status()
        except httpx.HTTPError as e:
            self.sources["scheduler"] = f"not readable: {e}"
            return None
        self.sources["scheduler"] = "ok"
        return parse(
            response.text, ["scheduler_schedule_attempts_total"], [], match='result="scheduled"'
        )

    async def _kubelets(self) -> Scrape | None:
        now = trio.current_time()
        names = [n for n in sorted(self.node_names()) if self._skipped.get(n, 0.0) <= now]
        total = Scrape()
        answered = 0

        async def one(name: str) -> None:
            nonlocal answered
            try:
                with trio.fail_after(5):
                    raw = await self.client.request_bytes(
                        "GET", f"/api/v1/nodes/{name}/proxy/metrics"
                    )
            except (ApiError, ApiConnectionError, trio.TooSlowError):
                self._skipped[name] = now + SKIP_FOR
                return
            scrape = parse(raw.decode(), [], ["kubelet_pod_start_duration_seconds"])
            for key, h in scrape.histograms.items():
                total.histograms.setdefault(key, Histogram()).add(h)
            answered += 1

        async with trio.open_nursery() as nursery:
            for name in names[:KUBELETS_MAX]:
                nursery.start_soon(one, name)
        self.sources["kubelets"] = f"{answered} of {len(names[:KUBELETS_MAX])} answered"
        return total if answered else None

    async def sample(self, plain: httpx.AsyncClient) -> None:
        scrapes: dict[str, Scrape | None] = {}

        async def get(key: str, fn: Callable[[], Any]) -> None:
            scrapes[key] = await fn()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(get, "apiserver", self._apiserver)
            nursery.start_soon(get, "scheduler", lambda: self._scheduler(plain))
            nursery.start_soon(get, "kubelets", self._kubelets)
        now = time.time()
        elapsed = now - self._previous_at
        point: dict[str, Any] = {"t": now}
        before = self._previous
        api, sched, kubelets = scrapes["apiserver"], scrapes["scheduler"], scrapes["kubelets"]
        if api and "apiserver" in before and elapsed > 0:
            old = before["apiserver"]
            point["api_rate"] = _rate(old, api, "apiserver_request_total", elapsed)
            h0 = old.histograms.get("apiserver_request_duration_seconds", Histogram())
            h1 = api.histograms.get("apiserver_request_duration_seconds", Histogram())
            point["api_latency_mean"] = _ms(mean(h0, h1))
            point["api_latency_p99"] = _ms(quantile(0.99, h0, h1))
        if sched and "scheduler" in before and elapsed > 0:
            point["sched_rate"] = _rate(
                before["scheduler"], sched, "scheduler_schedule_attempts_total", elapsed
            )
        if kubelets and "kubelets" in before:
            k0 = before["kubelets"].histograms.get("kubelet_pod_start_duration_seconds")
            k1 = kubelets.histograms.get("kubelet_pod_start_duration_seconds")
            if k0 and k1:
                point["pod_start_mean"] = mean(k0, k1)
                point["pod_start_p99"] = quantile(0.99, k0, k1)
        self._previous = {k: v for k, v in scrapes.items() if v is not None}
        self._previous_at = now
        if len(point) > 1:
            self.points.append(point)
            message = {"point": point, "sources": dict(self.sources)}
            for send in list(self._subscribers):
                try:
                    send.send_nowait(message)
                except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                    self._subscribers.discard(send)
                    send.close()

    async def stream(self) -> AsyncIterator[bytes]:
        """`history` (the series' titles and the points so far), then a `point` each sample."""
        send, receive = trio.open_memory_channel[dict[str, Any]](16)
        self._subscribers.add(send)
        try:
            history = {
                "series": {k: {"title": t, "unit": u} for k, (t, u) in SERIES.items()},
                "points": list(self.points),
                "interval": self.interval,
                "sources": dict(self.sources),
            }
            yield sse("history", history)
            while True:
                with trio.move_on_after(15.0) as idle:
                    try:
                        message = await receive.receive()
                    except trio.EndOfChannel:
                        return  # too slow: the browser reconnects for the history
                if idle.cancelled_caught:
                    yield b": keepalive\n\n"
                    continue
                yield sse("point", message)
        finally:
            self._subscribers.discard(send)
            send.close()


def _rate(before: Scrape, after: Scrape, name: str, elapsed: float) -> float | None:
    if name not in after.counters:
        return None
    # A restarted component's counter starts again from zero: count from there.
    increase = after.counters[name] - before.counters.get(name, 0.0)
    if increase < 0:
        increase = after.counters[name]
    return increase / elapsed


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000
