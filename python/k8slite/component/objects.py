"""Typed accessors for API objects held as JSON dicts: metadata fields, owners, conditions.

Every accessor reads; none creates a missing field (meta() of an object without metadata
is a fresh empty dict, not one put into the object). Server-side stamping (timestamps,
uids, generateName) is api/meta.py's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# An API object (or any JSON object) as the codec decodes it. The accessors take any
# Mapping, so read-only views and typed bodies qualify too.
Obj = dict[str, Any]


def meta(obj: Mapping[str, Any]) -> Obj:
    """obj.metadata, or an empty dict when it has none."""
    return obj.get("metadata") or {}


def name_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("name") or "")


def namespace_of(obj: Mapping[str, Any]) -> str:
    """The namespace, "" for a cluster-scoped object."""
    return str(meta(obj).get("namespace") or "")


def uid_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("uid") or "")


def resource_version_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("resourceVersion") or "")


def generation_of(obj: Mapping[str, Any]) -> int:
    return int(meta(obj).get("generation") or 0)


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = meta(obj).get("labels") or {}
    return labels


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    annotations: dict[str, str] = meta(obj).get("annotations") or {}
    return annotations


def owner_references(obj: Mapping[str, Any]) -> list[Obj]:
    refs: list[Obj] = meta(obj).get("ownerReferences") or []
    return refs


def controller_ref(obj: Mapping[str, Any]) -> Obj | None:
    """The ownerReference with controller=true, if any (upstream's GetControllerOf)."""
    for ref in meta(obj).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref  # type: ignore[no-any-return]
    return None


def deletion_timestamp(obj: Mapping[str, Any]) -> str | None:
    return meta(obj).get("deletionTimestamp") or None


def is_deleting(obj: Mapping[str, Any]) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def key_of(obj: Mapping[str, Any]) -> str:
    """The cache key "<namespace>/<name>", or "<name>" for a cluster-scoped object."""
    m = meta(obj)
    namespace, name = m.get("namespace"), m.get("name") or ""
    return f"{namespace}/{name}" if namespace else str(name)


def get_condition(status: Mapping[str, Any] | None, ctype: str) -> Obj | None:
    """The condition of type `ctype` in a status (the stored dict, not a copy)."""
    for cond in (status or {}).get("conditions") or ():
        if cond.get("type") == ctype:
            return cond  # type: ignore[no-any-return]
    return None


def set_condition(status: Obj, condition: Obj) -> bool:
    """Upstream's meta.SetStatusCondition: put `condition` in place of the one of its type
    (or at the end), keeping lastTransitionTime when the status did not change.

    Returns whether the conditions changed.
    """
    conditions: list[Obj] = status.setdefault("conditions", [])
    new = dict(condition)
    for i, current in enumerate(conditions):
        if current.get("type") != condition["type"]:
            continue
        if current.get("status") == new.get("status") and current.get("lastTransitionTime"):
            new["lastTransitionTime"] = current["lastTransitionTime"]
        conditions[i] = new
        return new != current
    conditions.append(new)
    return True
