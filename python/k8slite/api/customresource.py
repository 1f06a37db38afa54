"""Custom resources: the served kinds a CRD defines, their write strategy and table printer."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from k8slite.api import errors, meta, schemas
from k8slite.api.patchmeta import META, FieldMeta
from k8slite.api.printers import NAME, Cell, Column, Printer, since
from k8slite.api.resources import ALL_VERBS, RESOURCES, ResourceType
from k8slite.api.schemas import Definition, Node
from k8slite.api.strategy import Strategy
from k8slite.api.structural import CompiledSchema
from k8slite.api.validation import FieldErrors, check_object_meta
from k8slite.component.objects import Obj

_DEFAULT_AGE = {
    "name": "Age",
    "type": "date",
    "jsonPath": ".metadata.creationTimestamp",
    "description": "CreationTimestamp is a timestamp representing the server time when this "
    "object was created.",
}
_PATH_TOKEN = re.compile(
    r"\.([^.\[]+)"
    r"|\[(\*|-?\d+|'[^']*'|\"[^\"]*\")\]"
    r"|\[\?\(@\.([\w.-]+)\s*(==|!=)\s*(\"[^\"]*\"|'[^']*'|[^)\s]+)\s*\)\]"
)


# ------------------------------------------------------------ apply's schema

_SCALAR_TYPES = {"string", "integer", "number", "boolean"}


def _apply_node(raw: Obj, name: str) -> Node:
    """A schema node as server-side apply reads it: list types, map types, keys."""
    if raw.get("x-kubernetes-int-or-string"):
        return Node("intstr")
    kind = raw.get("type", "")
    if kind in _SCALAR_TYPES:
        return Node(kind, fmt=raw.get("format", ""))
    if kind == "array" and isinstance(raw.get("items"), dict):
        list_type = raw.get("x-kubernetes-list-type") or "atomic"
        keys = tuple(raw.get("x-kubernetes-list-map-keys") or ())
        return Node(
            "list",
            elem=_apply_node(raw["items"], name),
            meta=FieldMeta(list_type=list_type, keys=keys),
        )
    additional = raw.get("additionalProperties")
    if kind == "object" and isinstance(additional, dict):
        return Node(
            "map",
            elem=_apply_node(additional, name),
            meta=FieldMeta(map_type=raw.get("x-kubernetes-map-type", "")),
        )
    if kind == "object" and raw.get("properties"):
        defn = Definition(name, atomic=raw.get("x-kubernetes-map-type") == "atomic")
        for key, child in raw["properties"].items():
            defn.fields[key] = _apply_node(child, f"{name}.{key}")
        return Node("struct", definition=defn)
    return Node("any")


def apply_root(raw: Obj, kind: str) -> Node:
    """The root node of a custom kind: its schema, with ObjectMeta for metadata."""
    root = _apply_node(raw, kind)
    defn = root.definition if root.kind == "struct" and root.definition else Definition(kind)
    object_meta = schemas.catalog().definitions[META + "ObjectMeta"]
    defn.fields["apiVersion"] = Node("string")
    defn.fields["kind"] = Node("string")
    defn.fields["metadata"] = Node("struct", definition=object_meta)
    return Node("struct", definition=defn)


# ------------------------------------------------------------------- jsonPath


def json_path(value: Any, path: str) -> list[Any]:
    """Evaluate a printer column's JSONPath (.a.b, [0], [*], ['k'], [?(@.k=="v")])."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path.startswith("$"):
        path = path[1:]
    current = [value]
    for m in _PATH_TOKEN.finditer(path):
        key, index = m.group(1), m.group(2)
        nxt: list[Any] = []
        if m.group(3) is not None:
            for v in current:
                nxt.extend(_filtered(v, m.group(3), m.group(4), m.group(5)))
            current = nxt
            continue
        for v in current:
            if key is not None or (index and index[0] in "'\""):
                name = key if key is not None else index[1:-1]
                if isinstance(v, dict) and name in v:
                    nxt.append(v[name])
            elif index == "*":
                if isinstance(v, list):
                    nxt.extend(v)
                elif isinstance(v, dict):
                    nxt.extend(v.values())
            elif isinstance(v, list):
                i = int(index)
                if -len(v) <= i < len(v):
                    nxt.append(v[i])
        current = nxt
    return current


