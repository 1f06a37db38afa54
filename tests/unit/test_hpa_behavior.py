"""The HPA's stabilization windows and scaling policies against upstream's documented
examples (the "Configurable scaling behavior" section of the HPA docs) and the defaults."""

from __future__ import annotations

from k8slite.api.autoscaling_v2 import default_hpa_spec
from k8slite.controllers.hpabehavior import (
    DOWN_STABILIZED,
    READY,
    SCALE_DOWN_LIMIT,
    SCALE_UP_LIMIT,
    TOO_FEW,
    TOO_MANY,
    UP_STABILIZED,
    WITHIN_RANGE,
    History,
    normalize,
    normalize_with_behavior,
    scale_down_limit,
)

T0 = 1_000_000.0


def behavior(**rules: dict) -> dict:
    """A spec.behavior as the API server stores it (defaults filled in)."""
    spec = {"behavior": dict(rules)}
    default_hpa_spec(spec)
    return spec["behavior"]


def test_defaults_are_upstreams() -> None:
    spec: dict = {"behavior": {}}
    default_hpa_spec(spec)
    assert spec["minReplicas"] == 1
    assert spec["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80},
            },
        }
    ]
    assert spec["behavior"]["scaleUp"] == {
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15},
        ],
    }
    # The scale-down window is the controller's flag, so it stays unset.
    assert spec["behavior"]["scaleDown"] == {
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
    }


def test_documented_scale_down_policies_pick_the_biggest_change() -> None:
    # Pods 4 / 60s and Percent 10 / 60s: from 80 replicas 8 go (10%); at 72, 10% is 7.2 and
    # 8 go again; below 40 the Pods policy removes 4 at a time.
    rules = behavior(
        scaleDown={
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 60},
                {"type": "Percent", "value": 10, "periodSeconds": 60},
            ]
        }
    )["scaleDown"]
    history = History()
    assert scale_down_limit(80, rules, history, T0) == 72
    assert scale_down_limit(72, rules, history, T0) == 64
    assert scale_down_limit(30, rules, history, T0) == 26
    # selectPolicy Min picks the smallest change; Disabled none.
    assert scale_down_limit(80, {**rules, "selectPolicy": "Min"}, history, T0) == 76
    assert scale_down_limit(80, {**rules, "selectPolicy": "Disabled"}, history, T0) == 80


def test_policies_count_the_changes_of_their_period() -> None:
    # After 80 -> 72, the 60 s period started at 80: no more may go until it passes.
    b = behavior(
        scaleDown={
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}],
        }
    )
    history = History()
    history.record_initial(80, T0)
    first = normalize_with_behavior(history, b, 80, 10, 1, 100, 300, T0)
    assert (first.replicas, first.limited, first.limit) == (72, True, SCALE_DOWN_LIMIT)
    history.record_scale(b, 80, 72, T0)
    held = normalize_with_behavior(history, b, 72, 10, 1, 100, 300, T0 + 30)
    assert held.replicas == 72 and held.limit == SCALE_DOWN_LIMIT
    later = normalize_with_behavior(history, b, 72, 10, 1, 100, 300, T0 + 61)
    assert later.replicas == 64


def test_default_scale_up_doubles_or_adds_four_per_15s() -> None:
    b = behavior()
    history = History()
    history.record_initial(1, T0)
    step = normalize_with_behavior(history, b, 1, 20, 1, 50, 300, T0)
    assert (step.replicas, step.limit) == (5, SCALE_UP_LIMIT)  # 1 + 4 beats 1 x 2
    history.record_scale(b, 1, 5, T0)
    assert normalize_with_behavior(history, b, 5, 20, 1, 50, 300, T0 + 5).replicas == 5
    step = normalize_with_behavior(history, b, 5, 20, 1, 50, 300, T0 + 16)
    assert step.replicas == 10  # 5 x 2 beats 5 + 4
    # maxReplicas bounds it, reported as TooManyReplicas.
    capped = normalize_with_behavior(History(), b, 10, 40, 1, 12, 300, T0)
    assert (capped.replicas, capped.limited, capped.limit) == (12, True, TOO_MANY)


def test_documented_percent_900_scales_tenfold() -> None:
    b = behavior(scaleUp={"policies": [{"type": "Percent", "value": 900, "periodSeconds": 60}]})
    assert normalize_with_behavior(History(), b, 1, 50, 1, 100, 300, T0).replicas == 10


def test_scale_down_stabilization_window_keeps_the_highest_recommendation() -> None:
    # Window 300 s (the default flag, as scaleDown's window is unset): a drop in the
    # recommendation waits until the higher ones are older than the window.
    b = behavior()
    history = History()
    history.record_initial(5, T0)
    assert normalize_with_behavior(history, b, 5, 5, 1, 10, 300, T0).able == READY
    held = normalize_with_behavior(history, b, 5, 2, 1, 10, 300, T0 + 60)
    assert (held.replicas, held.able) == (5, DOWN_STABILIZED)
    still = normalize_with_behavior(history, b, 5, 2, 1, 10, 300, T0 + 299)
    assert still.replicas == 5
    gone = normalize_with_behavior(history, b, 5, 2, 1, 10, 300, T0 + 301)
    assert (gone.replicas, gone.able, gone.limit) == (2, READY, WITHIN_RANGE)


def test_scale_up_stabilization_window_keeps_the_lowest_recommendation() -> None:
    b = behavior(scaleUp={"stabilizationWindowSeconds": 60})
    history = History()
    history.record_initial(2, T0)
    held = normalize_with_behavior(history, b, 2, 6, 1, 10, 300, T0 + 10)
    assert (held.replicas, held.able) == (2, UP_STABILIZED)
    assert normalize_with_behavior(history, b, 2, 6, 1, 10, 300, T0 + 61).replicas == 6


def test_disabled_scale_down_never_removes_pods() -> None:
    b = behavior(scaleDown={"selectPolicy": "Disabled", "stabilizationWindowSeconds": 0})
    decision = normalize_with_behavior(History(), b, 6, 1, 1, 10, 300, T0)
    assert (decision.replicas, decision.limit) == (6, SCALE_DOWN_LIMIT)


def test_min_replicas_bounds_a_scale_down() -> None:
    b = behavior(scaleDown={"stabilizationWindowSeconds": 0})
    decision = normalize_with_behavior(History(), b, 6, 1, 3, 10, 300, T0)
    assert (decision.replicas, decision.limited, decision.limit) == (3, True, TOO_FEW)


def test_without_behavior_downscale_window_and_scale_up_cap() -> None:
    history = History()
    history.record_initial(4, T0)
    held = normalize(history, 4, 1, 1, 10, 300, T0 + 10)
    assert (held.replicas, held.able, held.limited) == (4, DOWN_STABILIZED, False)
    assert normalize(history, 4, 1, 1, 10, 300, T0 + 400).replicas == 1
    # Up at most to max(2 x current, 4): from 3 that is 6.
    up = normalize(History(), 3, 9, 1, 10, 300, T0)
    assert (up.replicas, up.limited, up.limit) == (6, True, SCALE_UP_LIMIT)
    low = normalize(History(), 3, 1, 2, 10, 0, T0)
    assert (low.replicas, low.limit) == (2, TOO_FEW)
