"""Server-side apply and managedFields: who owns which field, and applying configurations.

Every write records, in metadata.managedFields, the fields it changed under its manager
(operation Update) and takes them from other managers. An apply (operation Apply) merges a
partial configuration into the live object by the schema's list and map semantics, owns
exactly the fields it sets, removes fields it stopped setting that nobody else owns, and is
refused with 409 when it would change a field another manager owns (unless forced).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from k8slite._native import dumps
from k8slite.api import errors, fieldsets, meta
from k8slite.api.fieldsets import FieldSet, Path
from k8slite.api.schemas import Node
from k8slite.component import objects
from k8slite.component.objects import Obj

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# At most this many Update entries are kept; older ones merge into "ancient-changes".
MAX_UPDATE_MANAGERS = 10
ANCIENT = "ancient-changes"
_STRIPPED: FieldSet = {
    ("f:apiVersion",),
    ("f:kind",),
    ("f:metadata",),
    *(
        (("f:metadata", "f:" + f))
        for f in (
            "name",
            "namespace",
            "creationTimestamp",
            "selfLink",
            "uid",
            "clusterName",
            "generation",
            "managedFields",
            "resourceVersion",
        )
    ),
}


@dataclass
class Manager:
    """Who writes: the field manager's name, Apply or Update, and the subresource."""

    name: str
    operation: str = "Update"
    subresource: str = ""


@dataclass
class Entry:
    manager: str
    operation: str
    api_version: str
    time: str | None
    subresource: str = ""
    fields: FieldSet = field(default_factory=set)

    @property
    def ident(self) -> tuple[str, str, str, str]:
        # Appliers keep one entry whatever version they apply (as upstream).
        version = "" if self.operation == "Apply" else self.api_version
        return (self.manager, self.operation, version, self.subresource)

    def describe(self) -> str:
        """How upstream names a manager in conflict messages."""
        out = f'"{self.manager}"'
        if self.subresource:
            out += f' with subresource "{self.subresource}"'
        if self.operation == "Update":
            out += f" using {self.api_version}"
        return out

    def to_json(self) -> Obj:
        out: Obj = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
        }
        if self.time:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = fieldsets.encode(self.fields)
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def _decode(entries: Any) -> dict[tuple[str, str, str, str], Entry] | None:
    """Entries by identity; None when the list is malformed."""
    if not isinstance(entries, list):
        return None
    out: dict[tuple[str, str, str, str], Entry] = {}
    for raw in entries:
        if not isinstance(raw, dict) or raw.get("operation") not in ("Apply", "Update"):
            return None
        e = Entry(
            str(raw.get("manager") or ""),
            raw["operation"],
            str(raw.get("apiVersion") or ""),
            raw.get("time"),
            str(raw.get("subresource") or ""),
            fieldsets.decode(raw.get("fieldsV1")),
        )
        out[e.ident] = e
    return out


def _encode(obj: Obj, entries: dict[tuple[str, str, str, str], Entry]) -> None:
    m = obj.setdefault("metadata", {})
    kept = [e for e in entries.values() if e.fields]
    if kept:
        kept.sort(key=lambda e: (e.operation != "Apply", e.time or "", e.manager))
        m["managedFields"] = [e.to_json() for e in kept]
    else:
        m.pop("managedFields", None)


def _strip(paths: FieldSet) -> FieldSet:
    return {p for p in paths if p not in _STRIPPED}


def _is_reset(value: Any) -> bool:
    return isinstance(value, list) and (value == [] or value == [{}])


def _cap(entries: dict[tuple[str, str, str, str], Entry], api_version: str) -> None:
    updates = sorted(
        (e for e in entries.values() if e.operation == "Update" and e.manager != ANCIENT),
        key=lambda e: e.time or "",
    )
    excess = len(updates) - MAX_UPDATE_MANAGERS + 1
    if excess <= 0:
        return
    ancient = entries.setdefault(
        (ANCIENT, "Update", api_version, ""), Entry(ANCIENT, "Update", api_version, None)
    )
    for e in updates[:excess]:
        ancient.fields |= e.fields
        del entries[e.ident]


