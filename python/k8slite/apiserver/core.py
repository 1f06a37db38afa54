"""The API server's state: one registry and watch cache per resource, fed by the store."""

from __future__ import annotations

import contextlib

from k8slite._native import WatchCache, loads
from k8slite.api.resources import RESOURCES, ResourceType
from k8slite.apiserver import storageadmission
from k8slite.apiserver.registry import Registry, encoder
from k8slite.component.objects import is_deleting
from k8slite.storage import Event, KeyExists, Op, Store

# Namespaces that exist from the start, as in every upstream cluster.
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# Recent events kept per resource for watch resumption; older starts get 410 Gone.
WATCH_CACHE_CAPACITY = 10_000


class ApiCore:
    """Registries by (group, plural), warmed from the store and kept current by it."""

    def __init__(self, store: Store, capacity: int = WATCH_CACHE_CAPACITY) -> None:
        self.store = store
        self.registries: dict[tuple[str, str], Registry] = {}
        self._by_prefix: dict[str, Registry] = {}
        for rt in RESOURCES:
            self.add_resource(rt, capacity)
        self._namespaces = self.registries[("", "namespaces")]
        storageadmission.install(
            self.registries[("", "persistentvolumeclaims")],
            self.registries[("storage.k8s.io", "storageclasses")],
            self.registries[("", "persistentvolumes")],
        )

    def add_resource(self, rt: ResourceType, capacity: int = WATCH_CACHE_CAPACITY) -> Registry:
        cache = WatchCache(list(rt.selectable_fields), capacity)
        reg = Registry(rt, self.store, cache, self.namespace_phase)
        self.registries[(rt.group, rt.plural)] = reg
        self._by_prefix[rt.key_prefix] = reg
        return reg

    def registry(self, rt: ResourceType) -> Registry:
        return self.registries[(rt.group, rt.plural)]

    def namespace_phase(self, name: str) -> str | None:
        hit = self._namespaces.cache.get(f"/registry/core/namespaces/{name}")
        if hit is None:
            return None
        obj = loads(hit[0])
        if is_deleting(obj):
            return "Terminating"
        return str((obj.get("status") or {}).get("phase", "Active"))

    def _registry_for_key(self, key: str) -> Registry | None:
        # /registry/<group>/<plural>/... -> the prefix up to and including <plural>/
        parts = key.split("/", 4)
        if len(parts) < 5:
            return None
        return self._by_prefix.get(f"/{parts[1]}/{parts[2]}/{parts[3]}/")

    def warm(self) -> None:
        """Load every stored object into the caches, then follow the store's commits."""
        revision = self.store.revision()
        for reg in self.registries.values():
            for key, data, rv in self.store.scan(reg.rt.key_prefix):
                reg.cache.load(key, rv, data)
            reg.cache.advance(revision)
        self.store.subscribe(self._on_commit)

    def _on_commit(self, events: list[Event]) -> None:
        touched: set[Registry] = set()
        for ev in events:
            reg = self._registry_for_key(ev.key)
            if reg is not None:
                reg.cache.apply(ev.type, ev.key, ev.rv, ev.data)
                touched.add(reg)
        if events:
            revision = events[-1].rv
            for reg in self.registries.values():
                reg.cache.advance(revision)
        for reg in touched:
            reg.notify()

    async def ensure_system_namespaces(self) -> None:
        for name in SYSTEM_NAMESPACES:
            if self.namespace_phase(name) is not None:
                continue
            obj = self._namespaces.prepare_new(None, {"metadata": {"name": name}})
            key = self._namespaces.key(None, name)
            with contextlib.suppress(KeyExists):
                await self.store.txn([Op("create", key, encoder(obj))])
