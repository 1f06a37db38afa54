"""apiextensions.k8s.io/v1 CustomResourceDefinition: defaults and validation as upstream's."""

from __future__ import annotations

import re
from typing import Any

from k8slite.api import meta
from k8slite.api.strategy import Strategy, register
from k8slite.api.structural import structural_errors
from k8slite.api.validation import (
    FieldErrors,
    check_dns_label,
    check_dns_subdomain,
    check_object_meta,
)
from k8slite.component.objects import Obj, set_condition

GROUP = "apiextensions.k8s.io"
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
APPROVAL_ANNOTATION = "api-approved.kubernetes.io"
_SCOPES = ["Cluster", "Namespaced"]
_COLUMN_TYPES = ["boolean", "date", "integer", "number", "string"]
_VERSION_RE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?\Z")
_KIND_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*\Z")


def terminating_condition(reason: str, message: str) -> Obj:
    return {
        "type": "Terminating",
        "status": "True",
        "lastTransitionTime": meta.now(),
        "reason": reason,
        "message": message,
    }


@register(GROUP, "CustomResourceDefinition")
class CustomResourceDefinitionStrategy(Strategy):
    name_check = "subdomain"
    tracks_generation = True

    def default(self, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        names = spec.get("names")
        if isinstance(names, dict) and isinstance(names.get("kind"), str):
            names.setdefault("singular", names["kind"].lower())
            names.setdefault("listKind", names["kind"] + "List")
        conversion = spec.setdefault("conversion", {"strategy": "None"})
        if isinstance(conversion, dict):
            conversion.setdefault("strategy", "None")
        for v in spec.get("versions") or ():
            if isinstance(v, dict):
                for column in v.get("additionalPrinterColumns") or ():
                    if isinstance(column, dict):
                        column.setdefault("priority", 0)  # omitted when zero upstream
                        if column["priority"] == 0:
                            column.pop("priority")

    def prepare_create(self, obj: Obj) -> None:
        obj["status"] = {
            "acceptedNames": {"kind": "", "plural": ""},
            "storedVersions": _storage_versions(obj),
        }
        finalizers = obj["metadata"].setdefault("finalizers", [])
        if CLEANUP_FINALIZER not in finalizers:
            finalizers.append(CLEANUP_FINALIZER)

    def prepare_update(self, new: Obj, old: Obj) -> None:
        super().prepare_update(new, old)
        status = new.setdefault("status", {})
        stored = list(status.get("storedVersions") or ())
        for v in _storage_versions(new):
            if v not in stored:
                stored.append(v)
        status["storedVersions"] = stored

    def on_delete(self, obj: Obj) -> None:
        if CLEANUP_FINALIZER in (obj["metadata"].get("finalizers") or ()):
            set_condition(
                obj.setdefault("status", {}),
                terminating_condition(
                    "InstanceDeletionPending",
                    "CustomResourceDefinition marked for deletion; CustomResource deletion "
                    "will begin soon",
                ),
            )

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        check_object_meta(errs, obj.get("metadata", {}), namespaced, self.name_check)
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            errs.required("spec")
            return
        _validate_spec(obj, spec, errs)

    def validate_update(self, new: Obj, old: Obj, errs: FieldErrors, namespaced: bool) -> None:
        self.validate(new, errs, namespaced)
        spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
        if spec.get("group") != old_spec.get("group"):
            errs.immutable("spec.group", spec.get("group"))
        if spec.get("scope") != old_spec.get("scope"):
            errs.immutable("spec.scope", spec.get("scope"))
        stored = (old.get("status") or {}).get("storedVersions") or []
        served = {v.get("name") for v in spec.get("versions") or () if isinstance(v, dict)}
        for i, name in enumerate(stored):
            if name not in served:
                errs.invalid(
                    f"status.storedVersions[{i}]",
                    name,
                    "must appear in spec.versions",
                )


def _protected(group: str) -> bool:
    """Groups of the Kubernetes project itself, which need an API review's approval."""
    return any(group == d or group.endswith("." + d) for d in ("k8s.io", "kubernetes.io"))


def _storage_versions(obj: Obj) -> list[str]:
    spec = obj.get("spec") or {}
    return [
        v["name"]
        for v in spec.get("versions") or ()
        if isinstance(v, dict) and v.get("storage") and isinstance(v.get("name"), str)
    ]


def _validate_spec(obj: Obj, spec: Obj, errs: FieldErrors) -> None:
    group = spec.get("group")
    raw_names = spec.get("names")
    names: Obj = raw_names if isinstance(raw_names, dict) else {}
    plural = names.get("plural")
    name = obj.get("metadata", {}).get("name")
    if name and plural and group and name != f"{plural}.{group}":
        errs.invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group')
    if not group:
        errs.required("spec.group")
    elif isinstance(group, str) and _protected(group):
        annotations = obj.get("metadata", {}).get("annotations") or {}
        if not annotations.get(APPROVAL_ANNOTATION):
            errs.required(
                f"metadata.annotations[{APPROVAL_ANNOTATION}]",
                f'protected groups must have approval annotation "{APPROVAL_ANNOTATION}", '
                "see https://github.com/kubernetes/enhancements/pull/1111",
            )
    elif isinstance(group, str):
        check_dns_subdomain(errs, "spec.group", group)
        if "." not in group:
            errs.invalid("spec.group", group, "should be a domain with at least one dot")
    scope = spec.get("scope")
    if not scope:
        errs.required("spec.scope")
    elif scope not in _SCOPES:
        errs.not_supported("spec.scope", scope, _SCOPES)
    _validate_names(names, errs)
    strategy = (spec.get("conversion") or {}).get("strategy")
    if strategy not in ("None",):
        # Conversion webhooks are not served, so only the None strategy can be honoured.
        errs.not_supported("spec.conversion.strategy", strategy, ["None"])
    _validate_versions(spec.get("versions"), errs)


def _validate_names(names: Obj, errs: FieldErrors) -> None:
    for field in ("plural", "singular"):
        value = names.get(field)
        if not value:
            errs.required(f"spec.names.{field}")
        elif isinstance(value, str):
            check_dns_label(errs, f"spec.names.{field}", value)
    for field in ("kind", "listKind"):
        value = names.get(field)
        if not value:
            errs.required(f"spec.names.{field}")
        elif not isinstance(value, str) or not _KIND_RE.match(value):
            errs.invalid(
                f"spec.names.{field}",
                value,
                "may have mixed case, but should otherwise match: ^[a-z]([-a-z0-9]*[a-z0-9])?$",
            )
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        errs.invalid(
            "spec.names.listKind", names.get("listKind"), "kind and listKind cannot be the same"
        )
    for i, short in enumerate(names.get("shortNames") or ()):
        check_dns_label(errs, f"spec.names.shortNames[{i}]", str(short))
    for i, category in enumerate(names.get("categories") or ()):
        check_dns_label(errs, f"spec.names.categories[{i}]", str(category))


def _validate_versions(versions: Any, errs: FieldErrors) -> None:
    if not isinstance(versions, list) or not versions:
        errs.invalid(
            "spec.versions",
            versions or [],
            "must have exactly one version marked as storage version",
        )
        return
    seen: set[str] = set()
    storage = 0
    for i, v in enumerate(versions):
        path = f"spec.versions[{i}]"
        if not isinstance(v, dict):
            errs.required(path)
            continue
        name = v.get("name")
        if not name:
            errs.required(f"{path}.name")
        elif not isinstance(name, str) or not _VERSION_RE.match(name):
            errs.invalid(
                f"{path}.name",
                name,
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                "start with an alphabetic character, and end with an alphanumeric character "
                "(e.g. 'my-name',  or 'abc-123', regex used for validation is "
                "'[a-z]([-a-z0-9]*[a-z0-9])?')",
            )
        elif name in seen:
            errs.invalid("spec.versions", name, "must contain unique version names")
        else:
            seen.add(name)
        storage += bool(v.get("storage"))
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if schema is None:
            errs.required(f"{path}.schema.openAPIV3Schema", "schemas are required")
        else:
            structural_errors(schema, f"{path}.schema.openAPIV3Schema", errs)
        _validate_subresources(v.get("subresources") or {}, f"{path}.subresources", errs)
        for j, column in enumerate(v.get("additionalPrinterColumns") or ()):
            _validate_column(column, f"{path}.additionalPrinterColumns[{j}]", errs)
    if storage != 1:
        errs.invalid(
            "spec.versions",
            ",".join(str(v.get("name")) for v in versions if isinstance(v, dict)),
            "must have exactly one version marked as storage version",
        )
    if not any(isinstance(v, dict) and v.get("served") for v in versions):
        errs.invalid(
            "spec.versions",
            ",".join(str(v.get("name")) for v in versions if isinstance(v, dict)),
            "must have at least one version marked as served",
        )


def _validate_subresources(subs: Obj, path: str, errs: FieldErrors) -> None:
    scale = subs.get("scale")
    if not isinstance(scale, dict):
        return
    for field, prefix, required in (
        ("specReplicasPath", ".spec.", True),
        ("statusReplicasPath", ".status.", True),
        ("labelSelectorPath", ".status.", False),
    ):
        value = scale.get(field)
        if not value:
            if required:
                errs.required(f"{path}.scale.{field}")
            continue
        if not isinstance(value, str) or not value.startswith(prefix):
            under = prefix.rstrip(".")
            errs.invalid(
                f"{path}.scale.{field}",
                value,
                f"should be a json path under {under}"
                if field != "labelSelectorPath"
                else "should be a json path under either .spec or .status",
            )


def _validate_column(column: Any, path: str, errs: FieldErrors) -> None:
    if not isinstance(column, dict):
        errs.required(path)
        return
    if not column.get("name"):
        errs.required(f"{path}.name")
    kind = column.get("type")
    if not kind:
        errs.required(f"{path}.type")
    elif kind not in _COLUMN_TYPES:
        errs.not_supported(f"{path}.type", kind, _COLUMN_TYPES)
    if not column.get("jsonPath"):
        errs.required(f"{path}.jsonPath")
