"""Structural schemas of custom resources: compiled once per CRD version, then used to prune,
default and validate every write, with upstream's field paths and messages.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import re
import uuid
from typing import Any

from k8slite.api import celcost, meta
from k8slite.api.celcost import Budget, CostTally, SchemaShape
from k8slite.api.celrules import Rule, check_rule_definitions
from k8slite.api.validation import FieldErrors, go_repr, json_type

# Fields every object has at its root whatever its schema says (kept by pruning).
_ROOT_FIELDS = ("apiVersion", "kind", "metadata")
# No correlated old value (None is a value: a field set to null).
_MISSING = object()
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_DATETIME_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z"
)
_DURATION_RE = re.compile(r"^[-+]?(\d+(\.\d*)?(ns|us|µs|ms|s|m|h))+\Z")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_HOSTNAME_RE = re.compile(
    r"[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*\Z"
)


def _type_ok(expected: str, value: Any) -> bool:
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True


def _time_ok(value: str) -> bool:
    if not _DATETIME_RE.match(value):
        return False
    try:
        meta.parse_time(value.replace(" ", "T").upper())
    except ValueError:
        return False
    return True


def _format_ok(fmt: str, value: Any) -> bool:
    """Formats upstream checks (unknown formats are accepted, as upstream does)."""
    if isinstance(value, int) and not isinstance(value, bool):
        lo, hi = {"int32": _INT32, "int64": _INT64}.get(fmt, (None, None))
        return lo is None or lo <= value <= hi  # type: ignore[operator]
    if not isinstance(value, str):
        return True
    try:
        if fmt == "date-time":
            return _time_ok(value)
        if fmt == "date":
            return bool(_DATE_RE.match(value)) and bool(dt.date.fromisoformat(value))
        if fmt == "byte":
            base64.b64decode(value, validate=True)
        elif fmt == "uuid":
            uuid.UUID(value)
        elif fmt == "ipv4":
            ipaddress.IPv4Address(value)
        elif fmt == "ipv6":
            ipaddress.IPv6Address(value)
        elif fmt == "cidr":
            ipaddress.ip_network(value, strict=False)
        elif fmt == "email":
            return bool(_EMAIL_RE.match(value))
        elif fmt == "hostname":
            return bool(_HOSTNAME_RE.match(value))
        elif fmt == "duration":
            return bool(_DURATION_RE.match(value))
    except (ValueError, binascii.Error):
        return False
    return True


class Schema:
    """One node of a structural schema, compiled: its checks, its children and its default."""

    __slots__ = (
        "type",
        "format",
        "enum",
        "pattern",
        "pattern_text",
        "minimum",
        "maximum",
        "exclusive_minimum",
        "exclusive_maximum",
        "multiple_of",
        "min_length",
        "max_length",
        "min_items",
        "max_items",
        "unique_items",
        "min_properties",
        "max_properties",
        "required",
        "nullable",
        "properties",
        "items",
        "additional",
        "preserve_unknown",
        "int_or_string",
        "embedded",
        "all_of",
        "any_of",
        "one_of",
        "not_",
        "has_default",
        "default",
        "list_type",
        "list_map_keys",
        "map_type",
        "description",
        "raw",
        "prunable",
        "defaults_below",
        "has_combinators",
        "rules",
        "rules_below",
    )

    def __init__(self, raw: dict[str, Any], root: bool = False) -> None:
        self.raw = raw
        self.type: str = raw.get("type") or ""
        self.format: str = raw.get("format") or ""
        self.description: str = raw.get("description") or ""
        self.enum: list[Any] | None = raw.get("enum")
        self.pattern_text: str | None = raw.get("pattern")
        self.pattern = re.compile(self.pattern_text) if self.pattern_text else None
        self.minimum: float | None = raw.get("minimum")
        self.maximum: float | None = raw.get("maximum")
        self.exclusive_minimum = bool(raw.get("exclusiveMinimum"))
        self.exclusive_maximum = bool(raw.get("exclusiveMaximum"))
        self.multiple_of: float | None = raw.get("multipleOf")
        self.min_length: int | None = raw.get("minLength")
        self.max_length: int | None = raw.get("maxLength")
        self.min_items: int | None = raw.get("minItems")
        self.max_items: int | None = raw.get("maxItems")
        self.unique_items = bool(raw.get("uniqueItems"))
        self.min_properties: int | None = raw.get("minProperties")
        self.max_properties: int | None = raw.get("maxProperties")
        self.required: list[str] = list(raw.get("required") or ())
        self.nullable = bool(raw.get("nullable"))
        self.properties = {k: Schema(v) for k, v in (raw.get("properties") or {}).items()}
        items = raw.get("items")
        self.items = Schema(items) if isinstance(items, dict) else None
        additional = raw.get("additionalProperties")
        self.additional: Schema | bool | None = (
            Schema(additional) if isinstance(additional, dict) else additional
        )
        self.preserve_unknown = bool(raw.get("x-kubernetes-preserve-unknown-fields"))
        self.int_or_string = bool(raw.get("x-kubernetes-int-or-string"))
        self.embedded = bool(raw.get("x-kubernetes-embedded-resource"))
        self.all_of = [Schema(s) for s in raw.get("allOf") or ()]
        self.any_of = [Schema(s) for s in raw.get("anyOf") or ()]
        self.one_of = [Schema(s) for s in raw.get("oneOf") or ()]
        self.not_ = Schema(raw["not"]) if isinstance(raw.get("not"), dict) else None
        self.has_default = "default" in raw
        self.default = raw.get("default")
        self.list_type: str = raw.get("x-kubernetes-list-type") or ""
        self.list_map_keys: list[str] = list(raw.get("x-kubernetes-list-map-keys") or ())
        self.map_type: str = raw.get("x-kubernetes-map-type") or ""
        # What the walks need below this node, worked out once so that every write can
        # skip scalar leaves and subtrees without defaults.
        self.prunable = self.type in ("object", "array") and not self.int_or_string
        self.defaults_below: bool = (
            any(c.has_default or c.defaults_below for c in self.properties.values())
            or (self.items is not None and self.items.defaults_below)
            or (isinstance(self.additional, Schema) and self.additional.defaults_below)
        )
        self.has_combinators = bool(self.all_of or self.any_of or self.one_of or self.not_)
        # x-kubernetes-validations, compiled once with the schema (its CRD version).
        rules = raw.get("x-kubernetes-validations") or ()
        shape = SchemaShape(raw, root) if rules else None
        self.rules = [Rule.from_raw(r, shape) for r in rules]
        self.rules_below: bool = any(
            c is not None and (c.rules or c.rules_below)
            for c in (
                *self.properties.values(),
                self.items,
                self.additional if isinstance(self.additional, Schema) else None,
            )
        )

    # ------------------------------------------------------------------ pruning

    def prune(self, value: Any, path: str, unknown: list[str], root: bool = False) -> None:
        """Drop fields the schema does not specify, recording their paths."""
        if isinstance(value, dict):
            additional = self.additional
            if isinstance(additional, Schema):
                if additional.prunable:
                    for key, item in value.items():
                        if isinstance(item, dict | list):
                            additional.prune(item, f"{path}.{key}" if path else key, unknown)
                return
            keep_meta = root or self.embedded
            keep_unknown = self.preserve_unknown or additional is True
            drop = []
            properties = self.properties
            for key, item in value.items():
                if keep_meta and key in _ROOT_FIELDS:
                    continue  # metadata is ObjectMeta, whatever the schema says of it
                child = properties.get(key)
                if child is not None:
                    if child.prunable and isinstance(item, dict | list):
                        child.prune(item, f"{path}.{key}" if path else key, unknown)
                elif not keep_unknown:
                    drop.append(key)
                    unknown.append(f"{path}.{key}" if path else key)
            for key in drop:
                del value[key]
        elif isinstance(value, list) and self.items is not None and self.items.prunable:
            for i, item in enumerate(value):
                if isinstance(item, dict | list):
                    self.items.prune(item, f"{path}[{i}]", unknown)

    # ---------------------------------------------------------------- defaulting

    def apply_defaults(self, value: Any, root: bool = False) -> None:
        """Set the defaults of absent (or null, when not nullable) properties, recursively."""
        if not self.defaults_below:
            return
        if isinstance(value, dict):
            for key, child in self.properties.items():
                if root and key in _ROOT_FIELDS:
                    continue
                if child.has_default and (
                    key not in value or (value[key] is None and not child.nullable)
                ):
                    value[key] = meta.clone(child.default)
                if child.defaults_below and key in value:
                    child.apply_defaults(value[key])
            if isinstance(self.additional, Schema):
                for item in value.values():
                    self.additional.apply_defaults(item)
        elif isinstance(value, list) and self.items is not None:
            for item in value:
                self.items.apply_defaults(item)

    # ---------------------------------------------------------------- validation

    def validate(self, value: Any, path: str, errs: FieldErrors) -> None:
        """Append a cause to errs for each way value breaks this schema."""
        shown = path or "<root>"
        if value is None:
            if not self.nullable and self.type:
                errs.invalid(shown, "null", f'{shown} in body must be of type {self.type}: "null"')
            return
        if self.int_or_string:
            if not (isinstance(value, str) or _type_ok("integer", value)):
                actual = json_type(value)
                errs.invalid(
                    shown, actual, f'{shown} in body must be of type integer,string: "{actual}"'
                )
                return
        elif self.type and not _type_ok(self.type, value):
            actual = json_type(value)
            errs.invalid(shown, actual, f'{shown} in body must be of type {self.type}: "{actual}"')
            return
        if self.format and not _format_ok(self.format, value):
            errs.invalid(
                shown, value, f"{shown} in body must be of type {self.format}: {go_repr(value)}"
            )
        if self.enum is not None and value not in self.enum:
            errs.not_supported(shown, value, [_enum_text(v) for v in self.enum])
        if isinstance(value, int | float) and not isinstance(value, bool):
            self._numbers(value, shown, errs)
        elif isinstance(value, str):
            self._string(value, shown, errs)
        elif isinstance(value, list):
            self._array(value, path, errs)
        elif isinstance(value, dict):
            self._object(value, path, errs)
        if self.has_combinators:
            self._combinators(value, path, errs)

    def check_rules(
        self,
        value: Any,
        old: Any,
        has_old: bool,
        path: str,
        errs: FieldErrors,
        budget: Budget,
    ) -> None:
        """Evaluate the CEL rules here and below; old is the correlated stored value."""
        for rule in self.rules:
            rule.check(value, old, has_old, path, errs, budget)
        if not self.rules_below or value is None or budget.exhausted:
            return
        if isinstance(value, dict):
            old_map = old if has_old and isinstance(old, dict) else {}
            for key, item in value.items():
                child = self.properties.get(key)
                if child is None and isinstance(self.additional, Schema):
                    child = self.additional
                if child is not None and (child.rules or child.rules_below):
                    sub = f"{path}.{key}" if path else key
                    child.check_rules(item, old_map.get(key), key in old_map, sub, errs, budget)
        elif isinstance(value, list) and self.items is not None:
            olds = self._correlated(value, old if has_old and isinstance(old, list) else None)
            for i, item in enumerate(value):
                found = olds.get(i, _MISSING)
                self.items.check_rules(
                    item, found, found is not _MISSING, f"{path}[{i}]", errs, budget
                )

    def _correlated(self, value: list[Any], old: list[Any] | None) -> dict[int, Any]:
        """Old items matching new ones: by key in a map list, by value in a set; atomic
        lists correlate nothing (transition rules below them do not apply)."""
        if old is None:
            return {}
        if self.list_type == "map" and self.list_map_keys:
            keys = self.list_map_keys
            by_key = {repr([o.get(k) for k in keys]): o for o in old if isinstance(o, dict)}
            out: dict[int, Any] = {}
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    hit = by_key.get(repr([item.get(k) for k in keys]), _MISSING)
                    if hit is not _MISSING:
                        out[i] = hit
            return out
        if self.list_type == "set":
            return {i: item for i, item in enumerate(value) if item in old}
        return {}

    def _numbers(self, value: float, shown: str, errs: FieldErrors) -> None:
        if self.maximum is not None:
            if self.exclusive_maximum and value >= self.maximum:
                errs.invalid(shown, value, f"{shown} in body should be less than {self.maximum}")
            elif value > self.maximum:
                errs.invalid(
                    shown, value, f"{shown} in body should be less than or equal to {self.maximum}"
                )
        if self.minimum is not None:
            if self.exclusive_minimum and value <= self.minimum:
                errs.invalid(shown, value, f"{shown} in body should be greater than {self.minimum}")
            elif value < self.minimum:
                errs.invalid(
                    shown,
                    value,
                    f"{shown} in body should be greater than or equal to {self.minimum}",
                )
        if self.multiple_of and (value / self.multiple_of) % 1 != 0:
            errs.invalid(
                shown, value, f"{shown} in body should be a multiple of {self.multiple_of}"
            )

    def _string(self, value: str, shown: str, errs: FieldErrors) -> None:
        if self.max_length is not None and len(value) > self.max_length:
            errs.too_long(shown, self.max_length)
        if self.min_length is not None and len(value) < self.min_length:
            errs.invalid(
                shown, value, f"{shown} in body should be at least {self.min_length} chars long"
            )
        if self.pattern is not None and not self.pattern.search(value):
            errs.invalid(shown, value, f"{shown} in body should match '{self.pattern_text}'")

    def _array(self, value: list[Any], path: str, errs: FieldErrors) -> None:
        shown = path or "<root>"
        if self.max_items is not None and len(value) > self.max_items:
            errs.too_many(shown, len(value), self.max_items)
        if self.min_items is not None and len(value) < self.min_items:
            errs.invalid(
                shown, len(value), f"{shown} in body should have at least {self.min_items} items"
            )
        if self.unique_items or self.list_type == "set":
            seen: list[Any] = []
            for i, item in enumerate(value):
                if item in seen:
                    errs.duplicate(f"{path}[{i}]", item)
                else:
                    seen.append(item)
        if self.list_type == "map" and self.list_map_keys:
            keys: set[str] = set()
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    key = repr([item.get(k) for k in self.list_map_keys])
                    if key in keys:
                        shown_key = ", ".join(
                            f'"{k}"={go_repr(item.get(k))}' for k in self.list_map_keys
                        )
                        errs.duplicate_text(f"{path}[{i}]", f"map[{shown_key}]")
                    keys.add(key)
        if self.items is not None:
            for i, item in enumerate(value):
                self.items.validate(item, f"{path}[{i}]", errs)

    def _object(self, value: dict[str, Any], path: str, errs: FieldErrors) -> None:
        shown = path or "<root>"
        for key in self.required:
            if key not in value:
                errs.required(f"{path}.{key}" if path else key)
        if self.max_properties is not None and len(value) > self.max_properties:
            errs.too_many(shown, len(value), self.max_properties)
        if self.min_properties is not None and len(value) < self.min_properties:
            errs.invalid(
                shown,
                len(value),
                f"{shown} in body should have at least {self.min_properties} properties",
            )
        if self.embedded:
            for key in ("apiVersion", "kind"):
                if not value.get(key):
                    errs.required(f"{path}.{key}", "must not be empty")
        for key, item in value.items():
            sub = f"{path}.{key}" if path else key
            child = self.properties.get(key)
            if child is not None:
                child.validate(item, sub, errs)
            elif isinstance(self.additional, Schema):
                self.additional.validate(item, sub, errs)
            elif self.additional is False and not self.properties:
                errs.forbidden(sub, "additional properties are not allowed")

    def _combinators(self, value: Any, path: str, errs: FieldErrors) -> None:
        shown = path or "<root>"
        for s in self.all_of:
            s.validate(value, path, errs)
        if self.any_of and not any(_passes(s, value, path) for s in self.any_of):
            sub = FieldErrors()
            self.any_of[0].validate(value, path, sub)
            errs.causes.extend(sub.causes)
        if self.one_of:
            passing = sum(1 for s in self.one_of if _passes(s, value, path))
            if passing != 1:
                errs.invalid(
                    shown,
                    json_type(value),
                    f"{shown} in body must validate one and only one schema (oneOf). "
                    + (
                        "Found none valid"
                        if passing == 0
                        else f"Found {passing} valid alternatives"
                    ),
                )
        if self.not_ is not None and _passes(self.not_, value, path):
            errs.invalid(
                shown, json_type(value), f"{shown} in body must not validate the schema (not)"
            )


def _passes(schema: Schema, value: Any, path: str) -> bool:
    errs = FieldErrors()
    schema.validate(value, path, errs)
    return not errs


def _enum_text(value: Any) -> str:
    return value if isinstance(value, str) else go_repr(value)


class CompiledSchema:
    """A CRD version's schema, ready for writes: prune, default, validate."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.root = Schema(raw, root=True)

    def prune(self, obj: dict[str, Any]) -> list[str]:
        """Remove unknown fields; returns their paths (for fieldValidation)."""
        unknown: list[str] = []
        self.root.prune(obj, "", unknown, root=True)
        return unknown

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        self.root.apply_defaults(obj, root=True)

    def validate(
        self, obj: dict[str, Any], errs: FieldErrors, old: dict[str, Any] | None = None
    ) -> None:
        """Schema validation, then (when that passes) the CEL rules; old for an update."""
        self._validate_schema(obj, errs)
        if errs or not (self.root.rules or self.root.rules_below):
            return
        root = self.root
        budget = Budget()
        if root.rules:
            # Root rules see apiVersion, kind and metadata's name and generateName.
            m = obj.get("metadata") or {}
            shown = {**obj, "metadata": {k: m[k] for k in ("name", "generateName") if k in m}}
            old_shown = None
            if old is not None:
                om = old.get("metadata") or {}
                old_shown = {
                    **old,
                    "metadata": {k: om[k] for k in ("name", "generateName") if k in om},
                }
            for rule in root.rules:
                rule.check(shown, old_shown, old is not None, "", errs, budget)
        old_body = old or {}
        for key, item in obj.items():
            if key in _ROOT_FIELDS:
                continue
            child = root.properties.get(key)
            if child is None and isinstance(root.additional, Schema):
                child = root.additional
            if child is not None and (child.rules or child.rules_below):
                child.check_rules(item, old_body.get(key), key in old_body, key, errs, budget)

    def _validate_schema(self, obj: dict[str, Any], errs: FieldErrors) -> None:
        body = {k: v for k, v in obj.items() if k not in _ROOT_FIELDS}
        # metadata is checked as ObjectMeta by the registry, not against the schema.
        root = self.root
        for key in root.required:
            if key not in obj and key not in _ROOT_FIELDS:
                errs.required(key)
        for key, item in body.items():
            child = root.properties.get(key)
            if child is not None:
                child.validate(item, key, errs)
            elif isinstance(root.additional, Schema):
                root.additional.validate(item, key, errs)
        if root.has_combinators:
            root._combinators(body, "", errs)


