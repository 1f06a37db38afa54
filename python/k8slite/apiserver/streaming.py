"""pods/exec, pods/attach and pods/portforward: checked here, streamed by the pod's kubelet.

A WebSocket upgrade is authorized (create on the subresource: kubectl 1.35 and upstream's
AuthorizePodWebsocketUpgradeCreatePermission), the pod and container checked with
upstream's messages, and then the API server opens a WebSocket of its own to the kubelet's
/exec, /attach or /portForward over mutual TLS with its kubelet-client identity, offering
the client's subprotocols. The protocol the kubelet chooses is the one the client gets, and
from then on messages are relayed both ways unchanged until either side closes.

When the kubelet refuses (a container not running, a runtime that cannot attach) or cannot
be reached, an exec or attach client is still accepted and gets the error as a Status on
its error channel, as from upstream's stream translator; a port-forward is refused.

SPDY/3.1 upgrades are served by spdystreams.py. Requests with no upgrade get the same
checks and then upstream's 400 "Upgrade request required".
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from collections.abc import Callable
from contextlib import suppress
from typing import Any
from urllib.parse import quote, urlencode

import h11
import trio
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import LocalProtocolError

from k8slite._native import dumps
from k8slite.api import errors
from k8slite.apiserver import http
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.podlogs import (
    KubeletConnector,
    dial,
    kubelet_error,
    pick_container,
    pod_kubelet,
)
from k8slite.apiserver.requestinfo import RequestInfo
from k8slite.apiserver.tls import TAKE_KEY, TakenConnection, receive_batch
from k8slite.component.objects import Obj

log = logging.getLogger(__name__)

SUBRESOURCES = frozenset({"exec", "attach", "portforward"})
_KUBELET_PATHS = {"exec": "exec", "attach": "attach", "portforward": "portForward"}
# The API's stdin/stdout/stderr/tty become the kubelet's input/output/error/tty (upstream).
_STREAM_PARAMS = (("stdin", "input"), ("stdout", "output"), ("stderr", "error"), ("tty", "tty"))
_READ = 256 * 1024
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_REFUSAL = 4096
CONNECT_TIMEOUT = 10.0
# The exec and attach protocols, which have an error channel to report a refusal on.
_CHANNEL_PROTOCOLS = (
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
)


def kubelet_target(core: ApiCore, req: http.Request, info: RequestInfo) -> tuple[Obj, str]:
    """The pod, and the kubelet path with query for the stream; upstream's refusals."""
    assert info.name is not None and info.subresource is not None
    pod = core.registries[("", "pods")].get(info.namespace, info.name)
    parts = [quote(info.namespace or "", safe=""), quote(info.name, safe="")]
    params: list[tuple[str, str]] = []
    if info.subresource == "portforward":
        for value in req.query.get("ports") or ():
            for port in value.split(","):
                if port.strip():
                    _check_port(port.strip())
                    params.append(("port", port.strip()))
    else:
        container = pick_container(pod, req.arg("container"))
        parts.append(quote(container, safe=""))
        params += [(kubelet, "1") for api, kubelet in _STREAM_PARAMS if req.flag(api)]
        if info.subresource == "exec":
            params += [("command", c) for c in req.query.get("command") or ()]
    path = f"/{_KUBELET_PATHS[info.subresource]}/" + "/".join(parts)
    return pod, path + (f"?{urlencode(params)}" if params else "")


def _check_port(port: str) -> None:
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise errors.bad_request(f"invalid port value {port!r}: must be between 1 and 65535")


async def refuse_plain(core: ApiCore, req: http.Request, info: RequestInfo) -> None:
    """A request with no upgrade at all: the checks, then upstream's refusal."""
    kubelet_target(core, req, info)
    raise errors.bad_request("Upgrade request required")


