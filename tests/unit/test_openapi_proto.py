"""The protobuf form of /openapi/v2, decoded by an independent decoder: the `protobuf`
package, with a descriptor of gnostic's openapi.v2 messages built here from the field
numbers of gnostic's OpenAPIv2.proto (the subset the served document uses)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from k8slite._native import loads
from k8slite.apiserver import openapi, openapi_proto
from k8slite.apiserver.crdschema_v2 import v2_schema

# message: "number name type" per field; "*" after the number marks a repeated field.
_MESSAGES = {
    "Document": "1 swagger string; 2 info Info; 8 paths Paths; 9 definitions Definitions; "
    "16* vendor_extension NamedAny",
    "Info": "1 title string; 2 version string; 3 description string",
    "Paths": "1* vendor_extension NamedAny; 2* path NamedPathItem",
    "NamedPathItem": "1 name string; 2 value PathItem",
    "PathItem": "1 _ref string; 2 get Operation; 3 put Operation; 4 post Operation; "
    "5 delete Operation; 8 patch Operation; 9* parameters ParametersItem; "
    "10* vendor_extension NamedAny",
    "Operation": "1* tags string; 3 description string; 5 operation_id string; "
    "6* produces string; 7* consumes string; 8* parameters ParametersItem; "
    "9 responses Responses; 13* vendor_extension NamedAny",
    "ParametersItem": "1 parameter Parameter; 2 json_reference JsonReference",
    "JsonReference": "1 _ref string; 2 description string",
    "Parameter": "1 body_parameter BodyParameter; 2 non_body_parameter NonBodyParameter",
    "BodyParameter": "1 description string; 2 name string; 3 in string; 4 required bool; "
    "5 schema Schema",
    "NonBodyParameter": "3 query_parameter_sub_schema QueryParameterSubSchema; "
    "4 path_parameter_sub_schema PathParameterSubSchema",
    "QueryParameterSubSchema": "1 required bool; 2 in string; 3 description string; "
    "4 name string; 6 type string",
    "PathParameterSubSchema": "1 required bool; 2 in string; 3 description string; "
    "4 name string; 5 type string",
    "Responses": "1* response_code NamedResponseValue",
    "NamedResponseValue": "1 name string; 2 value ResponseValue",
    "ResponseValue": "1 response Response; 2 json_reference JsonReference",
    "Response": "1 description string; 2 schema SchemaItem",
    "SchemaItem": "1 schema Schema",
    "Definitions": "1* additional_properties NamedSchema",
    "NamedSchema": "1 name string; 2 value Schema",
    "Properties": "1* additional_properties NamedSchema",
    "Schema": "1 _ref string; 2 format string; 3 title string; 4 description string; "
    "5 default Any; 6 multiple_of double; 7 maximum double; 8 exclusive_maximum bool; "
    "9 minimum double; 10 exclusive_minimum bool; 11 max_length int64; 12 min_length int64; "
    "13 pattern string; 14 max_items int64; 15 min_items int64; 16 unique_items bool; "
    "17 max_properties int64; 18 min_properties int64; 19* required string; 20* enum Any; "
    "21 additional_properties AdditionalPropertiesItem; 22 type TypeItem; "
    "23 items ItemsItem; 24* all_of Schema; 25 properties Properties; "
    "27 read_only bool; 30 example Any; 31* vendor_extension NamedAny",
    "AdditionalPropertiesItem": "1 schema Schema; 2 boolean bool",
    "TypeItem": "1* value string",
    "ItemsItem": "1* schema Schema",
    "NamedAny": "1 name string; 2 value Any",
    "Any": "2 yaml string",
}
# gnostic's messages whose fields are all one `oneof oneof` (which gives them presence).
_ONEOFS = {
    "AdditionalPropertiesItem",
    "ParametersItem",
    "Parameter",
    "NonBodyParameter",
    "ResponseValue",
    "SchemaItem",
}
_SCALARS = {
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "double": descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
}


def _document_class() -> Any:
    f = descriptor_pb2.FileDescriptorProto(name="openapiv2_test.proto", package="openapi.v2")
    f.syntax = "proto3"
    for name, spec in _MESSAGES.items():
        m = f.message_type.add(name=name)
        if name in _ONEOFS:
            m.oneof_decl.add(name="oneof")
        for field in spec.split(";"):
            number, fname, ftype = field.split()
            repeated = number.endswith("*")
            fd = m.field.add(name=fname, number=int(number.rstrip("*")))
            fd.label = fd.LABEL_REPEATED if repeated else fd.LABEL_OPTIONAL
            if name in _ONEOFS:
                fd.oneof_index = 0
            if ftype in _SCALARS:
                fd.type = _SCALARS[ftype]
            else:
                fd.type = fd.TYPE_MESSAGE
                fd.type_name = ".openapi.v2." + ftype
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("openapi.v2.Document"))


Document = _document_class()


def _extensions(named: Any) -> dict[str, Any]:
    return {e.name: yaml.safe_load(e.value.yaml) for e in named}


def _schema_json(s: Any) -> dict[str, Any]:
    """The decoded Schema as JSON again (the fields the served document uses)."""
    out: dict[str, Any] = {}
    if s._ref:
        out["$ref"] = s._ref
    for key, attr in (("format", "format"), ("description", "description")):
        if getattr(s, attr):
            out[key] = getattr(s, attr)
    if s.HasField("type"):
        out["type"] = s.type.value[0] if len(s.type.value) == 1 else list(s.type.value)
    if s.HasField("items"):
        out["items"] = _schema_json(s.items.schema[0])
    if s.HasField("properties"):
        out["properties"] = {
            p.name: _schema_json(p.value) for p in s.properties.additional_properties
        }
    if s.HasField("additional_properties"):
        ap = s.additional_properties
        out["additionalProperties"] = (
            _schema_json(ap.schema) if ap.HasField("schema") else ap.boolean
        )
    if s.required:
        out["required"] = list(s.required)
    if s.enum:
        out["enum"] = [yaml.safe_load(e.yaml) for e in s.enum]
    out.update(_extensions(s.vendor_extension))
    return out


def test_every_definition_decodes_to_its_json() -> None:
    doc = loads(openapi.v2())
    decoded = Document.FromString(openapi_proto.document(doc))
    assert decoded.swagger == "2.0"
    assert (decoded.info.title, decoded.info.version) == (
        doc["info"]["title"],
        doc["info"]["version"],
    )
    definitions = {d.name: d.value for d in decoded.definitions.additional_properties}
    assert list(definitions) == list(doc["definitions"])
    for name, schema in doc["definitions"].items():
        assert _schema_json(definitions[name]) == schema, name
    deployment = _extensions(definitions["io.k8s.api.apps.v1.Deployment"].vendor_extension)
    assert deployment["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}
    ]


def test_operations_keep_parameters_responses_and_kinds() -> None:
    """kubectl's v2 field-validation check reads a PATCH's parameters and its GVK."""
    doc = loads(openapi.v2())
    decoded = Document.FromString(openapi_proto.document(doc))
    paths = {p.name: p.value for p in decoded.paths.path}
    assert list(paths) == list(doc["paths"])
    item = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    patch = item.patch
    assert patch.operation_id == "patchDeployment"
    assert (
        list(patch.consumes)
        == doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"][
            "consumes"
        ]
    )
    ext = _extensions(patch.vendor_extension)
    assert ext["x-kubernetes-group-version-kind"] == {
        "group": "apps",
        "kind": "Deployment",
        "version": "v1",
    }
    assert ext["x-kubernetes-action"] == "patch"
    query = {
        p.parameter.non_body_parameter.query_parameter_sub_schema.name: p
        for p in patch.parameters
        if p.parameter.non_body_parameter.HasField("query_parameter_sub_schema")
    }
    validation = query["fieldValidation"].parameter.non_body_parameter.query_parameter_sub_schema
    assert getattr(validation, "in") == "query"  # a Python keyword
    assert validation.type == "string"
    bodies = [
        p.parameter.body_parameter
        for p in patch.parameters
        if p.parameter.HasField("body_parameter")
    ]
    assert len(bodies) == 1 and bodies[0].required
    assert bodies[0].schema._ref == "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
    path_params = [
        p.parameter.non_body_parameter.path_parameter_sub_schema for p in item.parameters
    ]
    assert {(p.name, p.required) for p in path_params} == {("name", True), ("namespace", True)}
    codes = {r.name: r.value for r in patch.responses.response_code}
    assert codes["200"].response.schema.schema._ref == (
        "#/definitions/io.k8s.api.apps.v1.Deployment"
    )
    assert codes["401"].response.description == "Unauthorized"


def test_schema_scalars_and_choices() -> None:
    """Numbers, bounds, boolean additionalProperties, type arrays, defaults and enums."""
    schema = {
        "type": "object",
        "title": "T",
        "additionalProperties": False,
        "properties": {
            "n": {"type": "integer", "minimum": -3, "maximum": 2.5, "exclusiveMaximum": True},
            "s": {
                "type": "string",
                "maxLength": 10,
                "minLength": 0,
                "pattern": "^a",
                "default": "x",
            },
            "l": {"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": True},
            "e": {"enum": ["a", 1, None, {"k": "v"}]},
            "u": {"type": ["string", "null"], "anyOf": [{"type": "string"}]},
            "m": {"type": "object", "additionalProperties": {"type": "number", "multipleOf": 0.5}},
        },
        "x-kubernetes-preserve-unknown-fields": True,
    }
    decoded = Document.FromString(openapi_proto.document({"definitions": {"t": schema}}))
    s = decoded.definitions.additional_properties[0].value
    assert s.title == "T"
    assert s.additional_properties.WhichOneof("oneof") == "boolean"
    assert not s.additional_properties.boolean
    props = {p.name: p.value for p in s.properties.additional_properties}
    assert (props["n"].minimum, props["n"].maximum, props["n"].exclusive_maximum) == (-3, 2.5, True)
    assert (props["s"].max_length, props["s"].min_length, props["s"].pattern) == (10, 0, "^a")
    assert yaml.safe_load(props["s"].default.yaml) == "x"
    assert (props["l"].min_items, props["l"].unique_items) == (1, True)
    assert list(props["l"].items.schema[0].type.value) == ["string"]
    assert [yaml.safe_load(e.yaml) for e in props["e"].enum] == ["a", 1, None, {"k": "v"}]
    assert list(props["u"].type.value) == ["string", "null"]  # anyOf has no field: left out
    assert props["m"].additional_properties.schema.multiple_of == 0.5
    assert _extensions(s.vendor_extension) == {"x-kubernetes-preserve-unknown-fields": True}


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("", "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", openapi_proto.CONTENT_TYPE),
        (
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf, application/json",
            openapi_proto.CONTENT_TYPE,
        ),
        (
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf;q=0.5, application/json",
            "application/json",
        ),
        ("application/yaml", None),
        ("application/json;q=0", None),
    ],
)
def test_accept_negotiation(accept: str, expected: str | None) -> None:
    assert openapi._v2_media_type(accept) == expected


def test_crd_schema_reduced_for_v2_as_upstream() -> None:
    schema = {
        "type": "object",
        "required": ["a", "b"],
        "properties": {
            "a": {"type": "object", "nullable": True, "properties": {"x": {"type": "string"}}},
            "b": {"type": "string"},
            "c": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {"y": {"type": "string"}},
            },
            "d": {"type": "array", "x-kubernetes-preserve-unknown-fields": True, "items": {}},
            "e": {
                "anyOf": [{"type": "integer"}, {"type": "string"}],
                "x-kubernetes-int-or-string": True,
            },
            "f": {"type": "array", "items": {"type": "object", "oneOf": [{"required": ["z"]}]}},
        },
    }
    assert v2_schema(schema) == {
        "type": "object",
        "required": ["b"],
        "properties": {
            "a": {},
            "b": {"type": "string"},
            "c": {"x-kubernetes-preserve-unknown-fields": True},
            "d": {"x-kubernetes-preserve-unknown-fields": True},
            "e": {"x-kubernetes-int-or-string": True},
            "f": {"type": "array", "items": {"type": "object"}},
        },
    }
    # The input is left as it was (the v3 document is made from it too).
    assert schema["properties"]["a"]["nullable"] is True
