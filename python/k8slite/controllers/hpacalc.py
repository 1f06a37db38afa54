"""The HPA's replica calculation from per-pod resource metrics, as upstream's ReplicaCalculator.

Pure functions over pods and metrics (values in thousandths, as upstream's MilliValue), so
upstream's documented cases can be checked without a cluster: the usage ratio against the
target, the tolerance around 1.0, and how pods that are missing metrics, not yet ready
(CPU only) or going away count towards it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from k8slite.api.meta import parse_time
from k8slite.api.quantity import QuantityError, milli_value
from k8slite.component.objects import Obj, get_condition, is_deleting, name_of


class MetricsError(Exception):
    """No replica count can be computed; the message is upstream's."""


@dataclass(frozen=True)
class PodMetric:
    """One pod's usage of a resource in thousandths, and the window it was measured over."""

    value: int
    timestamp: float = 0.0
    window: float = 0.0


@dataclass(frozen=True)
class Tolerances:
    """How far the usage ratio may stray from 1.0 before the HPA acts, per direction."""

    scale_down: float = 0.1
    scale_up: float = 0.1

    def within(self, ratio: float) -> bool:
        return 1.0 - self.scale_down <= ratio <= 1.0 + self.scale_up


@dataclass
class PodGroups:
    ready: int = 0
    unready: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)
    ignored: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Readiness:
    """--horizontal-pod-autoscaler-cpu-initialization-period and -initial-readiness-delay."""

    cpu_initialization_period: float = 300.0
    initial_readiness_delay: float = 30.0