# ------------------------------------------------------------- structural check


def structural_errors(
    raw: Any,
    path: str,
    errs: FieldErrors,
    root: bool = True,
    cardinality: int = 1,
    tally: CostTally | None = None,
) -> None:
    """Upstream's rules for a structural schema, reported under path (the CRD's field).
    cardinality: how many values this node can have in one object (for CEL costs)."""
    if root:
        tally = CostTally()
        _structural_node(raw, path, errs, True, cardinality, tally)
        if tally.total > celcost.STATIC_CRD_LIMIT:
            for where in tally.most_expensive():
                errs.forbidden(
                    where,
                    "contributed to estimated rule & messageExpression cost total exceeding "
                    "cost limit for entire OpenAPIv3 schema",
                )
            errs.forbidden(
                path,
                celcost.exceeds_message(
                    "x-kubernetes-validations estimated rule & messageExpression cost total "
                    "for entire OpenAPIv3 schema",
                    tally.total,
                    celcost.STATIC_CRD_LIMIT,
                ),
            )
        return
    _structural_node(raw, path, errs, False, cardinality, tally)


def _structural_node(
    raw: Any, path: str, errs: FieldErrors, root: bool, cardinality: int, tally: CostTally | None
) -> None:
    if not isinstance(raw, dict):
        errs.required(path, "must not be empty")
        return
    typ = raw.get("type")
    exempt = raw.get("x-kubernetes-int-or-string") or raw.get(
        "x-kubernetes-preserve-unknown-fields"
    )
    if not typ and not exempt:
        where = "at the root" if root else "for specified object fields"
        errs.required(f"{path}.type", f"must not be empty {where}")
    elif root and typ != "object":
        errs.invalid(f"{path}.type", typ, "must be object at the root")
    if typ == "array" and not isinstance(raw.get("items"), dict):
        errs.required(f"{path}.items", "must be specified")
    if raw.get("pattern"):
        try:
            re.compile(raw["pattern"])
        except re.error as e:
            errs.invalid(
                f"{path}.pattern",
                raw["pattern"],
                f"must be a valid regular expression, but isn't: {e}",
            )
    if raw.get("properties") and isinstance(raw.get("additionalProperties"), dict):
        errs.forbidden(
            f"{path}.additionalProperties",
            "additionalProperties and properties are mutual exclusive",
        )
    if raw.get("type") == "array" and raw.get("x-kubernetes-list-type") == "map":
        keys = raw.get("x-kubernetes-list-map-keys") or []
        if not keys:
            errs.required(
                f"{path}.x-kubernetes-list-map-keys",
                "must not be empty if x-kubernetes-list-type is map",
            )
    if "x-kubernetes-validations" in raw:
        check_rule_definitions(
            raw["x-kubernetes-validations"],
            f"{path}.x-kubernetes-validations",
            errs,
            raw,
            cardinality,
            tally,
            root,
        )
    for key, child in (raw.get("properties") or {}).items():
        _structural_node(child, f"{path}.properties[{key}]", errs, False, cardinality, tally)
    # A list's items and a map's values can occur as often as the collection is long.
    many = celcost.multiply(cardinality, SchemaShape(raw).size())
    if isinstance(raw.get("items"), dict):
        _structural_node(raw["items"], f"{path}.items", errs, False, many, tally)
    if isinstance(raw.get("additionalProperties"), dict):
        additional = raw["additionalProperties"]
        _structural_node(additional, f"{path}.additionalProperties", errs, False, many, tally)
