"""The DNS server's Prometheus metrics, under CoreDNS's names and labels."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

import dns.rcode
import dns.rdatatype
from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from k8slite.metrics import component_registry

# CoreDNS's plugin.TimeBuckets: exponential from 250 µs, doubling, 16 of them (about 8 s).
_TIME_BUCKETS = tuple(0.00025 * 2**i for i in range(16))
# CoreDNS's: exponential from 1 ms, doubling, 20 of them (about 9 minutes).
_PROGRAMMING_BUCKETS = tuple(0.001 * 2**i for i in range(20))
# The query types CoreDNS counts by name; the rest are "other".
_MONITORED = frozenset(
    dns.rdatatype.from_text(t)
    for t in (
        *("A", "AAAA", "MX", "SOA", "CNAME", "PTR", "TXT", "NS", "SRV"),
        *("DS", "DNSKEY", "RRSIG", "NSEC", "NSEC3", "HTTPS", "IXFR", "AXFR", "ANY"),
    )
)
# The default Corefile serves everything from one block for the root zone.
ZONE = "."


def type_label(qtype: int) -> str:
    return (
        dns.rdatatype.to_text(dns.rdatatype.RdataType.make(qtype))
        if qtype in _MONITORED
        else "other"
    )


def rcode_text(rcode: int) -> str:
    return dns.rcode.to_text(dns.rcode.Rcode.make(rcode))


class _Tally(Collector):
    """The per-query metrics as plain counts, exported at scrape time.

    prometheus_client's children cost a few microseconds per increment (a lock each), as
    much as answering a query from the cache; these are dict updates on the server's one
    thread, turned into CoreDNS's families (by type name, rcode text) only when scraped.
    """

    def __init__(self, server: str) -> None:
        self.server = server
        self.requests: dict[tuple[str, str, int], int] = {}  # (proto, family, qtype)
        self.responses: dict[tuple[int, str], int] = {}  # (rcode, plugin)
        # qtype -> answers per bucket (not cumulative; the last one is +Inf), and their sum
        self.durations: dict[int, list[int]] = {}
        self.duration_sums: dict[int, float] = {}
        self.hits = [0, 0]  # success, denial
        self.misses = 0

    def collect(self) -> Iterator[Metric]:
        base = [self.server, ZONE, ""]
        requests = CounterMetricFamily(
            "coredns_dns_requests",
            "Counter of DNS requests made per zone, protocol and family.",
            labels=["server", "zone", "view", "proto", "family", "type"],
        )
        by_type: dict[tuple[str, str, str], int] = {}
        for (proto, family, qtype), n in list(self.requests.items()):
            key = (proto, family, type_label(qtype))
            by_type[key] = by_type.get(key, 0) + n
        for key, n in by_type.items():
            requests.add_metric([*base, *key], n)
        yield requests
        responses = CounterMetricFamily(
            "coredns_dns_responses",
            "Counter of response status codes.",
            labels=["server", "zone", "view", "rcode", "plugin"],
        )
        for (rcode, plugin), n in list(self.responses.items()):
            responses.add_metric([*base, rcode_text(rcode), plugin], n)
        yield responses
        duration = HistogramMetricFamily(
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took per zone.",
            labels=["server", "zone", "view", "type"],
        )
        counts: dict[str, list[int]] = {}
        sums: dict[str, float] = {}
        for qtype, per_bucket in list(self.durations.items()):
            label = type_label(qtype)
            into = counts.setdefault(label, [0] * len(per_bucket))
            for i, n in enumerate(per_bucket):
                into[i] += n
            sums[label] = sums.get(label, 0.0) + self.duration_sums.get(qtype, 0.0)
        for label, per_bucket in counts.items():
            total, buckets = 0, []
            for bound, n in zip(
                (*map(floatToGoString, _TIME_BUCKETS), "+Inf"), per_bucket, strict=True
            ):
                total += n
                buckets.append((bound, total))
            duration.add_metric([*base, label], buckets, sums[label])
        yield duration
        hits = CounterMetricFamily(
            "coredns_cache_hits",
            "The count of cache hits.",
            labels=["server", "type", "zones", "view"],
        )
        for kind, n in zip(("success", "denial"), self.hits, strict=True):
            hits.add_metric([self.server, kind, ZONE, ""], n)
        yield hits
        cache = [self.server, ZONE, ""]
        misses = CounterMetricFamily(
            "coredns_cache_misses",
            "The count of cache misses. Deprecated, derive misses from cache hits/requests "
            "counters.",
            labels=["server", "zones", "view"],
        )
        misses.add_metric(cache, self.misses)
        yield misses
        requests_total = CounterMetricFamily(
            "coredns_cache_requests",
            "The count of cache requests.",
            labels=["server", "zones", "view"],
        )
        requests_total.add_metric(cache, sum(self.hits) + self.misses)
        yield requests_total


class DnsMetrics:
    def __init__(self, server: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or component_registry()
        self.server = server
        r = self.registry
        self._tally = _Tally(server)
        r.register(self._tally)
        self.cache_entries = Gauge(
            "coredns_cache_entries",
            "The number of elements in the cache.",
            ["server", "type", "zones", "view"],
            registry=r,
        ).labels(server, "success", ZONE, "")
        self.forward_duration = Histogram(
            "coredns_proxy_request_duration_seconds",
            "Histogram of the time each request took.",
            ["proxy_name", "to", "rcode"],
            buckets=_TIME_BUCKETS,
            registry=r,
        )
        # CoreDNS records it for headless Services with a selector only: theirs are the
        # answers that change with endpoints (a ClusterIP's does not).
        self.programming = Histogram(
            "coredns_kubernetes_dns_programming_duration_seconds",
            "Histogram of the time (in seconds) it took to program a dns instance.",
            ["service_kind"],
            buckets=_PROGRAMMING_BUCKETS,
            registry=r,
        ).labels("headless_with_selector")
        self.records = Gauge(
            "k8slite_dns_records", "Records the cluster's objects stand for.", registry=r
        )

    @property
    def cache_misses(self) -> int:
        return self._tally.misses

    @property
    def cache_hits(self) -> int:
        return sum(self._tally.hits)

    def cache_hit(self, denial: bool) -> None:
        self._tally.hits[denial] += 1

    def cache_miss(self) -> None:
        self._tally.misses += 1

    def observe(
        self, proto: str, family: str, qtype: int, rcode: int, plugin: str, seconds: float
    ) -> None:
        """One request answered: counted by type, by rcode, and timed."""
        tally = self._tally
        key = (proto, family, qtype)
        tally.requests[key] = tally.requests.get(key, 0) + 1
        rkey = (rcode, plugin)
        tally.responses[rkey] = tally.responses.get(rkey, 0) + 1
        per_bucket = tally.durations.get(qtype)
        if per_bucket is None:
            per_bucket = tally.durations[qtype] = [0] * (len(_TIME_BUCKETS) + 1)
            tally.duration_sums[qtype] = 0.0
        # Prometheus buckets are upper bounds, inclusive: the first bound >= seconds.
        per_bucket[bisect_left(_TIME_BUCKETS, seconds)] += 1
        tally.duration_sums[qtype] += seconds
