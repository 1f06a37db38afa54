"""Generic REST semantics for one resource type: create, update, delete over store and cache.

HTTP never reaches this module: it takes and returns plain dicts and JSON bytes and raises
ApiError. Reads come from the watch cache; writes are compare-and-swap transactions on the
store, whose subscribers update the cache before the write is acknowledged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from k8slite._native import WatchCache, dumps, loads
from k8slite.api import errors, meta
from k8slite.api.resources import ResourceType
from k8slite.api.strategy import Obj, Strategy, strategy_for
from k8slite.api.validation import FieldErrors
from k8slite.apiserver import admission
from k8slite.component import objects
from k8slite.storage import KeyExists, KeyNotFound, Op, RevisionConflict, Store

_META_ORDER = (
    "name",
    "generateName",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
)
# How often an update retries when another writer keeps winning the race for a key.
_MAX_UPDATE_RETRIES = 20
# Finalizers the registry adds for propagationPolicy; the garbage collector removes them.
ORPHAN_FINALIZER = "orphan"
FOREGROUND_FINALIZER = "foregroundDeletion"

# Mutates the current object into the desired one; None means "it does not exist".
Mutator = Callable[[Obj | None], Awaitable[Obj] | Obj]
# Called with (new, old) once a write is defaulted and validated, before it is compared and
# stored; records managedFields (old is None on create).
Tracker = Callable[[Obj, Obj | None], None]
# How often a create retries when a value an allocator picked was taken meanwhile.
_MAX_ALLOCATION_RETRIES = 5


class Allocator(Protocol):
    """Assigns fields backed by claims of their own keys (service IPs and node ports).

    Each hook may change the object and returns the ops that claim or release keys; the
    registry commits them in the same transaction as the object.
    """

    def on_create(self, obj: Obj) -> list[Op]: ...

    def on_update(self, new: Obj, old: Obj) -> list[Op]: ...

    def on_remove(self, obj: Obj) -> list[Op]: ...


def normalize(obj: Obj, rt: ResourceType, api_version: str | None = None) -> Obj:
    """kind and apiVersion (the stored one) first, metadata in upstream's order, status last."""
    out: Obj = {"kind": rt.kind, "apiVersion": api_version or rt.api_version}
    m = objects.meta(obj)
    ordered = {k: m[k] for k in _META_ORDER if k in m}
    ordered.update((k, v) for k, v in m.items() if k not in ordered)
    out["metadata"] = ordered
    for k, v in obj.items():
        if k not in ("kind", "apiVersion", "metadata", "status"):
            out[k] = v
    if "status" in obj:
        out["status"] = obj["status"]
    return out


def encoder(obj: Obj) -> Callable[[int], bytes]:
    """Stamp the commit revision into the object and encode it, once."""

    def encode(rv: int) -> bytes:
        obj["metadata"]["resourceVersion"] = str(rv)
        return dumps(obj)

    return encode


@dataclass
class DeleteOptions:
    grace_period_seconds: int | None = None
    propagation_policy: str | None = None
    precondition_uid: str | None = None
    precondition_rv: str | None = None
    dry_run: bool = False


