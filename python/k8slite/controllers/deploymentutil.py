"""Deployment bookkeeping: template hashes, revisions, annotations, fenceposts, conditions."""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterable
from typing import Any

from k8slite.component.objects import Obj, annotations_of, get_condition, meta
from k8slite.controllers.replicaset import replicas_of

POD_TEMPLATE_HASH = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Deployment annotations that are the controller's (or kubectl's) own, never copied to RSes.
SKIP_COPY = frozenset(
    {
        LAST_APPLIED,
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)
MAX_REVISION_HISTORY_CHARS = 2000
# progressDeadlineSeconds of MaxInt32 means "no deadline".
NO_DEADLINE = 2**31 - 1

# Progressing and Available reasons, as upstream spells them.
NEW_RS_REASON = "NewReplicaSetCreated"
FOUND_NEW_RS_REASON = "FoundNewReplicaSet"
RS_UPDATED_REASON = "ReplicaSetUpdated"
NEW_RS_AVAILABLE_REASON = "NewReplicaSetAvailable"
TIMED_OUT_REASON = "ProgressDeadlineExceeded"
FAILED_RS_CREATE_REASON = "ReplicaSetCreateError"
PAUSED_REASON = "DeploymentPaused"
RESUMED_REASON = "DeploymentResumed"
MIN_AVAILABLE_REASON = "MinimumReplicasAvailable"
MIN_UNAVAILABLE_REASON = "MinimumReplicasUnavailable"

# rand.SafeEncodeString's alphabet: no vowels, no look-alikes, so names spell no words.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_PERCENT = re.compile(r"^(\d+)%$")


# ----------------------------------------------------------------- template hash


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def compute_hash(template: Obj, collision_count: int | None) -> str:
    """A short stable name for a pod template: FNV-32a of its canonical JSON (plus the
    collision count, which changes it when two templates hash alike), spelt safely."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count is not None:
        data += int(collision_count).to_bytes(8, "little")
    digits = str(_fnv32a(data))
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in digits)


def _semantic(value: Any) -> Any:
    """JSON with nulls and empty objects/lists dropped: Go's Semantic.DeepEqual sees no
    difference between a missing field and an empty one."""
    if isinstance(value, dict):
        out = {k: _semantic(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_semantic(v) for v in value]
    return value


def without_hash(template: Obj) -> Obj:
    out = copy.deepcopy(template)
    labels = meta(out).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH, None)
    return out


def equal_ignore_hash(a: Obj, b: Obj) -> bool:
    """Same pod template apart from the pod-template-hash label."""
    return bool(_semantic(without_hash(a)) == _semantic(without_hash(b)))


# --------------------------------------------------------------------- revisions


def revision_of(obj: Obj) -> int:
    value = annotations_of(obj).get(REVISION)
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def max_revision(replica_sets: Iterable[Obj]) -> int:
    return max((revision_of(rs) for rs in replica_sets), default=0)


def set_new_rs_annotations(d: Obj, rs: Obj, new_revision: int, exists: bool) -> bool:
    """Copy the Deployment's annotations to its new RS and move its revision forward.

    An RS that gets a higher revision than it had is an old one brought back (a rollback):
    its former revision goes into revision-history. Returns whether anything changed.
    """
    annotations = rs["metadata"].setdefault("annotations", {})
    changed = False
    for k, v in annotations_of(d).items():
        if k not in SKIP_COPY and annotations.get(k) != v:
            annotations[k] = v
            changed = True
    old_text = annotations.get(REVISION)
    try:
        old = int(old_text) if old_text is not None else 0
    except ValueError:
        return changed
    if old < new_revision:
        annotations[REVISION] = str(new_revision)
        changed = True
        if old_text is not None:
            history = [r for r in annotations.get(REVISION_HISTORY, "").split(",") if r]
            history.append(old_text)
            while history and len(",".join(history)) > MAX_REVISION_HISTORY_CHARS:
                history.pop(0)
            annotations[REVISION_HISTORY] = ",".join(history)
    if not exists and set_replicas_annotations(rs, replicas_of(d), replicas_of(d) + max_surge(d)):
        changed = True
    return changed


def set_replicas_annotations(rs: Obj, desired: int, maximum: int) -> bool:
    annotations = rs["metadata"].setdefault("annotations", {})
    changed = False
    for key, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(maximum))):
        if annotations.get(key) != value:
            annotations[key] = value
            changed = True
    return changed


def replicas_annotations_need_update(rs: Obj, desired: int, maximum: int) -> bool:
    annotations = annotations_of(rs)
    return annotations.get(DESIRED_REPLICAS) != str(desired) or annotations.get(
        MAX_REPLICAS
    ) != str(maximum)


def int_annotation(rs: Obj, key: str) -> int | None:
    value = annotations_of(rs).get(key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


# -------------------------------------------------------------------- fenceposts


def is_rolling(d: Obj) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get(
        "type", "RollingUpdate"
    ) == "RollingUpdate"


def scaled_value(value: int | str | None, total: int, round_up: bool) -> int:
    """An int-or-percent of total: percents round up (surge) or down (unavailable)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    m = _PERCENT.match(value)
    if m is None:
        return int(value) if value.isdigit() else 0
    exact = int(m.group(1)) * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def _rolling(d: Obj) -> Obj:
    return ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}


