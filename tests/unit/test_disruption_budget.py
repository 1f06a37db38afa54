"""The disruption budget arithmetic (controller side) and the eviction's budget decisions."""

from __future__ import annotations

import datetime as dt

import pytest

from k8slite.api import errors
from k8slite.api.meta import format_time
from k8slite.apiserver import pbobjects
from k8slite.apiserver.eviction import budgets_for, can_ignore_budget, take_disruption
from k8slite.component.objects import Obj, get_condition
from k8slite.controllers.disruption import (
    DELETION_TIMEOUT,
    Budget,
    BudgetError,
    count_healthy,
    disrupted_pod_map,
    expected_and_desired,
    needs_scale,
    scaled_value,
    stale_disruption_wait,
)

NOW = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def pod(name: str, ready: bool = True, deleting: bool = False, phase: str = "Running") -> Obj:
    m: Obj = {"name": name, "labels": {"app": "web"}}
    if deleting:
        m["deletionTimestamp"] = format_time(NOW)
    return {
        "metadata": m,
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def pdb(generation: int = 1, **status: object) -> Obj:
    return {
        "metadata": {"name": "web", "generation": generation},
        "spec": {"selector": {"matchLabels": {"app": "web"}}},
        "status": {"observedGeneration": 1, **status},
    }


@pytest.mark.parametrize(
    ("value", "total", "expected"),
    [(3, 10, 3), ("50%", 3, 2), ("34%", 3, 2), ("0%", 7, 0), ("100%", 7, 7), ("10%", 0, 0)],
)
def test_scaled_value_rounds_up(value: object, total: int, expected: int) -> None:
    assert scaled_value(value, total, True) == expected


def test_scaled_value_refuses_non_percentages() -> None:
    with pytest.raises(BudgetError):
        scaled_value("five", 3, True)


def test_what_needs_the_controllers_scale() -> None:
    assert not needs_scale({"minAvailable": 2})
    assert needs_scale({"minAvailable": "50%"})
    assert needs_scale({"maxUnavailable": 1})
    assert needs_scale({"maxUnavailable": "25%"})


def test_expected_and_desired_as_upstream() -> None:
    # An integer minAvailable counts the pods found; no scale needed.
    assert expected_and_desired({"minAvailable": 2}, 5, None) == (5, 2)
    # A percentage of the controllers' scale, rounded up.
    assert expected_and_desired({"minAvailable": "50%"}, 2, 3) == (3, 2)
    # maxUnavailable: desired = scale - maxUnavailable, never below 0.
    assert expected_and_desired({"maxUnavailable": 1}, 3, 3) == (3, 2)
    assert expected_and_desired({"maxUnavailable": "34%"}, 3, 3) == (3, 1)
    assert expected_and_desired({"maxUnavailable": 5}, 3, 3) == (3, 0)
    # Neither set: nothing expected, nothing allowed.
    assert expected_and_desired({}, 3, None) == (0, 0)


def test_disruptions_allowed_needs_expected_pods() -> None:
    assert Budget(3, 2, 3, {}).disruptions_allowed == 1
    assert Budget(2, 2, 3, {}).disruptions_allowed == 0
    assert Budget(1, 2, 3, {}).disruptions_allowed == 0
    # Healthy pods but none expected (a budget just created): no disruption yet.
    assert Budget(3, 0, 0, {}).disruptions_allowed == 0


def test_recently_disrupted_pods_do_not_count_as_healthy() -> None:
    pods = [pod("a"), pod("b"), pod("c", ready=False), pod("d", deleting=True)]
    recent = format_time(NOW - dt.timedelta(seconds=30))
    stale = format_time(NOW - DELETION_TIMEOUT - dt.timedelta(seconds=1))
    kept, recheck, overdue = disrupted_pod_map(pods, {"a": recent, "b": stale, "d": recent}, NOW)
    # a is still expected to go; b's deletion is overdue (counted again); d is going.
    assert kept == {"a": recent}
    assert [p["metadata"]["name"] for p in overdue] == ["b"]
    assert recheck is not None and recheck > NOW
    assert count_healthy(pods, kept, NOW) == 1  # b only: a disrupted, c unready, d deleting


def test_status_and_condition() -> None:
    budget = pdb(generation=2)
    status = Budget(3, 2, 3, {}).status(budget, format_time(NOW))
    assert status["observedGeneration"] == 2
    assert (status["currentHealthy"], status["desiredHealthy"], status["expectedPods"]) == (3, 2, 3)
    assert status["disruptionsAllowed"] == 1
    assert "disruptedPods" not in status
    cond = get_condition(status, "DisruptionAllowed")
    assert cond == {
        "type": "DisruptionAllowed",
        "status": "True",
        "observedGeneration": 2,
        "lastTransitionTime": format_time(NOW),
        "reason": "SufficientPods",
        "message": "",
    }
    budget["status"] = status
    assert Budget(3, 2, 3, {}).up_to_date(budget)
    later = format_time(NOW + dt.timedelta(minutes=1))
    spent = Budget(2, 2, 3, {}).status(budget, later)
    cond = get_condition(spent, "DisruptionAllowed")
    assert cond is not None
    assert (cond["status"], cond["reason"], cond["lastTransitionTime"]) == (
        "False",
        "InsufficientPods",
        later,
    )


def _marked(
    seconds_ago: int,
    reason: str = "EvictionByEvictionAPI",
    deleting: bool = False,
    phase: str = "Running",
) -> Obj:
    p = pod("a", deleting=deleting, phase=phase)
    p["status"]["conditions"].append(
        {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": reason,
            "lastTransitionTime": format_time(NOW - dt.timedelta(seconds=seconds_ago)),
        }
    )
    return p


def test_stale_disruption_target() -> None:
    # Marked by an eviction 30 s ago and still not terminating: stale in 90 s.
    assert stale_disruption_wait(_marked(30), NOW) == 90.0
    assert stale_disruption_wait(_marked(600), NOW) == 0.0
    # Nothing to reset: no condition, the kubelet's own, terminating or finished pods.
    assert stale_disruption_wait(pod("a"), NOW) is None
    assert stale_disruption_wait(_marked(600, "TerminationByKubelet"), NOW) is None
    assert stale_disruption_wait(_marked(600, deleting=True), NOW) is None
    assert stale_disruption_wait(_marked(600, phase="Failed"), NOW) is None


# ---------------------------------------------------------------- the eviction side


def test_take_disruption_records_the_pod() -> None:
    budget = pdb(disruptionsAllowed=1, currentHealthy=3, desiredHealthy=2)
    out = take_disruption(budget, "a", format_time(NOW))
    assert out["status"]["disruptionsAllowed"] == 0
    assert out["status"]["disruptedPods"] == {"a": format_time(NOW)}
    cond = get_condition(out["status"], "DisruptionAllowed")
    assert cond is not None and cond["reason"] == "InsufficientPods"


def test_take_disruption_refuses_with_upstreams_429() -> None:
    budget = pdb(disruptionsAllowed=0, currentHealthy=2, desiredHealthy=2)
    with pytest.raises(errors.ApiError) as refused:
        take_disruption(budget, "a", format_time(NOW))
    status = refused.value.status()
    assert status["code"] == 429 and status["reason"] == "TooManyRequests"
    assert status["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert status["details"] == {
        "causes": [
            {
                "reason": "DisruptionBudget",
                "message": "The disruption budget web needs 2 healthy pods and has 2 currently",
            }
        ]
    }


def test_take_disruption_waits_for_the_controller() -> None:
    # A spec change the controller has not seen yet: retry later (10 s, as upstream).
    budget = pdb(generation=2, disruptionsAllowed=5)
    with pytest.raises(errors.ApiError) as refused:
        take_disruption(budget, "a", format_time(NOW))
    assert refused.value.code == 429
    assert refused.value.headers == {"Retry-After": "10"}
    assert "is still being processed by the server" in str(refused.value.details)


def test_which_pods_skip_the_budget() -> None:
    assert can_ignore_budget(pod("a", phase="Succeeded"))
    assert can_ignore_budget(pod("a", phase="Failed"))
    assert can_ignore_budget(pod("a", phase="Pending"))
    assert can_ignore_budget(pod("a", deleting=True))
    assert not can_ignore_budget(pod("a"))


def test_budgets_for_a_pod() -> None:
    selecting = pdb()
    empty = {**pdb(), "spec": {"selector": {}}}  # selects nothing for an eviction
    null = {**pdb(), "spec": {}}
    other = {**pdb(), "spec": {"selector": {"matchLabels": {"app": "db"}}}}
    assert budgets_for([selecting, empty, null, other], pod("a")) == [selecting]


# ------------------------------------------------------------ protobuf Eviction bodies


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, value: bytes | int) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


@pytest.mark.parametrize("api_version", ["policy/v1", "policy/v1beta1"])
def test_protobuf_eviction_body(api_version: str) -> None:
    """What a client-go typed client sends: runtime.Unknown around a policy Eviction."""
    delete_options = _field(1, 0) + _field(2, _field(1, b"uid-1"))
    eviction = _field(1, _field(1, b"web-1") + _field(3, b"ns")) + _field(2, delete_options)
    type_meta = _field(1, api_version.encode()) + _field(2, b"Eviction")
    body = pbobjects.MAGIC + _field(1, type_meta) + _field(2, eviction)
    decoded = pbobjects.decode(body)
    assert decoded == {
        "apiVersion": api_version,
        "kind": "Eviction",
        "metadata": {"name": "web-1", "namespace": "ns"},
        "deleteOptions": {"gracePeriodSeconds": 0, "preconditions": {"uid": "uid-1"}},
    }
