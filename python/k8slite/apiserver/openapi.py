"""OpenAPI v2 and v3 documents of the served API, rendered once from api.schemas.

v3 is what kubectl 1.35 reads: `kubectl explain`, the patch metadata of client-side apply,
and the check that the server validates fields itself (the `fieldValidation` parameter on a
kind's PATCH operation). The per group-version documents are addressed by content hash.
v2 is what kubectl validates on the client with (the items of a `kind: List`); it asks for
it as protobuf (openapi_proto), and gets JSON when it asks for that. Both forms are made
once per set of served custom kinds and carry an ETag (If-None-Match gets 304).
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from k8slite import KUBERNETES_VERSION
from k8slite._native import dumps, loads
from k8slite.api import errors, meta, schemas
from k8slite.api.customresource import custom_of
from k8slite.api.patchmeta import META
from k8slite.api.resources import RESOURCES, ResourceType, group_versions, served
from k8slite.api.schemas import Definition, Node
from k8slite.apiserver import openapi_proto
from k8slite.apiserver.crdschema_v2 import v2_schema
from k8slite.component.objects import Obj

_SPECIAL: dict[str, Obj] = {
    META + "Time": {
        "description": "Time is a wrapper around time.Time which supports correct "
        "marshaling to YAML and JSON.",
        "type": "string",
        "format": "date-time",
    },
    META + "MicroTime": {
        "description": "MicroTime is version of Time with microsecond level precision.",
        "type": "string",
        "format": "date-time",
    },
    META + "FieldsV1": {
        "description": "FieldsV1 stores a set of fields in a data structure "
        "like a Trie, in JSON format.",
        "type": "object",
    },
    META + "Patch": {
        "description": "Patch is provided to give a concrete name and type to "
        "the Kubernetes PATCH request body.",
        "type": "object",
    },
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "description": "Quantity is a fixed-point representation of a number.",
        "type": "string",
    },
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "description": "IntOrString is a type that can hold an int32 or a string.",
        "type": "string",
        "format": "int-or-string",
    },
    "io.k8s.apimachinery.pkg.runtime.RawExtension": {
        "description": "RawExtension is used to hold extensions in external versions.",
        "type": "object",
    },
}
_V3_OVERRIDES: dict[str, Obj] = {
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "oneOf": [{"type": "string"}, {"type": "number"}]
    },
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
    },
}


class _Renderer:
    """Renders definitions for one OpenAPI version (refs and $ref-with-description differ)."""

    def __init__(self, v3: bool) -> None:
        self.v3 = v3
        self.prefix = "#/components/schemas/" if v3 else "#/definitions/"
        self.used: set[str] = set()

    def ref(self, name: str, description: str = "") -> Obj:
        self.used.add(name)
        target = {"$ref": self.prefix + name}
        if not description:
            return target
        if self.v3:  # siblings of $ref are ignored in OpenAPI 3.0, so wrap it
            return {"allOf": [target], "description": description}
        return {**target, "description": description}

    def node(self, node: Node, description: str = "") -> Obj:
        kind = node.kind
        if kind == "struct" and node.definition is not None:
            out = self.ref(node.definition.name, description)
        elif kind == "list" and node.elem is not None:
            out = {"type": "array", "items": self.node(node.elem)}
        elif kind == "map" and node.elem is not None:
            out = {"type": "object", "additionalProperties": self.node(node.elem)}
        elif kind == "time":
            name = META + ("MicroTime" if node.fmt == "micro" else "Time")
            out = self.ref(name, description)
        elif kind == "quantity":
            out = self.ref("io.k8s.apimachinery.pkg.api.resource.Quantity", description)
        elif kind == "intstr":
            out = self.ref("io.k8s.apimachinery.pkg.util.intstr.IntOrString", description)
        elif kind == "any":
            special = {
                "fieldsV1": META + "FieldsV1",
                "object": "io.k8s.apimachinery.pkg.runtime.RawExtension",
            }.get(node.fmt)
            out = self.ref(special, description) if special else {"type": "object"}
        else:
            out = {"type": kind}
            if node.fmt in ("byte", "int32", "int64"):
                out["format"] = node.fmt
        if description and "description" not in out and "allOf" not in out and "$ref" not in out:
            out["description"] = description
        if node.enum:
            out["enum"] = list(node.enum)
        m = node.meta
        if m.merge_key:
            out["x-kubernetes-patch-merge-key"] = m.merge_key
        if m.strategy:
            out["x-kubernetes-patch-strategy"] = m.strategy
        if m.list_type:
            out["x-kubernetes-list-type"] = m.list_type
            if m.list_type == "map":
                out["x-kubernetes-list-map-keys"] = list(m.keys)
        if m.map_type:
            out["x-kubernetes-map-type"] = m.map_type
        return out

    def definition(self, defn: Definition) -> Obj:
        out: Obj = {}
        # A field whose own description the client's models lost carries its type's
        # description (api.schemas), so only kinds keep theirs here: explain prints both.
        if defn.description and defn.gvks:
            out["description"] = defn.description
        out["type"] = "object"
        out["properties"] = {k: self.node(n, n.description) for k, n in defn.fields.items()}
        if defn.required:
            out["required"] = list(defn.required)
        if defn.gvks:
            out["x-kubernetes-group-version-kind"] = defn.gvks
        if defn.atomic:
            out["x-kubernetes-map-type"] = "atomic"
        return out

    def closure(self, names: set[str]) -> dict[str, Obj]:
        """Render the named definitions and everything they refer to."""
        catalog = schemas.catalog().definitions
        out: dict[str, Obj] = {}
        pending = set(names)
        while pending:
            name = pending.pop()
            if name in out:
                continue
            if name in catalog:
                out[name] = self.definition(catalog[name])
            else:
                out[name] = dict(_SPECIAL[name])
                if self.v3 and name in _V3_OVERRIDES:
                    out[name] = {"description": out[name]["description"], **_V3_OVERRIDES[name]}
            pending |= self.used - out.keys()
        return dict(sorted(out.items()))


# ------------------------------------------------------------------------ paths

_PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)


def _param(
    name: str, where: str = "query", kind: str = "string", desc: str = "", required: bool = False
) -> Obj:
    out: Obj = {"name": name, "in": where, "description": desc}
    if required:
        out["required"] = True
    out["schema"] = {"type": kind}
    return out


def _v2_param(p: Obj) -> Obj:
    """OpenAPI v2 puts a non-body parameter's type beside it rather than in a schema."""
    if p.get("in") == "body" or "schema" not in p:
        return p
    out = {k: v for k, v in p.items() if k != "schema"}
    out["type"] = p["schema"]["type"]
    return out


