"""Schemas of the served kinds, derived at runtime from the official client's model classes.

Each model class of the `kubernetes` package lists its fields (`openapi_types`,
`attribute_map`) and documents them; upstream's definition names, merge semantics and
group-version-kinds come from the resource table and api.patchmeta. The result is built once,
on first use, and shared by OpenAPI, field validation, strategic merge patch and apply.
"""

from __future__ import annotations

import logging
import pickle
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from k8slite.api import patchmeta
from k8slite.api.patchmeta import NONE, FieldMeta
from k8slite.api.resources import RESOURCES, ResourceType

log = logging.getLogger(__name__)
_CLASS_RE = re.compile(r"^([A-Z][a-z]+)?(V\d+(?:(?:alpha|beta)\d+)?)([A-Z]\w*)$")
_LIST_RE = re.compile(r"^(?:List\[|list\[)(.+)\]$")
_DICT_RE = re.compile(r"^(?:Dict\[str, |dict\(str, )(.+)[\])]$")
_SCALARS = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "date": "string",
}
META_GROUP = "meta"
# Types of apimachinery's meta/v1 package, whatever group refers to them.
_META_TYPES = frozenset(
    {
        "ObjectMeta",
        "ListMeta",
        "LabelSelector",
        "LabelSelectorRequirement",
        "OwnerReference",
        "ManagedFieldsEntry",
        "Condition",
        "Status",
        "StatusDetails",
        "StatusCause",
        "DeleteOptions",
        "Preconditions",
        "WatchEvent",
        "APIResource",
        "APIResourceList",
    }
)
# Types whose package is not the group of the kind that first refers to them.
_GROUP_OF_TYPE = {
    "PodTemplateSpec": "",
    "Scale": "autoscaling",
    "ScaleSpec": "autoscaling",
    "ScaleStatus": "autoscaling",
    "Eviction": "policy",
}
# Integer fields that upstream declares int64 (format "int64"), by type and JSON name; every
# other integer is an int32. The client's models say only "int", so the formats upstream's
# OpenAPI carries are kept here.
INT64_FIELDS = frozenset(
    {
        ("ObjectMeta", "generation"),
        ("ObjectMeta", "deletionGracePeriodSeconds"),
        ("ListMeta", "remainingItemCount"),
        ("DeleteOptions", "gracePeriodSeconds"),
        ("Condition", "observedGeneration"),
        ("PodCondition", "observedGeneration"),
        ("PodStatus", "observedGeneration"),
        ("DeploymentStatus", "observedGeneration"),
        ("ReplicaSetStatus", "observedGeneration"),
        ("StatefulSetStatus", "observedGeneration"),
        ("ControllerRevision", "revision"),
        ("PodSpec", "activeDeadlineSeconds"),
        ("PodSpec", "terminationGracePeriodSeconds"),
        ("Probe", "terminationGracePeriodSeconds"),
        ("PodSecurityContext", "fsGroup"),
        ("PodSecurityContext", "runAsGroup"),
        ("PodSecurityContext", "runAsUser"),
        ("PodSecurityContext", "supplementalGroups"),
        ("SecurityContext", "runAsGroup"),
        ("SecurityContext", "runAsUser"),
        ("LinuxContainerUser", "uid"),
        ("LinuxContainerUser", "gid"),
        ("LinuxContainerUser", "supplementalGroups"),
        ("ServiceAccountTokenProjection", "expirationSeconds"),
        ("SleepAction", "seconds"),
        ("Toleration", "tolerationSeconds"),
        ("ContainerImage", "sizeBytes"),
        ("NodeSwapStatus", "capacity"),
        # File owners of projected and configMap/secret/downwardAPI volume files: user IDs.
        ("KeyToPath", "user"),
        ("DownwardAPIVolumeFile", "user"),
        ("ConfigMapVolumeSource", "defaultUser"),
        ("SecretVolumeSource", "defaultUser"),
        ("DownwardAPIVolumeSource", "defaultUser"),
        ("ProjectedVolumeSource", "defaultUser"),
        ("ServiceAccountTokenProjection", "user"),
        ("ClusterTrustBundleProjection", "user"),
        ("PodCertificateProjection", "user"),
    }
)
# Extra kinds served as subresources or in every group: (class, group, version, kind).
_EXTRA_KINDS = (
    ("V1Scale", "autoscaling", "v1", "Scale"),
    ("V1Binding", "", "v1", "Binding"),
    ("V1Eviction", "policy", "v1", "Eviction"),
    ("V1Status", "", "v1", "Status"),
    ("V1WatchEvent", "", "v1", "WatchEvent"),
    ("V1DeleteOptions", "", "v1", "DeleteOptions"),
)


