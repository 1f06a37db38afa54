"""The HPA's replica calculation against upstream's documented algorithm and its test cases
(pkg/controller/podautoscaler/replica_calculator_test.go): the usage ratio, the tolerance,
and pods that are unready, missing metrics or going away."""

from __future__ import annotations

import pytest

from k8slite.api.meta import format_time
from k8slite.controllers.hpacalc import (
    MetricsError,
    PodMetric,
    Readiness,
    Tolerances,
    pod_requests,
    raw_resource_replicas,
    resource_replicas,
)
from k8slite.controllers.hpametrics import milli_quantity

NOW = 1_800_000_000.0
# Started and ready long ago: past the CPU initialization period, samples all count.
LONG_AGO = NOW - 3600


def _stamp(t: float) -> str:
    import datetime as dt

    return format_time(dt.datetime.fromtimestamp(t, dt.UTC))


def pod(
    name: str,
    cpu: str | None = "1",
    *,
    phase: str = "Running",
    ready: bool = True,
    started: float = LONG_AGO,
    ready_at: float = LONG_AGO,
    deleting: bool = False,
) -> dict:
    resources = {"requests": {"cpu": cpu}} if cpu is not None else {}
    obj: dict = {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"containers": [{"name": "app", "resources": resources}]},
        "status": {
            "phase": phase,
            "startTime": _stamp(started),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": _stamp(ready_at),
                }
            ],
        },
    }
    if deleting:
        obj["metadata"]["deletionTimestamp"] = _stamp(NOW)
    return obj


def usage(**milli: int) -> dict[str, PodMetric]:
    return {name: PodMetric(value, NOW - 10, 15.0) for name, value in milli.items()}


def test_documented_ratio_doubles_and_halves() -> None:
    # desiredReplicas = ceil[currentReplicas * (currentMetricValue / desiredMetricValue)]:
    # 200m against 100m doubles, 50m against 100m halves.
    pods = [pod(f"p{i}") for i in range(4)]
    up = raw_resource_replicas(4, 100, "cpu", pods, usage(p0=200, p1=200, p2=200, p3=200), now=NOW)
    assert up == (8, 200)
    down = raw_resource_replicas(4, 100, "cpu", pods, usage(p0=50, p1=50, p2=50, p3=50), now=NOW)
    assert down == (2, 50)


def test_scale_up_by_utilization() -> None:
    # TestReplicaCalcScaleUp: 300m, 500m, 700m of 1 CPU each against 30%.
    pods = [pod("a"), pod("b"), pod("c")]
    got = resource_replicas(3, 30, "cpu", pods, usage(a=300, b=500, c=700), now=NOW)
    assert got == (5, 50, 500)


def test_scale_down_by_utilization() -> None:
    # TestReplicaCalcScaleDown: 28% of request against 50% from five pods leaves three.
    pods = [pod(n) for n in "abcde"]
    metrics = usage(a=100, b=300, c=500, d=250, e=250)
    assert resource_replicas(5, 50, "cpu", pods, metrics, now=NOW) == (3, 28, 280)


def test_within_tolerance_keeps_the_count() -> None:
    # 102% of the target is within the default 10%: no change; a tolerance of 1% acts.
    pods = [pod("a"), pod("b"), pod("c")]
    metrics = usage(a=1010, b=1030, c=1020)
    assert resource_replicas(3, 100, "cpu", pods, metrics, now=NOW)[0] == 3
    tight = Tolerances(scale_down=0.01, scale_up=0.01)
    assert resource_replicas(3, 100, "cpu", pods, metrics, tolerances=tight, now=NOW)[0] == 4


def test_unready_pods_count_as_idle_on_scale_up() -> None:
    # TestReplicaCalcScaleUpUnreadyLessScale: the unready pod's sample is dropped from the
    # utilization (60%) and counted as 0 in the proposal: (0+500+700)/3000 = 40% -> 4.
    pods = [pod("a", ready=False, ready_at=NOW - 60), pod("b"), pod("c")]
    got = resource_replicas(
        3, 30, "cpu", pods, usage(a=300, b=500, c=700), now=NOW, readiness=Readiness(300, 3600)
    )
    assert got == (4, 60, 600)


