"""The dashboard's watches and their fan-out to browsers.

One reflector per kind (list, then watch, with the user's credentials) keeps a cache of the
objects already trimmed to what the pages show: a full pod is dropped as soon as it is cut
down, so 30,000 of them cost a few megabytes rather than a heap the garbage collector must
walk again and again while the first list is still arriving (which made the cold start slow).
Each browser stream subscribes to the kinds its page shows and gets a snapshot of them, then
the changes as they happen. A kind's first list (and any relist) reaches the streams as one
`reset` of the whole kind rather than thousands of single changes. A stream that falls too
far behind is ended rather than let grow without bound: the browser's EventSource
reconnects and starts again from a fresh snapshot.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from k8slite.client import ApiClient, _json
from k8slite.client.errors import ApiConnectionError, ApiError
from k8slite.client.reflector import Reflector
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
from k8slite.client.store import object_key
from k8slite.component.objects import Obj
from k8slite.dashboard.trim import TRIMMERS, Trimmed

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
    """One server-sent event; JSON never holds a raw newline, so one data line suffices.
    (The native encoder: a snapshot of 30,000 pods is some 10 MB of JSON.)"""
    return b"event: " + event.encode() + b"\ndata: " + _json.dumps(data) + b"\n\n"


class TrimmedCache:
    """A reflector's sink for one kind: trimmed objects by key, changes told to the hub."""

    def __init__(
        self,
        kind: str,
        trim: Callable[[Mapping[str, Any]], Trimmed],
        publish: Callable[[dict[str, Any]], None],
    ) -> None:
        self.kind = kind
        self.trim = trim
        self.publish = publish
        self.objects: dict[str, Trimmed] = {}
        self.synced = False

    def replace_trimmed(self, objects: dict[str, Trimmed]) -> None:
        self.objects = objects
        self.synced = True
        self.publish({"kind": self.kind, "op": "reset", "objects": objects})

    def replace(self, items: list[Obj], resource_version: str) -> None:
        self.replace_trimmed({object_key(o): self.trim(o) for o in items})

    def apply(self, event_type: str, obj: Obj) -> None:
        key = object_key(obj)
        if event_type == "DELETED":
            self.objects.pop(key, None)
            self.publish({"kind": self.kind, "op": "delete", "key": key})
            return
        trimmed = self.trim(obj)
        if self.objects.get(key) == trimmed:
            return  # nothing the pages show changed (a heartbeat, a resourceVersion)
        self.objects[key] = trimmed
        self.publish({"kind": self.kind, "op": "put", "key": key, "obj": trimmed})


_pauses = 0  # lists running with the garbage collector paused (the kinds list at once)


@contextlib.contextmanager
def _collection_paused() -> Iterator[None]:
    global _pauses
    if _pauses == 0 and not gc.isenabled():
        yield  # paused by someone else: theirs to resume
        return
    _pauses += 1
    gc.disable()
    try:
        yield
    finally:
        _pauses -= 1
        if _pauses == 0:
            gc.enable()


class TrimmingReflector(Reflector):
    """Lists page by page, trimming each page before fetching the next."""

    sink: TrimmedCache

    async def _list(self) -> None:
        # No cyclic garbage collection while listing: decoding a page of 5,000 pods makes
        # about a million objects, and the collections their allocation sets off walked
        # them again and again (a page took 0.25 to 0.9 s to decode instead of 0.09 s).
        # Decoded pages hold no cycles and are freed by reference counting anyway.
        with _collection_paused():
            await self._list_pages()

    async def _list_pages(self) -> None:
        """Pages are fetched one ahead: the next page's continue token is read from the head
        of the current page's bytes (the List's metadata comes before its items), so the API
        server works on the next page while this one is decoded and trimmed in a thread."""
        trim = self.sink.trim
        objects: dict[str, Trimmed] = {}
        raw = await self._page(None)
        while True:
            ahead = _head_continue(raw)
            fetched: list[bytes | ApiError | ApiConnectionError] = []
            async with trio.open_nursery() as nursery:
                if ahead:
                    nursery.start_soon(self._page_into, ahead, fetched)
                metadata = await trio.to_thread.run_sync(_decode_and_trim, raw, trim, objects)
            token = metadata.get("continue")
            try:
                if not token:
                    break
                if token == ahead:
                    got = fetched[0]
                    if not isinstance(got, bytes):
                        raise got
                    raw = got
                else:
                    raw = await self._page(token)
            except ApiError as e:
                if e.code != 410:
                    raise
                # The snapshot expired mid-way: pages of one list must share it; start over.
                objects = {}
                raw = await self._page(None)
        self.sink.replace_trimmed(objects)
        self.last_sync_resource_version = str(metadata.get("resourceVersion") or "")

    async def _page(self, token: str | None) -> bytes:
        params = {"limit": str(self.page_size)}
        if token:
            params["continue"] = token
        return await self.client.request_bytes("GET", self.res.path(self.namespace), params=params)

    async def _page_into(
        self, token: str, into: list[bytes | ApiError | ApiConnectionError]
    ) -> None:
        try:
            into.append(await self._page(token))
        except (ApiError, ApiConnectionError) as e:
            into.append(e)


