"""The garbage collector: owner references with background, foreground and orphan deletion.

Every deletable resource the server serves (found by discovery, events excepted) gets a
shared informer; their owner-uid indexes are the dependency graph. Informer events queue
objects for one of two checks, each confirmed against the live API before acting:

- attempt to delete: an object whose owners are all gone (or being deleted in the
  foreground) is deleted; an owner deleted in the foreground loses its foregroundDeletion
  finalizer once no dependent with blockOwnerDeletion is left;
- attempt to orphan: an owner deleted with propagationPolicy=Orphan has the references to
  it removed from its dependents, then loses its orphan finalizer.
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from dataclasses import dataclass

import trio

from k8slite.client import (
    OWNER_UID_INDEX,
    ApiConnectionError,
    ApiError,
    Conflict,
    DeletedFinalStateUnknown,
    NotFound,
    SharedInformer,
    WorkQueue,
    run_workers,
)
from k8slite.client.backoff import Backoff
from k8slite.client.resource import Resource
from k8slite.component.objects import (
    Obj,
    is_deleting,
    meta,
    owner_references,
    resource_version_of,
    uid_of,
)
from k8slite.controllers.base import Controller, ControllerContext
from k8slite.controllers.discovery import ApiResource, server_resources

log = logging.getLogger(__name__)

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
# Events are never owners worth collecting for, and there are many of them.
IGNORED = frozenset({("", "events"), ("events.k8s.io", "events")})
ABSENT_CACHE_SIZE = 500
# How often discovery is read again for new kinds (upstream's GC resyncs every 30 s).
DISCOVERY_RESYNC = 30.0
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
WRITE_RETRIES = 5


@dataclass(frozen=True)
class ObjectRef:
    res: Resource
    namespace: str | None
    name: str
    uid: str

    def key(self) -> str:
        r = self.res
        return "|".join((r.group, r.version, r.plural, self.namespace or "", self.name, self.uid))

    @classmethod
    def parse(cls, key: str) -> ObjectRef:
        group, version, plural, namespace, name, uid = key.split("|")
        return cls(Resource(group, version, plural), namespace or None, name, uid)


def _group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def _waiting_for_dependents(obj: Obj) -> bool:
    return is_deleting(obj) and FOREGROUND in (meta(obj).get("finalizers") or ())


def _owner_refs(obj: Obj) -> list[Obj]:
    return list(owner_references(obj))


class GarbageCollector(Controller):
    name = "garbage-collector-controller"
    queue_name = "garbage_collector_attempt_to_delete"

    def __init__(self, ctx: ControllerContext, workers: int = 20) -> None:
        super().__init__(ctx, workers)
        self.orphan_queue: WorkQueue[str] = WorkQueue(
            "garbage_collector_attempt_to_orphan", metrics_registry=ctx.metrics_registry
        )
        self._kinds: dict[tuple[str, str], ApiResource] = {}
        self._informers: dict[Resource, tuple[ApiResource, SharedInformer]] = {}
        self._absent: OrderedDict[str, None] = OrderedDict()
        self._synced = False
        self._rediscover = trio.Event()

    async def setup(self) -> None:
        backoff = Backoff(initial=1.0, cap=30.0)
        while True:
            try:
                found = await server_resources(self.client)
                break
            except (ApiError, ApiConnectionError) as e:
                # Nothing can be collected without knowing what exists: keep asking.
                log.warning("garbage collector: discovery failed (%s); retrying", e)
                await backoff.sleep()
        self._monitor(found)
        crds = self._informers.get(CRDS)
        if crds is not None:
            # A new CRD is a new kind to watch: look again now rather than at the resync.
            crds[1].add_event_handler(
                lambda _obj: self._rediscover.set(),
                lambda _old, _new: self._rediscover.set(),
            )
        log.info("garbage collector watching %d resources", len(self._informers))

    def _monitor(self, found: list[ApiResource]) -> list[SharedInformer]:
        """Informers (with our handlers) for the kinds not watched yet; returns the new ones."""
        added = []
        for api in found:
            self._kinds[(api.group, api.kind)] = api
            if (api.group, api.resource.plural) in IGNORED or api.resource in self._informers:
                continue
            if not api.supports("list", "watch", "delete"):
                continue
            informer = self.ctx.informers.informer(api.resource)
            self._informers[api.resource] = (api, informer)
            informer.add_event_handler(
                functools.partial(self._observe, api, None),
                functools.partial(self._observe, api),
                functools.partial(self._observe_delete, api),
            )
            added.append(informer)
        return added

    async def _resync_discovery(self, nursery: trio.Nursery) -> None:
        """Watch the kinds that appear after start (custom resources), as upstream's GC
        re-reads discovery periodically."""
        while True:
            with trio.move_on_after(DISCOVERY_RESYNC):
                await self._rediscover.wait()
            self._rediscover = trio.Event()
            try:
                found = await server_resources(self.client)
            except (ApiError, ApiConnectionError) as e:
                log.warning("garbage collector: discovery failed (%s); retrying", e)
                continue
            added = self._monitor(found)
            if not added:
                continue
            log.info("garbage collector watching %d more resources", len(added))
            await self.ctx.informers.start(nursery)
            for informer in added:
                await informer.wait_synced()
            # Dependents kept because their owner's kind was unknown get another look.
            self.after_sync()

    def after_sync(self) -> None:
        # Owner checks wait for every cache: before that, "not in the cache" means nothing.
        self._synced = True
        for api, informer in self._informers.values():
            for obj in informer.list():
                if _owner_refs(obj) and self._needs_attention(obj):
                    self.queue.add(self._ref(api, obj).key())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(run_workers, self.queue, self._reconcile, self.workers)
            await nursery.start(
                run_workers, self.orphan_queue, self._reconcile_orphan, self.workers
            )
            nursery.start_soon(self._resync_discovery, nursery)
            task_status.started()

    # ------------------------------------------------------------------- graph

    def _ref(self, api: ApiResource, obj: Obj) -> ObjectRef:
        m = meta(obj)
        return ObjectRef(
            api.resource,
            m.get("namespace") if api.namespaced else None,
            m["name"],
            m.get("uid", ""),
        )

    def _cached_owner(self, ref: Obj, namespace: str | None) -> Obj | None:
        api = self._kinds.get((_group_of(ref.get("apiVersion", "")), ref.get("kind", "")))
        if api is None or api.resource not in self._informers:
            return None
        informer = self._informers[api.resource][1]
        owner = informer.get(ref.get("name", ""), namespace if api.namespaced else None)
        return owner if owner is not None and uid_of(owner) == ref.get("uid") else None

    def _dependents(self, uid: str) -> list[tuple[ApiResource, Obj]]:
        out = []
        for api, informer in self._informers.values():
            out += [(api, obj) for obj in informer.indexer.by_index(OWNER_UID_INDEX, uid)]
        return out

    def _needs_attention(self, obj: Obj) -> bool:
        """Some owner is gone from the cache, or is waiting for its dependents to go."""
        namespace = meta(obj).get("namespace")
        for ref in _owner_refs(obj):
            owner = self._cached_owner(ref, namespace)
            if owner is None or _waiting_for_dependents(owner):
                return True
        return False

    def _observe(self, api: ApiResource, old: Obj | None, new: Obj) -> None:
        if old is not None and resource_version_of(old) == resource_version_of(new):
            return
        key = self._ref(api, new).key()
        finalizers = meta(new).get("finalizers") or ()
        if is_deleting(new):
            if ORPHAN in finalizers:
                self.orphan_queue.add(key)
            if FOREGROUND in finalizers:
                self.queue.add(key)
                for dep_api, dep in self._dependents(uid_of(new)):
                    self.queue.add(self._ref(dep_api, dep).key())
        if not self._synced:
            return
        if _owner_refs(new) and self._needs_attention(new):
            self.queue.add(key)
        if old is not None:
            # An owner waiting for its dependents must look again when one lets go of it.
            kept = {(r.get("uid"), bool(r.get("blockOwnerDeletion"))) for r in _owner_refs(new)}
            for ref in _owner_refs(old):
                if (ref.get("uid"), bool(ref.get("blockOwnerDeletion"))) not in kept:
                    self._wake_owner(ref, meta(old).get("namespace"))

    def _observe_delete(self, api: ApiResource, obj: Obj | DeletedFinalStateUnknown) -> None:
        gone = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        for dep_api, dep in self._dependents(uid_of(gone)):
            self.queue.add(self._ref(dep_api, dep).key())
        for ref in _owner_refs(gone):
            self._wake_owner(ref, meta(gone).get("namespace"))

    def _wake_owner(self, ref: Obj, namespace: str | None) -> None:
        owner = self._cached_owner(ref, namespace)
        if owner is not None and _waiting_for_dependents(owner):
            api = self._kinds[(_group_of(ref.get("apiVersion", "")), ref.get("kind", ""))]
            self.queue.add(self._ref(api, owner).key())

    # --------------------------------------------------------- attempt to delete

    async def sync(self, key: str) -> float | None:
        ref = ObjectRef.parse(key)
        latest = await self._get(ref)
        if latest is None:
            return None
        finalizers = meta(latest).get("finalizers") or ()
        if is_deleting(latest):
            # Being deleted is a one-way trip; only a foreground owner needs us still.
            if FOREGROUND in finalizers:
                await self._process_deleting_dependents(ref, latest)
            return None
        owners = _owner_refs(latest)
        if not owners:
            return None
        solid: list[Obj] = []
        dangling: list[Obj] = []
        waiting: list[Obj] = []
        for owner in owners:
            state = await self._owner_state(owner, ref.namespace)
            {"solid": solid, "dangling": dangling, "waiting": waiting}[state].append(owner)
        if solid:
            if dangling or waiting:
                gone = {o.get("uid") for o in dangling + waiting}
                await self._set_owner_refs(
                    ref, latest, [o for o in owners if o.get("uid") not in gone]
                )
            return None
        if waiting and self._dependents(ref.uid):
            if any(_waiting_for_dependents(dep) for _, dep in self._dependents(ref.uid)):
                # A dependent waits for us while we wait for our owner: unblock the owner
                # or the two would wait for each other for ever.
                unblocked = [{**o, "blockOwnerDeletion": False} for o in owners]
                await self._set_owner_refs(ref, latest, unblocked)
            await self._delete(ref, "Foreground")
            return None
        if ORPHAN in finalizers:
            policy = "Orphan"
        elif FOREGROUND in finalizers:
            policy = "Foreground"
        else:
            policy = "Background"
        await self._delete(ref, policy)
        return None

    async def _process_deleting_dependents(self, ref: ObjectRef, owner: Obj) -> None:
        blocking = []
        for dep_api, dep in self._dependents(ref.uid):
            for dep_ref in _owner_refs(dep):
                if dep_ref.get("uid") == ref.uid and dep_ref.get("blockOwnerDeletion"):
                    blocking.append((dep_api, dep))
                    break
        if not blocking:
            await self._remove_finalizer(ref, FOREGROUND)
            return
        for dep_api, dep in blocking:
            if not _waiting_for_dependents(dep):
                self.queue.add(self._ref(dep_api, dep).key())

    async def _owner_state(self, owner: Obj, namespace: str | None) -> str:
        """solid (exists), dangling (gone) or waiting (deleting its dependents first)."""
        uid = str(owner.get("uid", ""))
        if uid in self._absent:
            return "dangling"
        api = self._kinds.get((_group_of(owner.get("apiVersion", "")), owner.get("kind", "")))
        if api is None:
            log.warning(
                "owner kind %s/%s is not served; keeping the dependent",
                owner.get("apiVersion"),
                owner.get("kind"),
            )
            return "solid"
        cached = self._cached_owner(owner, namespace)
        if cached is not None and not _waiting_for_dependents(cached):
            return "solid"
        # The cache may lag behind a new owner: only the live API may say it is gone.
        live = await self._get(
            ObjectRef(
                api.resource, namespace if api.namespaced else None, str(owner.get("name", "")), uid
            )
        )
        if live is None:
            self._absent[uid] = None
            if len(self._absent) > ABSENT_CACHE_SIZE:
                self._absent.popitem(last=False)
            return "dangling"
        return "waiting" if _waiting_for_dependents(live) else "solid"

    # -------------------------------------------------------- attempt to orphan

    async def _reconcile_orphan(self, key: str) -> float | None:
        try:
            return await self._orphan(key)
        except Exception:
            self._errors.inc()
            raise

    async def _orphan(self, key: str) -> float | None:
        ref = ObjectRef.parse(key)
        latest = await self._get(ref)
        if (
            latest is None
            or not is_deleting(latest)
            or ORPHAN not in (meta(latest).get("finalizers") or ())
        ):
            return None
        for dep_api, dep in self._dependents(ref.uid):
            dep_ref = self._ref(dep_api, dep)
            fresh = await self._get(dep_ref)
            if fresh is not None:
                refs = [o for o in _owner_refs(fresh) if o.get("uid") != ref.uid]
                await self._set_owner_refs(dep_ref, fresh, refs)
        await self._remove_finalizer(ref, ORPHAN)
        return None

    # ------------------------------------------------------------------ writes

    async def _get(self, ref: ObjectRef) -> Obj | None:
        """The live object, or None if it is gone (or replaced by a namesake)."""
        try:
            obj = await self.client.get(ref.res, ref.name, namespace=ref.namespace)
        except NotFound:
            return None
        return obj if uid_of(obj) == ref.uid else None

    async def _set_owner_refs(self, ref: ObjectRef, latest: Obj, refs: list[Obj]) -> Obj | None:
        """Write ownerReferences, re-reading on conflicts; None if the object went away."""
        current: Obj | None = latest
        for _ in range(WRITE_RETRIES):
            if current is None:
                return None
            if _owner_refs(current) == refs:
                return current
            patch = {
                "metadata": {
                    "resourceVersion": meta(current).get("resourceVersion"),
                    "ownerReferences": refs or None,
                }
            }
            try:
                return await self.client.patch(ref.res, ref.name, patch, namespace=ref.namespace)
            except NotFound:
                return None
            except Conflict:
                current = await self._get(ref)
                if current is not None:
                    # Keep whatever changed meanwhile; drop only what we meant to drop.
                    wanted = {o.get("uid") for o in refs}
                    dropped = {o.get("uid") for o in _owner_refs(latest)} - wanted
                    refs = [o for o in _owner_refs(current) if o.get("uid") not in dropped]
        raise Conflict(
            {
                "reason": "Conflict",
                "code": 409,
                "message": f"ownerReferences of {ref.name} kept changing",
            }
        )

    async def _remove_finalizer(self, ref: ObjectRef, finalizer: str) -> None:
        for _ in range(WRITE_RETRIES):
            current = await self._get(ref)
            if current is None:
                return
            finalizers = list(meta(current).get("finalizers") or ())
            if finalizer not in finalizers:
                return
            finalizers.remove(finalizer)
            patch = {
                "metadata": {
                    "resourceVersion": meta(current).get("resourceVersion"),
                    "finalizers": finalizers,
                }
            }
            try:
                await self.client.patch(ref.res, ref.name, patch, namespace=ref.namespace)
                return
            except NotFound:
                return
            except Conflict:
                continue
        raise Conflict(
            {
                "reason": "Conflict",
                "code": 409,
                "message": f"finalizers of {ref.name} kept changing",
            }
        )

    async def _delete(self, ref: ObjectRef, policy: str) -> None:
        log.info(
            "garbage collector deleting %s %s/%s (%s)",
            ref.res.plural,
            ref.namespace or "",
            ref.name,
            policy,
        )
        try:
            await self.client.delete(
                ref.res,
                ref.name,
                namespace=ref.namespace,
                propagation_policy=policy,
                preconditions={"uid": ref.uid},
            )
        except (NotFound, Conflict):
            pass  # gone already, or a namesake we must not touch
