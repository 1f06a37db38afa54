"""The dashboard's watches and their fan-out to browsers.

One shared informer per kind (list, then watch, with the user's credentials) keeps a cache;
each browser stream subscribes to the kinds its page shows and gets a snapshot of them, then
the changes as they happen. A stream that falls too far behind is ended rather than let grow
without bound: the browser's EventSource reconnects and starts again from a fresh snapshot.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import trio

from k8slite.client import ApiClient, SharedInformer, SharedInformerFactory
from k8slite.client.resource import (
    DAEMONSETS,
    DEPLOYMENTS,
    EVENTS,
    JOBS,
    NODES,
    PODS,
    REPLICASETS,
    STATEFULSETS,
    Resource,
)
from k8slite.client.store import DeletedFinalStateUnknown, object_key
from k8slite.component.objects import Obj
from k8slite.dashboard.trim import TRIMMERS

log = logging.getLogger(__name__)

RESOURCES: dict[str, Resource] = {
    "nodes": NODES,
    "pods": PODS,
    "deployments": DEPLOYMENTS,
    "replicasets": REPLICASETS,
    "statefulsets": STATEFULSETS,
    "daemonsets": DAEMONSETS,
    "jobs": JOBS,
    "events": EVENTS,
}
PAGE_SIZE = 5_000
# Changes a stream may have queued before it is ended (the browser then starts over).
QUEUE = 20_000
# Changes sent in one server-sent event at most: bursts (a rollout, a relist) batch up.
BATCH = 2_000
# A comment line this often lets a dead connection be noticed and keeps proxies from timing out.
KEEPALIVE = 15.0


@dataclass(eq=False)
class _Subscriber:
    kinds: frozenset[str]
    send: trio.MemorySendChannel[dict[str, Any]]
    overflowed: bool = field(default=False)


def sse(event: str, data: Any) -> bytes:
    """One server-sent event; JSON never holds a raw newline, so one data line suffices."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Hub:
    def __init__(self, client: ApiClient, kinds: Iterable[str] = RESOURCES) -> None:
        self.client = client
        # Big pages: fewer round trips for the first list of a large cluster.
        self.factory = SharedInformerFactory(client, page_size=PAGE_SIZE)
        self.informers: dict[str, SharedInformer] = {}
        self._subscribers: set[_Subscriber] = set()
        for kind in kinds:
            informer = self.factory.informer(RESOURCES[kind])
            informer.add_event_handler(
                on_add=functools.partial(self._changed, kind),
                on_update=functools.partial(self._updated, kind),
                on_delete=functools.partial(self._deleted, kind),
            )
            self.informers[kind] = informer

    async def start(self, nursery: trio.Nursery) -> None:
        """Start the watches. Not waiting for them to sync: a kind the user may not list
        keeps retrying in the background while the rest of the page works."""
        await self.factory.start(nursery)

    # ------------------------------------------------------------------ fan-out

    def _publish(self, change: dict[str, Any]) -> None:
        for sub in list(self._subscribers):
            if change["kind"] not in sub.kinds or sub.overflowed:
                continue
            try:
                sub.send.send_nowait(change)
            except trio.WouldBlock:
                sub.overflowed = True
                sub.send.close()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(sub)

    def _changed(self, kind: str, obj: Obj) -> None:
        self._publish(
            {"kind": kind, "op": "put", "key": object_key(obj), "obj": TRIMMERS[kind](obj)}
        )

    def _updated(self, kind: str, _old: Obj, new: Obj) -> None:
        self._changed(kind, new)

    def _deleted(self, kind: str, obj: Obj | DeletedFinalStateUnknown) -> None:
        self._publish({"kind": kind, "op": "delete", "key": object_key(obj)})

    def snapshot(self, kinds: Iterable[str]) -> dict[str, Any]:
        """Every cached object of `kinds`, trimmed, by key; and which kinds have synced."""
        objects: dict[str, dict[str, Any]] = {}
        synced: dict[str, bool] = {}
        for kind in kinds:
            informer = self.informers[kind]
            trim = TRIMMERS[kind]
            objects[kind] = {object_key(o): trim(o) for o in informer.list()}
            synced[kind] = informer.has_synced()
        return {"objects": objects, "synced": synced}

    async def stream(self, kinds: frozenset[str]) -> AsyncIterator[bytes]:
        """A page's server-sent events: `snapshot` once, then `changes` batches."""
        send, receive = trio.open_memory_channel[dict[str, Any]](QUEUE)
        sub = _Subscriber(kinds, send)
        # Subscribe before the snapshot: a change made in between arrives after it (and is
        # idempotent to apply), never lost.
        self._subscribers.add(sub)
        try:
            yield sse("snapshot", self.snapshot(sorted(kinds)))
            pending = {k for k in kinds if not self.informers[k].has_synced()}
            while True:
                batch: list[dict[str, Any]] = []
                with trio.move_on_after(KEEPALIVE if not pending else 1.0):
                    try:
                        batch.append(await receive.receive())
                    except trio.EndOfChannel:
                        return  # overflowed: the browser reconnects for a fresh snapshot
                while len(batch) < BATCH:
                    try:
                        batch.append(receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                synced = {k for k in pending if self.informers[k].has_synced()}
                pending -= synced
                if batch or synced:
                    yield sse("changes", {"changes": batch, "synced": sorted(synced)})
                else:
                    yield b": keepalive\n\n"
        finally:
            self._subscribers.discard(sub)
            send.close()
