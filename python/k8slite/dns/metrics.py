"""The DNS server's Prometheus metrics, under CoreDNS's names and labels."""

from __future__ import annotations

import dns.rcode
import dns.rdatatype
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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


class DnsMetrics:
    def __init__(self, server: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or component_registry()
        self.server = server
        r = self.registry
        self._requests = Counter(
            "coredns_dns_requests_total",
            "Counter of DNS requests made per zone, protocol and family.",
            ["server", "zone", "view", "proto", "family", "type"],
            registry=r,
        )
        self._responses = Counter(
            "coredns_dns_responses_total",
            "Counter of response status codes.",
            ["server", "zone", "view", "rcode", "plugin"],
            registry=r,
        )
        self._duration = Histogram(
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took per zone.",
            ["server", "zone", "view", "type"],
            buckets=_TIME_BUCKETS,
            registry=r,
        )
        self._hits = Counter(
            "coredns_cache_hits_total",
            "The count of cache hits.",
            ["server", "type", "zones", "view"],
            registry=r,
        )
        self._misses = Counter(
            "coredns_cache_misses_total",
            "The count of cache misses. Deprecated, derive misses from cache hits/requests "
            "counters.",
            ["server", "zones", "view"],
            registry=r,
        )
        self.cache_requests = Counter(
            "coredns_cache_requests_total",
            "The count of cache requests.",
            ["server", "zones", "view"],
            registry=r,
        ).labels(server, ZONE, "")
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
        self.cache_misses = self._misses.labels(server, ZONE, "")
        self._hit = {t: self._hits.labels(server, t, ZONE, "") for t in ("success", "denial")}
        # Label lookups cost more than the increments; the children are kept.
        self._request_children: dict[tuple[str, str, int], Counter] = {}
        self._response_children: dict[tuple[int, str], Counter] = {}
        self._duration_children: dict[int, Histogram] = {}

    def cache_hit(self, denial: bool) -> None:
        self.cache_requests.inc()
        self._hit["denial" if denial else "success"].inc()

    def cache_miss(self) -> None:
        self.cache_requests.inc()
        self.cache_misses.inc()

    def observe(
        self, proto: str, family: str, qtype: int, rcode: int, plugin: str, seconds: float
    ) -> None:
        """One request answered: counted by type, by rcode, and timed."""
        key = (proto, family, qtype)
        child = self._request_children.get(key)
        if child is None:
            label = type_label(qtype)
            child = self._requests.labels(self.server, ZONE, "", proto, family, label)
            self._request_children[key] = child
        child.inc()
        rkey = (rcode, plugin)
        rchild = self._response_children.get(rkey)
        if rchild is None:
            rchild = self._responses.labels(self.server, ZONE, "", rcode_text(rcode), plugin)
            self._response_children[rkey] = rchild
        rchild.inc()
        hist = self._duration_children.get(qtype)
        if hist is None:
            hist = self._duration.labels(self.server, ZONE, "", type_label(qtype))
            self._duration_children[qtype] = hist
        hist.observe(seconds)
