"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902) on plain dicts."""

from __future__ import annotations

from typing import Any

from k8slite.api import errors, meta


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return meta.clone(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _split(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise errors.bad_request(f'json patch path "{pointer}" must start with "/"')
    return [_unescape(t) for t in pointer[1:].split("/")]


def _index(container: list[Any], token: str, allow_end: bool, path: str) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (token.startswith("0") and token != "0"):
        raise errors.ApiError(422, "Invalid", f'invalid array index "{token}" in path "{path}"')
    i = int(token)
    limit = len(container) if allow_end else len(container) - 1
    if i > limit:
        raise errors.ApiError(422, "Invalid", f"Unable to access invalid index: {i}")
    return i


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise errors.ApiError(
                    422, "Invalid", f'doc is missing path: "{path}": missing value'
                )
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, False, path)]
        else:
            raise errors.ApiError(422, "Invalid", f'doc is missing path: "{path}"')
    return node


def _get(doc: Any, path: str) -> Any:
    tokens = _split(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise errors.ApiError(422, "Invalid", f'doc is missing key: "{path}"')
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, False, path)]
    raise errors.ApiError(422, "Invalid", f'doc is missing path: "{path}"')


def _remove(doc: Any, path: str) -> Any:
    tokens = _split(path)
    if not tokens:
        raise errors.ApiError(422, "Invalid", "cannot remove the whole document")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise errors.ApiError(
                422, "Invalid", f"Unable to remove nonexistent key: {last}: missing value"
            )
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, False, path))
    raise errors.ApiError(422, "Invalid", f'doc is missing path: "{path}"')


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _split(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, True, path), value)
    else:
        raise errors.ApiError(422, "Invalid", f'doc is missing path: "{path}"')
    return doc


def json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902 add, remove, replace, move, copy and test; all or nothing."""
    if not isinstance(operations, list):
        raise errors.bad_request("json patch must be a list of operations")
    doc = meta.clone(doc)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise errors.bad_request(f"invalid json patch operation: {op!r}")
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise errors.bad_request(f'json patch operation "{kind}" needs a value')
        if kind == "add":
            doc = _add(doc, path, meta.clone(op["value"]))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            if not _split(path):
                doc = meta.clone(op["value"])
            else:
                _remove(doc, path)
                doc = _add(doc, path, meta.clone(op["value"]))
        elif kind == "move":
            value = _remove(doc, op.get("from", ""))
            doc = _add(doc, path, value)
        elif kind == "copy":
            doc = _add(doc, path, meta.clone(_get(doc, op.get("from", ""))))
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise errors.ApiError(422, "Invalid", f"testing value {path} failed: test failed")
        else:
            raise errors.bad_request(f"Unexpected kind: {kind}")
    return doc