def _filtered(value: Any, field: str, op: str, literal: str) -> list[Any]:
    """The items of a list whose field compares (== or !=) with the literal."""
    if not isinstance(value, list):
        return []
    wanted: Any = literal[1:-1] if literal[:1] in "'\"" else literal
    if wanted is literal:
        try:
            wanted = json.loads(literal)  # numbers, true, false
        except ValueError:
            pass
    out = []
    for item in value:
        found = json_path(item, "." + field)
        match = bool(found) and found[0] == wanted
        if match == (op == "=="):
            out.append(item)
    return out


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _cell(column: Obj, obj: Obj, now: dt.datetime) -> Cell | None:
    found = [v for v in json_path(obj, column.get("jsonPath", "")) if v is not None]
    if not found:
        return None
    kind = column.get("type", "string")
    if len(found) > 1:
        return ",".join(_text(v) for v in found)
    value = found[0]
    if kind == "date":
        return since(value, now)
    if kind in ("integer", "number") and isinstance(value, int | float):
        return value  # type: ignore[return-value]
    if kind == "boolean" and isinstance(value, bool):
        return value
    return _text(value)


def make_printer(columns: list[Obj]) -> Printer:
    """The Name column and the CRD's additionalPrinterColumns (Age when it names none)."""
    specs = columns or [_DEFAULT_AGE]
    defs = (NAME,) + tuple(
        Column(
            c["name"],
            type=c.get("type", "string"),
            description=c.get("description", ""),
            priority=int(c.get("priority", 0)),
            format=c.get("format", ""),
        )
        for c in specs
    )

    def row(obj: Obj, now: dt.datetime) -> list[Cell]:
        cells: list[Any] = [obj["metadata"].get("name", "")]
        cells.extend(_cell(c, obj, now) for c in specs)
        return cells

    return Printer(defs, row)


# --------------------------------------------------------------- served kinds


@dataclass(frozen=True)
class Scale:
    """Where a custom resource keeps what autoscaling/v1 Scale shows."""

    spec_replicas: str
    status_replicas: str
    label_selector: str | None


@dataclass(frozen=True, eq=False)
class CustomVersion:
    """What a CRD says about one served version of its kind."""

    crd: str
    storage_version: str
    schema: CompiledSchema | None
    raw_schema: Obj
    # The schema as server-side apply and managedFields read it.
    apply_node: Node
    printer: Printer
    status: bool
    scale: Scale | None
    terminating: bool


def custom_of(rt: ResourceType) -> CustomVersion | None:
    found = rt.extra.get("custom")
    return found if isinstance(found, CustomVersion) else None


def _version_key(version: str) -> tuple[int, int, int, str]:
    """Upstream's version priority: GA > beta > alpha, higher numbers first; others last."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if m is None:
        return (3, 0, 0, version)
    stage = {"": 0, "beta": 1, "alpha": 2}[m.group(2) or ""]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0), "")


def served_kinds(crd: Obj) -> list[ResourceType]:
    """The resource types a CRD serves (one per served version, by version priority)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    versions = [v for v in spec.get("versions") or () if v.get("served")]
    storage = next((v["name"] for v in spec.get("versions") or () if v.get("storage")), "")
    out = []
    for v in sorted(versions, key=lambda v: _version_key(v["name"])):
        subs = v.get("subresources") or {}
        scale = subs.get("scale")
        raw = (v.get("schema") or {}).get("openAPIV3Schema") or {}
        custom = CustomVersion(
            crd=crd["metadata"]["name"],
            storage_version=storage,
            schema=CompiledSchema(raw) if raw else None,
            raw_schema=raw,
            apply_node=apply_root(raw, names["kind"]),
            printer=make_printer(list(v.get("additionalPrinterColumns") or ())),
            status="status" in subs,
            scale=Scale(
                scale.get("specReplicasPath", ""),
                scale.get("statusReplicasPath", ""),
                scale.get("labelSelectorPath"),
            )
            if scale is not None
            else None,
            terminating=bool(crd["metadata"].get("deletionTimestamp")),
        )
        out.append(
            ResourceType(
                spec["group"],
                v["name"],
                names["kind"],
                names["plural"],
                spec.get("scope") == "Namespaced",
                tuple(names.get("shortNames") or ()),
                tuple(s for s in ("status", "scale") if s in subs),
                categories=tuple(names.get("categories") or ()),
                verbs=ALL_VERBS,
                extra={"custom": custom, "singular": names.get("singular", "")},
            )
        )
    return out


