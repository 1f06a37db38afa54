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
import logging
from contextlib import suppress
from typing import Any
from urllib.parse import quote, urlencode

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from k8slite._native import dumps
from k8slite.api import errors
from k8slite.apiserver import http
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.podlogs import KubeletConnector, kubelet_error, pick_container, pod_kubelet
from k8slite.apiserver.requestinfo import RequestInfo
from k8slite.component.objects import Obj

log = logging.getLogger(__name__)

SUBRESOURCES = frozenset({"exec", "attach", "portforward"})
_KUBELET_PATHS = {"exec": "exec", "attach": "attach", "portforward": "portForward"}
# The API's stdin/stdout/stderr/tty become the kubelet's input/output/error/tty (upstream).
_STREAM_PARAMS = (("stdin", "input"), ("stdout", "output"), ("stderr", "error"), ("tty", "tty"))
_READ = 64 * 1024
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


class KubeletSocket:
    """The API server's WebSocket to a kubelet (wsproto over a Trio TLS stream)."""

    def __init__(self, stream: trio.SSLStream[trio.SocketStream]) -> None:
        self.stream = stream
        self.conn = WSConnection(ConnectionType.CLIENT)
        self.subprotocol: str | None = None
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
    ) -> KubeletSocket:
        """Connected and accepted; an ApiError with the kubelet's words when refused."""
        ctx = connector.ssl_context()
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                tcp = await trio.open_tcp_stream(host.strip("[]"), port)
                stream = trio.SSLStream(tcp, ctx, server_hostname=host.strip("[]"))
                await stream.do_handshake()
        except (OSError, trio.BrokenResourceError, trio.TooSlowError) as e:
            raise errors.ApiError(500, "InternalError", f"error dialing backend: {e}") from None
        sock = cls(stream)
        try:
            await sock._handshake(host, port, target, subprotocols)
        except BaseException:
            await sock.aclose()
            raise
        return sock

    async def _handshake(self, host: str, port: int, target: str, subprotocols: list[str]) -> None:
        request = Request(host=f"{host}:{port}", target=target, subprotocols=subprotocols)
        await self.stream.send_all(self.conn.send(request))
        refused: int | None = None
        body = b""
        while True:
            for event in await self._events():
                if isinstance(event, AcceptConnection):
                    self.subprotocol = event.subprotocol
                    return
                if isinstance(event, RejectConnection):
                    refused = event.status_code
                    if not event.has_body:
                        raise kubelet_error(refused, b"", target)
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished or len(body) > _MAX_REFUSAL:
                        raise kubelet_error(refused or 500, body, target)
            if self.closed:
                raise kubelet_error(refused or 500, body, target)

    async def _events(self) -> list[Any]:
        try:
            data = await self.stream.receive_some(_READ)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self.closed = True
        self.conn.receive_data(bytes(data) if data else None)
        return list(self.conn.events())

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
        message = BytesMessage(data=data) if isinstance(data, bytes) else TextMessage(data=data)
        async with self._send_lock:
            await self.stream.send_all(self.conn.send(message))

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            if not self.closed:
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
        kubelet = await KubeletSocket.open(connector, host, port, target, offered)
    except errors.ApiError as e:
        # As upstream's stream translator: the client's streams are up first, and what
        # the kubelet refused arrives as an error on them (kubectl shows it, no fallback).
        channel = next((p for p in offered if p in _CHANNEL_PROTOCOLS), None)
        if channel is None:
            raise
        await _report(send, channel, f"unable to upgrade connection: {e.message}")
        return
    try:
        await send({"type": "websocket.accept", "subprotocol": kubelet.subprotocol})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_client_to_kubelet, receive, kubelet, nursery.cancel_scope)
            while (message := await kubelet.receive()) is not None:
                key = "bytes" if isinstance(message, bytes) else "text"
                await send({"type": "websocket.send", key: message})
            nursery.cancel_scope.cancel()
        await send({"type": "websocket.close", "code": 1000})
    except Exception as e:  # noqa: BLE001 - the streams were up: a side that left ends them
        log.debug("stream %s ended: %r", target, e)
    finally:
        await kubelet.aclose()


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
    receive: http.Receive, kubelet: KubeletSocket, scope: trio.CancelScope
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
