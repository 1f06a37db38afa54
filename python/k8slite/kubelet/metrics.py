"""The kubelet's Prometheus metrics, and a runtime wrapper that counts and times every call."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from k8slite.kubelet.runtime.base import Runtime
from k8slite.metrics import component_registry

# Upstream's kubelet buckets for pod start and worker durations.
_POD_BUCKETS = (
    0.5,
    1,
    2,
    3,
    4,
    5,
    6,
    8,
    10,
    20,
    30,
    45,
    60,
    120,
    180,
    240,
    300,
    360,
    480,
    600,
    900,
    1200,
    1800,
    2700,
    3600,
)
_OP_BUCKETS = (
    0.005,
    0.0125,
    0.03125,
    0.078125,
    0.1953125,
    0.48828125,
    1.220703125,
    3.0517578125,
    7.62939453125,
    19.073486328125,
    47.6837158203125,
    119.20928955078125,
    298.0232238769531,
    745.0580596923828,
)
# Runtime calls and the CRI operation names upstream reports them as.
_OPERATIONS = {
    "version": "version",
    "run_sandbox": "run_podsandbox",
    "stop_sandbox": "stop_podsandbox",
    "remove_sandbox": "remove_podsandbox",
    "sandbox_status": "podsandbox_status",
    "list_sandboxes": "list_podsandbox",
    "ensure_image": "pull_image",
    "list_images": "list_images",
    "create_container": "create_container",
    "start_container": "start_container",
    "stop_container": "stop_container",
    "remove_container": "remove_container",
    "container_status": "container_status",
    "list_containers": "list_containers",
    "container_stats": "container_stats",
    "exec": "exec_sync",
    "exec_stream": "exec",
    "attach": "attach",
    "port_forward": "port_forward",
}


class KubeletMetrics:
    """The metric families of one kubelet, in a registry of its own (served on /metrics)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or component_registry()
        r = self.registry
        self.running_pods = Gauge(
            "kubelet_running_pods", "Number of pods that have a running pod sandbox", registry=r
        )
        self.running_containers = Gauge(
            "kubelet_running_containers",
            "Number of containers currently running",
            ["container_state"],
            registry=r,
        )
        self.pod_start = Histogram(
            "kubelet_pod_start_duration_seconds",
            "Duration in seconds from kubelet seeing a pod for the first time to the pod "
            "starting to run",
            buckets=_POD_BUCKETS,
            registry=r,
        )
        self.pod_worker = Histogram(
            "kubelet_pod_worker_duration_seconds",
            "Duration in seconds to sync a single pod. Broken down by operation type: create, "
            "update, or sync",
            ["operation_type"],
            buckets=_POD_BUCKETS,
            registry=r,
        )
        self.runtime_ops = Counter(
            "kubelet_runtime_operations",
            "Cumulative number of runtime operations by operation type.",
            ["operation_type"],
            registry=r,
        )
        self.runtime_duration = Histogram(
            "kubelet_runtime_operations_duration_seconds",
            "Duration in seconds of runtime operations. Broken down by operation type.",
            ["operation_type"],
            buckets=_OP_BUCKETS,
            registry=r,
        )
        self.runtime_errors = Counter(
            "kubelet_runtime_operations_errors",
            "Cumulative number of runtime operation errors by operation type.",
            ["operation_type"],
            registry=r,
        )

    def set_sources(
        self, running_pods: Callable[[], int], container_states: Callable[[], dict[str, int]]
    ) -> None:
        """Gauges computed at scrape time from the kubelet's own state."""
        self.running_pods.set_function(running_pods)

        def count(state: str) -> Callable[[], float]:
            return lambda: float(container_states().get(state, 0))

        for state in ("created", "running", "exited", "unknown"):
            self.running_containers.labels(state).set_function(count(state))


class MeteredRuntime:
    """A Runtime that counts, times and counts the failures of each call it passes on."""

    def __init__(self, inner: Runtime, metrics: KubeletMetrics) -> None:
        self.inner = inner
        self.name = inner.name
        self._metrics = metrics

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self.inner, attr)
        op = _OPERATIONS.get(attr)
        if op is None:
            return value
        m = self._metrics

        async def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            m.runtime_ops.labels(op).inc()
            try:
                return await value(*args, **kwargs)
            except Exception:
                m.runtime_errors.labels(op).inc()
                raise
            finally:
                m.runtime_duration.labels(op).observe(time.perf_counter() - start)

        return call

    def logs(self, container_id: str, **kwargs: Any) -> AsyncGenerator[bytes, None]:
        self._metrics.runtime_ops.labels("container_logs").inc()
        return self.inner.logs(container_id, **kwargs)