class Registry:
    """Storage-backed REST operations for one ResourceType."""

    def __init__(
        self,
        rt: ResourceType,
        store: Store,
        cache: WatchCache,
        namespace_state: Callable[[str], str | None],
    ) -> None:
        self.rt = rt
        self.store = store
        self.cache = cache
        self.strategy: Strategy = strategy_for(rt.group, rt.kind, rt.version)
        # Returns a namespace's phase ("Active", "Terminating") or None if it does not exist.
        self._namespace_state = namespace_state
        self.changed = trio.Event()
        self.allocator: Allocator | None = None
        # Mutating admission of creates (upstream's plugins, e.g. ServiceAccount for pods):
        # may change the object or refuse it with an ApiError.
        self.admit: Callable[[str | None, Obj], Awaitable[None]] | None = None
        # The apiVersion objects are stored in, when it is not this registry's own (a
        # custom resource served in several versions keeps its storage version's).
        self.stored_api_version: str | None = None
        # Applied to objects as they are read (custom resources stored before their schema
        # gained defaults, a built-in kind's other versions); None for every other kind.
        self.on_read: Callable[[Obj], None] | None = None
        # Turns the stored object into this version's shape before an update's mutator sees
        # it (a patch or apply is of the served version); None when they are the same.
        self.to_served: Callable[[Obj], None] | None = None
        # Seconds a stored object of this kind lives after its last write (upstream's
        # --event-ttl for Events); None: until deleted. Only etcd honours it (a lease).
        self.ttl: int | None = None
        # Mutating admission of this kind (e.g. DefaultStorageClass): runs after defaulting,
        # before validation, on creates (old is None) and main-resource updates.
        self.admission: Callable[[Obj, Obj | None], None] | None = None

    # ---------------------------------------------------------------- helpers

    def notify(self) -> None:
        """Wake every watcher of this resource (called after each committed change)."""
        self.changed.set()
        self.changed = trio.Event()

    def key(self, namespace: str | None, name: str) -> str:
        return self.rt.key(namespace, name)

    def get_bytes(self, namespace: str | None, name: str) -> tuple[bytes, int]:
        hit = self.cache.get(self.key(namespace, name))
        if hit is None:
            raise errors.not_found(self.rt.plural, name, self.rt.group)
        return hit

    def get(self, namespace: str | None, name: str) -> Obj:
        return loads(self.get_bytes(namespace, name)[0])

    def _check_namespace_for_create(self, namespace: str | None, name: str) -> None:
        if not self.rt.namespaced or namespace is None:
            return
        phase = self._namespace_state(namespace)
        if phase is None:
            raise errors.not_found("namespaces", namespace)
        if phase == "Terminating":
            raise errors.ApiError(
                403,
                "Forbidden",
                f'{self.rt.plural} "{name}" is forbidden: unable to create new content in '
                f"namespace {namespace} because it is being terminated",
                {
                    "name": name,
                    "kind": self.rt.plural,
                    "causes": [
                        {
                            "reason": "NamespaceTerminating",
                            "message": f"namespace {namespace} is being terminated",
                            "field": "metadata.namespace",
                        }
                    ],
                },
            )

    def _validate(self, obj: Obj, old: Obj | None) -> None:
        errs = FieldErrors()
        if old is None:
            self.strategy.validate(obj, errs, self.rt.namespaced)
        else:
            self.strategy.validate_update(obj, old, errs, self.rt.namespaced)
        name = obj.get("metadata", {}).get("name") or ""
        errs.raise_if_any(self.rt.kind, name, self.rt.group)

    async def _admission(
        self,
        namespace: str | None,
        operation: str,
        obj: Obj,
        old: Obj | None,
        subresource: str | None,
        dry_run: bool,
    ) -> Obj:
        """The request's mutating then validating admission (webhooks) of a prepared object.

        What mutation changed is defaulted and validated again, as upstream validates only
        after mutating admission; system metadata keeps the server's values.
        """
        chain = admission.current()
        if chain is None:
            return obj
        mutated = await chain.mutate(self.rt, operation, obj, old, subresource, dry_run)
        if mutated is not obj:
            if not isinstance(mutated.get("metadata"), dict):
                mutated["metadata"] = {}
            m, system = mutated["metadata"], obj["metadata"]
            for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp"):
                if key in system:
                    m[key] = system[key]
            if subresource is None:
                self.strategy.default(mutated)
                self._validate(mutated, old)
            elif subresource == "status" and old is not None:
                errs = FieldErrors()
                self.strategy.validate_status(mutated, old, errs)
                errs.raise_if_any(self.rt.kind, str(m.get("name") or ""), self.rt.group)
            mutated = normalize(mutated, self.rt, self.stored_api_version)
        await chain.validate(self.rt, operation, mutated, old, subresource, dry_run)
        return mutated

    # ----------------------------------------------------------------- create

    def prepare_new(self, namespace: str | None, obj: Obj, track: Tracker | None = None) -> Obj:
        """Defaulting, system metadata and validation of an object about to be created."""
        m = obj.setdefault("metadata", {})
        if not isinstance(m, dict):
            raise errors.bad_request("metadata must be an object")
        if self.rt.namespaced:
            m["namespace"] = namespace
        else:
            m.pop("namespace", None)
        if not m.get("name") and m.get("generateName"):
            m["name"] = meta.generate_name(m["generateName"])
        for system in (
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ):
            m.pop(system, None)
        m["uid"] = meta.new_uid()
        m["resourceVersion"] = ""  # holds its place in the key order; set at commit
        m["creationTimestamp"] = meta.now()
        if self.strategy.tracks_generation:
            m["generation"] = 1
        else:
            m.pop("generation", None)
        self.strategy.default(obj)
        if self.admission is not None:
            self.admission(obj, None)
        self.strategy.prepare_create(obj)
        if "status" in self.rt.subresources and self.strategy.creates_status:
            obj.setdefault("status", {})
        self._validate(obj, None)
        if track is not None:
            track(obj, None)
        return normalize(obj, self.rt, self.stored_api_version)

    async def create(
        self, namespace: str | None, obj: Obj, dry_run: bool = False, track: Tracker | None = None
    ) -> bytes:
        if self.admit is not None and isinstance(obj, dict):
            # NamespaceLifecycle comes first among upstream's plugins.
            m = obj.get("metadata")
            self._check_namespace_for_create(
                namespace, str(m.get("name") or "") if isinstance(m, dict) else ""
            )
            await self.admit(namespace, obj)
        obj = self.prepare_new(namespace, obj, track)
        obj = await self._admission(namespace, "CREATE", obj, None, None, dry_run)
        name = obj["metadata"]["name"]
        self._check_namespace_for_create(namespace, name)
        key = self.key(namespace, name)
        if self.cache.get(key) is not None:
            raise errors.already_exists(self.rt.plural, name, self.rt.group)
        for _ in range(_MAX_ALLOCATION_RETRIES):
            attempt = meta.clone(obj) if self.allocator else obj
            claims = self.allocator.on_create(attempt) if self.allocator else []
            if dry_run:
                attempt["metadata"].pop("resourceVersion", None)
                return dumps(attempt)
            try:
                _, datas = await self.store.txn(
                    [Op("create", key, encoder(attempt), ttl=self.ttl), *claims]
                )
            except KeyExists as e:
                if e.key == key:
                    raise errors.already_exists(self.rt.plural, name, self.rt.group) from None
                continue  # a value picked for us was claimed meanwhile: pick again
            return datas[0]
        raise errors.internal("could not allocate the object's values; try again")

    # ----------------------------------------------------------------- update

    async def update(
        self,
        namespace: str | None,
        name: str,
        mutate: Mutator,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        allow_create: bool | None = None,
        track: Tracker | None = None,
        copies: bool = False,
    ) -> tuple[bytes, bool]:
        """Read, mutate, validate and compare-and-swap until it sticks (GuaranteedUpdate).

        Returns the stored bytes and whether the object was created. The mutator raises
        ApiError to refuse (for example a stale resourceVersion in a PUT body). A mutator
        that never changes its argument in place but returns a changed copy says
        `copies=True`: the stored bytes are then decoded once, not twice.
        """
        key = self.key(namespace, name)
        if allow_create is None:
            allow_create = self.strategy.allow_create_on_update and subresource is None
        for _ in range(_MAX_UPDATE_RETRIES):
            current = await self.store.get(key)
            if current is None:
                if not allow_create:
                    raise errors.not_found(self.rt.plural, name, self.rt.group)
                desired = await _call(mutate, None)
                _check_name(desired, name)
                return await self.create(namespace, desired, dry_run, track), True
            old = loads(current[0])
            if copies and self.to_served is None:
                served = old
            else:
                # A second decode of the stored bytes is several times cheaper than deepcopy.
                served = loads(current[0])
                if self.to_served is not None:
                    self.to_served(served)
            desired = await _call(mutate, served)
            new = self._prepare_update(namespace, name, desired, old, subresource, track)
            new = await self._admission(namespace, "UPDATE", new, old, subresource, dry_run)
            removing = self._ready_to_remove(new)
            if removing:
                ops = [Op("delete", key, encoder(new), current[1]), *self._releases(new)]
            else:
                claims = self.allocator.on_update(new, old) if self.allocator else []
                ops = [Op("update", key, encoder(new), current[1], self.ttl), *claims]
            if not removing and _same(new, old):
                return current[0], False
            if dry_run:
                return dumps(new), False
            try:
                _, datas = await self.store.txn(ops)
            except (RevisionConflict, KeyExists):
                continue
            return datas[0], False
        raise errors.conflict(self.rt.plural, name, self.rt.group)

    def _prepare_update(
        self,
        namespace: str | None,
        name: str,
        desired: Obj,
        old: Obj,
        subresource: str | None,
        track: Tracker | None = None,
    ) -> Obj:
        if not isinstance(desired, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        m = desired.get("metadata")
        if not isinstance(m, dict):
            desired["metadata"] = m = {}
        _check_name(desired, name)
        if self.rt.namespaced and m.get("namespace") not in (None, "", namespace):
            raise errors.bad_request(
                "the namespace of the provided object does not match the "
                "namespace sent on the request"
            )
        old_meta = old["metadata"]
        if subresource == "status":
            new = self.strategy.prepare_status_update(desired, old)
            errs = FieldErrors()
            self.strategy.validate_status(new, old, errs)
            errs.raise_if_any(self.rt.kind, name, self.rt.group)
        elif subresource is not None:
            new = self.strategy.prepare_subresource(subresource, desired, old)
        else:
            new = desired
            if m.get("uid") not in (None, "", old_meta.get("uid")):
                raise errors.conflict(
                    self.rt.plural,
                    name,
                    self.rt.group,
                    f"Precondition failed: UID in precondition: "
                    f"{old_meta.get('uid')}, UID in object meta: {m.get('uid')}",
                )
            # System-owned metadata keeps its stored value whatever the client sent.
            for system in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ):
                if system in old_meta:
                    m[system] = old_meta[system]
                else:
                    m.pop(system, None)
            m["name"] = name
            if self.rt.namespaced:
                m["namespace"] = namespace
            self.strategy.default(new)
            self.strategy.prepare_update(new, old)
            if self.admission is not None:
                self.admission(new, old)
            if old_meta.get("deletionTimestamp"):
                # A terminating object may only lose finalizers, never gain them.
                added = set(m.get("finalizers") or ()) - set(old_meta.get("finalizers") or ())
                if added:
                    raise errors.invalid(
                        self.rt.kind,
                        name,
                        [
                            {
                                "reason": "FieldValueForbidden",
                                "field": "metadata.finalizers",
                                "message": "Forbidden: no new finalizers can be added if the "
                                "object is being deleted, found new finalizers "
                                + str(sorted(added)),
                            }
                        ],
                        self.rt.group,
                    )
            self._validate(new, old)
            if self.strategy.tracks_generation and self.strategy.spec_changed(new, old):
                m["generation"] = int(old_meta.get("generation", 1)) + 1
        if track is not None:
            track(new, old)
        new = normalize(new, self.rt, self.stored_api_version)
        new["metadata"]["resourceVersion"] = old_meta.get("resourceVersion")
        return new

    def _releases(self, obj: Obj) -> list[Op]:
        return self.allocator.on_remove(obj) if self.allocator else []

    def _ready_to_remove(self, obj: Obj) -> bool:
        m = obj["metadata"]
        if not m.get("deletionTimestamp") or m.get("finalizers"):
            return False
        if self.strategy.blocks_removal(obj):
            return False
        return not m.get("deletionGracePeriodSeconds")

    # ----------------------------------------------------------------- delete

    async def delete(
        self, namespace: str | None, name: str, opts: DeleteOptions
    ) -> tuple[bytes, int]:
        """Delete now, or mark for deletion (grace period, finalizers); returns body and code."""
        key = self.key(namespace, name)
        for _ in range(_MAX_UPDATE_RETRIES):
            current = await self.store.get(key)
            if current is None:
                raise errors.not_found(self.rt.plural, name, self.rt.group)
            obj = loads(current[0])
            m = obj["metadata"]
            self._check_preconditions(name, m, opts)
            chain = admission.current()
            if chain is not None:
                await chain.validate(self.rt, "DELETE", None, obj, None, opts.dry_run)
            self.strategy.check_delete(obj)
            self._mark_deleting(obj, opts)
            removed = self._ready_to_remove(obj)
            if opts.dry_run:
                return self._delete_answer(obj, removed, dumps(obj), opts)
            if _same(obj, loads(current[0])):
                return self._delete_answer(obj, False, current[0], opts)
            if removed:
                op = Op("delete", key, encoder(obj), current[1])
            else:
                op = Op("update", key, encoder(obj), current[1], self.ttl)
            extra = self._releases(obj) if removed else []
            try:
                _, datas = await self.store.txn([op, *extra])
            except (RevisionConflict, KeyNotFound):
                continue
            return self._delete_answer(obj, removed, datas[0], opts)
        raise errors.conflict(self.rt.plural, name, self.rt.group)

    def _check_preconditions(self, name: str, m: Obj, opts: DeleteOptions) -> None:
        if opts.precondition_uid and opts.precondition_uid != m.get("uid"):
            raise errors.conflict(
                self.rt.plural,
                name,
                self.rt.group,
                f"Precondition failed: UID in precondition: {opts.precondition_uid}, "
                f"UID in object meta: {m.get('uid')}",
            )
        if opts.precondition_rv and opts.precondition_rv != m.get("resourceVersion"):
            raise errors.conflict(
                self.rt.plural,
                name,
                self.rt.group,
                f"Precondition failed: ResourceVersion in precondition: "
                f"{opts.precondition_rv}, ResourceVersion in object meta: "
                f"{m.get('resourceVersion')}",
            )

    def _mark_deleting(self, obj: Obj, opts: DeleteOptions) -> None:
        """Set deletionTimestamp, the grace period and the propagation finalizers."""
        m = obj["metadata"]
        finalizers = list(m.get("finalizers") or ())
        policy = opts.propagation_policy
        if policy == "Orphan" and ORPHAN_FINALIZER not in finalizers:
            finalizers.append(ORPHAN_FINALIZER)
        elif policy == "Foreground" and FOREGROUND_FINALIZER not in finalizers:
            finalizers.append(FOREGROUND_FINALIZER)
        if finalizers:
            m["finalizers"] = finalizers
        grace = self.strategy.grace_period(obj, opts.grace_period_seconds)
        previous = m.get("deletionGracePeriodSeconds")
        if m.get("deletionTimestamp") and previous is not None and grace >= previous:
            grace = previous  # a repeated delete may shorten the grace period, never extend it
        if not m.get("deletionTimestamp") or grace != previous:
            deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=grace)
            m["deletionTimestamp"] = meta.format_time(deadline)
            m["deletionGracePeriodSeconds"] = grace
        self.strategy.on_delete(obj)

    def _delete_answer(
        self, obj: Obj, removed: bool, data: bytes, opts: DeleteOptions
    ) -> tuple[bytes, int]:
        if removed and not self.strategy.return_deleted_object:
            return dumps(self.success_status(obj)), 200
        code = 202 if not removed and opts.propagation_policy == "Foreground" else 200
        return data, code

    def success_status(self, obj: Obj) -> Obj:
        details: Obj = {"name": obj["metadata"]["name"]}
        if self.rt.group:
            details["group"] = self.rt.group
        details["kind"] = self.rt.plural
        details["uid"] = obj["metadata"].get("uid")
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        }


def _check_name(obj: Obj, name: str) -> None:
    body_name = objects.meta(obj).get("name")
    if body_name and body_name != name:
        raise errors.bad_request(
            f"the name of the object ({body_name}) does not match the name on the URL ({name})"
        )
    obj.setdefault("metadata", {})["name"] = name


def _same(new: Obj, old: Obj) -> bool:
    """Equal ignoring resourceVersion: such an update is a no-op and writes nothing."""
    a, b = new["metadata"].get("resourceVersion"), old["metadata"].get("resourceVersion")
    new["metadata"]["resourceVersion"] = b
    equal = new == old
    new["metadata"]["resourceVersion"] = a
    return equal


async def _call(mutate: Mutator, current: Obj | None) -> Obj:
    result = mutate(current)
    if isinstance(result, dict):
        return result
    return await result  # type: ignore[no-any-return,misc]