_WRITE_PARAMS = [
    _param(
        "dryRun",
        desc="When present, indicates that modifications should not be "
        "persisted. Valid values are: - All: all dry run stages will be processed",
    ),
    _param(
        "fieldManager",
        desc="fieldManager is a name associated with the actor or entity "
        "that is making these changes.",
    ),
    _param(
        "fieldValidation",
        desc="fieldValidation instructs the server on how to handle "
        "objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. "
        "Valid values are: - Ignore - Warn (default) - Strict",
    ),
]
_FORCE = _param(
    "force",
    kind="boolean",
    desc='Force is going to "force" Apply requests. '
    "It means user will re-acquire conflicting fields owned by other people.",
)
_PRETTY = _param("pretty", desc="If 'true', then the output is pretty printed.")


def _op(
    rt: ResourceType,
    action: str,
    kind: str,
    group: str,
    version: str,
    v3: bool,
    response: str,
    body: str | None = None,
    params: list[Obj] | None = None,
    patch: bool = False,
) -> Obj:
    op: Obj = {
        "description": f"{action} {kind}",
        "operationId": f"{action}{rt.kind}",
        "tags": [rt.group_version.replace("/", "_").replace(".", "_")],
        "parameters": [_PRETTY, *(params or [])],
        "responses": {"200": {"description": "OK"}, "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": group, "kind": kind, "version": version},
    }
    ref = ("#/components/schemas/" if v3 else "#/definitions/") + response
    if v3:
        op["responses"]["200"]["content"] = {"application/json": {"schema": {"$ref": ref}}}
    else:
        op["responses"]["200"]["schema"] = {"$ref": ref}
        op["produces"] = ["application/json", "application/yaml"]
    if body is not None:
        types = list(_PATCH_TYPES) if patch else ["*/*"]
        body_ref = ("#/components/schemas/" if v3 else "#/definitions/") + body
        if v3:
            op["requestBody"] = {
                "content": {t: {"schema": {"$ref": body_ref}} for t in types},
                "required": True,
            }
        else:
            op["consumes"] = types
            op["parameters"].append(
                {"name": "body", "in": "body", "required": True, "schema": {"$ref": body_ref}}
            )
    if not v3:
        op["parameters"] = [_v2_param(p) for p in op["parameters"]]
    return op


