"""Shared informers: a reflector-fed indexed cache with event handlers, one per resource."""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from k8slite.client.reflector import Reflector
from k8slite.client.resource import Resource
from k8slite.client.rest import ApiClient, Selector, selector_text
from k8slite.client.store import (
    NAMESPACE_INDEX,
    DeletedFinalStateUnknown,
    Indexer,
    IndexFunc,
    object_key,
)
from k8slite.component.objects import Obj, resource_version_of

log = logging.getLogger(__name__)

AddHandler = Callable[[Obj], None]
UpdateHandler = Callable[[Obj, Obj], None]
DeleteHandler = Callable[[Obj | DeletedFinalStateUnknown], None]
# client-go's TransformFunc: changes (in place) each object before the cache keeps it.
Transform = Callable[[Obj], None]


def strip_managed_fields(obj: Obj) -> None:
    """Drop metadata.managedFields, as kube-controller-manager's and kube-scheduler's
    informers do. They are nearly half a running pod's JSON (benches/harness.py's
    realistic pod with a kubelet's status: 4,274 bytes, 2,350 without) and no controller
    reads them. Writes from such a cache are safe: an update that sends no managedFields
    keeps the stored ones."""
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("managedFields", None)


def _rv(obj: Obj) -> str:
    return resource_version_of(obj)