def test_unready_pod_ignored_only_within_cpu_initialization() -> None:
    # A pod started long ago and ready before: its sample counts. A pod still starting whose
    # sample predates one window after it became ready is unready.
    fresh = pod("a", started=NOW - 20, ready_at=NOW - 12)  # sample at NOW-10, window 15s
    pods = [fresh, pod("b")]
    # Only b counts: 800/1000 = 80% vs 50%: b alone proposes ceil(1.6 * 1) = 2, but a counts
    # as idle on a scale-up: (0 + 800) / 2000 = 40% < 50% turns the direction: keep 2.
    assert resource_replicas(2, 50, "cpu", pods, usage(a=900, b=800), now=NOW)[0] == 2
    # Memory has no initialization period: both samples count, 85% vs 50% -> 4.
    mem = [
        {**p, "spec": {"containers": [{"name": "app", "resources": {"requests": {"memory": "1"}}}]}}
        for p in pods
    ]
    assert resource_replicas(2, 50, "memory", mem, usage(a=900, b=800), now=NOW)[0] == 4


def test_missing_metrics_count_as_full_request_on_scale_down() -> None:
    # Scale-down with a pod missing metrics: it counts as using 100% of its request (or the
    # target if higher), which here turns a scale-down into no change.
    pods = [pod("a"), pod("b"), pod("c")]
    metrics = usage(a=100, b=100)  # 10% vs 50%: would go to 1 without c
    # (100 + 100 + 1000) / 3000 = 40% vs 50%: ratio 0.8, ceil(0.8 * 3) = 3.
    assert resource_replicas(3, 50, "cpu", pods, metrics, now=NOW) == (3, 10, 100)
    # Without the missing pod the same metrics halve the count (and more).
    assert resource_replicas(2, 50, "cpu", pods[:2], metrics, now=NOW)[0] == 1


def test_missing_metrics_count_as_idle_on_scale_up() -> None:
    pods = [pod("a"), pod("b"), pod("c"), pod("d")]
    metrics = usage(a=1000, b=1000)  # 100% vs 50% from the two that report
    # (1000 + 1000 + 0 + 0) / 4000 = 50%: exactly on target: no change.
    assert resource_replicas(4, 50, "cpu", pods, metrics, now=NOW)[0] == 4
    # Against 25%: ratio 2.0 -> 8 of the four counted pods.
    assert resource_replicas(4, 25, "cpu", pods, metrics, now=NOW)[0] == 8


def test_deleted_and_failed_pods_are_ignored() -> None:
    pods = [pod("a"), pod("b", deleting=True), pod("c", phase="Failed")]
    assert resource_replicas(3, 50, "cpu", pods, usage(a=1000, b=0, c=0), now=NOW) == (
        2,
        100,
        1000,
    )


def test_errors_are_upstreams() -> None:
    with pytest.raises(MetricsError, match="^no pods returned by selector"):
        resource_replicas(1, 50, "cpu", [], usage(a=1), now=NOW)
    with pytest.raises(MetricsError, match=r"^did not receive metrics for targeted pods"):
        resource_replicas(1, 50, "cpu", [pod("a", phase="Pending")], usage(a=1), now=NOW)
    with pytest.raises(MetricsError, match="^missing request for cpu in container app of Pod a$"):
        resource_replicas(1, 50, "cpu", [pod("a", cpu=None)], usage(a=1), now=NOW)


def test_requests_sum_containers_or_one() -> None:
    two = pod("a")
    two["spec"]["containers"].append({"name": "side", "resources": {"requests": {"cpu": "250m"}}})
    two["spec"]["initContainers"] = [
        {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}},
        {"name": "init", "resources": {}},  # run-to-completion: not counted, needs none
    ]
    assert pod_requests([two], "cpu") == {"a": 1300}
    assert pod_requests([two], "cpu", "side") == {"a": 250}


def test_average_value_with_unready_pods() -> None:
    # AverageValue (raw) target: 3 ready pods at 1.5 CPU vs 500m proposes 9; a pending pod
    # counts as idle on the way up: 4500 / 4 = 1125 -> ceil(2.25 * 4) = 9.
    pods = [pod("a"), pod("b"), pod("c"), pod("d", phase="Pending")]
    got = raw_resource_replicas(4, 500, "cpu", pods, usage(a=1500, b=1500, c=1500), now=NOW)
    assert got == (9, 1500)


def test_status_quantities_are_decimal_si() -> None:
    # currentMetrics' averageValue, as resource.NewMilliQuantity(v, DecimalSI) prints it.
    shown = [milli_quantity(m) for m in (0, 198, 1500, 2000, 1_000_000, 128_000_000_000)]
    assert shown == ["0", "198m", "1500m", "2", "1k", "128M"]