def _paths(rt: ResourceType, v3: bool, names: tuple[str, str] | None = None) -> dict[str, Obj]:
    """The paths of a kind; names are its (definition, list definition) when not built-in."""
    if names is None:
        root = schemas.root(rt)
        if root is None:
            return {}
        defn = root.name
        lst_defn = schemas.catalog().kinds.get((rt.group, rt.version, rt.list_kind))
        lst = lst_defn.name if lst_defn is not None else defn
    else:
        defn, lst = names
    status = META + "Status"
    base = f"/api/{rt.version}" if not rt.group else f"/apis/{rt.group}/{rt.version}"
    scoped = (
        f"{base}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{base}/{rt.plural}"
    )
    args = (rt.group, rt.version, v3)
    name = _param("name", "path", desc=f"name of the {rt.kind}", required=True)
    ns = (
        [_param("namespace", "path", desc="object name and auth scope", required=True)]
        if rt.namespaced
        else []
    )
    writes = [*_WRITE_PARAMS]
    verbs = set(rt.verbs)
    collection: Obj = {}
    if "list" in verbs:
        collection["get"] = _op(rt, "list", rt.kind, *args, lst)
    if "create" in verbs:
        collection["post"] = _op(rt, "post", rt.kind, *args, defn, defn, writes)
    if "deletecollection" in verbs:
        collection["delete"] = _op(rt, "deletecollection", rt.kind, *args, status)
    item: Obj = {}
    if "get" in verbs:
        item["get"] = _op(rt, "get", rt.kind, *args, defn)
    if "update" in verbs:
        item["put"] = _op(rt, "put", rt.kind, *args, defn, defn, writes)
    if "patch" in verbs:
        item["patch"] = _op(
            rt, "patch", rt.kind, *args, defn, META + "Patch", [*writes, _FORCE], patch=True
        )
    if "delete" in verbs:
        item["delete"] = _op(rt, "delete", rt.kind, *args, status)
    out: dict[str, Obj] = {scoped: {**collection, "parameters": ns}}
    if item:
        out[f"{scoped}/{{name}}"] = {**item, "parameters": [name, *ns]}
    if rt.namespaced and "list" in verbs:
        out[f"{base}/{rt.plural}"] = {"get": _op(rt, "list", rt.kind, *args, lst)}
    for sub in rt.subresources:
        if sub not in ("status", "scale"):
            continue
        kind, target = (
            (rt.kind, defn) if sub == "status" else ("Scale", "io.k8s.api.autoscaling.v1.Scale")
        )
        g, v = (rt.group, rt.version) if sub == "status" else ("autoscaling", "v1")
        sub_args = (g, v, v3)
        out[f"{scoped}/{{name}}/{sub}"] = {
            "get": _op(rt, "get", kind, *sub_args, target),
            "put": _op(rt, "put", kind, *sub_args, target, target, writes),
            "patch": _op(
                rt, "patch", kind, *sub_args, target, META + "Patch", [*writes, _FORCE], patch=True
            ),
            "parameters": [name, *ns],
        }
    if not v3:
        for item in out.values():
            if "parameters" in item:
                item["parameters"] = [_v2_param(p) for p in item["parameters"]]
    return out


def _refs(paths: dict[str, Obj]) -> set[str]:
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            ref = value.get("$ref")
            if isinstance(ref, str):
                found.add(ref.rsplit("/", 1)[1])
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(paths)
    return found


def _info() -> Obj:
    return {"title": "Kubernetes", "version": KUBERNETES_VERSION}


@functools.cache
def v2() -> bytes:
    paths: dict[str, Obj] = {}
    for rt in RESOURCES:
        paths.update(_paths(rt, v3=False))
    r = _Renderer(v3=False)
    definitions = r.closure(_refs(paths))
    return dumps(
        {
            "swagger": "2.0",
            "info": _info(),
            "paths": dict(sorted(paths.items())),
            "definitions": definitions,
        }
    )


def gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


@functools.cache
def v3_documents() -> dict[str, tuple[bytes, str]]:
    """Per group-version documents (bytes, hash), keyed by e.g. "apis/apps/v1"."""
    out: dict[str, tuple[bytes, str]] = {}
    for group, versions in group_versions(builtin=True).items():
        for version in versions:
            paths: dict[str, Obj] = {}
            for rt in RESOURCES:
                if rt.group == group and rt.version == version:
                    paths.update(_paths(rt, v3=True))
            r = _Renderer(v3=True)
            schemas_ = r.closure(_refs(paths))
            doc = dumps(
                {
                    "openapi": "3.0.0",
                    "info": _info(),
                    "paths": dict(sorted(paths.items())),
                    "components": {"schemas": schemas_},
                }
            )
            out[gv_path(group, version)] = (doc, _etag(doc))
    return out