def record_update(new: Obj, old: Obj | None, who: Manager, api_version: str, root: Node) -> None:
    """Record a non-apply write's changes in new's managedFields (in place)."""
    new_meta = new.setdefault("metadata", {})
    old_entries = (old or {}).get("metadata", {}).get("managedFields")
    sent = new_meta.get("managedFields")
    entries = None
    if who.subresource == "" and sent is not None and sent != old_entries:
        entries = {} if _is_reset(sent) else _decode(sent)
    ident = (who.name, "Update", api_version, who.subresource)
    if old is None and entries is None:
        _record_first(new, who, api_version, root)  # a create: the writer owns all it set
        return
    comparison = fieldsets.compare(_without_meta(old), _without_meta(new), root)
    if entries is None and comparison.empty():
        # Nothing changed: ownership stays exactly as it was.
        if old_entries:
            new_meta["managedFields"] = old_entries
        else:
            new_meta.pop("managedFields", None)
        return
    changed = _strip(comparison.changed())
    removed = _strip(comparison.removed)
    if entries is None:
        if not removed and _already_owned(old_entries, ident, changed):
            new_meta["managedFields"] = old_entries  # a heartbeat or a status refresh
            return
        entries = _decode(old_entries or []) or {}
    for e in entries.values():
        if e.ident != ident:
            e.fields -= changed
            e.fields -= removed
    mine = entries.get(ident)
    if mine is None:
        mine = entries[ident] = Entry(who.name, "Update", api_version, None, who.subresource)
    before = set(mine.fields)
    mine.fields = (mine.fields - removed) | changed
    if mine.fields != before or mine.time is None:
        mine.time = meta.now()
    _cap(entries, api_version)
    _encode(new, entries)


def _record_first(new: Obj, who: Manager, api_version: str, root: Node) -> None:
    """managedFields of an object's first write, built straight from the object."""
    tree = fieldsets.members_tree(_without_meta(new), root)
    tree.pop("f:apiVersion", None)
    tree.pop("f:kind", None)
    metadata = tree.get("f:metadata")
    if isinstance(metadata, dict):
        for path in _STRIPPED:
            if len(path) == 2:
                metadata.pop(path[1], None)
        metadata.pop(".", None)
        if not metadata:
            del tree["f:metadata"]
    m = new.setdefault("metadata", {})
    if not tree:
        m.pop("managedFields", None)
        return
    entry = Entry(who.name, "Update", api_version, meta.now(), who.subresource)
    out = entry.to_json()
    out["fieldsV1"] = tree
    m["managedFields"] = [out]


def _already_owned(raw: Any, ident: tuple[str, str, str, str], paths: FieldSet) -> bool:
    """Whether the writer's entry holds every changed path and no other entry holds any:
    then ownership, and so managedFields, stay exactly as they were."""
    if not isinstance(raw, list) or not paths:
        return False
    mine = None
    others = []
    for e in raw:
        if not isinstance(e, dict):
            return False
        key = (
            str(e.get("manager") or ""),
            e.get("operation"),
            str(e.get("apiVersion") or ""),
            str(e.get("subresource") or ""),
        )
        if key == ident:
            mine = e
        else:
            others.append(e.get("fieldsV1"))
    if mine is None or not mine.get("time"):
        return False
    fields = mine.get("fieldsV1")
    return all(
        fieldsets.owns(fields, p) and not any(fieldsets.owns(o, p) for o in others) for p in paths
    )


def _without_meta(obj: Obj | None) -> Obj:
    """The object without managedFields, which never count as a change."""
    if not obj:
        return {}
    m = obj.get("metadata")
    if isinstance(m, dict) and "managedFields" in m:
        obj = dict(obj)
        obj["metadata"] = {k: v for k, v in m.items() if k != "managedFields"}
    return obj


# ---------------------------------------------------------------------- apply


def _child(node: Node | None, key: str) -> Node | None:
    if node is None:
        return None
    if node.kind == "struct" and node.definition is not None:
        return node.definition.fields.get(key)
    if node.kind == "map":
        return node.elem
    return None


