"""Serve an ASGI app with hypercorn over mutual TLS, handing each request its client's certificate.

hypercorn 0.18 verifies client certificates (verify_mode, ca_certs) but never shows the
peer certificate to the application, so the identity a request was authenticated with
would be lost between the TLS layer and the handlers. This adapter closes that gap with as
little of hypercorn as possible:

- `serve` replaces `hypercorn.trio.serve` for TLS sockets only: the same lifespan, the same
  per-connection `TCPServer`, but built by us, so we see each connection's `trio.SSLStream`;
- `PeerCertServer` is that `TCPServer`, with the app wrapped per connection;
- the wrapper puts the verified certificate into every HTTP request's scope as the ASGI TLS
  extension specifies: scope["extensions"]["tls"]["client_cert_chain"] is a list of PEM
  strings, the client's own certificate first (OpenSSL on Python 3.11 hands out only the
  leaf, so the list has one element).

Two more repairs of hypercorn 0.18, both found by benches/density.py at 1,000 hollow nodes:
its HTTP/2 protocol raised KeyError for DATA of a stream it had already answered and
closed (a request answered early, e.g. 504 by the request timeout, before its body was
all in), and nothing caught that above the connection, so it stopped the whole server.
`_H2Protocol` drops such DATA (returning its flow-control credit), and `serve` confines
any other error of one connection to that connection, as Go's net/http does.

Three costs of hypercorn's per request are cut here, each measured (docs/performance.md):
a response's head and body go out in one write (`_H11Protocol`), straight onto the TLS
connection when nothing else is being sent (`PeerCertServer.protocol_send`, through
directsend.py), and the keep-alive timer is one task per connection (`_IdleTimer`).

Every request of a connection, HTTP/1.1 or HTTP/2 streams alike, gets the same certificate:
a TLS connection has exactly one authenticated peer. The assumptions about hypercorn's
internals (TCPServer's constructor, scopes carrying an "extensions" dict, the stream's
attribute name) are pinned by tests/unit/test_tls_adapter.py.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Callable
from math import inf
from typing import Any

import h2.errors
import h2.events
import h2.exceptions
import h11
import hypercorn.protocol
import priority
import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config
from hypercorn.events import Closed, RawData
from hypercorn.protocol.events import Body, EndBody, Response, StreamClosed
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h2 import H2Protocol, StreamBuffer
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ASGIFramework, ConnectionState, LifespanState
from hypercorn.utils import repr_socket_addr

from k8slite.apiserver import directsend

log = logging.getLogger(__name__)

TLS_EXTENSION = "tls"
# Beside the ASGI keys: the client certificate as the ssl module decodes it (subject,
# notAfter), which OpenSSL fills in for a certificate it verified; authn reads the user from
# it without loading cryptography.
PEER_CERT = "k8slite.peer_cert"
# scope["extensions"][TAKE_KEY]() hands an HTTP/1.1 connection over to the app (see
# TakenConnection); only for requests that are alone on their connection.
TAKE_KEY = "k8slite.take_connection"
# Bytes read ahead for a taken connection's owner: beyond it, TCP pushes back.
_TAKEN_BUFFER = 16
_TAKEN_READ = 256 * 1024
_MAX_RECORD = 16 * 1024  # TLS's largest plaintext record


def tls_extension(stream: trio.SSLStream[Any]) -> dict[str, Any]:
    """The ASGI TLS extension of a connection whose handshake is done."""
    der = stream.getpeercert(binary_form=True)
    cipher = stream.cipher()
    return {
        PEER_CERT: stream.getpeercert() if der else None,
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": stream.version(),
        "cipher_suite": cipher[0] if cipher else None,
    }


class _PeerCertApp:
    """One connection's view of the app: adds the connection's TLS extension to each scope."""

    def __init__(
        self, app: AppWrapper, stream: trio.SSLStream[Any], server: PeerCertServer | None = None
    ) -> None:
        self.app = app
        self.stream = stream
        self.server = server
        # Computed at the first request: by then the handshake is over (TCPServer.run does
        # it before any request can be read), and it never changes afterwards.
        self.tls: dict[str, Any] | None = None

    async def __call__(
        self,
        scope: Any,
        receive: Any,
        send: Any,
        sync_spawn: Callable[..., Any],
        call_soon: Callable[..., Any],
    ) -> None:
        if scope["type"] in ("http", "websocket"):
            if self.tls is None:
                self.tls = tls_extension(self.stream)
            scope["extensions"][TLS_EXTENSION] = self.tls
            if self.server is not None and scope.get("http_version") == "1.1":
                scope["extensions"][directsend.SCOPE_KEY] = self.server.direct
                scope["extensions"][TAKE_KEY] = self.server.take
        await self.app(scope, receive, send, sync_spawn, call_soon)


async def receive_batch(stream: trio.SSLStream[Any], max_bytes: int) -> bytes:
    """What a TLS stream has to give, up to max_bytes: b"" at its end.

    Trio's receive_some hands out one TLS record (16 KiB at most) per call, so a relay
    loop pays a round of Trio and a send per record. Past the first record this also
    takes the records already read from the socket, straight from the SSL object (it
    never blocks: without a whole record it asks for more and we stop). What the SSL
    object may have to send meanwhile stays in its outgoing buffer for Trio's next call.

    It stops after a record shorter than the largest: that ended one write of the
    sender's (a WebSocket message, say), and a relay that sends it on ends its own
    records there too. Clients that read a message at a time and check for more only in
    the TLS record at hand (the Python client's port-forward) then see a message end
    where the sender made one, not a run of messages they buffer up.
    """
    first = await stream.receive_some(max_bytes)
    ssl_object = getattr(stream, "_ssl_object", None)
    if len(first) < _MAX_RECORD or ssl_object is None:
        return bytes(first)
    parts, size = [first], len(first)
    while size < max_bytes and len(parts[-1]) >= _MAX_RECORD:
        try:
            more = ssl_object.read(max_bytes - size)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            break
        except ssl.SSLError:
            break  # Trio's next call meets it and says so
        if not more:
            break
        parts.append(more)
        size += len(more)
    return bytes(parts[0]) if len(parts) == 1 else b"".join(parts)


class TakenConnection:
    """A TLS connection taken from hypercorn by the app, to speak a protocol of its own.

    What hypercorn cannot do: an HTTP/1.1 upgrade to something other than WebSockets or
    HTTP/2 (SPDY/3.1, which kubectl's streaming speaks), and a WebSocket whose frames are
    relayed as they are (streaming.py's splice). The app answers the upgrade (itself, or
    with hypercorn's websocket.accept after taking) and from then on owns the bytes both
    ways: the connection's reader passes what arrives to `receive` instead of to h11 or
    wsproto, and `aclose` ends the connection (hypercorn's own answer or close frame,
    when the app returns, then meets a closed stream).
    """

    def __init__(
        self, stream: trio.SSLStream[Any], incoming: trio.MemoryReceiveChannel[bytes]
    ) -> None:
        self.stream = stream
        self._incoming = incoming

    async def receive(self) -> bytes | None:
        """The next bytes from the client; None once it has closed."""
        try:
            return await self._incoming.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await self.stream.aclose()
        await trio.aclose_forcefully(self.stream)


class PeerCertServer(TCPServer):
    """hypercorn's per-connection server, with the app seeing the peer's certificate."""

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        state: ConnectionState,
        stream: trio.SSLStream[Any],
    ) -> None:
        super().__init__(_PeerCertApp(app, stream, self), config, context, state, stream)
        self._idle_timer = _IdleTimer(self)
        self.idle_task = self._idle_timer  # type: ignore[assignment]
        self.direct = directsend.DirectChunks(self, stream)
        self._taken: trio.MemorySendChannel[bytes] | None = None
        self._handling: trio.CancelScope | None = None

    def take(self) -> TakenConnection:
        """The connection, from now on the caller's (see TakenConnection)."""
        if self._taken is not None:
            raise RuntimeError("the connection was taken already")
        self._taken, incoming = trio.open_memory_channel[bytes](_TAKEN_BUFFER)
        if self._handling is not None:
            # The reader is parked in h11, which pauses after an Upgrade request until
            # the response says whether the protocol switches: set it free to read for us.
            self._handling.cancel()
        return TakenConnection(self.stream, incoming)

    async def protocol_send(self, event: Any) -> None:
        # Bytes go straight onto the connection when nothing else is being sent on it
        # (directsend.py); else, and for every other event, hypercorn's way.
        if (
            isinstance(event, RawData)
            and self._taken is None
            and await self.direct.write_raw(event.data)
        ):
            return
        await super().protocol_send(event)

    async def _read_data(self) -> None:
        # hypercorn's loop, except that once the app took the connection what arrives is
        # the app's, and no read timeout applies (a quiet tunnel is not a stuck request).
        while True:
            try:
                if self._taken is None:
                    if self.config.read_timeout:
                        with trio.fail_after(self.config.read_timeout):
                            data = await self.stream.receive_some(MAX_RECV)
                    else:  # no timeout: no cancel scope per read either
                        data = await self.stream.receive_some(MAX_RECV)
                else:
                    data = await receive_batch(self.stream, _TAKEN_READ)
            except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
                break
            if self._taken is not None:
                if not data:
                    break
                try:
                    await self._taken.send(bytes(data))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                continue
            with trio.CancelScope() as self._handling:
                try:
                    await self.protocol.handle(RawData(bytes(data)))
                except h11.LocalProtocolError:
                    # hypercorn answering bytes that follow a refused WebSocket upgrade
                    # with a second response: this connection's end, not the server's.
                    break
            self._handling = None
            if data == b"":
                break
        if self._taken is not None:
            self._taken.close()
        self._idle_timer.reading_ended()
        await self.protocol.handle(Closed())


class _IdleTimer:
    """hypercorn's keep-alive timer (its TrioSingleTask's restart and stop), without a task
    per request.

    hypercorn stops its idle task when a request starts and starts a new one (a nursery
    start: a task, a lock, a cancel scope) when the response ends, 7% of a create's
    samples on the event loop (docs/performance.md). Here one task waits for the
    server's end under a cancel scope whose deadline the two calls move: now plus
    keep_alive_timeout when the connection turns idle, never while it is busy. At the
    deadline, or when the server ends while the connection is idle, it closes the
    connection as hypercorn's _idle_timeout does (its _initiate_server_close, shielded).
    If the server ends while a request is served, the task ends and the next restart
    starts another, which finds the server ended and closes, as hypercorn's would. When
    the client goes while a request is served (hypercorn has no idle task then), the task
    ends too (`reading_ended`), so the connection's task group can finish.
    """

    def __init__(self, server: TCPServer) -> None:
        self._timeout = server.config.keep_alive_timeout
        self._terminated = server.context.terminated  # hypercorn's EventWrapper
        self._close = server._initiate_server_close
        self._scope: trio.CancelScope | None = None
        self._idle = False
        self._gone = False

    async def restart(self, task_group: TaskGroup, action: Callable[[], Any]) -> None:
        self._idle = True
        deadline = trio.current_time() + self._timeout
        if self._scope is None:
            self._scope = trio.CancelScope(deadline=deadline)
            task_group.spawn(self._watch, self._scope)
        else:
            self._scope.deadline = deadline

    async def stop(self) -> None:
        self._idle = False
        if self._scope is not None:
            self._scope.deadline = inf

    def reading_ended(self) -> None:
        """The connection's reader is done. Idle, the timer runs on as hypercorn's idle
        task would; busy, hypercorn would have none: the task ends."""
        if not self._idle and self._scope is not None:
            self._gone = True
            self._scope.cancel()

    async def _watch(self, scope: trio.CancelScope) -> None:
        with scope:
            await self._terminated.wait()
        if self._gone or (not scope.cancelled_caught and not self._idle):
            self._scope = None
            return
        with trio.CancelScope(shield=True):
            await self._close()


class _H11Protocol(H11Protocol):
    """hypercorn's HTTP/1.1, with a response's head and body in one write.

    hypercorn writes each h11 event as it comes: the head of a response, its body, the
    (for a Content-Length body, empty) end of message, each a TLS record and a send(2)
    through Trio's locks and checkpoints. A response that says its length is complete in
    the app's hands: its head waits for the first piece of body (or the end of the message,
    or anything else about the stream) and goes out with it; an empty write is not made.
    Streamed (chunked) responses, watches, are written as before, head first.
    """

    _pending: bytes | None = None  # a response's head, waiting for its body
    _defer = False  # set while hypercorn writes a head that may wait

    async def stream_send(self, event: Any) -> None:
        if self._pending is not None and not isinstance(event, Body | EndBody):
            await self._flush(b"")
        if (
            isinstance(event, Response)
            and event.status_code >= 200
            and any(name.lower() == b"content-length" for name, _ in event.headers)
        ):
            self._defer = True
            try:
                await super().stream_send(event)
            finally:
                self._defer = False
            return
        await super().stream_send(event)

    async def _send_h11_event(self, event: Any) -> None:
        try:
            data = self.connection.send(event)
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            return
        if self._defer and isinstance(event, h11.Response):
            self._pending = data
            return
        await self._flush(data)

    async def _flush(self, data: bytes | None) -> None:
        if self._pending is not None:
            data, self._pending = self._pending + (data or b""), None
        if data:
            await self.send(RawData(data=data))


class _H2Protocol(H2Protocol):
    """hypercorn's HTTP/2 with two repairs.

    DATA for a stream it has closed already is dropped: a stream is closed as soon as its
    response is sent, which may be before the client has sent all of its body; hypercorn
    handles the END_STREAM that follows, not the DATA.

    A response the app abandons half-way (the request timeout fired while a big LIST was
    being sent) resets its stream. hypercorn only forgets such a stream, sending neither
    END_STREAM nor RST_STREAM, so the client waits for the rest for ever: its connection's
    other streams keep it busy, so no read timeout fires. The density bench's hollow nodes
    hung so in their relist of 30,000 pods and no pod started again. Go's net/http resets
    the stream (INTERNAL_ERROR) when a handler gives up after its headers went out; so do we.
    """

    async def stream_send(self, event: StreamEvent) -> None:
        if isinstance(event, StreamClosed):
            buffer = self.stream_buffers.get(event.stream_id)
            # The app's last body message marks the buffer complete; a closed stream whose
            # buffer is not was abandoned. (StreamBuffer has no public flag for "ended".)
            if buffer is not None and not buffer._complete:
                await self._reset_abandoned(event.stream_id, buffer)
        await super().stream_send(event)

    async def _reset_abandoned(self, stream_id: int, buffer: StreamBuffer) -> None:
        try:
            self.connection.reset_stream(stream_id, error_code=h2.errors.ErrorCodes.INTERNAL_ERROR)
            await self._flush()
        except h2.exceptions.ProtocolError:
            pass  # closed already, from the client's side or the connection's
        # What is left unsent is dropped; the send task finds the stream closed and clears
        # its buffer and priority entry itself, as for a stream the client reset.
        await buffer.close()
        with contextlib.suppress(priority.MissingStreamError):
            self.priority.unblock(stream_id)
        await self.has_data.set()

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        kept: list[h2.events.Event] = []
        for event in events:
            if not isinstance(event, h2.events.DataReceived):
                kept.append(event)
                continue
            # DATA is handled on its own, after what came before it: handling one event
            # may open (a request) or close (a response sent) another's stream.
            if kept:
                await super()._handle_events(kept)
                kept = []
            if event.stream_id in self.streams:
                await super()._handle_events([event])
            else:
                self.connection.acknowledge_received_data(
                    event.flow_controlled_length, event.stream_id
                )
        await super()._handle_events(kept)


# hypercorn's ProtocolWrapper picks its protocols by these module-level names.
hypercorn.protocol.H2Protocol = _H2Protocol  # type: ignore[misc]
hypercorn.protocol.H11Protocol = _H11Protocol  # type: ignore[misc]


async def serve(
    app: ASGIFramework,
    config: Config,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on config.bind over TLS until cancelled; reports the bound URLs like hypercorn.

    Only TLS listeners: a configuration without certfile/keyfile is an error here, since the
    point of this server is that every request has an authenticated peer.
    """
    ssl_context = config.create_ssl_context()
    if ssl_context is None:
        raise ValueError("serving needs config.certfile and config.keyfile")
    wrapped = ASGIWrapper(app)
    state: LifespanState = {}
    lifespan = Lifespan(wrapped, config, state)
    context = WorkerContext(None)
    sockets = config.create_sockets()
    listeners = []
    binds = []
    for sock in sockets.secure_sockets:
        sock.listen(config.backlog)
        listeners.append(
            trio.SSLListener(
                trio.SocketListener(trio.socket.from_stdlib_socket(sock)),
                ssl_context,
                https_compatible=True,
            )
        )
        binds.append(f"https://{repr_socket_addr(sock.family, sock.getsockname())}")

    async def handle(stream: trio.SSLStream[Any]) -> None:
        try:
            await PeerCertServer(
                wrapped, config, context, ConnectionState(state.copy()), stream
            ).run()
        except Exception:
            # One connection's failure is that connection's end, never the server's.
            log.exception("error serving a connection; it is closed")
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        await nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        try:
            await nursery.start(trio.serve_listeners, handle, listeners)
            task_status.started(binds)
            await trio.sleep_forever()
        finally:
            # Idle keep-alive connections wait on this to close themselves.
            await context.terminated.set()
