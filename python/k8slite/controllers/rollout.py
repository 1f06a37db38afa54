"""Rollout arithmetic: how big each ReplicaSet of a Deployment should be next.

Pure functions over plain dicts, so the rules (upstream's rolling update, proportional
scaling, saturation) read and test on their own; deployment.py carries out the plans.
A plan is a list of (replica set, new size) pairs, in the order to apply them.
"""

from __future__ import annotations

import copy

from k8slite.component.objects import Obj
from k8slite.controllers.deploymentutil import (
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    active,
    by_creation,
    creation_key,
    int_annotation,
    max_surge,
    max_unavailable,
    pods_available,
    pods_counted,
    scaled_value,
    spec_replicas,
    status_count,
    total_spec,
)
from k8slite.controllers.replicaset import replicas_of

Plan = list[tuple[Obj, int]]


def new_rs_replicas(d: Obj, all_rs: list[Obj | None], new_rs: Obj | None) -> int:
    """How big the new ReplicaSet may be now (upstream's NewRSNewReplicas)."""
    desired = replicas_of(d)
    strategy = ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate")
    if strategy != "RollingUpdate":
        return desired
    current_new = spec_replicas(new_rs)
    surge = scaled_value(
        (((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}).get("maxSurge"),
        desired,
        True,
    )
    current = pods_counted(all_rs)
    ceiling = desired + surge
    if current >= ceiling:
        return current_new
    return current_new + min(ceiling - current, desired - current_new)


def reconcile_new(d: Obj, all_rs: list[Obj | None], new_rs: Obj) -> int | None:
    """The new RS's next size in a rolling update, or None to leave it."""
    desired = replicas_of(d)
    current = spec_replicas(new_rs)
    if current == desired:
        return None
    if current > desired:
        return desired
    target = new_rs_replicas(d, all_rs, new_rs)
    return None if target == current else target


def reconcile_old(d: Obj, old_rs: list[Obj], new_rs: Obj | None) -> Plan:
    """Old RSes to scale down in a rolling update while keeping minimum availability.

    First unhealthy old pods go (they count against availability anyway), then healthy
    ones, oldest RS first, as far as the available count above the minimum allows.
    """
    originals = {creation_key(rs)[1]: rs for rs in active(old_rs)}
    # Work on copies: each step sees the sizes the previous steps chose.
    olds = [copy.deepcopy(rs) for rs in originals.values()]
    if not olds:
        return []
    all_rs: list[Obj | None] = [*olds, new_rs]
    min_available = replicas_of(d) - max_unavailable(d)
    new_unavailable = spec_replicas(new_rs) - status_count(new_rs, "availableReplicas")
    max_scaled_down = total_spec(all_rs) - min_available - new_unavailable
    if max_scaled_down <= 0:
        return []
    plan: dict[str, int] = {}
    # Unhealthy replicas first: removing them costs no availability.
    cleaned = 0
    for rs in by_creation(olds):
        if cleaned >= max_scaled_down:
            break
        unhealthy = spec_replicas(rs) - status_count(rs, "availableReplicas")
        if spec_replicas(rs) == 0 or unhealthy <= 0:
            continue
        step = min(max_scaled_down - cleaned, unhealthy)
        rs["spec"]["replicas"] = spec_replicas(rs) - step
        plan[creation_key(rs)[1]] = spec_replicas(rs)
        cleaned += step
    # Then healthy ones, down to the availability floor.
    available = pods_available([*olds, new_rs])
    if available > min_available:
        budget = available - min_available
        for rs in by_creation(olds):
            if budget <= 0:
                break
            if spec_replicas(rs) == 0:
                continue
            step = min(spec_replicas(rs), budget)
            rs["spec"]["replicas"] = spec_replicas(rs) - step
            plan[creation_key(rs)[1]] = spec_replicas(rs)
            budget -= step
    return [(originals[name], size) for name, size in plan.items()]


def find_active_or_latest(new_rs: Obj | None, old_rs: list[Obj]) -> Obj | None:
    """The one RS with pods, or the newest if none has any; None when several have pods."""
    if new_rs is None and not old_rs:
        return None
    newest_first = sorted(old_rs, key=creation_key, reverse=True)
    with_pods = active([*newest_first, new_rs])
    if not with_pods:
        return new_rs if new_rs is not None else newest_first[0]
    return with_pods[0] if len(with_pods) == 1 else None


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    """The RS alone runs all the Deployment's replicas, all available."""
    if rs is None:
        return False
    desired = replicas_of(d)
    return (
        int_annotation(rs, DESIRED_REPLICAS) == desired
        and spec_replicas(rs) == desired
        and status_count(rs, "availableReplicas") == desired
    )


def _fraction(rs: Obj, d: Obj) -> int:
    """How much this RS should grow (or shrink) for its share of a new Deployment size."""
    desired = replicas_of(d)
    if desired == 0:
        return -spec_replicas(rs)
    allowed = desired + max_surge(d)
    annotated = int_annotation(rs, MAX_REPLICAS)
    if annotated is None:
        annotated = int((d.get("status") or {}).get("replicas") or 0)
    if annotated == 0:
        return 0
    # Go's math.Round: half away from zero.
    exact = spec_replicas(rs) * allowed / annotated
    rounded = int(exact + 0.5) if exact >= 0 else -int(-exact + 0.5)
    return rounded - spec_replicas(rs)


def proportional_plan(d: Obj, new_rs: Obj | None, old_rs: list[Obj]) -> tuple[Plan, str]:
    """Scale every active RS in proportion when the Deployment is resized mid-rollout.

    Returns the plan and "up" or "down" for the events.
    """
    rs_list = active([*old_rs, new_rs])
    allowed = replicas_of(d) + max_surge(d) if replicas_of(d) > 0 else 0
    to_add = allowed - total_spec(rs_list)
    if to_add > 0:
        # Larger first; among equals, newer first when growing.
        rs_list.sort(key=lambda rs: creation_key(rs), reverse=True)
        rs_list.sort(key=spec_replicas, reverse=True)
        direction = "up"
    elif to_add < 0:
        # Larger first; among equals, older first when shrinking.
        rs_list.sort(key=creation_key)
        rs_list.sort(key=spec_replicas, reverse=True)
        direction = "down"
    else:
        direction = ""
    sizes: list[int] = []
    added = 0
    for rs in rs_list:
        proportion = 0
        if to_add != 0 and spec_replicas(rs) != 0 and to_add != added:
            fraction = _fraction(rs, d)
            remaining = to_add - added
            proportion = min(fraction, remaining) if to_add > 0 else max(fraction, remaining)
        sizes.append(spec_replicas(rs) + proportion)
        added += proportion
    if rs_list and to_add != 0:
        # The leftover from rounding goes to the largest.
        sizes[0] = max(0, sizes[0] + to_add - added)
    return list(zip(rs_list, sizes, strict=True)), direction
