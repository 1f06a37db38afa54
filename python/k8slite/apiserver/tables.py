"""Server-side printing: Table and PartialObjectMetadata responses chosen by the Accept header.

Only requests whose Accept asks for `as=Table` (kubectl get) or `as=PartialObjectMetadata*`
pay for decoding and conversion; plain JSON responses are passed through untouched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from k8slite._native import dumps, loads
from k8slite.api import errors
from k8slite.api.customresource import custom_of
from k8slite.api.printers import Printer, printer
from k8slite.api.resources import ResourceType
from k8slite.component.objects import Obj, meta

TABLE = "Table"
PARTIAL = "PartialObjectMetadata"
PARTIAL_LIST = "PartialObjectMetadataList"
_VERSIONS = ("v1", "v1beta1")
_INCLUDE = ("Object", "Metadata", "None")


@dataclass(frozen=True)
class Target:
    """What the client asked for instead of the object: kind and meta.k8s.io version."""

    kind: str
    version: str

    @property
    def api_version(self) -> str:
        return f"meta.k8s.io/{self.version}"

    @property
    def content_type(self) -> str:
        return f"application/json;as={self.kind};v={self.version};g=meta.k8s.io"


def negotiate(accept: str | None, is_list: bool) -> Target | None:
    """The first acceptable transformed form in Accept, or None for the plain object."""
    if not accept or "as=" not in accept:
        return None
    for item in accept.split(","):
        parts = [p.strip() for p in item.split(";")]
        mime = parts[0].lower()
        if mime not in ("application/json", "application/*", "*/*"):
            continue
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        kind = params.get("as")
        if kind is None:
            return None
        if params.get("g") != "meta.k8s.io" or params.get("v") not in _VERSIONS:
            continue
        if kind == TABLE or kind == (PARTIAL_LIST if is_list else PARTIAL):
            return Target(kind, params["v"])
    raise errors.not_acceptable(accept)


def include_object(value: str | None) -> str:
    value = value or "Metadata"
    if value not in _INCLUDE:
        raise errors.bad_request(f'unrecognized includeObject value: "{value}"')
    return value


def partial(obj: Obj, target: Target) -> Obj:
    return {
        "kind": PARTIAL,
        "apiVersion": target.api_version,
        "metadata": meta(obj),
    }


def _row(obj: Obj, p: Printer, target: Target, include: str, now: dt.datetime) -> Obj:
    row: Obj = {"cells": p.row(obj, now)}
    if p.conditions is not None:
        conditions = p.conditions(obj)
        if conditions:
            row["conditions"] = conditions
    if include == "Object":
        row["object"] = obj
    elif include == "Metadata":
        row["object"] = partial(obj, target)
    return row


def table(
    items: list[Obj],
    rt: ResourceType,
    target: Target,
    include: str,
    list_meta: Obj,
    headers: bool = True,
) -> Obj:
    custom = custom_of(rt)
    p = custom.printer if custom is not None else printer(rt.group, rt.kind)
    now = dt.datetime.now(dt.UTC)
    out: Obj = {
        "kind": TABLE,
        "apiVersion": target.api_version,
        "metadata": list_meta,
        "columnDefinitions": [c.definition() for c in p.columns] if headers else None,
        "rows": [_row(obj, p, target, include, now) for obj in items],
    }
    return out


def convert(body: bytes, rt: ResourceType, target: Target, include: str, is_list: bool) -> bytes:
    """A list or get response body in the target form."""
    data = loads(body)
    if data.get("kind") == "Status":
        return body
    if is_list:
        items = data.get("items") or []
        if target.kind == PARTIAL_LIST:
            return dumps(
                {
                    "kind": PARTIAL_LIST,
                    "apiVersion": target.api_version,
                    "metadata": meta(data),
                    "items": [partial(o, target) for o in items],
                }
            )
        return dumps(table(items, rt, target, include, meta(data)))
    if target.kind == PARTIAL:
        return dumps(partial(data, target))
    rv = meta(data).get("resourceVersion")
    return dumps(table([data], rt, target, include, {"resourceVersion": rv} if rv else {}))


def watch_converter(
    rt: ResourceType, target: Target, include: str
) -> Callable[[list[bytes]], list[bytes]]:
    """Turns watch frames into frames of one-row Tables; only the first carries columns."""
    first = [True]

    def convert_frames(frames: list[bytes]) -> list[bytes]:
        out = []
        for frame in frames:
            event = loads(frame)
            obj = event.get("object")
            if event.get("type") in ("ADDED", "MODIFIED", "DELETED") and isinstance(obj, dict):
                if target.kind == TABLE:
                    rv = meta(obj).get("resourceVersion")
                    event["object"] = table(
                        [obj], rt, target, include, {"resourceVersion": rv}, headers=first[0]
                    )
                    first[0] = False
                else:
                    event["object"] = partial(obj, target)
                out.append(dumps(event) + b"\n")
            else:
                out.append(frame)
        return out

    return convert_frames
