"""Watch: stream cached event frames to a client, with bookmarks, timeouts and 410 Gone."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Awaitable, Callable, Iterable

import trio
from prometheus_client import Counter

from k8slite._native import ExpiredError, FieldSelector, LabelSelector, dumps
from k8slite.api import errors
from k8slite.apiserver import directsend, http
from k8slite.apiserver.registry import Registry
from k8slite.apiserver.requestinfo import RequestInfo
from k8slite.apiserver.rest import field_selector, label_selector, parse_rv, wait_for_revision

# Upstream's --min-request-timeout: a watch without timeoutSeconds ends after 30 to 60 min.
MIN_REQUEST_TIMEOUT = 1800
# Bookmarks tell an idle watcher how far the store has moved on (upstream: about a minute).
BOOKMARK_INTERVAL = 30.0
# How often idle watchers wake to see whether a bookmark is due.
BOOKMARK_TICK = 5.0
# Frames sent in one write; bounds the latency a fast writer imposes on other watchers.
MAX_EVENTS_PER_WRITE = 500


def bookmark(reg: Registry, rv: int, initial_events_end: bool = False) -> bytes:
    meta: dict[str, object] = {"resourceVersion": str(rv)}
    if initial_events_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    obj = {"kind": reg.rt.kind, "apiVersion": reg.rt.api_version, "metadata": meta}
    return b'{"type":"BOOKMARK","object":' + dumps(obj) + b"}\n"


def error_frame(err: errors.ApiError) -> bytes:
    return b'{"type":"ERROR","object":' + dumps(err.status()) + b"}\n"


# Rewrites a batch of event frames (server-side printing of watch events as Tables).
FrameConverter = Callable[[list[bytes]], list[bytes]]
# Sends one chunk of the watch's body.
Emit = Callable[[bytes], Awaitable[None]]


def chunk_sender(req: http.Request, send: http.Send, counter: Counter | None = None) -> Emit:
    """How this watch sends a chunk: straight onto an HTTP/1.1 connection when it can."""
    direct: directsend.DirectChunks | None = req.scope.get("extensions", {}).get(
        directsend.SCOPE_KEY
    )
    if direct is None:
        return lambda data: http.stream_chunk(send, data)

    async def emit(data: bytes) -> None:
        if await direct.write(data):
            if counter is not None:
                counter.inc()
        else:
            await http.stream_chunk(send, data)

    return emit


async def serve_watch(
    reg: Registry,
    req: http.Request,
    info: RequestInfo,
    send: http.Send,
    convert: FrameConverter | None = None,
    direct_writes: Counter | None = None,
) -> None:
    """Validate, then stream until the timeout, a client disconnect or a 410."""
    label = label_selector(req)
    field = field_selector(req, reg.rt, info.name)
    rv_arg = req.arg("resourceVersion") or ""
    start = parse_rv(rv_arg) if rv_arg else 0
    bookmarks = req.flag("allowWatchBookmarks")
    send_initial = req.arg("sendInitialEvents")
    if send_initial is not None and req.arg("resourceVersionMatch") != "NotOlderThan":
        raise errors.invalid(
            "ListOptions",
            "",
            [
                {
                    "reason": "FieldValueForbidden",
                    "field": "sendInitialEvents",
                    "message": "Forbidden: sendInitialEvents is forbidden for watch unless "
                    "resourceVersionMatch is set to NotOlderThan",
                }
            ],
            "meta.k8s.io",
        )
    timeout = req.int_arg("timeoutSeconds")
    if timeout is None or timeout <= 0:
        timeout = int(MIN_REQUEST_TIMEOUT * (1 + random.random()))
    prefix = reg.rt.prefix(info.namespace)
    initial = send_initial == "true" or (send_initial is None and start == 0)
    if start > reg.store.revision():
        await wait_for_revision(reg, start)
    elif not rv_arg:
        await reg.store.sync()  # its initial state is the most recent one

    await http.start_stream(send)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_cancel_on_disconnect, req.receive, nursery.cancel_scope)
        with trio.move_on_after(timeout):
            await _stream(
                reg,
                chunk_sender(req, send, direct_writes),
                prefix,
                label,
                field,
                start,
                initial,
                bookmarks,
                send_initial == "true",
                convert,
            )
        nursery.cancel_scope.cancel()
    # The client may be gone already; there is nothing left to tell it.
    with contextlib.suppress(Exception):
        await http.end_stream(send)


async def _cancel_on_disconnect(receive: http.Receive, scope: trio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


async def _stream(
    reg: Registry,
    emit: Emit,
    prefix: str,
    label: LabelSelector | None,
    field: FieldSelector | None,
    rv: int,
    initial: bool,
    bookmarks: bool,
    initial_end_bookmark: bool,
    convert: FrameConverter | None = None,
) -> None:
    cache = reg.cache
    if initial:
        frames, rv = cache.initial_events(prefix, label, field)
        if frames and convert is not None:
            frames = convert(frames)
        if frames:
            await emit(b"".join(frames))
        if initial_end_bookmark and bookmarks:
            await emit(bookmark(reg, rv, initial_events_end=True))
    last_sent, last_sent_at = rv, trio.current_time()
    while True:
        changed = reg.changed
        try:
            frames, rv = cache.events_since(
                rv,
                prefix,
                label,
                field,
                MAX_EVENTS_PER_WRITE,
            )
        except ExpiredError:
            err = errors.gone(f"too old resource version: {rv} ({cache.oldest()})")
            await emit(error_frame(err))
            return
        if frames:
            if convert is not None:
                frames = convert(frames)
            await emit(b"".join(frames))
            last_sent, last_sent_at = rv, trio.current_time()
            continue
        if (
            bookmarks
            and rv != last_sent
            and trio.current_time() - last_sent_at >= BOOKMARK_INTERVAL
        ):
            await emit(bookmark(reg, rv))
            last_sent, last_sent_at = rv, trio.current_time()
        # No timeout of our own: bookmark_ticker wakes every watcher now and then, which
        # spares each wait a cancel scope (a tenth of a watcher's cost per event).
        await changed.wait()


async def bookmark_ticker(registries: Iterable[Registry]) -> None:
    """Wake every watcher each BOOKMARK_TICK, so that idle ones send their bookmarks.

    registries is read again at each tick (a live view), as custom kinds come and go.
    """
    while True:
        await trio.sleep(BOOKMARK_TICK)
        for reg in list(registries):
            reg.notify()
