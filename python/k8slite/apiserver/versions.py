"""Serving a custom resource in a version other than its storage version (None conversion).

With the None strategy only apiVersion differs between versions, so responses are
rewritten on the way out: the object, each item of a list, each watch event's object.
"""

from __future__ import annotations

from collections.abc import Callable

from k8slite._native import dumps, loads
from k8slite.api.resources import ResourceType
from k8slite.component.objects import Obj

FrameConverter = Callable[[list[bytes]], list[bytes]]


def _rewrite(obj: Obj, rt: ResourceType) -> None:
    if obj.get("kind") == rt.kind:
        obj["apiVersion"] = rt.api_version
    elif obj.get("kind") == rt.list_kind:
        obj["apiVersion"] = rt.api_version
        for item in obj.get("items") or ():
            if isinstance(item, dict):
                item["apiVersion"] = rt.api_version


def convert_body(body: bytes, rt: ResourceType) -> bytes:
    """An object or list response in rt's version (Status and Scale pass unchanged)."""
    obj = loads(body)
    if not isinstance(obj, dict) or obj.get("kind") not in (rt.kind, rt.list_kind):
        return body
    _rewrite(obj, rt)
    return dumps(obj)


def watch_converter(rt: ResourceType, then: FrameConverter | None) -> FrameConverter:
    """Rewrite each event's object, then apply `then` (Table conversion) if given."""

    def convert(frames: list[bytes]) -> list[bytes]:
        out = []
        for frame in frames:
            event = loads(frame)
            obj = event.get("object") if isinstance(event, dict) else None
            if isinstance(obj, dict) and obj.get("kind") == rt.kind:
                _rewrite(obj, rt)
                out.append(dumps(event) + b"\n")
            else:
                out.append(frame)
        return then(out) if then is not None else out

    return convert
