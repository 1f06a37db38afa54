"""Strategic merge patch: JSON merge patch that merges keyed lists, with upstream's directives.

Lists whose field declares patchStrategy "merge" merge by their merge key (containers by
name, ports by containerPort, ...) or, for primitives, as a set; other lists are replaced.
Directives: `$patch: replace|delete|merge`, `$retainKeys`, `$setElementOrder/<list>` and
`$deleteFromPrimitiveList/<list>`. Ordering follows upstream: patch items in the patch's (or
`$setElementOrder`'s) order, server-only items kept where the live list had them.
"""

from __future__ import annotations

from typing import Any

from k8slite.api import errors, meta
from k8slite.api.patchmeta import NONE, FieldMeta
from k8slite.api.schemas import Definition, Node
from k8slite.component.objects import Obj

PATCH = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ORDER = "$setElementOrder/"
DELETE_FROM = "$deleteFromPrimitiveList/"


def _child(node: Node | None, key: str) -> Node | None:
    if node is None:
        return None
    if node.kind == "struct" and node.definition is not None:
        return node.definition.fields.get(key)
    if node.kind == "map":
        return node.elem
    return None


def _meta(node: Node | None) -> FieldMeta:
    return node.meta if node is not None else NONE


def _merges(meta: FieldMeta) -> bool:
    return "merge" in meta.strategy.split(",")


def _strip(value: Any) -> tuple[Any, bool]:
    """Remove directives from a value that has nothing to merge with; False drops it."""
    if isinstance(value, dict):
        if PATCH in value:
            return None, False
        out = {}
        for k, v in value.items():
            if k == RETAIN_KEYS or k.startswith((SET_ORDER, DELETE_FROM)):
                continue
            v, keep = _strip(v)
            if keep:
                out[k] = v
        return out, True
    if isinstance(value, list):
        kept = [_strip(v) for v in value]
        return [v for v, keep in kept if keep], True
    return value, True


def _key_of(item: Any, merge_key: str) -> Any:
    if not isinstance(item, dict):
        raise errors.bad_request(f"unable to find api field in struct for the list item {item}")
    if merge_key not in item:
        raise errors.bad_request(
            f"map: {go_format(item)} does not contain declared merge key: {merge_key}"
        )
    return item[merge_key]


def go_format(value: Any) -> str:
    """Format a value the way Go's %v prints decoded JSON (used in upstream's messages)."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_format(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_format(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _index(items: list[Any], value: Any, merge_key: str) -> int:
    probe = value.get(merge_key) if merge_key and isinstance(value, dict) else value
    for i, item in enumerate(items):
        other = item.get(merge_key) if merge_key and isinstance(item, dict) else item
        if other == probe:
            return i
    return -1


def _ordered(
    patch_items: list[Any],
    server_only: list[Any],
    patch_order: list[Any],
    server_order: list[Any],
    merge_key: str,
) -> list[Any]:
    """Patch items in patch order, interleaved with server-only items in live order."""
    patch_items = sorted(patch_items, key=lambda v: _index(patch_order, v, merge_key))
    server_only = sorted(server_only, key=lambda v: _index(server_order, v, merge_key))
    out: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(patch_items):
        if i >= len(server_only):
            out.append(patch_items[j])
            j += 1
        elif j >= len(patch_items):
            out.append(server_only[i])
            i += 1
        else:
            li = _index(server_order, server_only[i], merge_key)
            ri = _index(server_order, patch_items[j], merge_key)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(server_only[i])
                i += 1
            else:
                out.append(patch_items[j])
                j += 1
    return out


def _partition(merged: list[Any], by: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    inside: list[Any] = []
    outside: list[Any] = []
    for item in merged:
        (inside if _index(by, item, merge_key) >= 0 else outside).append(item)
    return inside, outside


def _merge_list(original: list[Any], patch: list[Any], node: Node | None) -> list[Any]:
    if not original and not patch:
        return original
    merge_key = _meta(node).merge_key
    elem = node.elem if node is not None else None
    if not any(isinstance(v, dict) for v in original + patch):
        merged: list[Any] = []
        for v in original + patch:
            if v not in merged:
                merged.append(v)
        inside, outside = _partition(merged, patch, "")
        return _ordered(inside, outside, patch, original, "")
    if not merge_key:
        raise errors.bad_request("cannot merge lists without merge key")
    original = list(original)
    plain: list[Any] = []
    replace = False
    for item in patch:
        if not isinstance(item, dict) or PATCH not in item:
            plain.append(item)
            continue
        directive = item[PATCH]
        if directive == "delete":
            key = _key_of(item, merge_key)
            original = [
                v for v in original if not (isinstance(v, dict) and v.get(merge_key) == key)
            ]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise errors.bad_request("merging lists cannot yet be specified in the patch")
        else:
            raise errors.bad_request(f"Unknown patch type: {directive} in map: {go_format(item)}")
    if replace:
        return [_strip(v)[0] for v in plain]
    merged = list(original)
    for item in plain:
        key = _key_of(item, merge_key)
        at = _index(merged, item, merge_key)
        if at >= 0:
            merged[at] = merge_map(merged[at], item, elem)
        else:
            merged.append(merge_map({}, item, elem))
    inside, outside = _partition(merged, plain, merge_key)
    return _ordered(inside, outside, plain, original, merge_key)


def _merge_value(original: Any, patch: Any, node: Node | None) -> tuple[Any, bool]:
    """Merge one field's patch value into its live value; False means remove the field."""
    if isinstance(original, dict) and isinstance(patch, dict):
        if _meta(node).strategy == "replace":
            return _strip(patch)
        return merge_map(original, patch, node), True
    if isinstance(original, list) and isinstance(patch, list):
        if _merges(_meta(node)):
            return _merge_list(original, patch, node), True
        return _strip(patch)
    if isinstance(patch, dict) and PATCH not in patch:
        return merge_map({}, patch, node), True
    if isinstance(patch, list) and _merges(_meta(node)):
        return _merge_list([], patch, node), True
    return _strip(patch)


