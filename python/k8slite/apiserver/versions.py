"""Custom resources on their way out: served in a version other than their storage version
(None conversion), and defaulted as read from storage.

With the None strategy only apiVersion differs between versions; defaults a schema gained
after an object was stored are applied when it is read, as upstream does. Both rewrite the
object, each item of a list, each watch event's object.
"""

from __future__ import annotations

from collections.abc import Callable

from k8slite._native import dumps, loads
from k8slite.api.resources import ResourceType
from k8slite.component.objects import Obj

FrameConverter = Callable[[list[bytes]], list[bytes]]
# Fills in a schema's defaults (a registry's on_read).
Defaulter = Callable[[Obj], None]


def _object(obj: Obj, rt: ResourceType, defaults: Defaulter | None) -> None:
    obj["apiVersion"] = rt.api_version
    if defaults is not None:
        defaults(obj)


def _rewrite(obj: Obj, rt: ResourceType, defaults: Defaulter | None) -> None:
    if obj.get("kind") == rt.kind:
        _object(obj, rt, defaults)
    elif obj.get("kind") == rt.list_kind:
        obj["apiVersion"] = rt.api_version
        for item in obj.get("items") or ():
            if isinstance(item, dict):
                _object(item, rt, defaults)


def convert_body(body: bytes, rt: ResourceType, defaults: Defaulter | None) -> bytes:
    """An object or list response in rt's version (Status and Scale pass unchanged)."""
    obj = loads(body)
    if not isinstance(obj, dict) or obj.get("kind") not in (rt.kind, rt.list_kind):
        return body
    _rewrite(obj, rt, defaults)
    return dumps(obj)


def watch_converter(
    rt: ResourceType, defaults: Defaulter | None, then: FrameConverter | None
) -> FrameConverter:
    """Rewrite each event's object, then apply `then` (Table conversion) if given."""

    def convert(frames: list[bytes]) -> list[bytes]:
        out = []
        for frame in frames:
            event = loads(frame)
            obj = event.get("object") if isinstance(event, dict) else None
            if isinstance(obj, dict) and obj.get("kind") == rt.kind:
                _object(obj, rt, defaults)
                out.append(dumps(event) + b"\n")
            else:
                out.append(frame)
        return then(out) if then is not None else out

    return convert