# ------------------------------------------------------------- custom resources

_TYPE_META = {
    "apiVersion": "APIVersion defines the versioned schema of this representation of an "
    "object. Servers should convert recognized schemas to the latest internal value, and may "
    "reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/"
    "sig-architecture/api-conventions.md#resources",
    "kind": "Kind is a string value representing the REST resource this object represents. "
    "Servers may infer this from the endpoint the client submits requests to. Cannot be "
    "updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/"
    "sig-architecture/api-conventions.md#types-kinds",
}
_OBJECT_META_DOC = (
    "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/"
    "sig-architecture/api-conventions.md#metadata"
)
_LIST_DOC = (
    "List of {plural}. More info: https://git.k8s.io/community/contributors/devel/"
    "sig-architecture/api-conventions.md"
)


def custom_definition_names(rt: ResourceType) -> tuple[str, str]:
    """Upstream names a custom kind's definition by its reversed group: com.example.v1.Kind."""
    prefix = ".".join(reversed(rt.group.split("."))) + "." + rt.version + "."
    return prefix + rt.kind, prefix + rt.list_kind


def _custom_schemas(rt: ResourceType, r: _Renderer) -> dict[str, Obj]:
    custom = custom_of(rt)
    assert custom is not None
    name, list_name = custom_definition_names(rt)
    gvk = {"group": rt.group, "kind": rt.kind, "version": rt.version}
    body = meta.clone(custom.raw_schema)
    if not r.v3:
        body = v2_schema(body)
    props = body.pop("properties", {}) or {}
    properties: Obj = {k: {"type": "string", "description": v} for k, v in _TYPE_META.items()}
    properties["metadata"] = r.ref(META + "ObjectMeta", _OBJECT_META_DOC)
    properties.update((k, v) for k, v in props.items() if k not in properties)
    kind_schema: Obj = {**body, "type": "object", "properties": properties}
    kind_schema["x-kubernetes-group-version-kind"] = [gvk]
    items_ref = {"$ref": r.prefix + name}
    list_schema: Obj = {
        "description": f"{rt.kind}List is a list of {rt.kind}",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": _TYPE_META["apiVersion"]},
            "items": {
                "type": "array",
                "description": _LIST_DOC.format(plural=rt.plural),
                "items": items_ref,
            },
            "kind": {"type": "string", "description": _TYPE_META["kind"]},
            "metadata": r.ref(META + "ListMeta", "Standard list metadata."),
        },
        "x-kubernetes-group-version-kind": [{**gvk, "kind": rt.list_kind}],
    }
    return {name: kind_schema, list_name: list_schema}


def _custom_document(kinds: list[ResourceType], v3: bool) -> tuple[dict[str, Obj], dict[str, Obj]]:
    """Paths and definitions of custom kinds (their own and those they refer to)."""
    paths: dict[str, Obj] = {}
    own: dict[str, Obj] = {}
    r = _Renderer(v3)
    for rt in kinds:
        paths.update(_paths(rt, v3, custom_definition_names(rt)))
        own.update(_custom_schemas(rt, r))
    refs = (_refs(paths) | r.used) - own.keys()
    return paths, {**r.closure(refs), **own}


# Documents of custom group-versions, kept while the kinds they describe are served.
_custom_docs: dict[str, tuple[list[object], tuple[bytes, str]]] = {}


def _custom_kinds() -> dict[str, list[ResourceType]]:
    out: dict[str, list[ResourceType]] = {}
    for rt in served():
        if custom_of(rt) is not None:
            out.setdefault(gv_path(rt.group, rt.version), []).append(rt)
    return out


def custom_v3_documents() -> dict[str, tuple[bytes, str]]:
    """Per group-version documents of the custom kinds served now."""
    out: dict[str, tuple[bytes, str]] = {}
    for path, kinds in _custom_kinds().items():
        identity: list[object] = [custom_of(rt) for rt in kinds]
        hit = _custom_docs.get(path)
        if (
            hit is not None
            and len(hit[0]) == len(identity)
            and all(a is b for a, b in zip(hit[0], identity, strict=True))
        ):
            out[path] = hit[1]
            continue
        paths, definitions = _custom_document(kinds, v3=True)
        doc = dumps(
            {
                "openapi": "3.0.0",
                "info": _info(),
                "paths": dict(sorted(paths.items())),
                "components": {"schemas": dict(sorted(definitions.items()))},
            }
        )
        out[path] = (doc, _etag(doc))
        _custom_docs[path] = (identity, out[path])
    for stale in _custom_docs.keys() - out.keys():
        del _custom_docs[stale]
    return out


