"""Pod predicates the controllers share: active, ready, available, fully labeled."""

from __future__ import annotations

import datetime as dt

from k8slite.api.meta import parse_time
from k8slite.component.objects import Obj, get_condition, is_deleting


def is_pod_active(pod: Obj) -> bool:
    """Counts towards a controller's replicas: not finished and not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not is_deleting(pod)


def is_pod_ready(pod: Obj) -> bool:
    cond = get_condition(pod.get("status"), "Ready")
    return cond is not None and cond.get("status") == "True"


def ready_since(pod: Obj) -> dt.datetime | None:
    """When the pod last became ready (None if not ready or never said)."""
    cond = get_condition(pod.get("status"), "Ready")
    if cond is None or cond.get("status") != "True" or not cond.get("lastTransitionTime"):
        return None
    return parse_time(cond["lastTransitionTime"])


def is_pod_available(pod: Obj, min_ready_seconds: int, now: dt.datetime) -> bool:
    """Ready for at least minReadySeconds (a ready pod with no transition time counts)."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = ready_since(pod)
    return since is None or since + dt.timedelta(seconds=min_ready_seconds) <= now


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def labels_match_all(labels: dict[str, str] | None, wanted: dict[str, str] | None) -> bool:
    """Every wanted key=value is in labels (the "fully labeled" test)."""
    have = labels or {}
    return all(have.get(k) == v for k, v in (wanted or {}).items())
