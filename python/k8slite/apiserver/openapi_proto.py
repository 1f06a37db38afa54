"""The OpenAPI v2 document in its protobuf form, gnostic's openapi.v2.Document message.

kubectl asks /openapi/v2 for `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`
whenever it validates on the client: for a `kind: List` (whose items it checks against the
v2 models, since no server-side field validation applies to a List) and when a server's v3
document cannot tell it whether `fieldValidation` is supported. Upstream encodes the same
JSON document it serves: this module does that from the JSON form openapi.py builds.

The field numbers are those of gnostic's openapiv2/OpenAPIv2.proto. A vendor extension
(x-...) is a NamedAny whose Any carries the value as YAML, as gnostic writes it. Keys the
messages have no field for (e.g. a custom resource schema's anyOf) are left out, as
upstream's conversion of its spec to gnostic leaves them out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import yaml

from k8slite import protowire as pw

CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
# What clients send in Accept; upstream answers with CONTENT_TYPE for both spellings.
MEDIA_TYPES = (
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
)

_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _yaml(value: Any) -> str:
    text = yaml.dump(value, Dumper=_Dumper, default_flow_style=False, sort_keys=False)
    # A lone scalar ends with the document-end marker; gnostic's YAML has none.
    return text.removesuffix("...\n")


def _any(number: int, value: Any) -> bytes:
    """An openapi.v2.Any {value = 1 (google.protobuf.Any, unused), yaml = 2}."""
    return pw.message(number, pw.string(2, _yaml(value)))


def _named(number: int, name: str, value: bytes) -> bytes:
    """A Named* message {name = 1, value = 2}: gnostic's ordered map entry."""
    return pw.message(number, pw.string(1, name) + pw.message(2, value))


def _extensions(number: int, obj: Mapping[str, Any]) -> bytes:
    """The x-... keys of obj as repeated NamedAny {name = 1, value = 2 (Any)}."""
    return b"".join(
        pw.message(number, pw.string(1, k) + _any(2, v))
        for k, v in obj.items()
        if k.startswith("x-")
    )


# ----------------------------------------------------------------------- Schema


def _type_item(value: Any) -> bytes:
    """TypeItem {repeated string value = 1}: "type" is a string or an array of them."""
    return pw.strings(1, [value] if isinstance(value, str) else list(value))


def _items_item(value: Any) -> bytes:
    """ItemsItem {repeated Schema schema = 1}: "items" is a schema or an array of them."""
    schemas = value if isinstance(value, list) else [value]
    return b"".join(pw.message(1, schema(s)) for s in schemas)


def _additional(value: Any) -> bytes:
    """AdditionalPropertiesItem oneof {Schema schema = 1; bool boolean = 2}."""
    if isinstance(value, bool):
        return pw.key(2, pw.VARINT) + (b"\x01" if value else b"\x00")
    return pw.message(1, schema(value))


def _properties(value: Mapping[str, Any]) -> bytes:
    """Properties {repeated NamedSchema additional_properties = 1}."""
    return b"".join(_named(1, k, schema(v)) for k, v in value.items())


def _str(n: int) -> Callable[[Any], bytes]:
    return lambda v: pw.string(n, str(v))


def _int(n: int) -> Callable[[Any], bytes]:
    return lambda v: pw.int64(n, int(v))


def _bool(n: int) -> Callable[[Any], bytes]:
    return lambda v: pw.boolean(n, bool(v))


def _num(n: int) -> Callable[[Any], bytes]:
    return lambda v: pw.double(n, float(v))