def merge(live: Any, config: Any, node: Node | None) -> Any:
    """The live value with the configuration merged in (config wins on leaves)."""
    if live is None or config is None or not fieldsets.granular(node):
        return meta.clone(config)
    assert node is not None
    if node.kind == "list":
        if not isinstance(live, list) or not isinstance(config, list):
            return meta.clone(config)
        return _merge_list(live, config, node)
    if not isinstance(live, dict) or not isinstance(config, dict):
        return meta.clone(config)
    out = dict(live)
    for k, v in config.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(live.get(k), v, _child(node, k))
    return out


def _merge_list(live: list[Any], config: list[Any], node: Node) -> list[Any]:
    """Keyed merge; shared items follow the configuration's order, live-only items stay."""
    cfg = {fieldsets.element_key(v, node): v for v in config}
    live_keys = {fieldsets.element_key(v, node) for v in live}
    out: list[Any] = []
    done: set[str | None] = set()
    order = [fieldsets.element_key(v, node) for v in config]
    ci = 0
    for item in live:
        key = fieldsets.element_key(item, node)
        if key not in cfg:
            out.append(item)
            continue
        while ci < len(order) and order[ci] != key:
            other = order[ci]
            if other not in done and other not in live_keys:
                out.append(meta.clone(cfg[other]))
                done.add(other)
            ci += 1
        if key not in done:
            out.append(merge(item, cfg[key], node.elem))
            done.add(key)
    for key in order:
        if key not in done:
            live_item = next((v for v in live if fieldsets.element_key(v, node) == key), None)
            out.append(merge(live_item, cfg[key], node.elem))
            done.add(key)
    return out


def _remove(
    obj: Any, path: Path, node: Node | None, depth: int = 0, keys: tuple[str, ...] = ()
) -> bool:
    """Remove one path; True when the container it was in became empty.

    A map or list emptied by the removal goes too (upstream's typed objects omit empty
    maps and lists), but never a top-level field such as spec; the key fields of a keyed
    list's element stay as long as the element does.
    """
    el = path[depth]
    last = depth == len(path) - 1
    kind, _, name = el.partition(":")
    if kind == "f" and isinstance(obj, dict):
        if name not in obj or (last and name in keys):
            return False
        emptied = not last and _remove(obj[name], path, _child(node, name), depth + 1)
        if last or (emptied and depth > 0):
            del obj[name]
        return not obj
    if kind in ("k", "v") and isinstance(obj, list) and node is not None:
        for i, item in enumerate(obj):
            if fieldsets.element_key(item, node) == el:
                if last or _remove(item, path, node.elem, depth + 1, node.meta.keys):
                    del obj[i]
                break
        return not obj
    return False


def _prune(obj: Obj, paths: FieldSet, root: Node) -> None:
    # Shortest first: a removed list element takes its fields with it.
    for path in sorted(paths, key=len):
        _remove(obj, path, root)


def _check_keys(value: Any, node: Node | None, path: str) -> None:
    """Every element of a keyed list must carry its keys (or have defaults for them)."""
    if node is None or value is None:
        return
    if node.kind == "list" and isinstance(value, list) and node.meta.list_type == "map":
        for i, item in enumerate(value):
            key = fieldsets.missing_key(item, node)
            if key is not None:
                raise ApplyError(
                    f"{path}: element {i}: associative list with keys has an "
                    f'element that omits key field "{key}"'
                )
            _check_keys(item, node.elem, f"{path}[{i}]")
    elif isinstance(value, dict) and node.kind in ("struct", "map"):
        for k, v in value.items():
            _check_keys(v, _child(node, k), f"{path}.{k}")


class ApplyError(Exception):
    """A configuration that cannot be typed against the schema (upstream answers 500)."""


@dataclass
class ApplyRequest:
    config: Obj
    manager: str
    force: bool
    api_version: str
    subresource: str = ""

    def owns(self, path: Path) -> bool:
        """Main-resource applies never own status; status applies own only status."""
        in_status = bool(path) and path[0] == "f:status"
        return in_status if self.subresource == "status" else not in_status


def conflict_error(conflicts: list[tuple[Entry, Path]]) -> errors.ApiError:
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {e.describe()}",
            "field": fieldsets.format_path(p),
        }
        for e, p in conflicts
    ]
    if len(conflicts) == 1:
        e, p = conflicts[0]
        message = (
            f"Apply failed with 1 conflict: conflict with {e.describe()}: "
            f"{fieldsets.format_path(p)}"
        )
    else:
        by: dict[str, list[str]] = {}
        for e, p in conflicts:
            by.setdefault(e.describe(), []).append(fieldsets.format_path(p))
        lines = []
        for who in sorted(by):
            lines.append(f"conflicts with {who}:")
            lines.extend(f"- {p}" for p in by[who])
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return errors.ApiError(409, "Conflict", message, {"causes": causes})