def resolve_fenceposts(d: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) for the desired replicas; both 0 resolves to (0, 1) so a
    rollout whose percents round to nothing can still proceed."""
    desired = replicas_of(d)
    rolling = _rolling(d)
    surge = scaled_value(rolling.get("maxSurge"), desired, True)
    unavailable = scaled_value(rolling.get("maxUnavailable"), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: Obj) -> int:
    return resolve_fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: Obj) -> int:
    desired = replicas_of(d)
    if not is_rolling(d) or desired == 0:
        return 0
    return min(resolve_fenceposts(d)[1], desired)


# ------------------------------------------------------------ replica set views


def spec_replicas(rs: Obj | None) -> int:
    return 0 if rs is None else int((rs.get("spec") or {}).get("replicas") or 0)


def status_count(rs: Obj | None, field: str) -> int:
    return 0 if rs is None else int((rs.get("status") or {}).get(field) or 0)


def creation_key(rs: Obj) -> tuple[str, str]:
    m = meta(rs)
    return (str(m.get("creationTimestamp") or ""), str(m.get("name") or ""))


def by_creation(replica_sets: Iterable[Obj]) -> list[Obj]:
    return sorted(replica_sets, key=creation_key)


def by_revision(replica_sets: Iterable[Obj]) -> list[Obj]:
    return sorted(replica_sets, key=lambda rs: (revision_of(rs), creation_key(rs)))


def active(replica_sets: Iterable[Obj | None]) -> list[Obj]:
    return [rs for rs in replica_sets if rs is not None and spec_replicas(rs) > 0]


def pods_counted(replica_sets: Iterable[Obj | None]) -> int:
    """Pods that may exist: an RS scaled down still counts the pods it has not yet removed.

    Upstream adds up spec.replicas; taking status.replicas when larger keeps a rolling
    update's surge bound true at every instant, not only once deletions have landed.
    """
    return sum(
        max(spec_replicas(rs), status_count(rs, "replicas"))
        for rs in replica_sets
        if rs is not None
    )


def pods_available(replica_sets: Iterable[Obj | None]) -> int:
    """Available pods an RS can be relied on to keep: never more than it is scaled to.

    An RS just scaled down may still report the pods it is about to delete as available;
    counting them would let a second scale-down go below the availability floor.
    """
    return sum(
        min(spec_replicas(rs), status_count(rs, "availableReplicas"))
        for rs in replica_sets
        if rs is not None
    )


def total(replica_sets: Iterable[Obj | None], field: str) -> int:
    return sum(status_count(rs, field) for rs in replica_sets if rs is not None)


def total_spec(replica_sets: Iterable[Obj | None]) -> int:
    return sum(spec_replicas(rs) for rs in replica_sets if rs is not None)


# -------------------------------------------------------------------- conditions


def new_condition(ctype: str, status: str, reason: str, message: str, now: str) -> Obj:
    return {
        "type": ctype,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def set_condition(status: Obj, condition: Obj) -> None:
    """Upstream's SetDeploymentCondition: same status and reason is no change; same status
    keeps its transition time; the condition moves to the end."""
    current = get_condition(status, condition["type"])
    if (
        current is not None
        and current.get("status") == condition["status"]
        and current.get("reason") == condition["reason"]
    ):
        return
    if current is not None and current.get("status") == condition["status"]:
        condition["lastTransitionTime"] = current.get("lastTransitionTime")
    remove_condition(status, condition["type"])
    status.setdefault("conditions", []).append(condition)


def remove_condition(status: Obj, ctype: str) -> None:
    conditions = [c for c in status.get("conditions") or () if c.get("type") != ctype]
    if conditions:
        status["conditions"] = conditions
    else:
        status.pop("conditions", None)


def progress_deadline(d: Obj) -> int | None:
    value = (d.get("spec") or {}).get("progressDeadlineSeconds")
    if value is None or int(value) == NO_DEADLINE:
        return None
    return int(value)
