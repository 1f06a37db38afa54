"""Field sets for server-side apply: paths of an object, their comparison and FieldsV1 form.

A path is a tuple of upstream's FieldsV1 keys: `f:<field>` for a struct or map field,
`k:<json>` for an element of a keyed list, `v:<json>` for an element of a set. A field set
is a Python set of such paths; FieldsV1 is the same set as a tree (`"."` marks a node that is
itself a member as well as a parent). The walks follow the schema's list types: atomic values
are leaves, keyed and set lists have elements, structs and maps recurse.
"""

from __future__ import annotations

import json
from typing import Any

from k8slite._native import dumps
from k8slite.api.patchmeta import KEY_DEFAULTS
from k8slite.api.schemas import Node

Path = tuple[str, ...]
FieldSet = set[Path]


def _dumps(value: Any) -> str:
    return dumps(value).decode()


def element_key(item: Any, node: Node) -> str | None:
    """The path element of a list item ("k:" or "v:"), or None for atomic lists."""
    list_type = node.meta.list_type
    if list_type == "map" and isinstance(item, dict):
        keys = {k: item.get(k, KEY_DEFAULTS.get(k)) for k in sorted(node.meta.keys)}
        return "k:" + _dumps({k: v for k, v in keys.items() if v is not None})
    if list_type == "set":
        return "v:" + _dumps(item)
    return None


def missing_key(item: Any, node: Node) -> str | None:
    """The first list-map key an element lacks (no default either), if any."""
    if not isinstance(item, dict):
        return node.meta.keys[0] if node.meta.keys else None
    for k in node.meta.keys:
        if item.get(k) is None and k not in KEY_DEFAULTS:
            return k
    return None


def _child(node: Node | None, key: str) -> Node | None:
    if node is None:
        return None
    if node.kind == "struct" and node.definition is not None:
        return node.definition.fields.get(key)
    if node.kind == "map":
        return node.elem
    return None


def granular(node: Node | None) -> bool:
    """Whether a value's members are tracked separately (else it is one leaf)."""
    if node is None:
        return False
    if node.kind == "struct":
        return node.definition is not None and not node.definition.atomic
    if node.kind == "map":
        return node.meta.map_type != "atomic"
    if node.kind == "list":
        return node.meta.list_type in ("map", "set")
    return False


def _list_items(value: list[Any], node: Node) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in value:
        key = element_key(item, node)
        if key is not None and key not in out:
            out[key] = item
    return out


def to_set(value: Any, node: Node | None, path: Path = (), out: FieldSet | None = None) -> FieldSet:
    """The fields an applied configuration sets (upstream's ToFieldSet)."""
    out = set() if out is None else out
    if not granular(node) or not isinstance(value, dict | list):
        if path:
            out.add(path)
        return out
    assert node is not None
    if node.kind == "list":
        for key, item in _list_items(value, node).items():  # type: ignore[arg-type]
            to_set(item, node.elem, path + (key,), out)
            out.add(path + (key,))
        return out
    for k, v in value.items():  # type: ignore[union-attr]
        sub = path + ("f:" + k,)
        child = _child(node, k)
        if v is None or (isinstance(v, dict) and not v) or child is None:
            out.add(sub)
        else:
            to_set(v, child, sub, out)
    return out


def _members(value: Any, node: Node | None, path: Path, out: FieldSet) -> None:
    """Every path of a subtree that appears or disappears as a whole (for compare)."""
    if not granular(node) or not isinstance(value, dict | list):
        out.add(path)
        return
    assert node is not None
    if node.kind == "map":
        out.add(path)
    if node.kind == "list":
        for key, item in _list_items(value, node).items():  # type: ignore[arg-type]
            out.add(path + (key,))
            _members(item, node.elem, path + (key,), out)
        return
    for k, v in value.items():  # type: ignore[union-attr]
        if v is not None:
            _members(v, _child(node, k), path + ("f:" + k,), out)


def members_tree(value: Any, node: Node | None) -> dict[str, Any]:
    """encode() of every member path of value, built in one walk (the create fast path)."""
    return _build(value, node, False) or {}