class WebSocketRefused(Exception):
    """A server answered a WebSocket handshake with an HTTP response instead."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        super().__init__(f"WebSocket refused: {status}")
        self.status, self.headers, self.body = status, headers, body


class BackendSocket:
    """The API server's WebSocket to a kubelet, or to a pod or service for the proxy
    subresources: an h11 handshake, then wsproto framing.

    The handshake is done apart from the framing so that what follows it can be taken
    raw (`take_raw`): the bytes read past the 101 response, then the stream itself.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._conn: Connection | None = None
        self._trailing = b""  # read past the handshake, not yet framed
        self.subprotocol: str | None = None
        # Only an accepted connection speaks WebSocket: after a refusal no frame may
        # follow (hypercorn, receiving one, fails the whole server on answering it).
        self.accepted = False
        self._pending: list[Any] = []
        self._parts: list[bytes | str] = []
        self.closed = False
        # Pongs (from the receiving task) and messages (from others) share the stream.
        self._send_lock = trio.Lock()

    @classmethod
    async def open(
        cls,
        connector: KubeletConnector,
        host: str,
        port: int,
        target: str,
        subprotocols: list[str],
    ) -> BackendSocket:
        """Connected and accepted; an ApiError with the kubelet's words when refused."""
        ctx = connector.ssl_context()
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                stream = await dial(host, port, ctx)
        except (OSError, trio.BrokenResourceError, trio.TooSlowError) as e:
            raise errors.ApiError(500, "InternalError", f"error dialing backend: {e}") from None
        try:
            return await cls.over(stream, f"{host}:{port}", target, subprotocols)
        except WebSocketRefused as e:
            raise kubelet_error(e.status, e.body, target) from None
        except trio.TooSlowError:
            raise errors.ApiError(
                500, "InternalError", "error dialing backend: the kubelet did not answer"
            ) from None

    @classmethod
    async def over(
        cls,
        stream: trio.abc.Stream,
        host: str,
        target: str,
        subprotocols: list[str],
        headers: list[tuple[str, str]] | None = None,
    ) -> BackendSocket:
        """A WebSocket handshake on a connected stream (closed if it fails, and
        trio.TooSlowError after CONNECT_TIMEOUT); a refusal as WebSocketRefused with the
        server's status, headers and (the start of its) body."""
        sock = cls(stream)
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                await sock._handshake(host, target, subprotocols, headers or [])
        except BaseException:
            await sock.aclose()
            raise
        return sock

    async def _handshake(
        self, host: str, target: str, subprotocols: list[str], extra: list[tuple[str, str]]
    ) -> None:
        key = base64.b64encode(os.urandom(16))
        headers = [
            ("Host", host),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key.decode()),
            ("Sec-WebSocket-Version", "13"),
        ]
        if subprotocols:
            headers.append(("Sec-WebSocket-Protocol", ", ".join(subprotocols)))
        h11c = h11.Connection(h11.CLIENT)
        await self.stream.send_all(
            h11c.send(h11.Request(method="GET", target=target, headers=[*headers, *extra]))
        )
        refused: h11.Response | None = None
        body = b""

        def refusal() -> WebSocketRefused:
            if refused is None:
                return WebSocketRefused(500, [], body)
            return WebSocketRefused(refused.status_code, list(refused.headers), body)

        while True:
            event = h11c.next_event()
            if event is h11.NEED_DATA:
                data = await self._read()
                h11c.receive_data(data)
                continue
            if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
                got = {k.lower(): v for k, v in event.headers}
                expected = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())
                if got.get(b"sec-websocket-accept") != expected:
                    raise WebSocketRefused(500, [], b"the backend's WebSocket accept is wrong")
                protocol = got.get(b"sec-websocket-protocol")
                self.subprotocol = protocol.decode() if protocol else None
                self._trailing = h11c.trailing_data[0]
                self.accepted = True
                return
            if isinstance(event, h11.Response):
                refused = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > _MAX_REFUSAL:
                    raise refusal()
            elif not isinstance(event, h11.InformationalResponse):  # the end, or odd
                raise refusal()

    async def _read(self) -> bytes:
        try:
            return bytes(await self.stream.receive_some(_READ))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    @property
    def conn(self) -> Connection:
        """wsproto's framing, from the first byte after the handshake."""
        if self._conn is None:
            self._conn = Connection(ConnectionType.CLIENT, None, self._trailing)
            self._trailing = b""
        return self._conn

    def take_raw(self) -> bytes:
        """Frames already read past the handshake; the caller then reads the stream itself.

        Only before any message was received or sent.
        """
        assert self._conn is None
        data, self._trailing = self._trailing, b""
        return data

    async def _events(self) -> list[Any]:
        conn = self.conn
        data = await self._read()
        if not data:
            self.closed = True
        conn.receive_data(data or None)
        return list(conn.events())

    async def receive(self) -> bytes | str | None:
        """The next whole message from the kubelet; None once it closed."""
        while True:
            while self._pending:
                event = self._pending.pop(0)
                if isinstance(event, BytesMessage | TextMessage):
                    data = event.data
                    self._parts.append(data if isinstance(data, str) else bytes(data))
                    if event.message_finished:
                        parts, self._parts = self._parts, []
                        if isinstance(parts[0], bytes):
                            return b"".join(p for p in parts if isinstance(p, bytes))
                        return "".join(p for p in parts if isinstance(p, str))
                elif isinstance(event, Ping):
                    async with self._send_lock:
                        await self.stream.send_all(self.conn.send(event.response()))
                elif isinstance(event, CloseConnection):
                    with suppress(Exception):
                        await self.stream.send_all(self.conn.send(event.response()))
                    self.closed = True
                    return None
            if self.closed:
                return None
            self._pending = await self._events()

    async def send(self, data: bytes | str) -> None:
        """Send a message; trio.BrokenResourceError once the kubelet has closed."""
        message = BytesMessage(data=data) if isinstance(data, bytes) else TextMessage(data=data)
        async with self._send_lock:
            try:
                frame = self.conn.send(message)
            except LocalProtocolError:  # the close handshake has begun
                raise trio.BrokenResourceError("the kubelet closed the stream") from None
            await self.stream.send_all(frame)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            if self.accepted and not self.closed:
                self.closed = True
                with suppress(Exception):
                    with trio.move_on_after(1):
                        await self.stream.send_all(self.conn.send(CloseConnection(code=1000)))
            await trio.aclose_forcefully(self.stream)