class _V2Forms:
    """The v2 document of one set of served kinds: JSON, and protobuf made on first use."""

    def __init__(self, identity: list[object], json: bytes) -> None:
        self.identity = identity
        self.json = (json, _etag(json))
        self._proto: tuple[bytes, str] | None = None

    @property
    def proto(self) -> tuple[bytes, str]:
        if self._proto is None:
            body = openapi_proto.document(loads(self.json[0]))
            self._proto = (body, _etag(body))
        return self._proto


def _etag(body: bytes) -> str:
    """Upstream's ETag of an OpenAPI document: its SHA-512 in upper-case hex."""
    return hashlib.sha512(body).hexdigest().upper()


_v2_forms: list[_V2Forms] = []  # the one for the kinds served last


def _v2_served() -> _V2Forms:
    """The v2 document with the custom kinds served now merged in, made again when they change."""
    kinds = [rt for group in _custom_kinds().values() for rt in group]
    identity: list[object] = [custom_of(rt) for rt in kinds]
    if _v2_forms:
        hit = _v2_forms[0]
        if len(hit.identity) == len(identity) and all(
            a is b for a, b in zip(hit.identity, identity, strict=True)
        ):
            return hit
    if kinds:
        doc = loads(v2())
        paths, definitions = _custom_document(kinds, v3=False)
        doc["paths"] = dict(sorted({**doc["paths"], **paths}.items()))
        doc["definitions"] = dict(sorted({**doc["definitions"], **definitions}.items()))
        json = dumps(doc)
    else:
        json = v2()
    _v2_forms[:] = [_V2Forms(identity, json)]
    return _v2_forms[0]


def _v2_media_type(accept: str) -> str | None:
    """The form of /openapi/v2 an Accept header asks for: JSON, protobuf or none (406).

    Media ranges are taken in the order of their q-values, then of the header; an empty
    header, */* and application/* get JSON.
    """
    if not accept.strip():
        return "application/json"
    ranges: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            ranges.append((-q, i, media.lower()))
    for _, _, media in sorted(ranges):
        if media in ("application/json", "application/*", "*/*"):
            return "application/json"
        if media in openapi_proto.MEDIA_TYPES:
            return openapi_proto.CONTENT_TYPE
    return None


def v3_root() -> Obj:
    documents = {**v3_documents(), **custom_v3_documents()}
    return {
        "paths": {
            path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
            for path, (_, digest) in documents.items()
        }
    }


def register(app: QuartTrio) -> None:
    """Serve /openapi/v2, /openapi/v3 and /openapi/v3/<group-version>."""
    # Built at start-up so that the first write does not pay for it; in a child process,
    # so that this one does not keep the kubernetes client it is derived from.
    schemas.build_in_child()

    @app.route("/openapi/v2")
    async def openapi_v2() -> Response:
        accept = request.headers.get("Accept", "")
        media_type = _v2_media_type(accept)
        if media_type is None:
            err = errors.not_acceptable(accept)
            return Response(dumps(err.status()), status=err.code, content_type="application/json")
        forms = _v2_served()
        body, digest = forms.json if media_type == "application/json" else forms.proto
        headers = {"Etag": f'"{digest}"', "Vary": "Accept"}
        if_none_match = request.headers.get("If-None-Match", "")
        if f'"{digest}"' in if_none_match or if_none_match.strip() == "*":
            return Response(b"", status=304, headers=headers)
        return Response(body, content_type=media_type, headers=headers)

    @app.route("/openapi/v3")
    async def openapi_v3() -> Response:
        return Response(dumps(v3_root()), content_type="application/json")

    @app.route("/openapi/v3/<path:gv>")
    async def openapi_v3_gv(gv: str) -> Response:
        doc = v3_documents().get(gv) or custom_v3_documents().get(gv)
        if doc is None:
            err = errors.not_found_path()
            return Response(dumps(err.status()), status=err.code, content_type="application/json")
        body, digest = doc
        immutable = request.args.get("hash") == digest
        return Response(
            body,
            content_type="application/json",
            headers={
                "Etag": f'"{digest}"',
                "Cache-Control": "public, immutable" if immutable else "no-cache, private",
            },
        )