def _build(value: Any, node: Node | None, member: bool) -> dict[str, Any] | None:
    """The FieldsV1 subtree of value; None when nothing in it is a member (as _members)."""
    if not granular(node) or not isinstance(value, dict | list):
        return {}
    assert node is not None
    children: dict[str, Any] = {}
    if node.kind == "list":
        for key, item in _list_items(value, node).items():  # type: ignore[arg-type]
            children[key] = _build(item, node.elem, True)
    else:
        member = member or node.kind == "map"
        for k, v in value.items():  # type: ignore[union-attr]
            if v is not None:
                sub = _build(v, _child(node, k), False)
                if sub is not None:
                    children["f:" + k] = sub
    if not children:
        return {} if member else None
    out: dict[str, Any] = {".": {}} if member else {}
    for k in sorted(children):
        out[k] = children[k]
    return out


def owns(fields: Any, path: Path) -> bool:
    """Whether a FieldsV1 tree has path as a member, without decoding the whole tree."""
    node = fields
    for el in path:
        if not isinstance(node, dict) or el not in node:
            return False
        node = node[el]
    return isinstance(node, dict) and (not node or "." in node)


class Comparison:
    """Paths added, modified and removed between two versions of an object."""

    __slots__ = ("added", "modified", "removed")

    def __init__(self) -> None:
        self.added: FieldSet = set()
        self.modified: FieldSet = set()
        self.removed: FieldSet = set()

    def changed(self) -> FieldSet:
        return self.added | self.modified

    def empty(self) -> bool:
        return not (self.added or self.modified or self.removed)


def compare(
    old: Any, new: Any, node: Node | None, path: Path = (), out: Comparison | None = None
) -> Comparison:
    out = Comparison() if out is None else out
    if old == new:  # the common case for most subtrees, checked at C speed
        return out
    if old is None:
        _members(new, node, path, out.added)
        return out
    if new is None:
        _members(old, node, path, out.removed)
        return out
    if not granular(node) or type(old) is not type(new) or not isinstance(old, dict | list):
        if old != new and path:
            out.modified.add(path)
        return out
    assert node is not None
    if isinstance(old, list) and isinstance(new, list):
        olds, news = _list_items(old, node), _list_items(new, node)
        for key in olds.keys() | news.keys():
            compare(olds.get(key), news.get(key), node.elem, path + (key,), out)
        return out
    assert isinstance(old, dict) and isinstance(new, dict)
    for k in old.keys() | new.keys():
        compare(old.get(k), new.get(k), _child(node, k), path + ("f:" + k,), out)
    return out


# ------------------------------------------------------------------ FieldsV1


def decode(fields: Any, prefix: Path = (), out: FieldSet | None = None) -> FieldSet:
    out = set() if out is None else out
    if not isinstance(fields, dict):
        return out
    for key, child in fields.items():
        if key == ".":
            if prefix:
                out.add(prefix)
            continue
        sub = prefix + (key,)
        if isinstance(child, dict) and child:
            decode(child, sub, out)
        else:
            out.add(sub)
    return out


def encode(paths: FieldSet) -> dict[str, Any]:
    """The FieldsV1 tree of a set: members with children carry ".", keys sorted."""
    root: dict[str, Any] = {}
    members: set[Path] = set()
    for path in paths:
        node = root
        for el in path:
            node = node.setdefault(el, {})
        members.add(path)
    return _finish(root, (), members)


def _finish(tree: dict[str, Any], path: Path, members: set[Path]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if tree and path in members:
        out["."] = {}
    for key in sorted(tree):
        out[key] = _finish(tree[key], path + (key,), members)
    return out


def with_parents(paths: FieldSet) -> FieldSet:
    """The set plus every ancestor of its paths (upstream's EnsureNamedFieldsAreMembers)."""
    out = set(paths)
    for path in paths:
        for i in range(1, len(path)):
            out.add(path[:i])
    return out


def format_path(path: Path) -> str:
    """Upstream's rendering of a path in messages: .spec.containers[name="c"].image."""
    out = []
    for el in path:
        kind, _, rest = el.partition(":")
        if kind == "f":
            out.append("." + rest)
        elif kind == "k":
            keys = json.loads(rest)
            out.append("[" + ",".join(f"{k}={_dumps(v)}" for k, v in keys.items()) + "]")
        elif kind == "v":
            out.append(f"[={rest}]")
        else:
            out.append(f"[{rest}]")
    return "".join(out)
