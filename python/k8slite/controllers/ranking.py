"""Which pods a ReplicaSet deletes first when it scales down (upstream's ranking)."""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections import Counter

from k8slite.api.meta import parse_time
from k8slite.component.objects import Obj, annotations_of, meta, uid_of
from k8slite.controllers.podutil import is_pod_active, is_pod_ready, ready_since

DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}


def _deletion_cost(pod: Obj) -> int:
    value = annotations_of(pod).get(DELETION_COST_ANNOTATION)
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _max_restarts(pod: Obj) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or ()
    return max((int(s.get("restartCount") or 0) for s in statuses), default=0)


def _created(pod: Obj) -> dt.datetime | None:
    stamp = meta(pod).get("creationTimestamp")
    return parse_time(stamp) if stamp else None


def _log_rank(t: dt.datetime, now: dt.datetime) -> int:
    """Age bucket on a log2 scale of nanoseconds: pods of similar age rank alike, so scale
    down does not always pick the very newest pod (upstream's LogarithmicScaleDown)."""
    age = (now - t).total_seconds() * 1e9
    return int(math.log2(age)) if age > 0 else -1


def _compare_times(
    a: dt.datetime | None, b: dt.datetime | None, ua: str, ub: str, now: dt.datetime
) -> int:
    """Negative when a should go first: a missing time, else the newer (log-bucketed)."""
    if a == b:
        return 0
    if a is None or b is None:
        return -1 if a is None else 1
    diff = _log_rank(a, now) - _log_rank(b, now)
    if diff == 0:
        return -1 if ua < ub else (1 if ua > ub else 0)
    return -1 if diff < 0 else 1


def _compare(a: tuple[Obj, int], b: tuple[Obj, int], now: dt.datetime) -> int:
    pa, rank_a = a
    pb, rank_b = b
    node_a = (pa.get("spec") or {}).get("nodeName") or ""
    node_b = (pb.get("spec") or {}).get("nodeName") or ""
    # 1. unassigned before assigned
    if node_a != node_b and (not node_a or not node_b):
        return -1 if not node_a else 1
    # 2. Pending < Unknown < Running
    phase_a = _PHASE_ORDER.get((pa.get("status") or {}).get("phase") or "", 0)
    phase_b = _PHASE_ORDER.get((pb.get("status") or {}).get("phase") or "", 0)
    if phase_a != phase_b:
        return -1 if phase_a < phase_b else 1
    # 3. not ready before ready
    ready_a, ready_b = is_pod_ready(pa), is_pod_ready(pb)
    if ready_a != ready_b:
        return -1 if not ready_a else 1
    # 4. lower pod-deletion-cost first
    cost_a, cost_b = _deletion_cost(pa), _deletion_cost(pb)
    if cost_a != cost_b:
        return -1 if cost_a < cost_b else 1
    # 5. pods doubled up on a node with more related pods first
    if rank_a != rank_b:
        return -1 if rank_a > rank_b else 1
    # 6. ready for less time first
    if ready_a and ready_b:
        result = _compare_times(ready_since(pa), ready_since(pb), uid_of(pa), uid_of(pb), now)
        if result:
            return result
    # 7. more container restarts first
    restarts_a, restarts_b = _max_restarts(pa), _max_restarts(pb)
    if restarts_a != restarts_b:
        return -1 if restarts_a > restarts_b else 1
    # 8. newer before older
    return _compare_times(_created(pa), _created(pb), uid_of(pa), uid_of(pb), now)


def pods_to_delete(
    pods: list[Obj], related: list[Obj], count: int, now: dt.datetime | None = None
) -> list[Obj]:
    """The `count` pods to delete first; `related` are the pods of the same owner's family
    (all ReplicaSets of one Deployment), used to spread what remains across nodes."""
    if count >= len(pods):
        return list(pods)
    on_node = Counter(
        (p.get("spec") or {}).get("nodeName") or "" for p in related if is_pod_active(p)
    )
    ranked: list[tuple[Obj, int]] = [
        (p, on_node[(p.get("spec") or {}).get("nodeName") or ""]) for p in pods
    ]
    when = now or dt.datetime.now(dt.UTC)
    ranked.sort(key=functools.cmp_to_key(functools.partial(_compare, now=when)))
    return [p for p, _ in ranked[:count]]
