"""Prometheus registries for the components: their own metrics plus the process's."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector


def component_registry() -> CollectorRegistry:
    """A new registry holding the process metrics every upstream component serves.

    process_* (CPU, memory, file descriptors, start time) are upstream's names; python_info
    and python_gc_* stand where a Go component has go_*. A component that keeps its metrics
    in a registry of its own (so that tests may run several in one process) starts from this
    one; those on prometheus_client's global REGISTRY have these already.
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
