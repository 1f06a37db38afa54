"""A Deployment's status: replica counts, and the Available and Progressing conditions."""

from __future__ import annotations

import copy
import datetime as dt

from k8slite.api.meta import format_time, parse_time
from k8slite.component.objects import Obj, generation_of, get_condition, meta
from k8slite.controllers import deploymentutil as du
from k8slite.controllers.podutil import utcnow
from k8slite.controllers.replicaset import replicas_of

PROGRESSING = "Progressing"
AVAILABLE = "Available"
REPLICA_FAILURE = "ReplicaFailure"


def now_text() -> str:
    return format_time(utcnow())


def quoted(name: str) -> str:
    """Go's %q of a plain name, as upstream's messages print it."""
    return f'"{name}"'


def compact(status: Obj) -> Obj:
    """Upstream omits zero counts (omitempty)."""
    return {k: v for k, v in status.items() if v not in (0, None, [])}


def count(status: Obj, field: str) -> int:
    return int(status.get(field) or 0)


def calculate_status(d: Obj, all_rs: list[Obj | None], new_rs: Obj | None) -> Obj:
    """Replica counts summed over the Deployment's RSes, plus the Available condition."""
    available = du.total(all_rs, "availableReplicas")
    status: Obj = {
        "observedGeneration": generation_of(d),
        "replicas": du.total(all_rs, "replicas"),
        "updatedReplicas": du.total([new_rs], "replicas"),
        "readyReplicas": du.total(all_rs, "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": max(0, du.total_spec(all_rs) - available),
    }
    old = d.get("status") or {}
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    status["conditions"] = copy.deepcopy(old.get("conditions") or [])
    if available >= replicas_of(d) - du.max_unavailable(d):
        cond = du.new_condition(
            AVAILABLE,
            "True",
            du.MIN_AVAILABLE_REASON,
            "Deployment has minimum availability.",
            now_text(),
        )
    else:
        cond = du.new_condition(
            AVAILABLE,
            "False",
            du.MIN_UNAVAILABLE_REASON,
            "Deployment does not have minimum availability.",
            now_text(),
        )
    du.set_condition(status, cond)
    return compact(status)


def deployment_complete(d: Obj, status: Obj) -> bool:
    """Every replica updated and available, and the latest spec observed."""
    want = replicas_of(d)
    return (
        count(status, "updatedReplicas") == want
        and count(status, "replicas") == want
        and count(status, "availableReplicas") == want
        and count(status, "observedGeneration") >= generation_of(d)
    )


def deployment_progressing(d: Obj, status: Obj) -> bool:
    """Something moved forward since the status the Deployment shows now."""
    old = d.get("status") or {}
    old_olds = count(old, "replicas") - count(old, "updatedReplicas")
    new_olds = count(status, "replicas") - count(status, "updatedReplicas")
    return (
        count(status, "updatedReplicas") > count(old, "updatedReplicas")
        or new_olds < old_olds
        or count(status, "readyReplicas") > count(old, "readyReplicas")
        or count(status, "availableReplicas") > count(old, "availableReplicas")
    )


def deadline_passes_at(d: Obj, cond: Obj) -> dt.datetime | None:
    """progressDeadlineSeconds after the Progressing condition last moved."""
    deadline = du.progress_deadline(d)
    stamp = cond.get("lastUpdateTime")
    if deadline is None or not stamp:
        return None
    return parse_time(stamp) + dt.timedelta(seconds=deadline)


def deployment_timed_out(d: Obj, status: Obj) -> bool:
    cond = get_condition(status, PROGRESSING)
    if du.progress_deadline(d) is None or cond is None:
        return False
    if cond.get("reason") == du.NEW_RS_AVAILABLE_REASON:
        return False
    if cond.get("reason") == du.TIMED_OUT_REASON:
        return True
    when = deadline_passes_at(d, cond)
    return when is not None and when < utcnow()


def replica_failure(all_rs: list[Obj | None], new_rs: Obj | None) -> Obj | None:
    """An RS's ReplicaFailure (the new RS's first) as a Deployment condition."""
    ordered = [new_rs, *[rs for rs in all_rs if rs is not new_rs]]
    for rs in ordered:
        if rs is None:
            continue
        for cond in (rs.get("status") or {}).get("conditions") or ():
            if cond.get("type") == REPLICA_FAILURE:
                stamp = cond.get("lastTransitionTime") or now_text()
                return {
                    "type": REPLICA_FAILURE,
                    "status": cond.get("status"),
                    "lastUpdateTime": stamp,
                    "lastTransitionTime": stamp,
                    "reason": cond.get("reason"),
                    "message": cond.get("message"),
                }
    return None


def rollout_status(d: Obj, all_rs: list[Obj | None], new_rs: Obj | None) -> Obj:
    """The status a rollout reports: counts, Available, Progressing and ReplicaFailure."""
    status = calculate_status(d, all_rs, new_rs)
    if du.progress_deadline(d) is None:
        du.remove_condition(status, PROGRESSING)
    current = get_condition(status, PROGRESSING)
    complete = (
        count(status, "replicas") == count(status, "updatedReplicas")
        and current is not None
        and current.get("reason") == du.NEW_RS_AVAILABLE_REASON
    )
    subject = (
        f"ReplicaSet {quoted(meta(new_rs)['name'])}"
        if new_rs is not None
        else f"Deployment {quoted(meta(d)['name'])}"
    )
    if du.progress_deadline(d) is not None and not complete:
        if deployment_complete(d, status):
            du.set_condition(
                status,
                du.new_condition(
                    PROGRESSING,
                    "True",
                    du.NEW_RS_AVAILABLE_REASON,
                    f"{subject} has successfully progressed.",
                    now_text(),
                ),
            )
        elif deployment_progressing(d, status):
            cond = du.new_condition(
                PROGRESSING, "True", du.RS_UPDATED_REASON, f"{subject} is progressing.", now_text()
            )
            if current is not None:
                # Progress refreshes lastUpdateTime (the deadline's base) every time.
                if current.get("status") == "True":
                    cond["lastTransitionTime"] = current.get("lastTransitionTime")
                du.remove_condition(status, PROGRESSING)
            du.set_condition(status, cond)
        elif deployment_timed_out(d, status):
            du.set_condition(
                status,
                du.new_condition(
                    PROGRESSING,
                    "False",
                    du.TIMED_OUT_REASON,
                    f"{subject} has timed out progressing.",
                    now_text(),
                ),
            )
    failure = replica_failure(all_rs, new_rs)
    if failure is not None:
        du.set_condition(status, failure)
    else:
        du.remove_condition(status, REPLICA_FAILURE)
    return compact(status)


def recheck_after(d: Obj, status: Obj) -> float | None:
    """When an unchanged rollout should be looked at again: as its deadline passes."""
    cond = get_condition(d.get("status") or {}, PROGRESSING)
    if du.progress_deadline(d) is None or cond is None:
        return None
    if deployment_complete(d, status) or cond.get("reason") == du.TIMED_OUT_REASON:
        return None
    when = deadline_passes_at(d, cond)
    if when is None:
        return None
    return max((when - utcnow()).total_seconds(), 0.0) + 1.0
