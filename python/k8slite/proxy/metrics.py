"""The proxy's Prometheus metrics, with upstream kube-proxy's names where upstream has one."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from k8slite.metrics import component_registry

# Upstream's buckets: exponential from 1 ms, doubling, 15 of them (about 16 s).
_SYNC_BUCKETS = tuple(0.001 * 2**i for i in range(15))
_PROGRAMMING_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    0.75,
    1,
    1.5,
    2,
    3,
    5,
    10,
    20,
    30,
    60,
    120,
    300,
)


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or component_registry()
        r = self.registry
        self.sync_duration = Histogram(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency: building and applying the rules or listeners.",
            buckets=_SYNC_BUCKETS,
            registry=r,
        )
        self.programming_duration = Histogram(
            "kubeproxy_network_programming_duration_seconds",
            "From a service or endpoints change (the EndpointSlice's "
            "endpoints.kubernetes.io/last-change-trigger-time, else when the proxy saw it) "
            "to the rules or listeners for it being in place.",
            buckets=_PROGRAMMING_BUCKETS,
            registry=r,
        )
        self.last_sync = Gauge(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "When the rules or listeners were last applied successfully.",
            registry=r,
        )
        self.sync_failures = Counter(
            "kubeproxy_sync_proxy_rules_failures",
            "Syncs that could not apply everything (retried).",
            registry=r,
        )
        self.service_changes = Counter(
            "kubeproxy_sync_proxy_rules_service_changes", "Service changes seen.", registry=r
        )
        self.endpoint_changes = Counter(
            "kubeproxy_sync_proxy_rules_endpoint_changes", "EndpointSlice changes seen.", registry=r
        )
        self.service_ports = Gauge(
            "kubeproxy_sync_proxy_rules_service_ports",
            "Service ports programmed by the last sync.",
            registry=r,
        )
        self.active_connections = Gauge(
            "kubeproxy_userspace_active_connections",
            "Connections being relayed (userspace mode), per service port.",
            ("service",),
            registry=r,
        )