# ------------------------------------------------------------------ strategy


class CustomResourceStrategy(Strategy):
    """Writes of a custom resource: prune, default, validate against the version's schema."""

    tracks_generation = True
    creates_status = False

    def __init__(self, custom: CustomVersion) -> None:
        self.custom = custom
        # With a status subresource, create and update of the object leave status alone.
        self.reset_status_on_create = custom.status

    def default(self, obj: Obj) -> None:
        if self.custom.schema is not None:
            self.custom.schema.prune(obj)
            self.custom.schema.apply_defaults(obj)

    def prepare_create(self, obj: Obj) -> None:
        if self.custom.terminating:
            raise errors.ApiError(
                405,
                "MethodNotAllowed",
                "create not allowed while custom resource definition is terminating",
            )
        if self.custom.status:
            obj.pop("status", None)

    def prepare_update(self, new: Obj, old: Obj) -> None:
        if not self.custom.status:
            return
        if "status" in old:
            new["status"] = meta.clone(old["status"])
        else:
            new.pop("status", None)

    def prepare_status_update(self, new: Obj, old: Obj) -> Obj:
        out = meta.clone(old)
        if "status" in new:
            out["status"] = new["status"]
        else:
            out.pop("status", None)
        self.default(out)
        return out

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        check_object_meta(errs, obj.get("metadata", {}), namespaced, self.name_check)
        if self.custom.schema is not None:
            self.custom.schema.validate(obj, errs)

    def validate_update(self, new: Obj, old: Obj, errs: FieldErrors, namespaced: bool) -> None:
        check_object_meta(errs, new.get("metadata", {}), namespaced, self.name_check)
        if self.custom.schema is not None:
            self.custom.schema.validate(new, errs, old)

    def validate_status(self, new: Obj, old: Obj, errs: FieldErrors) -> None:
        if self.custom.schema is not None:
            self.custom.schema.validate(new, errs, old)

    def spec_changed(self, new: Obj, old: Obj) -> bool:
        # Without a status subresource every change but metadata's is a new generation.
        ignored = {"metadata", "kind", "apiVersion"} | ({"status"} if self.custom.status else set())
        keys = (set(new) | set(old)) - ignored
        return any(new.get(k) != old.get(k) for k in keys)


# ------------------------------------------------------------------ names


def name_conflicts(crds: list[Obj]) -> dict[str, tuple[str, str]]:
    """CRDs whose names another (older) CRD of the group holds: name -> (reason, message).

    Upstream's naming controller accepts names first come, first served; the rest wait.
    """
    # The built-in kinds hold their names first: a CRD never shadows one.
    taken: dict[tuple[str, str], str] = {}
    for rt in RESOURCES:
        taken[(rt.group, f"resource/{rt.plural}")] = taken[(rt.group, f"kind/{rt.kind}")] = ""
    out: dict[str, tuple[str, str]] = {}
    ordered = sorted(
        crds,
        key=lambda c: (c["metadata"].get("creationTimestamp") or "", c["metadata"]["name"]),
    )
    for crd in ordered:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        group = spec.get("group", "")
        # Resource names (plural, singular, short names) and kinds are separate namespaces.
        wanted = [
            ("PluralConflict", "resource", names.get("plural")),
            ("SingularConflict", "resource", names.get("singular")),
            ("KindConflict", "kind", names.get("kind")),
            ("ListKindConflict", "kind", names.get("listKind")),
            *(("ShortNamesConflict", "resource", s) for s in names.get("shortNames") or ()),
        ]
        conflict = next(
            ((reason, value) for reason, ns, value in wanted if (group, f"{ns}/{value}") in taken),
            None,
        )
        if conflict is not None:
            reason, value = conflict
            out[crd["metadata"]["name"]] = (reason, f'"{value}" is already in use')
            continue
        for _, ns, value in wanted:
            taken[(group, f"{ns}/{value}")] = crd["metadata"]["name"]
    return out