async def serve_websocket(
    core: ApiCore,
    connector: KubeletConnector | None,
    req: http.Request,
    info: RequestInfo,
    receive: http.Receive,
    send: http.Send,
) -> None:
    """Relay an authorized streaming WebSocket to the pod's kubelet; refusals as ApiError."""
    pod, target = kubelet_target(core, req, info)
    host, port = pod_kubelet(core, connector, pod)
    assert connector is not None  # pod_kubelet refuses without one
    offered = list(req.scope.get("subprotocols") or ())
    try:
        kubelet = await BackendSocket.open(connector, host, port, target, offered)
    except errors.ApiError as e:
        # As upstream's stream translator: the client's streams are up first, and what
        # the kubelet refused arrives as an error on them (kubectl shows it, no fallback).
        channel = next((p for p in offered if p in _CHANNEL_PROTOCOLS), None)
        if channel is None:
            raise
        await _report(send, channel, f"unable to upgrade connection: {e.message}")
        return
    take = _splice_taker(req)
    if take is None:
        await relay(kubelet, receive, send, target)
        return
    try:
        client = take()  # before the accept: every byte after the 101 is ours
        await send({"type": "websocket.accept", "subprotocol": kubelet.subprotocol})
        await _splice(client, kubelet)
    except Exception as e:  # noqa: BLE001 - the streams were up: a side that left ends them
        log.debug("stream %s ended: %r", target, e)
    finally:
        await kubelet.aclose()


async def relay(backend: BackendSocket, receive: http.Receive, send: http.Send, what: str) -> None:
    """Accept the caller's WebSocket with the backend's subprotocol, then pass messages both
    ways unchanged until either side closes; the backend's socket is closed at the end."""
    try:
        await send({"type": "websocket.accept", "subprotocol": backend.subprotocol})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_client_to_kubelet, receive, backend, nursery.cancel_scope)
            while (message := await backend.receive()) is not None:
                key = "bytes" if isinstance(message, bytes) else "text"
                await send({"type": "websocket.send", key: message})
            nursery.cancel_scope.cancel()
        await send({"type": "websocket.close", "code": 1000})
    except Exception as e:  # noqa: BLE001 - the streams were up: a side that left ends them
        log.debug("stream %s ended: %r", what, e)
    finally:
        await backend.aclose()


def _splice_taker(req: http.Request) -> Callable[[], TakenConnection] | None:
    """How to take the client's connection, when its frames can go to the kubelet as
    they are: HTTP/1.1 and no extension (a compressed client would need a compressing
    kubelet connection)."""
    if any(name.lower() == b"sec-websocket-extensions" for name, _ in req.scope["headers"]):
        return None
    take: Callable[[], TakenConnection] | None = req.scope.get("extensions", {}).get(TAKE_KEY)
    return take


async def _splice(client: TakenConnection, kubelet: BackendSocket) -> None:
    """Relay the WebSocket as bytes: no parsing, no reframing, no copies of our own.

    Both connections frame alike: the kubelet's frames come unmasked, as a server's to
    its client, which is what the API server is to the client; the client's come masked,
    as a client's, which is what the API server is to the kubelet. Control frames (ping,
    close) pass too, so each end answers the other's.
    """
    first = kubelet.take_raw()
    kubelet.closed = True  # no close frame of ours in the middle of theirs
    tls = kubelet.stream
    assert isinstance(tls, trio.SSLStream)  # a kubelet is always reached over TLS
    async with trio.open_nursery() as nursery:

        async def client_to_kubelet() -> None:
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                while (data := await client.receive()) is not None:
                    await kubelet.stream.send_all(data)
            nursery.cancel_scope.cancel()

        nursery.start_soon(client_to_kubelet)
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            if first:
                await client.send_all(first)
            while data := await receive_batch(tls, _READ):
                await client.send_all(data)
        nursery.cancel_scope.cancel()
    await client.aclose()


async def _report(send: http.Send, protocol: str, message: str) -> None:
    """Accept, say what went wrong on the error channel (3), and close."""
    await send({"type": "websocket.accept", "subprotocol": protocol})
    if protocol.startswith(("v4.", "v5.")):
        status = errors.internal(message).status()
        data = dumps({k: v for k, v in status.items() if k not in ("kind", "apiVersion")})
    else:
        data = message.encode()
    if "base64" in protocol:
        await send({"type": "websocket.send", "text": "3" + base64.b64encode(data).decode()})
    else:
        await send({"type": "websocket.send", "bytes": b"\x03" + data})
    await send({"type": "websocket.close", "code": 1000})


async def _client_to_kubelet(
    receive: http.Receive, kubelet: BackendSocket, scope: trio.CancelScope
) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            scope.cancel()
            return
        if message["type"] == "websocket.receive":
            data = message.get("bytes")
            try:
                await kubelet.send(data if data is not None else message.get("text") or "")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                scope.cancel()
                return


async def deny(send: http.Send, error: errors.ApiError) -> None:
    """Refuse a WebSocket upgrade with the Status an HTTP request would get."""
    body = dumps(error.status())
    await send(
        {
            "type": "websocket.http.response.start",
            "status": error.code,
            "headers": [(b"content-type", http.JSON.encode())],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body})