@dataclass(eq=False, slots=True)
class Node:
    """The schema of one value: a struct, a map, a list or a scalar, and how it merges."""

    kind: str  # struct map list string integer number boolean intstr quantity time any
    definition: Definition | None = None
    elem: Node | None = None
    meta: FieldMeta = NONE
    description: str = ""
    fmt: str = ""
    enum: tuple[str, ...] = ()


@dataclass(eq=False)
class Definition:
    """One named object type (upstream's definition), e.g. io.k8s.api.apps.v1.Deployment."""

    name: str
    description: str = ""
    fields: dict[str, Node] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)
    gvks: list[dict[str, str]] = field(default_factory=list)
    atomic: bool = False

    @property
    def short(self) -> str:
        return self.name.rsplit(".", 1)[1]


def package(group: str, version: str) -> str:
    """The definition-name prefix of a group's types."""
    if group == META_GROUP:
        return "io.k8s.apimachinery.pkg.apis.meta.v1"
    return f"io.k8s.api.{group.split('.')[0] or 'core'}.{version}"


def _class_doc(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    if doc.startswith("NOTE: This class is auto generated"):
        return ""
    return " ".join(doc.split("Attributes:", 1)[0].split())


def _field_doc(cls: type, attr: str) -> tuple[str, bool]:
    """A field's description and whether it is required, from either client generation."""
    fields = getattr(cls, "model_fields", None)
    if fields is not None and attr in fields:
        info = fields[attr]
        return info.description or "", bool(info.is_required())
    prop = getattr(cls, attr, None)
    if isinstance(prop, property) and prop.fget is not None:
        lines = [ln.strip() for ln in (prop.fget.__doc__ or "").split("\n")]
        text = " ".join(
            ln.replace("# noqa: E501", "").strip()
            for ln in lines[2:]
            if ln and not ln.startswith(":")
        )
        consts = prop.fset.__code__.co_consts if prop.fset is not None else ()
        required = any(isinstance(c, str) and "must not be `None`" in c for c in consts)
        return text, required
    return "", False


class _Builder:
    """Walks model classes from the served kinds, naming each type after upstream."""

    def __init__(self) -> None:
        from kubernetes.client import models  # a runtime dependency, imported lazily

        self.models = models
        self.defs: dict[str, Definition] = {}
        self.by_class: dict[str, Definition] = {}

    def definition(self, class_name: str, group: str) -> Definition:
        hit = self.by_class.get(class_name)
        if hit is not None:
            return hit
        m = _CLASS_RE.match(class_name)
        if m is None:
            raise KeyError(class_name)
        prefix, version, short = m.groups()
        if short in _META_TYPES:
            group = META_GROUP
        elif short in _GROUP_OF_TYPE:
            group = _GROUP_OF_TYPE[short]
        elif prefix:
            group = "" if prefix == "Core" else prefix.lower()
        name = f"{package(group, version.lower())}.{short}"
        cls = getattr(self.models, class_name)
        defn = Definition(name, _class_doc(cls), atomic=name in patchmeta.ATOMIC_STRUCTS)
        self.by_class[class_name] = defn
        self.defs[name] = defn
        top_level = {"api_version", "kind", "metadata"} <= set(cls.openapi_types)
        for attr, typ in cls.openapi_types.items():
            json_name = cls.attribute_map[attr]
            doc, required = _field_doc(cls, attr)
            node = self.node(typ, group, json_name, patchmeta.field_meta(name, json_name))
            if (short, json_name) in INT64_FIELDS:
                _set_int64(node)
            if not doc and node.definition is not None:
                doc = node.definition.description
            node.description = doc
            node.enum = patchmeta.ENUMS.get((name, json_name), ())
            defn.fields[json_name] = node
            if required and not top_level:
                defn.required.append(json_name)
        return defn

    def node(self, typ: str, group: str, json_name: str, meta: FieldMeta) -> Node:
        m = _LIST_RE.match(typ)
        if m:
            return Node("list", elem=self.node(m.group(1), group, json_name, NONE), meta=meta)
        m = _DICT_RE.match(typ)
        if m:
            return Node("map", elem=self.node(m.group(1), group, json_name, NONE), meta=meta)
        if typ == "str" and json_name in patchmeta.QUANTITY_FIELDS:
            return Node("quantity")
        if typ in ("bytes", "bytearray"):
            return Node("string", fmt="byte", meta=meta)
        if typ in _SCALARS:
            fmt = "int32" if typ == "int" else ""
            return Node(_SCALARS[typ], fmt=fmt, meta=meta)
        if typ == "datetime":
            micro = json_name in patchmeta.MICRO_TIME_FIELDS
            return Node("time", fmt="micro" if micro else "")
        if typ == "object":
            return Node("intstr" if json_name in patchmeta.INT_OR_STRING else "any", fmt=json_name)
        return Node("struct", definition=self.definition(typ, group), meta=meta)


def _set_int64(node: Node) -> None:
    while node.kind == "list" and node.elem is not None:
        node = node.elem
    if node.kind == "integer":
        node.fmt = "int64"


def _kind_class(models: Any, rt: ResourceType) -> str | None:
    version = rt.version.capitalize()
    prefix = (rt.group.split(".")[0] or "core").capitalize()
    for name in (f"{version}{rt.kind}", f"{prefix}{version}{rt.kind}"):
        if hasattr(models, name):
            return name
    return None


@dataclass
class Catalog:
    """Every definition, and the root definition of each served kind."""

    definitions: dict[str, Definition]
    kinds: dict[tuple[str, str, str], Definition]  # (group, version, kind) -> definition

    def root(self, rt: ResourceType) -> Definition | None:
        return self.kinds.get((rt.group, rt.version, rt.kind))


_catalog: Catalog | None = None


def catalog() -> Catalog:
    """Built once, on first use (or handed over by build_in_child)."""
    global _catalog
    if _catalog is None:
        _catalog = _build()
    return _catalog


def build_in_child() -> None:
    """Build the catalog in a short-lived child process and keep only the result.

    The model classes of the `kubernetes` package it is derived from take about 55 MiB once
    imported (pydantic, urllib3, oauthlib with them), which a process never gives back,
    against 2 MiB for the catalog: the API server builds it this way at start-up. Should the
    child fail, it is built here after all.
    """
    global _catalog
    if _catalog is not None:
        return
    try:
        done = subprocess.run(
            [sys.executable, "-m", "k8slite.api.schemas"],
            capture_output=True,
            check=True,
            timeout=120,
        )
        # Our own child's output, on a pipe: nobody else writes it.
        built = pickle.loads(done.stdout)  # noqa: S301
    except (OSError, subprocess.SubprocessError, pickle.UnpicklingError, EOFError) as e:
        log.warning("could not build the schemas in a child process (%s); building them here", e)
        built = _build()
    if not isinstance(built, Catalog):
        built = _build()
    _catalog = built


def _build() -> Catalog:
    """The served kinds first (core before the rest), then their lists."""
    b = _Builder()
    kinds: dict[tuple[str, str, str], Definition] = {}
    ordered = sorted(RESOURCES, key=lambda r: r.group != "")
    for rt in ordered:
        cls = _kind_class(b.models, rt)
        if cls is None:  # a kind the client does not model: served without a schema
            continue
        defn = b.definition(cls, rt.group)
        defn.gvks = [{"group": rt.group, "kind": rt.kind, "version": rt.version}]
        kinds[(rt.group, rt.version, rt.kind)] = defn
        if hasattr(b.models, cls + "List"):
            lst = b.definition(cls + "List", rt.group)
            lst.gvks = [{"group": rt.group, "kind": rt.list_kind, "version": rt.version}]
            kinds[(rt.group, rt.version, rt.list_kind)] = lst
    for cls_name, group, version, kind in _EXTRA_KINDS:
        defn = b.definition(cls_name, group)
        if kind == "DeleteOptions":
            versions = sorted({(r.group, r.version) for r in RESOURCES})
            defn.gvks = [{"group": g, "kind": kind, "version": v} for g, v in versions]
        elif not defn.gvks:
            defn.gvks = [{"group": group, "kind": kind, "version": version}]
        kinds[(group, version, kind)] = defn
    return Catalog(b.defs, kinds)


def root(rt: ResourceType) -> Definition | None:
    """The definition of a served kind; None for a kind the client has no model for."""
    return catalog().root(rt)


if __name__ == "__main__":
    # What build_in_child runs: the catalog, pickled, on standard output (built by the
    # module under its own name, not __main__, so that the classes unpickle as ours).
    from k8slite.api import schemas

    sys.stdout.buffer.write(pickle.dumps(schemas._build(), protocol=pickle.HIGHEST_PROTOCOL))
