"""The API server's state: one registry and watch cache per resource, fed by the store."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from k8slite._native import WatchCache, loads
from k8slite.api import errors
from k8slite.api.customresource import (
    CustomResourceStrategy,
    CustomVersion,
    custom_of,
    name_conflicts,
    served_kinds,
)
from k8slite.api.resources import RESOURCES, ResourceType, set_dynamic
from k8slite.api.strategy import ConvertingStrategy
from k8slite.apiserver import storageadmission
from k8slite.apiserver.registry import Registry, encoder
from k8slite.component.objects import Obj, is_deleting
from k8slite.storage import Event, KeyExists, Op, Store

# Namespaces that exist from the start, as in every upstream cluster.
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# Recent events kept per resource for watch resumption and paginated LISTs; older starts
# get 410 Gone. At least WATCH_CACHE_CAPACITY, more while younger than WATCH_CACHE_WINDOW
# seconds, as upstream's watch cache keeps 75 s of history however fast the writes come
# (at 30,000 pods a few minutes a 10,000-event ring held 16 s, and the density bench's
# hollow nodes lost their watch and their relist's continue token to it), never more than
# WATCH_CACHE_MAX (upstream's upper bound too).
WATCH_CACHE_CAPACITY = 10_000
WATCH_CACHE_WINDOW = 75.0
WATCH_CACHE_MAX = 100 * 1024


class ApiCore:
    """Registries by (group, plural), warmed from the store and kept current by it."""

    def __init__(
        self,
        store: Store,
        capacity: int = WATCH_CACHE_CAPACITY,
        window: float = WATCH_CACHE_WINDOW,
    ) -> None:
        self.store = store
        self.registries: dict[tuple[str, str], Registry] = {}
        self._by_prefix: dict[str, Registry] = {}
        self._capacity = capacity
        self._window = window
        # A built-in kind's other versions (autoscaling/v1 beside v2), converting to and from
        # the first version's objects, whose cache they share and beside which they are woken.
        self.versions: dict[tuple[str, str, str], Registry] = {}
        self._version_siblings: dict[str, list[Registry]] = {}
        for rt in RESOURCES:
            if (rt.group, rt.plural) in self.registries:
                self._add_version(rt)
            else:
                self.add_resource(rt)
        self._namespaces = self.registries[("", "namespaces")]
        self._crds = self.registries[("apiextensions.k8s.io", "customresourcedefinitions")]
        # Custom resources: a registry per served (group, version, plural); the versions of
        # one kind share its watch cache, and all but the first are woken beside it.
        self.custom: dict[tuple[str, str, str], Registry] = {}
        self._siblings: dict[str, list[Registry]] = {}
        self._crd_versions: dict[str, str] = {}
        self._compiled: dict[str, tuple[tuple[object, ...], list[ResourceType]]] = {}
        storageadmission.install(
            self.registries[("", "persistentvolumeclaims")],
            self.registries[("storage.k8s.io", "storageclasses")],
            self.registries[("", "persistentvolumes")],
        )

    def _new_cache(self, rt: ResourceType) -> WatchCache:
        return WatchCache(list(rt.selectable_fields), self._capacity, self._window, WATCH_CACHE_MAX)

    def add_resource(self, rt: ResourceType) -> Registry:
        cache = self._new_cache(rt)
        reg = Registry(rt, self.store, cache, self.namespace_phase)
        self.registries[(rt.group, rt.plural)] = reg
        self._by_prefix[rt.key_prefix] = reg
        return reg

    def _add_version(self, rt: ResourceType) -> None:
        storage = self.registries[(rt.group, rt.plural)]
        reg = Registry(rt, self.store, storage.cache, self.namespace_phase)
        strategy = reg.strategy
        assert isinstance(strategy, ConvertingStrategy), f"{rt} has no conversion"
        reg.stored_api_version = storage.rt.api_version
        reg.on_read = reg.to_served = strategy.from_storage
        self.versions[(rt.group, rt.version, rt.plural)] = reg
        self._version_siblings.setdefault(rt.key_prefix, []).append(reg)

    def registry(self, rt: ResourceType) -> Registry:
        reg = self.registries.get((rt.group, rt.plural))
        if reg is not None and reg.rt is rt:
            return reg  # every built-in kind, and a custom kind's first version
        other = self.versions.get((rt.group, rt.version, rt.plural))
        if other is not None:
            return other
        custom = self.custom.get((rt.group, rt.version, rt.plural))
        if custom is None:
            raise errors.not_found_path()
        return custom

    def crds(self) -> list[Obj]:
        """Every stored CustomResourceDefinition, from the cache."""
        body = self._crds.cache.list(self._crds.rt.key_prefix, None, None, 0, None, None)[0]
        return list(loads(body))

    def sync_custom(self) -> None:
        """Serve exactly the kinds the stored CRDs define (whose names are accepted).

        Runs synchronously on every committed change of a CRD, so a kind is served (or gone)
        before the write that made it is acknowledged.
        """
        crds = self.crds()
        versions = {c["metadata"]["name"]: c["metadata"]["resourceVersion"] for c in crds}
        if versions == self._crd_versions:
            return
        self._crd_versions = versions
        conflicts = name_conflicts(crds)
        kinds: list[ResourceType] = []
        compiled: dict[str, tuple[tuple[object, ...], list[ResourceType]]] = {}
        for crd in crds:
            m = crd["metadata"]
            if m["name"] in conflicts:
                continue
            # Status and metadata writes leave the kinds as they are: compile a CRD's
            # schemas again only when its spec (generation) or its deletion changes.
            identity = (m.get("uid"), m.get("generation"), bool(m.get("deletionTimestamp")))
            hit = self._compiled.get(m["name"])
            served = hit[1] if hit is not None and hit[0] == identity else served_kinds(crd)
            compiled[m["name"]] = (identity, served)
            kinds.extend(served)
        self._compiled = compiled
        revision = self.store.revision()
        wanted = {(rt.group, rt.version, rt.plural): rt for rt in kinds}
        for key in list(self.custom):
            if key not in wanted:
                del self.custom[key]
        first: dict[tuple[str, str], Registry] = {}
        for key, rt in wanted.items():
            reg = self.custom.get(key)
            custom = custom_of(rt)
            assert custom is not None
            if reg is None:
                cache = self._custom_cache(rt, first.get((rt.group, rt.plural)), revision)
                reg = Registry(rt, self.store, cache, self.namespace_phase)
                self.custom[key] = reg
                reg.on_read = _read_defaults(custom, reg, stale=False)
            elif custom_of(reg.rt) is not custom:
                reg.on_read = _read_defaults(custom, reg, stale=reg.on_read is not None)
            reg.rt = rt
            reg.strategy = CustomResourceStrategy(custom)
            storage = rt.group + "/" + custom.storage_version
            reg.stored_api_version = storage if storage != rt.api_version else None
            first.setdefault((rt.group, rt.plural), reg)
        self._siblings = {}
        for kind_key, reg in first.items():
            self.registries[kind_key] = reg
            self._by_prefix[reg.rt.key_prefix] = reg
            self._siblings[reg.rt.key_prefix] = [
                r
                for r in self.custom.values()
                if r.rt.key_prefix == reg.rt.key_prefix and r is not reg
            ]
        for kind_key, reg in list(self.registries.items()):
            if custom_of(reg.rt) is not None and kind_key not in first:
                del self.registries[kind_key]
                self._by_prefix.pop(reg.rt.key_prefix, None)
        set_dynamic(list(wanted.values()))

    def _custom_cache(
        self, rt: ResourceType, sibling: Registry | None, revision: int
    ) -> WatchCache:
        """The kind's cache: a sibling version's, the one it had, or a new one from storage."""
        if sibling is not None:
            return sibling.cache
        existing = self.registries.get((rt.group, rt.plural))
        if existing is not None:
            return existing.cache
        cache = self._new_cache(rt)
        for key, data, rv in self.store.scan(rt.key_prefix):
            cache.load(key, rv, data)
        cache.advance(revision)
        return cache

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
        self.sync_custom()
        self.store.subscribe(self._on_commit)

    def _on_commit(self, events: list[Event]) -> None:
        touched: set[Registry] = set()
        for ev in events:
            reg = self._registry_for_key(ev.key)
            if reg is not None:
                data = ev.data
                if not data:
                    # A deletion whose final state is unknown: the last state this cache saw.
                    hit = reg.cache.get(ev.key)
                    if hit is None:
                        continue
                    data = hit[0]
                reg.cache.apply(ev.type, ev.key, ev.rv, data)
                touched.add(reg)
        if events:
            revision = events[-1].rv
            for reg in self.registries.values():
                reg.cache.advance(revision)
        if self._crds in touched:
            self.sync_custom()
        for reg in touched:
            reg.notify()
            for sibling in self._siblings.get(reg.rt.key_prefix, ()):
                sibling.notify()
            for version in self._version_siblings.get(reg.rt.key_prefix, ()):
                version.notify()

    async def ensure_system_namespaces(self) -> None:
        for name in SYSTEM_NAMESPACES:
            if self.namespace_phase(name) is not None:
                continue
            obj = self._namespaces.prepare_new(None, {"metadata": {"name": name}})
            key = self._namespaces.key(None, name)
            with contextlib.suppress(KeyExists):
                await self.store.txn([Op("create", key, encoder(obj))])


def _read_defaults(
    custom: CustomVersion, reg: Registry, stale: bool
) -> Callable[[Obj], None] | None:
    """Defaulting on read, needed only when objects may predate the schema's defaults:
    some are stored already as this schema arrives (stale: some were before)."""
    schema = custom.schema
    if schema is None or not schema.root.defaults_below:
        return None
    return schema.apply_defaults if stale or len(reg.cache) else None
