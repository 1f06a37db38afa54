"""The informer's local cache: objects by key, plus secondary indexes (client-go's Indexer)."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from k8slite.component.objects import Obj, key_of, meta

IndexFunc = Callable[[Obj], Iterable[str]]

NAMESPACE_INDEX = "namespace"
OWNER_UID_INDEX = "ownerUID"
NODE_NAME_INDEX = "nodeName"


@dataclass(frozen=True, slots=True)
class DeletedFinalStateUnknown:
    """An object found gone by a relist: its deletion was missed, `obj` is its last known state.

    on_delete handlers get this instead of the object when the watch did not see the delete.
    """

    key: str
    obj: Obj


def object_key(obj: Obj | DeletedFinalStateUnknown) -> str:
    """client-go's DeletionHandlingMetaNamespaceKeyFunc: "<namespace>/<name>" or "<name>"."""
    if isinstance(obj, DeletedFinalStateUnknown):
        return obj.key
    if not meta(obj).get("name"):
        raise ValueError("object has no metadata.name")
    return key_of(obj)


def split_key(key: str) -> tuple[str | None, str]:
    """(namespace or None, name) from a key made by object_key."""
    namespace, sep, name = key.partition("/")
    return (namespace, name) if sep else (None, key)


def namespace_index(obj: Obj) -> list[str]:
    namespace = meta(obj).get("namespace")
    return [namespace] if namespace else []


def owner_uid_index(obj: Obj) -> list[str]:
    refs = meta(obj).get("ownerReferences") or []
    return [ref["uid"] for ref in refs if ref.get("uid")]


def node_name_index(obj: Obj) -> list[str]:
    node = (obj.get("spec") or {}).get("nodeName")
    return [node] if node else []


BUILTIN_INDEXERS: dict[str, IndexFunc] = {
    NAMESPACE_INDEX: namespace_index,
    OWNER_UID_INDEX: owner_uid_index,
    NODE_NAME_INDEX: node_name_index,
}


class Indexer:
    """A thread-free, in-loop store: key -> object, and index name -> value -> keys.

    Objects are shared, not copied: treat what you get from it as read-only, and copy
    before changing (as with client-go's cache).
    """

    def __init__(self, indexers: dict[str, IndexFunc] | None = None) -> None:
        self._items: dict[str, Obj] = {}
        self._indexers: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[str]]] = {}
        self.add_indexers(indexers if indexers is not None else BUILTIN_INDEXERS)

    def add_indexers(self, indexers: dict[str, IndexFunc]) -> None:
        """Register more indexes; existing items are indexed at once."""
        for name, fn in indexers.items():
            if name in self._indexers:
                if self._indexers[name] is fn:
                    continue
                raise ValueError(f"indexer {name!r} already registered")
            self._indexers[name] = fn
            index: dict[str, set[str]] = {}
            self._indices[name] = index
            for key, obj in self._items.items():
                for value in fn(obj):
                    index.setdefault(value, set()).add(key)

    @property
    def indexers(self) -> dict[str, IndexFunc]:
        return dict(self._indexers)

    # ------------------------------------------------------------------- writes

    def add(self, obj: Obj) -> Obj | None:
        """Add or replace an object; returns the one it replaced, if any."""
        key = object_key(obj)
        old = self._items.get(key)
        self._items[key] = obj
        self._reindex(key, old, obj)
        return old

    update = add

    def delete(self, obj: Obj | DeletedFinalStateUnknown) -> Obj | None:
        """Remove an object by its key; returns what was stored, if anything."""
        return self.delete_key(object_key(obj))

    def delete_key(self, key: str) -> Obj | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._reindex(key, old, None)
        return old

    def replace(self, objs: Iterable[Obj]) -> None:
        """Swap the whole content for `objs` (the result of a relist)."""
        self._items = {object_key(o): o for o in objs}
        for name, fn in self._indexers.items():
            index: dict[str, set[str]] = {}
            for key, obj in self._items.items():
                for value in fn(obj):
                    index.setdefault(value, set()).add(key)
            self._indices[name] = index

    def _reindex(self, key: str, old: Obj | None, new: Obj | None) -> None:
        for name, fn in self._indexers.items():
            old_values = set(fn(old)) if old is not None else set()
            new_values = set(fn(new)) if new is not None else set()
            if old_values == new_values:
                continue
            index = self._indices[name]
            for value in old_values - new_values:
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]
            for value in new_values - old_values:
                index.setdefault(value, set()).add(key)

    # -------------------------------------------------------------------- reads

    def get(self, key: str) -> Obj | None:
        return self._items.get(key)

    def get_by_name(self, name: str, namespace: str | None = None) -> Obj | None:
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[str]:
        return list(self._items)

    def list(self) -> builtins.list[Obj]:
        return list(self._items.values())

    def index_values(self, index_name: str) -> builtins.list[str]:
        """Every value the index currently holds keys for."""
        return list(self._index(index_name))

    def index_keys(self, index_name: str, value: str) -> set[str]:
        """Keys of the objects whose index function yields `value`."""
        return set(self._index(index_name).get(value, ()))

    def by_index(self, index_name: str, value: str) -> builtins.list[Obj]:
        """The objects whose index function yields `value` (e.g. pods on one node)."""
        return [self._items[k] for k in self._index(index_name).get(value, ())]

    def index(self, index_name: str, obj: Obj) -> builtins.list[Obj]:
        """Objects sharing any index value with `obj` (client-go's Index)."""
        keys: set[str] = set()
        index = self._index(index_name)
        for value in self._indexers[index_name](obj):
            keys |= index.get(value, set())
        return [self._items[k] for k in keys]

    def _index(self, index_name: str) -> dict[str, set[str]]:
        try:
            return self._indices[index_name]
        except KeyError:
            raise KeyError(f"no indexer named {index_name!r}") from None
