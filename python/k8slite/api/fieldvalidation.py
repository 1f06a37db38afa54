"""Server-side field validation: unknown fields and mistyped values, found against the schemas.

Upstream decodes a body into typed structs: unknown fields are dropped (and reported under
fieldValidation=Warn or refused under Strict) and a value of the wrong JSON type, or an
integer beyond its field's int32 or int64, fails the decode. The same walk here also prunes
the unknown fields it reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from k8slite.api.schemas import Definition, Node

DIRECTIVES = ("Strict", "Warn", "Ignore")
_JSON_TYPES = {
    str: "string",
    bool: "bool",
    int: "number",
    float: "number",
    list: "array",
    dict: "object",
}

INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_INDEX = re.compile(r"\[\d+\]")


@dataclass
class Findings:
    """What a walk found: unknown field paths and the first mistyped value's message."""

    unknown: list[str] = field(default_factory=list)
    type_error: str | None = None
    type_path: str | None = None
    out_of_range: bool = False  # the type error is an integer its field cannot hold

    def strict_message(self) -> str:
        return "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in self.unknown)


def go_type(node: Node) -> str:
    """How upstream's decoder names a field's type in its messages."""
    if node.kind == "struct" and node.definition is not None:
        return f"v1.{node.definition.short}"
    if node.kind == "list" and node.elem is not None:
        return "[]" + go_type(node.elem)
    if node.kind == "map" and node.elem is not None:
        return "map[string]" + go_type(node.elem)
    if node.kind == "integer":
        return node.fmt or "int32"
    return {
        "boolean": "bool",
        "number": "float64",
        "string": "string",
        "time": "v1.Time",
        "quantity": "resource.Quantity",
        "intstr": "intstr.IntOrString",
    }.get(node.kind, "interface {}")


def _type_ok(node: Node, value: Any) -> bool:
    kind = node.kind
    if kind == "string" or kind == "time":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind in ("struct", "map"):
        return isinstance(value, dict)
    if kind == "list":
        return isinstance(value, list)
    if kind in ("intstr", "quantity"):
        return isinstance(value, str | int | float) and not isinstance(value, bool)
    return True


# A value's place, built only when something is reported: None at the root, else
# (parent, field name or map key) or (parent, list index). Formatting every path while
# walking was a fifth of this walk's cost on a create (docs/performance.md).
_Path = tuple[Any, str | int] | None


def _render(path: _Path) -> str:
    """The path as upstream's messages write it: a.b[0].c (a field at the root bare)."""
    parts: list[str | int] = []
    while path is not None:
        path, part = path
        parts.append(part)
    out = ""
    for part in reversed(parts):
        if isinstance(part, int):
            out = f"{out}[{part}]"
            continue
        out = f"{out}.{part}" if out else part
    return out


class _Walker:
    def __init__(self, prune: bool) -> None:
        self.prune = prune
        self.found = Findings()

    def struct(self, obj: dict[str, Any], defn: Definition, path: _Path) -> None:
        fields = defn.fields
        unknown: list[str] = []
        for key, value in obj.items():
            node = fields.get(key)
            if node is None:
                self.found.unknown.append(_render((path, key)))
                unknown.append(key)
            elif value is not None:
                kind = node.kind
                # The leaves most fields are, checked here without a call.
                if kind == "string" and isinstance(value, str):
                    continue
                self.value(value, node, (path, key), defn)
        if self.prune:
            for key in unknown:
                del obj[key]

    def value(self, value: Any, node: Node, path: _Path, owner: Definition) -> None:
        if not _type_ok(node, value):
            self.mistyped(value, node, path, owner)
            return
        kind = node.kind
        if kind == "integer":
            low, high = INT_RANGES[node.fmt or "int32"]
            if not low <= value <= high and self.found.type_error is None:
                self.mistyped(value, node, path, owner)
                self.found.out_of_range = True
        elif kind == "struct" and node.definition is not None:
            self.struct(value, node.definition, path)
        elif kind == "list" and node.elem is not None and node.elem.kind != "any":
            for i, item in enumerate(value):
                if item is not None:
                    self.value(item, node.elem, (path, i), owner)
        elif kind == "map" and node.elem is not None and node.elem.kind != "any":
            for key, item in value.items():
                if item is not None:
                    self.value(item, node.elem, (path, key), owner)

    def mistyped(self, value: Any, node: Node, path: _Path, owner: Definition) -> None:
        """Record the first value the decoder would refuse, in Go's words."""
        if self.found.type_error is not None:
            return
        json_type = _JSON_TYPES.get(type(value), "value")
        if json_type == "number" and node.kind in ("integer", "number"):
            json_type = f"number {value}"  # Go shows a number it cannot store as written
        # Go's field path names struct fields and map keys, never list indices.
        text = _render(path)
        self.found.type_error = (
            f"json: cannot unmarshal {json_type} into Go struct field "
            f"{owner.short}.{_INDEX.sub('', text)} of type {go_type(node)}"
        )
        self.found.type_path = text


def check(obj: dict[str, Any], defn: Definition, prune: bool = True) -> Findings:
    """Walk obj against its definition; unknown fields are removed when prune is set."""
    walker = _Walker(prune)
    walker.struct(obj, defn, None)
    return walker.found
