"""Objects cut down to what the dashboard's pages show, so the stream stays small at scale."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from k8slite.api.quantity import QuantityError, int_value, milli_value
from k8slite.component.objects import (
    controller_ref,
    get_condition,
    is_deleting,
    name_of,
    namespace_of,
)

Trimmed = dict[str, Any]


def _base(obj: Mapping[str, Any]) -> Trimmed:
    return {"namespace": namespace_of(obj), "name": name_of(obj)}


# The same few quantity strings recur in every pod: each is worked out once.
@functools.lru_cache(maxsize=1024)
def _milli(value: object) -> int:
    try:
        return milli_value(value)
    except (QuantityError, ValueError, TypeError):
        return 0


@functools.lru_cache(maxsize=1024)
def _bytes(value: object) -> int:
    try:
        return int_value(value)
    except (QuantityError, ValueError, TypeError):
        return 0


def node(obj: Mapping[str, Any]) -> Trimmed:
    status = obj.get("status") or {}
    ready = get_condition(status, "Ready")
    allocatable = status.get("allocatable") or {}
    return {
        **_base(obj),
        # "True", "False" or "Unknown" (no Ready condition yet counts as Unknown).
        "ready": (ready or {}).get("status", "Unknown"),
        "unschedulable": bool((obj.get("spec") or {}).get("unschedulable")),
        "cpu": allocatable.get("cpu", ""),
        "memory": allocatable.get("memory", ""),
        # The same as numbers (millicores, bytes): the tile's fill is requests / these.
        "cpuM": _milli(allocatable.get("cpu", 0)),
        "memB": _bytes(allocatable.get("memory", 0)),
    }


def _sum_requests(containers: Any) -> tuple[int, int]:
    cpu = mem = 0
    for c in containers or ():
        req = (c.get("resources") or {}).get("requests")
        if req:
            cpu += _milli(req.get("cpu", 0))
            mem += _bytes(req.get("memory", 0))
    return cpu, mem


def requests(spec: Mapping[str, Any]) -> tuple[int, int]:
    """The pod's CPU (millicores) and memory (bytes) requests as the scheduler counts them:
    the containers' sum, or the largest init container's when that is more, plus overhead."""
    cpu, mem = _sum_requests(spec.get("containers"))
    for c in spec.get("initContainers") or ():
        icpu, imem = _sum_requests((c,))
        cpu, mem = max(cpu, icpu), max(mem, imem)
    overhead = spec.get("overhead")
    if overhead:
        cpu += _milli(overhead.get("cpu", 0))
        mem += _bytes(overhead.get("memory", 0))
    return cpu, mem


def pod_status(obj: Mapping[str, Any]) -> str:
    """What `kubectl get pods` shows in STATUS, roughly: Terminating, a waiting reason, phase."""
    if is_deleting(obj):
        return "Terminating"
    return _status_of(obj.get("status") or {})


def _status_of(status: Mapping[str, Any]) -> str:
    for cs in status.get("containerStatuses") or ():
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            return str(waiting["reason"])
    return str(status.get("phase") or "Pending")


def pod(obj: Mapping[str, Any]) -> Trimmed:
    # Written out rather than through the accessors: the first list of a large cluster
    # trims tens of thousands of pods while the page waits.
    metadata = obj.get("metadata") or {}
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    ready = False
    for cond in status.get("conditions") or ():
        if cond.get("type") == "Ready":
            ready = cond.get("status") == "True"
            break
    owner = ""
    for ref in metadata.get("ownerReferences") or ():
        if ref.get("controller"):
            owner = f"{ref.get('kind', '')}/{ref.get('name', '')}"
            break
    restarts = 0
    for cs in status.get("containerStatuses") or ():
        restarts += int(cs.get("restartCount") or 0)
    cpu, mem = requests(spec)
    return {
        "namespace": metadata.get("namespace") or "",
        "name": metadata.get("name") or "",
        "node": spec.get("nodeName") or "",
        "status": "Terminating" if metadata.get("deletionTimestamp") else _status_of(status),
        "ready": ready,
        "owner": owner,
        # For the Pods page's label selector, its table and the node tiles' allocation.
        "labels": metadata.get("labels") or {},
        "restarts": restarts,
        "created": metadata.get("creationTimestamp") or "",
        "ip": status.get("podIP") or "",
        "containers": [c.get("name", "") for c in spec.get("containers") or ()],
        "cpuM": cpu,
        "memB": mem,
    }


REVISION = "deployment.kubernetes.io/revision"


def _revision(obj: Mapping[str, Any]) -> str:
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, ""))


def _replicated(obj: Mapping[str, Any]) -> Trimmed:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return {
        **_base(obj),
        "revision": _revision(obj),
        "paused": bool(spec.get("paused")),
        "desired": spec.get("replicas", 1),
        "ready": status.get("readyReplicas", 0),
        "updated": status.get("updatedReplicas", 0),
        "available": status.get("availableReplicas", 0),
        "scalable": True,
    }


def replicaset(obj: Mapping[str, Any]) -> Trimmed:
    # A ReplicaSet has no up-to-date count: its pods all share its template.
    trimmed = _replicated(obj)
    del trimmed["updated"], trimmed["paused"]
    return {**trimmed, "owner": (controller_ref(obj) or {}).get("name", "")}


def daemonset(obj: Mapping[str, Any]) -> Trimmed:
    status = obj.get("status") or {}
    return {
        **_base(obj),
        "desired": status.get("desiredNumberScheduled", 0),
        "ready": status.get("numberReady", 0),
        "updated": status.get("updatedNumberScheduled", 0),
        "available": status.get("numberAvailable", 0),
        "scalable": False,
    }


def job(obj: Mapping[str, Any]) -> Trimmed:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return {
        **_base(obj),
        "desired": spec.get("completions", 1) if spec.get("completions") is not None else 1,
        "ready": status.get("succeeded", 0),
        "active": status.get("active", 0),
        "failed": status.get("failed", 0),
        "scalable": False,
    }


def event(obj: Mapping[str, Any]) -> Trimmed:
    involved = obj.get("involvedObject") or obj.get("regarding") or {}
    return {
        **_base(obj),
        "type": obj.get("type") or "Normal",
        "reason": obj.get("reason") or "",
        "message": obj.get("message") or obj.get("note") or "",
        "object": f"{involved.get('kind', '')}/{involved.get('name', '')}",
        # The involved object's namespace (an event's own may differ for cluster objects).
        "objectNamespace": involved.get("namespace") or "",
        "count": obj.get("count") or 1,
        "time": obj.get("lastTimestamp")
        or obj.get("eventTime")
        or (obj.get("metadata") or {}).get("creationTimestamp")
        or "",
    }


# The dashboard's kinds (REST plural) and how each is trimmed.
TRIMMERS: dict[str, Callable[[Mapping[str, Any]], Trimmed]] = {
    "nodes": node,
    "pods": pod,
    "deployments": _replicated,
    "replicasets": replicaset,
    "statefulsets": _replicated,
    "daemonsets": daemonset,
    "jobs": job,
    "events": event,
}