def _allowed_by_last_applied(live: Obj, root: Node) -> FieldSet:
    """Fields kubectl client-side apply last set and still holds: kubectl may take them."""
    raw = objects.annotations_of(live).get(LAST_APPLIED)
    if not raw:
        return set()
    try:
        last = json.loads(raw)
    except ValueError:
        return set()
    if not isinstance(last, dict) or last.get("apiVersion") != live.get("apiVersion"):
        return set()
    owned = fieldsets.to_set(last, root)
    diff = fieldsets.compare(last, live, root)
    return owned - diff.added - diff.modified - diff.removed


def server_side_apply(live: Obj | None, req: ApplyRequest, root: Node) -> Obj:
    """The object after applying req.config; raises 409 on conflicts unless forced."""
    _check_keys(req.config, root, "")
    base = meta.clone(live) if live is not None else {}
    entries = _decode(objects.meta(base).get("managedFields") or []) or {}
    ident = (req.manager, "Apply", "", req.subresource)
    previous = entries.get(ident)
    last_set = previous.fields if previous is not None else set()
    applied = {p for p in _strip(fieldsets.to_set(req.config, root)) if req.owns(p)}
    merged = merge(_without_meta(base), req.config, root)
    mine = Entry(req.manager, "Apply", req.api_version, meta.now(), req.subresource, applied)
    entries[ident] = mine
    owned = fieldsets.with_parents(set().union(*(e.fields for e in entries.values())))
    _prune(merged, last_set - owned, root)
    comparison = fieldsets.compare(_without_meta(base), merged, root)
    changed = _strip(comparison.changed())
    conflicts = [
        (e, p) for e in entries.values() if e.ident != ident for p in sorted(e.fields & changed)
    ]
    if conflicts and not req.force and req.manager == "kubectl" and live is not None:
        allowed = _allowed_by_last_applied(live, root)
        conflicts = [(e, p) for e, p in conflicts if p not in allowed]
    if conflicts and not req.force:
        raise conflict_error(conflicts)
    removed = _strip(comparison.removed)
    for e in entries.values():
        if e.ident != ident:
            e.fields -= changed
            e.fields -= removed
    if (
        req.manager == "kubectl"
        and live is not None
        and LAST_APPLIED in objects.annotations_of(merged)
    ):
        config = meta.clone(req.config)
        objects.annotations_of(config).pop(LAST_APPLIED, None)
        merged["metadata"]["annotations"][LAST_APPLIED] = dumps(config).decode()
    _encode(merged, entries)
    return merged


def check_config(config: Any, rt_api_version: str, kind: str, name: str) -> Obj:
    """An apply body must be an object of this kind and version, naming this object."""
    if not isinstance(config, dict):
        raise errors.bad_request("error decoding patch: the patch must be a YAML or JSON object")
    if not config.get("apiVersion") or not config.get("kind"):
        missing = "apiVersion" if not config.get("apiVersion") else "kind"
        raise errors.bad_request(
            f"error decoding patch: Object '{missing}' is missing in '{dumps(config).decode()}'"
        )
    if config["apiVersion"] != rt_api_version:
        raise errors.bad_request(
            f"Incorrect version specified in apply patch. Specified "
            f"patch version: {config['apiVersion']}, expected: "
            f"{rt_api_version}"
        )
    if config["kind"] != kind:
        raise errors.bad_request(
            f"the kind in the data ({config['kind']}) does not match the expected kind ({kind})"
        )
    m = objects.meta(config)
    if not isinstance(m, dict):
        raise errors.bad_request("metadata must be an object")
    if m.get("managedFields") is not None:
        raise errors.bad_request("metadata.managedFields must be nil")
    if m.get("name") and m["name"] != name:
        raise errors.bad_request(
            f"the name of the object ({m['name']}) does not match the name on the URL ({name})"
        )
    return config
