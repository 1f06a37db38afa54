"""The scheduler's Prometheus metrics, named and labelled as kube-scheduler's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SCHEDULED, UNSCHEDULABLE, ERROR = "scheduled", "unschedulable", "error"
QUEUES = ("active", "backoff", "unschedulable", "gated")


def _exponential(start: float, factor: float, count: int) -> list[float]:
    return [start * factor**i for i in range(count)]


class SchedulerMetrics:
    """One set of scheduler metrics in `registry` (each scheduler instance gets its own)."""

    def __init__(self, registry: CollectorRegistry, profile: str) -> None:
        self.profile = profile
        self.attempts = Counter(
            "scheduler_schedule_attempts_total",
            "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod "
            "could not be scheduled, while 'error' means an internal scheduler problem.",
            ("result", "profile"),
            registry=registry,
        )
        self.attempt_duration = Histogram(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            ("result", "profile"),
            buckets=_exponential(0.001, 2, 15),
            registry=registry,
        )
        self.pending = Gauge(
            "scheduler_pending_pods",
            "Number of pending pods, by the queue type. 'active' means number of pods in "
            "activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means "
            "number of pods in unschedulablePods that the scheduler attempted to schedule "
            "and failed; 'gated' is the number of unschedulable pods that the scheduler "
            "never attempted to schedule because they are gated.",
            ("queue",),
            registry=registry,
        )
        self.sli_duration = Histogram(
            "scheduler_pod_scheduling_sli_duration_seconds",
            "E2e latency for a pod being scheduled, from the time the pod enters the "
            "scheduling queue and might involve multiple scheduling attempts.",
            ("attempts",),
            buckets=_exponential(0.01, 2, 20),
            registry=registry,
        )
        # Each labelled child looked up once: labels() costs more than inc() or observe(),
        # and these are called once or twice per pod.
        self._attempts = {
            r: self.attempts.labels(r, profile) for r in (SCHEDULED, UNSCHEDULABLE, ERROR)
        }
        self._durations = {
            r: self.attempt_duration.labels(r, profile) for r in (SCHEDULED, UNSCHEDULABLE, ERROR)
        }
        self._sli: dict[int, Any] = {}

    def watch_queue(self, pending: Callable[[], dict[str, int]]) -> None:
        """Report the queue's sizes whenever metrics are collected."""

        def size(name: str) -> Callable[[], float]:
            return lambda: float(pending().get(name, 0))

        for name in QUEUES:
            self.pending.labels(name).set_function(size(name))

    def attempt(self, result: str, seconds: float) -> None:
        self._attempts[result].inc()
        self._durations[result].observe(seconds)

    def scheduled(self, attempts: int, since_queued: float) -> None:
        child = self._sli.get(attempts)
        if child is None:
            child = self._sli[attempts] = self.sli_duration.labels(str(attempts))
        child.observe(since_queued)