def _retain_keys(original: Obj, patch: Obj) -> None:
    keys = patch.pop(RETAIN_KEYS)
    if not isinstance(keys, list):
        raise errors.bad_request("invalid patch format of retainKeys")
    for k, v in patch.items():
        if v is None or k.startswith((SET_ORDER, DELETE_FROM)):
            continue
        if k not in keys:
            raise errors.bad_request("invalid patch format of retainKeys")
    for k in list(original):
        if k not in keys:
            del original[k]


def _set_element_order(original: Obj, patch: Obj, key: str, node: Node | None) -> None:
    order = patch.pop(SET_ORDER + key)
    if not isinstance(order, list):
        raise errors.bad_request("invalid patch format of setElementOrder list")
    sub = _child(node, key)
    merge_key = _meta(sub).merge_key
    live = original.get(key)
    if key in patch:
        merged, keep = _merge_value(live if isinstance(live, list) else None, patch.pop(key), sub)
        if not keep:
            original.pop(key, None)
            return
    elif isinstance(live, list):
        merged = live
    else:
        return
    if not isinstance(merged, list):
        original[key] = merged
        return
    if merge_key and not all(isinstance(v, dict) for v in merged):
        merge_key = ""
    inside, outside = _partition(merged, order, merge_key)
    original[key] = _ordered(
        inside, outside, order, live if isinstance(live, list) else [], merge_key
    )


def merge_map(original: Obj, patch: Obj, node: Node | None) -> Obj:
    """Merge a patch map into a copy of original; node gives the fields' merge semantics."""
    directive = patch.get(PATCH)
    if directive is not None:
        if directive == "replace":
            return _strip({k: v for k, v in patch.items() if k != PATCH})[0]  # type: ignore
        if directive == "delete":
            return {}
        raise errors.bad_request(f"Unknown patch type: {directive} in map: {go_format(patch)}")
    out = dict(original) if isinstance(original, dict) else {}
    patch = dict(patch)
    if RETAIN_KEYS in patch:
        _retain_keys(out, patch)
    for k in [k for k in patch if k.startswith(SET_ORDER)]:
        _set_element_order(out, patch, k[len(SET_ORDER) :], node)
    for k, value in patch.items():
        if k.startswith(DELETE_FROM):
            field = k[len(DELETE_FROM) :]
            live = out.get(field)
            if not isinstance(value, list):
                raise errors.bad_request("invalid patch format of primitive list")
            if isinstance(live, list):
                out[field] = [v for v in live if v not in value]
            continue
        if value is None:
            out.pop(k, None)
            continue
        merged, keep = _merge_value(out.get(k), value, _child(node, k))
        if keep:
            out[k] = merged
        else:
            out.pop(k, None)
    return out


def strategic_merge_patch(original: Obj, patch: Any, definition: Definition | None) -> Obj:
    """Apply a strategic merge patch to an object of the given definition."""
    if not isinstance(patch, dict):
        raise errors.bad_request("the patch must be a JSON object")
    root = Node("struct", definition=definition) if definition is not None else None
    return merge_map(meta.clone(original), patch, root)
