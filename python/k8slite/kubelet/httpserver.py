"""A small HTTP/1.1 server on Trio streams (h11), with the TLS peer certificate at hand.

The kubelet serves a handful of GET endpoints, some of them long streams (logs -f). This
server hands each request the verified client certificate of its TLS connection, streams
response bodies chunk by chunk, and cancels a stream as soon as the client goes away.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import trio

log = logging.getLogger(__name__)

_MAX_HEAD = 64 * 1024


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    peer_cert: bytes | None  # DER of the verified client certificate (TLS only)

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass
class Response:
    status: int
    body: bytes | AsyncIterator[bytes] = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


async def serve(
    handler: Handler,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; reports the bound port (useful when port is 0)."""
    tcp = await trio.open_tcp_listeners(port, host=host)
    bound = tcp[0].socket.getsockname()[1]
    listeners: list[trio.abc.Listener[Any]] = list(tcp)
    if ssl_context is not None:
        listeners = [trio.SSLListener(lst, ssl_context, https_compatible=True) for lst in tcp]
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, lambda s: _connection(s, handler), listeners)
        task_status.started(int(bound))


async def _connection(stream: trio.abc.Stream, handler: Handler) -> None:
    try:
        async with stream:
            await _serve_connection(stream, handler)
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError) as e:
        log.debug("connection ended: %s", e)
    except ssl.SSLError as e:
        log.debug("TLS handshake failed: %s", e)


async def _serve_connection(stream: trio.abc.Stream, handler: Handler) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
    while True:
        event = await _next_event(stream, conn)
        if not isinstance(event, h11.Request):
            return
        # Requests here have no bodies worth reading; drain up to the end of message.
        while not isinstance(await _next_event(stream, conn), h11.EndOfMessage | None):
            pass
        peer = None
        if isinstance(stream, trio.SSLStream):
            peer = stream.getpeercert(binary_form=True)
        target = event.target.decode("latin-1")
        parts = urlsplit(target)
        request = Request(
            event.method.decode(),
            parts.path,
            parse_qs(parts.query, keep_blank_values=True),
            {k.decode().lower(): v.decode("latin-1") for k, v in event.headers},
            peer,
        )
        try:
            response = await handler(request)
        except Exception:
            log.exception("handling %s %s", request.method, target)
            response = Response(500, b"internal error\n")
        await _send_response(stream, conn, response)
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            return
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            return


async def _next_event(stream: trio.abc.Stream, conn: h11.Connection) -> Any:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = bytes(await stream.receive_some(65536))
            conn.receive_data(data)
            if not data and conn.their_state is not h11.DONE:
                return None
            continue
        if isinstance(event, h11.ConnectionClosed):
            return None
        return event


async def _send_response(stream: trio.abc.Stream, conn: h11.Connection, response: Response) -> None:
    headers = [("content-type", response.content_type), *response.headers.items()]
    if isinstance(response.body, bytes):
        headers.append(("content-length", str(len(response.body))))
        await stream.send_all(conn.send(h11.Response(status_code=response.status, headers=headers)))
        await stream.send_all(conn.send(h11.Data(data=response.body)))
        await stream.send_all(conn.send(h11.EndOfMessage()))
        return
    # A streamed body: chunked, ended early when the client hangs up. The connection is
    # not reused: the watcher task's cancelled read may leave a TLS stream unusable.
    headers.append(("connection", "close"))
    await stream.send_all(conn.send(h11.Response(status_code=response.status, headers=headers)))
    body = response.body
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_cancel_on_eof, stream, nursery.cancel_scope)
        try:
            async for chunk in body:
                if chunk:
                    await stream.send_all(conn.send(h11.Data(data=chunk)))
            await stream.send_all(conn.send(h11.EndOfMessage()))
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()
        nursery.cancel_scope.cancel()


async def _cancel_on_eof(stream: trio.abc.Stream, scope: trio.CancelScope) -> None:
    # While a body streams, anything the client sends is a new request we will not serve;
    # an end of stream means it went away.
    try:
        while await stream.receive_some(4096):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError):
        pass
    scope.cancel()