def _time(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    return parse_time(value).timestamp()


def group_pods(
    pods: list[Obj],
    metrics: dict[str, PodMetric],
    resource: str,
    readiness: Readiness,
    now: float,
) -> PodGroups:
    """Sort the target's pods: deleted or failed ones are ignored, pending ones unready,
    those without a metric missing; for CPU, a pod whose sample may predate its readiness
    (within the initialization period) or that has never been ready counts as unready."""
    groups = PodGroups()
    for pod in pods:
        name = name_of(pod)
        status = pod.get("status") or {}
        phase = status.get("phase")
        if is_deleting(pod) or phase == "Failed":
            groups.ignored.add(name)
            continue
        if phase == "Pending":
            groups.unready.add(name)
            continue
        metric = metrics.get(name)
        if metric is None:
            groups.missing.add(name)
            continue
        if resource == "cpu" and _cpu_unready(pod, status, metric, readiness, now):
            groups.unready.add(name)
            continue
        groups.ready += 1
    return groups


def _cpu_unready(
    pod: Obj, status: Obj, metric: PodMetric, readiness: Readiness, now: float
) -> bool:
    condition = get_condition(status, "Ready")
    started = _time(status.get("startTime"))
    if condition is None or started is None:
        return True
    transition = _time(condition.get("lastTransitionTime")) or 0.0
    if started + readiness.cpu_initialization_period > now:
        # Still starting: ignore a sample taken before one full window after it became ready.
        return condition.get("status") == "False" or metric.timestamp < transition + metric.window
    # Later, ignore only a pod that is unready and has never been ready.
    return (
        condition.get("status") == "False"
        and started + readiness.initial_readiness_delay > transition
    )


def pod_requests(pods: list[Obj], resource: str, container: str = "") -> dict[str, int]:
    """Each pod's request of the resource in thousandths: its containers' (and restartable
    init containers') sum, or just the named container's."""
    out: dict[str, int] = {}
    for pod in pods:
        spec = pod.get("spec") or {}
        containers = list(spec.get("containers") or [])
        containers += [
            c for c in spec.get("initContainers") or () if c.get("restartPolicy") == "Always"
        ]
        total = 0
        for c in containers:
            if container and c.get("name") != container:
                continue
            request = ((c.get("resources") or {}).get("requests") or {}).get(resource)
            if request is None:
                raise MetricsError(
                    f"missing request for {resource} in container {c.get('name', '')} "
                    f"of Pod {name_of(pod)}"
                )
            try:
                total += milli_value(request)
            except QuantityError as e:
                raise MetricsError(
                    f"invalid request for {resource} in Pod {name_of(pod)}: {e}"
                ) from e
        out[name_of(pod)] = total
    return out


def utilization_ratio(
    metrics: dict[str, PodMetric], requests: dict[str, int], target: int
) -> tuple[float, int, int]:
    """(usage over target, utilization in percent of request, average usage), over the
    pods that have both a metric and a request."""
    used = requested = entries = 0
    for name, metric in metrics.items():
        if name not in requests:
            continue
        used += metric.value
        requested += requests[name]
        entries += 1
    if requested == 0:
        raise MetricsError("no metrics returned matched known pods")
    utilization = used * 100 // requested
    return utilization / target, utilization, used // entries


def _usage_ratio(metrics: dict[str, PodMetric], target: int) -> tuple[float, int]:
    average = sum(m.value for m in metrics.values()) // len(metrics)
    return average / target, average


def _settle(
    current: int,
    ratio: float,
    new_ratio: float,
    counted: int,
    tolerances: Tolerances,
) -> int:
    """The count after missing and unready pods were filled in: unchanged if the change
    is within tolerance or the filling-in turned the direction around."""
    if tolerances.within(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return current
    replicas = math.ceil(new_ratio * counted)
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return current
    return replicas


def _start(
    pods: list[Obj],
    metrics: dict[str, PodMetric],
    resource: str,
    readiness: Readiness,
    now: float,
) -> tuple[PodGroups, dict[str, PodMetric]]:
    if not pods:
        raise MetricsError("no pods returned by selector while calculating replica count")
    groups = group_pods(pods, metrics, resource, readiness, now)
    kept = {n: m for n, m in metrics.items() if n not in groups.ignored and n not in groups.unready}
    if not kept:
        raise MetricsError("did not receive metrics for targeted pods (pods might be unready)")
    return groups, kept


def resource_replicas(
    current: int,
    target_utilization: int,
    resource: str,
    pods: list[Obj],
    metrics: dict[str, PodMetric],
    *,
    tolerances: Tolerances = Tolerances(),
    readiness: Readiness = Readiness(),
    now: float,
    container: str = "",
) -> tuple[int, int, int]:
    """GetResourceReplicas: (replicas, utilization %, average usage) for a Utilization
    target. On a scale-down a pod with no metric counts as using max(100%, target) of its
    request; on a scale-up, missing and unready pods count as using nothing."""
    groups, kept = _start(pods, metrics, resource, readiness, now)
    requests = pod_requests(pods, resource, container)
    ratio, utilization, average = utilization_ratio(kept, requests, target_utilization)
    up_with_unready = bool(groups.unready) and ratio > 1.0
    if not up_with_unready and not groups.missing:
        if tolerances.within(ratio):
            return current, utilization, average
        return math.ceil(ratio * groups.ready), utilization, average
    filled = dict(kept)
    if groups.missing and ratio != 1.0:
        fallback = max(100, target_utilization)
        for name in groups.missing:
            value = requests.get(name, 0) * fallback // 100 if ratio < 1.0 else 0
            filled[name] = PodMetric(value)
    if up_with_unready:
        for name in groups.unready:
            filled[name] = PodMetric(0)
    new_ratio = utilization_ratio(filled, requests, target_utilization)[0]
    return _settle(current, ratio, new_ratio, len(filled), tolerances), utilization, average


def raw_resource_replicas(
    current: int,
    target_milli: int,
    resource: str,
    pods: list[Obj],
    metrics: dict[str, PodMetric],
    *,
    tolerances: Tolerances = Tolerances(),
    readiness: Readiness = Readiness(),
    now: float,
) -> tuple[int, int]:
    """GetRawResourceReplicas: (replicas, average usage) for an AverageValue target; a
    missing pod counts as using the target on a scale-down and nothing on a scale-up."""
    groups, kept = _start(pods, metrics, resource, readiness, now)
    ratio, average = _usage_ratio(kept, target_milli)
    up_with_unready = bool(groups.unready) and ratio > 1.0
    if not up_with_unready and not groups.missing:
        if tolerances.within(ratio):
            return current, average
        return math.ceil(ratio * groups.ready), average
    filled = dict(kept)
    for name in groups.missing:
        filled[name] = PodMetric(target_milli if ratio < 1.0 else 0)
    if up_with_unready:
        for name in groups.unready:
            filled[name] = PodMetric(0)
    new_ratio = _usage_ratio(filled, target_milli)[0]
    return _settle(current, ratio, new_ratio, len(filled), tolerances), average
