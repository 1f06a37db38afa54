"""Prometheus registries for the components: their own metrics plus the process's."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

T = TypeVar("T")


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


class PerRegistry(Generic[T]):
    """A module's metric families, made once per registry and then shared.

    prometheus_client refuses a second family of one name in a registry, and several
    instances (controllers, queues, electors of one process or of a test) may report into
    the same one. Held weakly: a registry that is dropped takes its families with it.
    """

    def __init__(self, make: Callable[[CollectorRegistry], T]) -> None:
        self._make = make
        self._made: weakref.WeakKeyDictionary[CollectorRegistry, T] = weakref.WeakKeyDictionary()

    def __call__(self, registry: CollectorRegistry) -> T:
        made = self._made.get(registry)
        if made is None:
            made = self._made[registry] = self._make(registry)
        return made
