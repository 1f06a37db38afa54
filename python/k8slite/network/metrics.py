"""The node network agent's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from k8slite.metrics import component_registry

_SYNC_BUCKETS = tuple(0.001 * 2**i for i in range(15))


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or component_registry()
        r = self.registry
        self.sync_duration = Histogram(
            "k8slite_netagent_sync_duration_seconds",
            "One sync: the node's bridge, the routes to every other node, the masquerade rule.",
            buckets=_SYNC_BUCKETS,
            registry=r,
        )
        self.sync_failures = Counter(
            "k8slite_netagent_sync_failures_total", "Syncs that failed and are retried.", registry=r
        )
        self.last_sync = Gauge(
            "k8slite_netagent_last_sync_timestamp_seconds",
            "When the last successful sync ended.",
            registry=r,
        )
        self.peers = Gauge(
            "k8slite_netagent_peer_nodes",
            "Other nodes whose pod CIDR this node routes.",
            registry=r,
        )
        self.changes = Counter(
            "k8slite_netagent_kernel_changes_total",
            "Routes, neighbour and FDB entries written or removed.",
            registry=r,
        )
