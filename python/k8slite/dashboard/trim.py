"""Objects cut down to what the dashboard's pages show, so the stream stays small at scale."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

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
    }


def pod_status(obj: Mapping[str, Any]) -> str:
    """What `kubectl get pods` shows in STATUS, roughly: Terminating, a waiting reason, phase."""
    if is_deleting(obj):
        return "Terminating"
    status = obj.get("status") or {}
    for cs in status.get("containerStatuses") or ():
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            return str(waiting["reason"])
    return str(status.get("phase") or "Pending")


def pod(obj: Mapping[str, Any]) -> Trimmed:
    ready = get_condition(obj.get("status"), "Ready")
    owner = controller_ref(obj) or {}
    return {
        **_base(obj),
        "node": (obj.get("spec") or {}).get("nodeName") or "",
        "status": pod_status(obj),
        "ready": (ready or {}).get("status") == "True",
        "owner": f"{owner.get('kind', '')}/{owner.get('name', '')}" if owner else "",
    }


def _replicated(obj: Mapping[str, Any]) -> Trimmed:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return {
        **_base(obj),
        "desired": spec.get("replicas", 1),
        "ready": status.get("readyReplicas", 0),
        "updated": status.get("updatedReplicas", 0),
        "available": status.get("availableReplicas", 0),
        "scalable": True,
    }


def replicaset(obj: Mapping[str, Any]) -> Trimmed:
    # A ReplicaSet has no up-to-date count: its pods all share its template.
    trimmed = _replicated(obj)
    del trimmed["updated"]
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