@dataclass(eq=False)
class EventHandler:
    """One registered set of callbacks. Callbacks run inline in the informer's task, so keep
    them quick (typically: put a key on a workqueue)."""

    on_add: AddHandler | None = None
    on_update: UpdateHandler | None = None
    on_delete: DeleteHandler | None = None
    # Re-deliver every cached object as on_update(obj, obj) this often (0: never).
    resync_period: float = 0.0
    next_resync: float | None = field(default=None, repr=False)

    def added(self, obj: Obj) -> None:
        if self.on_add is not None:
            self.on_add(obj)

    def updated(self, old: Obj, new: Obj) -> None:
        if self.on_update is not None:
            self.on_update(old, new)

    def deleted(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        if self.on_delete is not None:
            self.on_delete(obj)


class SharedInformer:
    """Lists and watches one resource into an Indexer and tells handlers what changed.

    Run it as a task (`await nursery.start(informer.run)`), or through a
    SharedInformerFactory. Objects in the cache are shared: copy before modifying.
    """

    def __init__(
        self,
        client: ApiClient,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: Selector = None,
        field_selector: str | None = None,
        resync_period: float = 0.0,
        indexers: dict[str, IndexFunc] | None = None,
        page_size: int = 500,
        transform: Transform | None = None,
    ) -> None:
        self.res = res
        self.namespace = namespace
        self.resync_period = resync_period
        self.transform = transform
        self.indexer = Indexer(indexers)
        self.reflector = Reflector(
            client,
            res,
            self,
            namespace=namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            page_size=page_size,
        )
        self._handlers: list[EventHandler] = []
        self._synced = trio.Event()
        self._handlers_changed = trio.Event()
        self._running = False

    def __repr__(self) -> str:
        return f"<SharedInformer {self.res}{' in ' + self.namespace if self.namespace else ''}>"

    # ---------------------------------------------------------------- handlers

    def add_event_handler(
        self,
        on_add: AddHandler | None = None,
        on_update: UpdateHandler | None = None,
        on_delete: DeleteHandler | None = None,
        *,
        resync_period: float | None = None,
    ) -> EventHandler:
        """Register callbacks; a handler added late first gets on_add for everything cached."""
        handler = EventHandler(
            on_add,
            on_update,
            on_delete,
            self.resync_period if resync_period is None else resync_period,
        )
        self._handlers.append(handler)
        for obj in self.indexer.list():
            self._call(handler.added, obj)
        self._wake_resync()
        return handler

    def add_indexers(self, indexers: dict[str, IndexFunc]) -> None:
        self.indexer.add_indexers(indexers)

    # -------------------------------------------------------------------- state

    def has_synced(self) -> bool:
        """True once the first list has been delivered to the cache and the handlers."""
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    @property
    def last_sync_resource_version(self) -> str:
        return self.reflector.last_sync_resource_version

    def get(self, name: str, namespace: str | None = None) -> Obj | None:
        """The cached object, or None."""
        return self.indexer.get_by_name(name, namespace)

    def list(self, namespace: str | None = None) -> builtins.list[Obj]:
        """Cached objects, all or of one namespace."""
        if namespace is None:
            return self.indexer.list()
        return self.indexer.by_index(NAMESPACE_INDEX, namespace)

    # -------------------------------------------------------------------- sink

    def replace(self, items: builtins.list[Obj], resource_version: str) -> None:
        """A (re)list's result: diff it against the cache and tell the handlers."""
        if self.transform is not None:
            for obj in items:
                self.transform(obj)
        old = {key: self.indexer.get(key) for key in self.indexer.keys()}  # noqa: SIM118
        self.indexer.replace(items)
        for obj in items:
            previous = old.pop(object_key(obj), None)
            if previous is None:
                self._notify_add(obj)
            elif _rv(previous) != _rv(obj):
                self._notify_update(previous, obj)
        # Still in `old`: deleted while we were not watching; the final state is unknown.
        for key, previous in old.items():
            assert previous is not None
            self._notify_delete(DeletedFinalStateUnknown(key, previous))
        if not self._synced.is_set():
            log.debug("%r synced at resourceVersion %s", self, resource_version)
            self._synced.set()

    def apply(self, event_type: str, obj: Obj) -> None:
        """One watch event."""
        if self.transform is not None:
            self.transform(obj)
        if event_type == "DELETED":
            self.indexer.delete(obj)
            self._notify_delete(obj)
            return
        previous = self.indexer.add(obj)
        if previous is None:
            self._notify_add(obj)
        else:
            self._notify_update(previous, obj)

    # Handlers are copied before each delivery: a callback may add or remove handlers.
    def _notify_add(self, obj: Obj) -> None:
        for handler in builtins.list(self._handlers):
            self._call(handler.added, obj)

    def _notify_update(self, old: Obj, new: Obj) -> None:
        for handler in builtins.list(self._handlers):
            self._call(handler.updated, old, new)

    def _notify_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        for handler in builtins.list(self._handlers):
            self._call(handler.deleted, obj)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            # One faulty handler must not stall the cache or starve the other handlers.
            log.exception("%r: event handler failed", self)

    # --------------------------------------------------------------------- run

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the cache in step with the server until cancelled."""
        if self._running:
            raise RuntimeError(f"{self!r} is already running")
        self._running = True
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.reflector.run)
                nursery.start_soon(self._resync_loop)
                task_status.started()
        finally:
            self._running = False

    def _wake_resync(self) -> None:
        self._handlers_changed.set()
        self._handlers_changed = trio.Event()

    async def _resync_loop(self) -> None:
        await self._synced.wait()
        while True:
            now = trio.current_time()
            deadline = float("inf")
            for handler in builtins.list(self._handlers):
                if handler.resync_period <= 0:
                    continue
                if handler.next_resync is None:
                    handler.next_resync = now + handler.resync_period
                elif handler.next_resync <= now:
                    for obj in self.indexer.list():
                        self._call(handler.updated, obj, obj)
                    handler.next_resync = now + handler.resync_period
                deadline = min(deadline, handler.next_resync)
            with trio.move_on_at(deadline):
                await self._handlers_changed.wait()


@dataclass(frozen=True)
class _InformerKey:
    res: Resource
    namespace: str | None
    label_selector: str | None
    field_selector: str | None


class SharedInformerFactory:
    """One informer per (resource, namespace, selectors) for a whole process.

    Components ask it for informers while wiring up, then `await factory.start(nursery)` and
    `await factory.wait_for_cache_sync()` before their workers start.
    """

    def __init__(
        self,
        client: ApiClient,
        *,
        resync_period: float = 0.0,
        namespace: str | None = None,
        page_size: int = 500,
        transform: Transform | None = None,
    ) -> None:
        self.client = client
        self.resync_period = resync_period
        self.namespace = namespace
        self.page_size = page_size
        self.transform = transform  # for every informer of the factory
        self._informers: dict[_InformerKey, SharedInformer] = {}
        self._started: set[_InformerKey] = set()

    def informer(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: Selector = None,
        field_selector: str | None = None,
        indexers: dict[str, IndexFunc] | None = None,
    ) -> SharedInformer:
        """The shared informer for this resource and scope, made on first request.

        `indexers` are added to the built-in ones (namespace, ownerUID, nodeName).
        """
        key = _InformerKey(
            res,
            namespace or self.namespace,
            selector_text(label_selector),
            field_selector or None,
        )
        informer = self._informers.get(key)
        if informer is None:
            informer = SharedInformer(
                self.client,
                res,
                namespace=key.namespace,
                label_selector=key.label_selector,
                field_selector=key.field_selector,
                resync_period=self.resync_period,
                page_size=self.page_size,
                transform=self.transform,
            )
            self._informers[key] = informer
        if indexers:
            informer.add_indexers(indexers)
        return informer

    @property
    def informers(self) -> builtins.list[SharedInformer]:
        return builtins.list(self._informers.values())

    async def start(self, nursery: trio.Nursery) -> None:
        """Start every informer not yet running as a task of `nursery` (callable again)."""
        for key, informer in builtins.list(self._informers.items()):
            if key not in self._started:
                self._started.add(key)
                await nursery.start(informer.run)

    async def wait_for_cache_sync(self) -> None:
        """Wait until every started informer has synced (bound it with trio.fail_after)."""
        for key in builtins.list(self._started):
            await self._informers[key].wait_synced()