def _msg(n: int, encode: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    return lambda v: pw.message(n, encode(v))


# Schema's fields by JSON key, each with its encoder (field number inside).
_SCHEMA: dict[str, tuple[int, Callable[[Any], bytes]]] = {
    "$ref": (1, _str(1)),
    "format": (2, _str(2)),
    "title": (3, _str(3)),
    "description": (4, _str(4)),
    "default": (5, lambda v: _any(5, v)),
    "multipleOf": (6, _num(6)),
    "maximum": (7, _num(7)),
    "exclusiveMaximum": (8, _bool(8)),
    "minimum": (9, _num(9)),
    "exclusiveMinimum": (10, _bool(10)),
    "maxLength": (11, _int(11)),
    "minLength": (12, _int(12)),
    "pattern": (13, _str(13)),
    "maxItems": (14, _int(14)),
    "minItems": (15, _int(15)),
    "uniqueItems": (16, _bool(16)),
    "maxProperties": (17, _int(17)),
    "minProperties": (18, _int(18)),
    "required": (19, lambda v: pw.strings(19, list(v))),
    "enum": (20, lambda v: b"".join(_any(20, e) for e in v)),
    "additionalProperties": (21, _msg(21, _additional)),
    "type": (22, _msg(22, _type_item)),
    "items": (23, _msg(23, _items_item)),
    "allOf": (24, lambda v: b"".join(pw.message(24, schema(s)) for s in v)),
    "properties": (25, _msg(25, _properties)),
    "discriminator": (26, _str(26)),
    "readOnly": (27, _bool(27)),
    "example": (30, lambda v: _any(30, v)),
}
_SCHEMA_EXTENSIONS = 31


def schema(obj: Mapping[str, Any]) -> bytes:
    """A Schema message from a JSON schema object."""
    fields = sorted((_SCHEMA[k][0], k) for k in obj if k in _SCHEMA)
    body = b"".join(_SCHEMA[k][1](obj[k]) for _, k in fields)
    return body + _extensions(_SCHEMA_EXTENSIONS, obj)


# ------------------------------------------------------------------ Parameters

# Non-body parameters: NonBodyParameter's oneof field by "in", the numbers of the fields
# of that sub-schema message that openapi.py writes, and its vendor_extension field.
_HEADER_OR_PATH = {"required": 1, "in": 2, "description": 3, "name": 4, "type": 5, "format": 6}
_QUERY_OR_FORM = {
    "required": 1,
    "in": 2,
    "description": 3,
    "name": 4,
    "allowEmptyValue": 5,
    "type": 6,
    "format": 7,
}
_SUBSCHEMA: dict[str, tuple[int, dict[str, int], int]] = {
    "header": (1, _HEADER_OR_PATH, 22),
    "formData": (2, _QUERY_OR_FORM, 23),
    "query": (3, _QUERY_OR_FORM, 23),
    "path": (4, _HEADER_OR_PATH, 22),
}


def _sub_schema(param: Mapping[str, Any]) -> bytes:
    oneof, numbers, extensions = _SUBSCHEMA[param["in"]]
    body = b""
    for k, n in numbers.items():
        if k in param:
            v = param[k]
            body += pw.boolean(n, bool(v)) if isinstance(v, bool) else pw.string(n, str(v))
    return pw.message(oneof, body + _extensions(extensions, param))


def _parameter(param: Mapping[str, Any]) -> bytes:
    """ParametersItem oneof {Parameter parameter = 1; JsonReference json_reference = 2}."""
    if "$ref" in param:
        ref = pw.string(1, param["$ref"]) + pw.string(2, param.get("description", ""))
        return pw.message(2, ref)
    if param.get("in") == "body":
        # BodyParameter {description 1, name 2, in 3, required 4, schema 5, extensions 6}
        body = (
            pw.string(1, param.get("description", ""))
            + pw.string(2, param.get("name", ""))
            + pw.string(3, "body")
            + pw.boolean(4, bool(param.get("required")))
            + (pw.message(5, schema(param["schema"])) if "schema" in param else b"")
            + _extensions(6, param)
        )
        return pw.message(1, pw.message(1, body))
    return pw.message(1, pw.message(2, _sub_schema(param)))


def _parameters(number: int, params: list[Mapping[str, Any]]) -> bytes:
    return b"".join(pw.message(number, _parameter(p)) for p in params)


# ------------------------------------------------------------------- Operations


def _responses(responses: Mapping[str, Any]) -> bytes:
    """Responses {repeated NamedResponseValue response_code = 1; extensions = 2}."""
    out = b""
    for code, response in responses.items():
        if code.startswith("x-"):
            continue
        if "$ref" in response:
            value = pw.message(2, pw.string(1, response["$ref"]))
        else:
            # Response {description 1, schema 2 (SchemaItem oneof {Schema schema = 1}), ...}
            body = pw.string(1, response.get("description", ""))
            if "schema" in response:
                body += pw.message(2, pw.message(1, schema(response["schema"])))
            value = pw.message(1, body + _extensions(5, response))
        out += _named(1, code, value)
    return out + _extensions(2, responses)


def _operation(op: Mapping[str, Any]) -> bytes:
    return (
        pw.strings(1, list(op.get("tags", ())))
        + pw.string(2, op.get("summary", ""))
        + pw.string(3, op.get("description", ""))
        + pw.string(5, op.get("operationId", ""))
        + pw.strings(6, list(op.get("produces", ())))
        + pw.strings(7, list(op.get("consumes", ())))
        + _parameters(8, op.get("parameters", []))
        + (pw.message(9, _responses(op["responses"])) if "responses" in op else b"")
        + pw.strings(10, list(op.get("schemes", ())))
        + pw.boolean(11, bool(op.get("deprecated")))
        + _extensions(13, op)
    )


# PathItem's operations by method.
_METHODS = {"get": 2, "put": 3, "post": 4, "delete": 5, "options": 6, "head": 7, "patch": 8}


def _path_item(item: Mapping[str, Any]) -> bytes:
    body = pw.string(1, item.get("$ref", ""))
    for method, number in _METHODS.items():
        if method in item:
            body += pw.message(number, _operation(item[method]))
    return body + _parameters(9, item.get("parameters", [])) + _extensions(10, item)


# --------------------------------------------------------------------- Document


def document(doc: Mapping[str, Any]) -> bytes:
    """The Document message of a Swagger 2.0 JSON document (as openapi.v2 builds it)."""
    info = doc.get("info", {})
    info_body = (
        pw.string(1, info.get("title", ""))
        + pw.string(2, info.get("version", ""))
        + pw.string(3, info.get("description", ""))
        + _extensions(7, info)
    )
    # Paths {extensions = 1, repeated NamedPathItem path = 2}
    paths = doc.get("paths", {})
    paths_body = _extensions(1, paths) + b"".join(
        _named(2, p, _path_item(item)) for p, item in paths.items() if not p.startswith("x-")
    )
    # Definitions {repeated NamedSchema additional_properties = 1}
    definitions = b"".join(_named(1, k, schema(v)) for k, v in doc.get("definitions", {}).items())
    return (
        pw.string(1, doc.get("swagger", ""))
        + pw.message(2, info_body)
        + pw.message(8, paths_body)
        + pw.message(9, definitions)
        + _extensions(16, doc)
    )