_CONTINUE = re.compile(rb'"continue"\s*:\s*"([^"]+)"')


def _head_continue(raw: bytes) -> str | None:
    """The continue token in the List's metadata, when it comes before the items."""
    items = raw.find(b'"items"', 0, 65536)
    found = _CONTINUE.search(raw, 0, items) if items > 0 else None
    return found.group(1).decode() if found else None


def _decode_and_trim(
    raw: bytes, trim: Callable[[Mapping[str, Any]], Trimmed], into: dict[str, Trimmed]
) -> dict[str, Any]:
    """Decode a List page and trim its items into `into`; the page's metadata. The decoded
    objects go as soon as each is trimmed."""
    page = _json.loads(raw)
    for obj in page.get("items") or ():
        into[object_key(obj)] = trim(obj)
    return dict(page.get("metadata") or {})


class Hub:
    def __init__(self, client: ApiClient, kinds: Iterable[str] = RESOURCES) -> None:
        self.client = client
        self.caches: dict[str, TrimmedCache] = {}
        self.reflectors: list[Reflector] = []
        self._subscribers: set[_Subscriber] = set()
        for kind in kinds:
            cache = TrimmedCache(kind, TRIMMERS[kind], self._publish)
            self.caches[kind] = cache
            # Big pages: fewer round trips for the first list of a large cluster.
            self.reflectors.append(
                TrimmingReflector(client, RESOURCES[kind], cache, page_size=PAGE_SIZE)
            )

    async def start(self, nursery: trio.Nursery) -> None:
        """Start the watches. Not waiting for them to sync: a kind the user may not list
        keeps retrying in the background while the rest of the page works."""
        for reflector in self.reflectors:
            await nursery.start(reflector.run)

    def has_synced(self, kind: str) -> bool:
        return self.caches[kind].synced

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

    def snapshot(self, kinds: Iterable[str]) -> dict[str, Any]:
        """Every cached object of `kinds`, trimmed, by key; and which kinds have synced."""
        return {
            "objects": {kind: self.caches[kind].objects for kind in kinds},
            "synced": {kind: self.caches[kind].synced for kind in kinds},
        }

    async def stream(self, kinds: frozenset[str]) -> AsyncIterator[bytes]:
        """A page's server-sent events: `snapshot` once, then `changes` batches (a `reset`
        change replaces a whole kind: its first list, or a relist)."""
        send, receive = trio.open_memory_channel[dict[str, Any]](QUEUE)
        sub = _Subscriber(kinds, send)
        # Subscribe before the snapshot: a change made in between arrives after it (and is
        # idempotent to apply), never lost.
        self._subscribers.add(sub)
        try:
            yield sse("snapshot", self.snapshot(sorted(kinds)))
            while True:
                batch: list[dict[str, Any]] = []
                with trio.move_on_after(KEEPALIVE):
                    try:
                        batch.append(await receive.receive())
                    except trio.EndOfChannel:
                        return  # overflowed: the browser reconnects for a fresh snapshot
                while len(batch) < BATCH:
                    try:
                        batch.append(receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                if batch:
                    synced = sorted({c["kind"] for c in batch if c["op"] == "reset"})
                    yield sse("changes", {"changes": batch, "synced": synced})
                else:
                    yield b": keepalive\n\n"
        finally:
            self._subscribers.discard(sub)
            send.close()
