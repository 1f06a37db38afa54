"""The Job controller's pure logic: index intervals, pod failure policy, back-off, pod shape."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

from k8slite.component.objects import Obj, annotations_of, get_condition, meta, name_of

JOB_TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"
INDEX_FAILURE_COUNT_ANNOTATION = "batch.kubernetes.io/job-index-failure-count"
INDEX_IGNORED_FAILURE_COUNT_ANNOTATION = "batch.kubernetes.io/job-index-ignored-failure-count"
# Upstream's back-off between pod failures: 10s, doubled per failure since the last success.
DEFAULT_BACKOFF = 10.0
MAX_BACKOFF = 360.0


# ----------------------------------------------------------------- index intervals


def format_indexes(indexes: Iterable[int]) -> str:
    """Sorted indexes as upstream's compressed interval string: [1, 3, 4, 5] -> "1,3-5"."""
    parts: list[str] = []
    ordered = sorted(set(indexes))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        if j == i:
            parts.append(str(ordered[i]))
        else:
            parts.append(f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def parse_indexes(text: str | None, limit: int | None = None) -> set[int]:
    """The indexes of an interval string, skipping malformed parts and those >= limit."""
    out: set[int] = set()
    for part in (text or "").split(","):
        lo_text, _, hi_text = part.partition("-")
        try:
            lo = int(lo_text)
            hi = int(hi_text) if hi_text else lo
        except ValueError:
            continue
        if limit is not None:
            hi = min(hi, limit - 1)
        out.update(range(max(lo, 0), hi + 1))
    return out


def completion_index(pod: Obj) -> int | None:
    """The pod's completion index (its annotation), or None if absent or malformed."""
    value = annotations_of(pod).get(COMPLETION_INDEX_ANNOTATION)
    if value is None or not value.isdigit():
        return None
    return int(value)


def index_failure_count(pod: Obj) -> int:
    value = annotations_of(pod).get(INDEX_FAILURE_COUNT_ANNOTATION, "0")
    return int(value) if value.isdigit() else 0


# ------------------------------------------------------------- pod failure policy


@dataclass(frozen=True)
class PolicyMatch:
    """The first pod failure policy rule a failed pod matches."""

    action: str  # FailJob, FailIndex, Ignore, Count
    message: str


def _matching_container(pod: Obj, requirement: Obj) -> Obj | None:
    """A terminated container with a non-zero exit code that the requirement matches."""
    status = pod.get("status") or {}
    wanted = requirement.get("containerName")
    values = set(requirement.get("values") or ())
    operator = requirement.get("operator")
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(key) or ():
            terminated = (cs.get("state") or {}).get("terminated")
            if terminated is None or (wanted is not None and cs.get("name") != wanted):
                continue
            code = int(terminated.get("exitCode") or 0)
            if code == 0:
                continue
            if (operator == "In") == (code in values):
                return {"name": cs.get("name"), "exitCode": code}
    return None


def match_pod_failure_policy(job: Obj, pod: Obj) -> PolicyMatch | None:
    """The first rule of spec.podFailurePolicy a failed pod matches (None: count it)."""
    policy = (job.get("spec") or {}).get("podFailurePolicy")
    if not policy or (pod.get("status") or {}).get("phase") != "Failed":
        return None
    pod_name = f"{meta(pod).get('namespace')}/{name_of(pod)}"
    for i, rule in enumerate(policy.get("rules") or ()):
        action = rule.get("action")
        exit_codes = rule.get("onExitCodes")
        if exit_codes is not None:
            container = _matching_container(pod, exit_codes)
            if container is not None:
                return PolicyMatch(
                    action,
                    f"Container {container['name']} for pod {pod_name} failed with exit code "
                    f"{container['exitCode']} matching {action} rule at index {i}",
                )
            continue
        for pattern in rule.get("onPodConditions") or ():
            cond = get_condition(pod.get("status"), pattern.get("type", ""))
            if cond is not None and cond.get("status") == pattern.get("status", "True"):
                return PolicyMatch(
                    action,
                    f"Pod {pod_name} has condition {pattern.get('type')} matching {action} "
                    f"rule at index {i}",
                )
    return None


# ------------------------------------------------------------------------ back-off


def backoff_delay(failures: int, base: float = DEFAULT_BACKOFF, cap: float = MAX_BACKOFF) -> float:
    """How long after the last failure a replacement may start: base * 2^(failures-1)."""
    if failures <= 0:
        return 0.0
    return min(base * 2 ** min(failures - 1, 30), cap)


# -------------------------------------------------------------------------- pods


def pod_for_job(job: Obj, owner_ref: Obj, index: int | None, failures: int | None) -> Obj:
    """A new pod of the job's template: tracked by our finalizer, indexed if asked."""
    template = (job.get("spec") or {}).get("template") or {}
    tmeta = meta(template)
    name = name_of(job)
    pod_meta: Obj = {
        "generateName": f"{name}-" if index is None else f"{name}-{index}-",
        "namespace": meta(job).get("namespace"),
        "labels": dict(tmeta.get("labels") or {}),
        "annotations": dict(tmeta.get("annotations") or {}),
        "ownerReferences": [owner_ref],
        "finalizers": [*(tmeta.get("finalizers") or ()), JOB_TRACKING_FINALIZER],
    }
    spec = copy.deepcopy(template.get("spec") or {})
    if index is not None:
        pod_meta["annotations"][COMPLETION_INDEX_ANNOTATION] = str(index)
        pod_meta["labels"][COMPLETION_INDEX_ANNOTATION] = str(index)
        if failures is not None:
            pod_meta["annotations"][INDEX_FAILURE_COUNT_ANNOTATION] = str(failures)
        spec["hostname"] = f"{name}-{index}"
        env_var = {
            "name": COMPLETION_INDEX_ENV,
            "valueFrom": {
                "fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}
            },
        }
        for key in ("initContainers", "containers"):
            for container in spec.get(key) or ():
                env = container.setdefault("env", [])
                if not any(e.get("name") == COMPLETION_INDEX_ENV for e in env):
                    env.append(env_var)
    if not pod_meta["annotations"]:
        del pod_meta["annotations"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}


def is_pod_failed(pod: Obj, job: Obj) -> bool:
    """Upstream's isPodFailed: Failed, or (unless only failed pods are replaced) deleted
    before it succeeded: an orphan being deleted may never reach the Failed phase."""
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Failed":
        return True
    if only_replace_failed(job):
        return False
    return bool(meta(pod).get("deletionTimestamp")) and phase != "Succeeded"


def only_replace_failed(job: Obj) -> bool:
    spec = job.get("spec") or {}
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


def has_tracking_finalizer(pod: Obj) -> bool:
    return JOB_TRACKING_FINALIZER in (meta(pod).get("finalizers") or ())


def restarts_of(pod: Obj) -> int:
    status = pod.get("status") or {}
    return sum(
        int(cs.get("restartCount") or 0)
        for key in ("initContainerStatuses", "containerStatuses")
        for cs in status.get(key) or ()
    )


def success_policy_rule(job: Obj, succeeded: set[int]) -> int | None:
    """The index of the first successPolicy rule the succeeded indexes satisfy."""
    spec = job.get("spec") or {}
    policy = spec.get("successPolicy")
    if not policy:
        return None
    completions = spec.get("completions")
    for i, rule in enumerate(policy.get("rules") or ()):
        indexes = rule.get("succeededIndexes")
        count = rule.get("succeededCount")
        pool = succeeded
        if indexes is not None:
            pool = succeeded & parse_indexes(indexes, completions)
            if count is None and pool == parse_indexes(indexes, completions):
                return i
        if count is not None and len(pool) >= count:
            return i
    return None
