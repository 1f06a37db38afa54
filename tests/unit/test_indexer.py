"""The informer store: keys, built-in and custom indexes kept right through changes."""

from __future__ import annotations

from typing import Any

import pytest

from k8slite.client.store import (
    NAMESPACE_INDEX,
    NODE_NAME_INDEX,
    OWNER_UID_INDEX,
    DeletedFinalStateUnknown,
    Indexer,
    object_key,
    split_key,
)


def pod(
    name: str,
    ns: str = "default",
    node: str | None = None,
    owners: tuple[str, ...] = (),
    rv: str = "1",
    **labels: str,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "resourceVersion": rv, "labels": labels}
    if owners:
        meta["ownerReferences"] = [{"uid": u, "kind": "ReplicaSet", "name": u} for u in owners]
    spec = {"nodeName": node} if node else {}
    return {"metadata": meta, "spec": spec}


def names(objs: list[dict[str, Any]]) -> set[str]:
    return {o["metadata"]["name"] for o in objs}


def test_keys() -> None:
    assert object_key(pod("a", "ns1")) == "ns1/a"
    assert object_key({"metadata": {"name": "node-1"}}) == "node-1"
    assert object_key(DeletedFinalStateUnknown("x/y", {})) == "x/y"
    assert split_key("ns1/a") == ("ns1", "a")
    assert split_key("node-1") == (None, "node-1")
    with pytest.raises(ValueError):
        object_key({"metadata": {}})


def test_builtin_indexes_follow_updates_and_deletes() -> None:
    store = Indexer()
    store.add(pod("a", "ns1", node="n1", owners=("rs1",)))
    store.add(pod("b", "ns1", node="n2", owners=("rs1", "rs2")))
    store.add(pod("c", "ns2"))
    assert names(store.by_index(NAMESPACE_INDEX, "ns1")) == {"a", "b"}
    assert names(store.by_index(NODE_NAME_INDEX, "n1")) == {"a"}
    assert names(store.by_index(OWNER_UID_INDEX, "rs1")) == {"a", "b"}
    assert names(store.by_index(OWNER_UID_INDEX, "rs2")) == {"b"}

    # a moves to n2 and loses its owner; the old index entries go away.
    old = store.update(pod("a", "ns1", node="n2", rv="2"))
    assert old is not None and old["metadata"]["resourceVersion"] == "1"
    assert store.by_index(NODE_NAME_INDEX, "n1") == []
    assert "n1" not in store.index_values(NODE_NAME_INDEX)
    assert names(store.by_index(NODE_NAME_INDEX, "n2")) == {"a", "b"}
    assert names(store.by_index(OWNER_UID_INDEX, "rs1")) == {"b"}

    store.delete(pod("b", "ns1"))
    assert names(store.by_index(NODE_NAME_INDEX, "n2")) == {"a"}
    assert store.by_index(OWNER_UID_INDEX, "rs1") == []
    assert store.index_keys(NAMESPACE_INDEX, "ns1") == {"ns1/a"}
    assert store.delete_key("ns1/b") is None
    assert len(store) == 2 and "ns2/c" in store
    assert store.get_by_name("c", "ns2") is store.get("ns2/c")


def test_delete_by_tombstone() -> None:
    store = Indexer()
    store.add(pod("a", node="n1"))
    gone = store.delete(DeletedFinalStateUnknown("default/a", pod("a")))
    assert gone is not None
    assert store.by_index(NODE_NAME_INDEX, "n1") == []


def test_replace_rebuilds_indexes() -> None:
    store = Indexer()
    store.add(pod("a", node="n1"))
    store.add(pod("b", node="n1"))
    store.replace([pod("b", node="n2"), pod("c", node="n1")])
    assert sorted(store.keys()) == ["default/b", "default/c"]
    assert names(store.by_index(NODE_NAME_INDEX, "n1")) == {"c"}
    assert names(store.by_index(NODE_NAME_INDEX, "n2")) == {"b"}


def test_custom_indexer_and_late_registration() -> None:
    def by_app(obj: dict[str, Any]) -> list[str]:
        app = (obj["metadata"].get("labels") or {}).get("app")
        return [app] if app else []

    store = Indexer()
    store.add(pod("a", app="web"))
    store.add(pod("b", app="db"))
    store.add_indexers({"app": by_app})  # indexes what is already there
    assert names(store.by_index("app", "web")) == {"a"}
    store.update(pod("a", app="db"))
    assert store.by_index("app", "web") == []
    assert names(store.index("app", pod("zz", app="db"))) == {"a", "b"}
    store.add_indexers({"app": by_app})  # the same function again is harmless
    with pytest.raises(ValueError):
        store.add_indexers({"app": lambda o: []})
    with pytest.raises(KeyError):
        store.by_index("nope", "x")


def test_no_builtin_indexers() -> None:
    store = Indexer({})
    store.add(pod("a"))
    assert store.indexers == {}
    assert len(store.list()) == 1
