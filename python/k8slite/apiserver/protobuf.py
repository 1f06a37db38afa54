"""Decode the few Kubernetes protobuf request bodies the API server accepts.

client-go's typed clientsets send protobuf (application/vnd.kubernetes.protobuf) and accept
JSON answers; `kubectl auth can-i` and `kubectl auth whoami` post their reviews that way. A
body is the magic "k8s\\0" and a runtime.Unknown {typeMeta = 1 {apiVersion = 1, kind = 2},
raw = 2}; raw is the object's message. Only the messages listed in SCHEMAS are understood,
field numbers as in upstream's generated.proto; anything else is a 415.
"""

from __future__ import annotations

from typing import Any

from k8slite.api import errors

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

# A message schema: field number -> (JSON name, kind); kind is "string", "bool", "int",
# "strings" (repeated string) or a nested schema.
Schema = dict[int, tuple[str, Any]]

_TYPE_META: Schema = {1: ("apiVersion", "string"), 2: ("kind", "string")}
_UNKNOWN: Schema = {1: ("typeMeta", _TYPE_META), 2: ("raw", "bytes")}
_OBJECT_META: Schema = {1: ("name", "string"), 2: ("generateName", "string"),
                        3: ("namespace", "string")}
_RESOURCE_ATTRIBUTES: Schema = {
    1: ("namespace", "string"), 2: ("verb", "string"), 3: ("group", "string"),
    4: ("version", "string"), 5: ("resource", "string"), 6: ("subresource", "string"),
    7: ("name", "string"),
}
_NONRESOURCE_ATTRIBUTES: Schema = {1: ("path", "string"), 2: ("verb", "string")}
_ACCESS_SPEC: Schema = {1: ("resourceAttributes", _RESOURCE_ATTRIBUTES),
                        2: ("nonResourceAttributes", _NONRESOURCE_ATTRIBUTES)}
_SUBJECT_SPEC: Schema = {**_ACCESS_SPEC, 3: ("user", "string"), 4: ("groups", "strings"),
                         6: ("uid", "string")}

SCHEMAS: dict[tuple[str, str], Schema] = {
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): {
        1: ("metadata", _OBJECT_META), 2: ("spec", _ACCESS_SPEC)},
    ("authorization.k8s.io/v1", "SubjectAccessReview"): {
        1: ("metadata", _OBJECT_META), 2: ("spec", _SUBJECT_SPEC)},
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview"): {
        1: ("metadata", _OBJECT_META), 2: ("spec", _SUBJECT_SPEC)},
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): {
        1: ("metadata", _OBJECT_META), 2: ("spec", {1: ("namespace", "string")})},
    ("authentication.k8s.io/v1", "SelfSubjectReview"): {1: ("metadata", _OBJECT_META)},
}


class _Malformed(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varints, bytes for length-delimited fields."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise _Malformed("truncated field")
            out.append((number, data[pos:pos + size]))
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise _Malformed(f"unsupported wire type {wire}")
    if pos != len(data):
        raise _Malformed("truncated field")
    return out


def _message(data: bytes, schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, value in _fields(data):
        entry = schema.get(number)
        if entry is None:
            continue
        name, kind = entry
        if isinstance(kind, dict):
            if not isinstance(value, bytes):
                raise _Malformed(f"{name} must be a message")
            out[name] = _message(value, kind)
        elif kind in ("string", "strings"):
            if not isinstance(value, bytes):
                raise _Malformed(f"{name} must be a string")
            text = value.decode("utf-8")
            if kind == "strings":
                out.setdefault(name, []).append(text)
            elif text:
                out[name] = text
        elif kind == "bytes":
            out[name] = value
    return out


def decode(body: bytes) -> dict[str, Any]:
    """The JSON-shaped object a protobuf body carries; 400 if malformed, 415 if unknown."""
    if not body.startswith(MAGIC):
        raise errors.bad_request("protobuf body does not start with the k8s magic prefix")
    try:
        unknown = _message(body[len(MAGIC):], _UNKNOWN)
        meta = unknown.get("typeMeta") or {}
        key = (meta.get("apiVersion", ""), meta.get("kind", ""))
        schema = SCHEMAS.get(key)
        if schema is None:
            raise errors.unsupported_media_type(CONTENT_TYPE)
        obj = _message(unknown.get("raw", b""), schema)
    except (_Malformed, UnicodeDecodeError) as e:
        raise errors.bad_request(f"protobuf decode error: {e}") from None
    return {"apiVersion": key[0], "kind": key[1], **obj}
