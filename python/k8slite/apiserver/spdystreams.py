"""pods/exec, pods/attach and pods/portforward over SPDY/3.1, for clients that offer only that.

kubectl with KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false (or KUBECTL_PORT_FORWARD_WEBSOCKETS
=false), and older clients, send an HTTP/1.1 request with `Upgrade: SPDY/3.1` and the
protocols they speak in X-Stream-Protocol-Version headers. After the same checks as a
WebSocket (streaming.kubelet_target, the kubelet connected first so that its refusal is
an ordinary HTTP error), the API server answers 101 itself, takes the connection from
hypercorn (tls.TakenConnection) and:

- port-forward (portforward.k8s.io): relays the SPDY bytes unchanged to and from the
  kubelet's SPDY-in-WebSocket tunnel (kubelet/streaming.py's SPDY_TUNNEL), which already
  serves kubectl's per-connection data and error streams;
- exec and attach (v5 down to v1 of the channel protocols): is the SPDY server itself
  (kubelet/spdy.py's framing) and translates the client's streams, named by their
  streamType header, to the kubelet's v5 channels: stdin 0 (its FIN becomes the close
  signal), stdout 1, stderr 2, the error stream 3 (the Status for v4 and v5, its message
  for older protocols) and terminal resizes 4 (a JSON object per size).
"""

from __future__ import annotations

import json
import logging
from contextlib import suppress
from typing import Any

import trio

from k8slite.api import errors
from k8slite.apiserver import http
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.podlogs import KubeletConnector, pod_kubelet
from k8slite.apiserver.requestinfo import RequestInfo
from k8slite.apiserver.streaming import BackendSocket, kubelet_target
from k8slite.apiserver.tls import TAKE_KEY, TakenConnection
from k8slite.kubelet import spdy
from k8slite.kubelet.streaming import SPDY_TUNNEL, V4, V5

log = logging.getLogger(__name__)

PORT_FORWARD = "portforward.k8s.io"
REMOTE_COMMAND = (V5, V4, "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")
_PROTOCOL_HEADER = b"x-stream-protocol-version"
# Upstream's streamCreationTimeout: how long the client has to open its streams.
STREAM_CREATION_TIMEOUT = 30.0
# After the last byte, how long the client has to close its end before we close ours
# (closing with its bytes unread would reset the connection and lose what we sent).
_LINGER = 5.0
_STDIN, _STDOUT, _STDERR, _ERROR, _RESIZE, _CLOSE = 0, 1, 2, 3, 4, 255
# A side that left: what sending to it raises.
_GONE = (trio.BrokenResourceError, trio.ClosedResourceError)


def is_upgrade(req: http.Request) -> bool:
    return "spdy/3.1" in req.headers.get("upgrade", "").lower()


def offered(req: http.Request) -> list[str]:
    """The client's protocols, in its order (one header each, or comma-separated)."""
    out: list[str] = []
    for name, value in req.scope["headers"]:
        if name.lower() == _PROTOCOL_HEADER:
            out += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
    return out


def _negotiate(protocols: list[str], supported: tuple[str, ...]) -> str | None:
    """The first of the client's protocols the server speaks: "" when it named none (the
    oldest protocol then, unnamed), None when it speaks none of them."""
    if not protocols:
        return ""
    return next((p for p in protocols if p in supported), None)


def _go_list(items: list[str] | tuple[str, ...]) -> str:
    return "[" + " ".join(items) + "]"


def _switching(protocol: str) -> bytes:
    lines = ["HTTP/1.1 101 Switching Protocols", "Connection: Upgrade", "Upgrade: SPDY/3.1"]
    if protocol:
        lines.append(f"X-Stream-Protocol-Version: {protocol}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def serve(
    core: ApiCore,
    connector: KubeletConnector | None,
    req: http.Request,
    info: RequestInfo,
    send: http.Send,
) -> int:
    """Answer an authorized SPDY/3.1 upgrade and stream; refusals as ApiError before it.

    Returns the status answered (101 once streaming).
    """
    take = req.scope.get("extensions", {}).get(TAKE_KEY)
    forward = info.subresource == "portforward"
    pod, target = kubelet_target(core, req, info)
    if take is None:
        raise errors.bad_request(
            "unable to upgrade connection: SPDY/3.1 needs an HTTP/1.1 connection of its own"
        )
    supported = (PORT_FORWARD,) if forward else REMOTE_COMMAND
    protocol = _negotiate(offered(req), supported)
    if protocol is None:
        # upstream's httpstream.Handshake: plain text, and the versions it would accept.
        message = (
            "unable to upgrade: unable to negotiate protocol: client supports "
            f"{_go_list(offered(req))}, server accepts {_go_list(supported)}\n"
        )
        await http.respond(
            send,
            403,
            message.encode(),
            "text/plain; charset=utf-8",
            {"X-Accepted-Stream-Protocol-Versions": ", ".join(supported)},
        )
        return 403
    host, port = pod_kubelet(core, connector, pod)
    assert connector is not None  # pod_kubelet refuses without one
    kubelet = await BackendSocket.open(
        connector, host, port, target, [SPDY_TUNNEL] if forward else [V5, V4]
    )
    try:
        conn: TakenConnection = take()
        try:
            await conn.send_all(_switching(protocol))
            if forward:
                await _relay(conn, kubelet)
            else:
                await RemoteCommand(conn, kubelet, protocol, req).run()
        except (*_GONE, spdy.ProtocolError) as e:
            log.debug("SPDY stream %s ended: %r", target, e)
        finally:
            await conn.aclose()
    finally:
        await kubelet.aclose()
    return 101


async def _relay(conn: TakenConnection, kubelet: BackendSocket) -> None:
    """Port-forward: the client's SPDY bytes to the kubelet's tunnel and back, unchanged."""
    async with trio.open_nursery() as nursery:

        async def client_to_kubelet() -> None:
            with suppress(*_GONE):
                while (data := await conn.receive()) is not None:
                    await kubelet.send(data)
            nursery.cancel_scope.cancel()

        nursery.start_soon(client_to_kubelet)
        with suppress(*_GONE):
            while (message := await kubelet.receive()) is not None:
                if isinstance(message, bytes):
                    await conn.send_all(message)
        nursery.cancel_scope.cancel()


class RemoteCommand:
    """exec or attach: the client's SPDY streams as the kubelet's v5 channels."""

    def __init__(
        self, conn: TakenConnection, kubelet: BackendSocket, protocol: str, req: http.Request
    ) -> None:
        self.kubelet = kubelet
        self.statuses = protocol in (V5, V4)
        self.session = spdy.Session(conn.receive, conn.send_all)
        tty = req.flag("tty")
        # The streams the client opens (upstream's createStreams): stderr only without a
        # terminal, resize only with one.
        self.expected = {"error"}
        self.expected |= {"stdin"} if req.flag("stdin") else set()
        self.expected |= {"stdout"} if req.flag("stdout") else set()
        self.expected |= {"stderr"} if req.flag("stderr") and not tty else set()
        self.expected |= {"resize"} if tty else set()
        self.streams: dict[str, spdy.Stream] = {}
        self.ready = trio.Event()
        self.client_gone = trio.Event()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._serve, nursery)
            with trio.move_on_after(STREAM_CREATION_TIMEOUT):
                await self.ready.wait()
            if not self.ready.is_set():
                log.info("SPDY client opened %s of %s", sorted(self.streams), self.expected)
                nursery.cancel_scope.cancel()
                return
            with suppress(*_GONE):  # the client went away: nobody to tell
                await self._from_kubelet()
            # Everything is sent: the client closes when it has read it all.
            with trio.move_on_after(_LINGER):
                await self.client_gone.wait()
            nursery.cancel_scope.cancel()

    async def _serve(self, nursery: trio.Nursery) -> None:
        async def on_stream(stream: spdy.Stream) -> None:
            await self.session.accept(stream)
            kind = stream.headers.get("streamtype", "")
            self.streams[kind] = stream
            if kind == "stdin":
                nursery.start_soon(self._stdin, stream)
            elif kind == "resize":
                nursery.start_soon(self._resize, stream)
            if self.expected <= self.streams.keys():
                self.ready.set()

        try:
            await self.session.serve(on_stream)
        except spdy.ProtocolError as e:
            log.info("SPDY exec client: %s", e)
        except _GONE:
            pass  # the client left while we accepted a stream
        finally:
            self.client_gone.set()
            if not self.ready.is_set():
                nursery.cancel_scope.cancel()

    async def _stdin(self, stream: spdy.Stream) -> None:
        with suppress(*_GONE):
            async for chunk in stream.data:
                await self.kubelet.send(bytes([_STDIN]) + chunk)
            # The client closed its stdin: v5's close signal ends the process's.
            await self.kubelet.send(bytes([_CLOSE, _STDIN]))

    async def _resize(self, stream: spdy.Stream) -> None:
        buf = ""
        decoder = json.JSONDecoder()
        with suppress(*_GONE):
            async for chunk in stream.data:
                buf += chunk.decode(errors="replace")
                while buf.strip():
                    try:
                        size, end = decoder.raw_decode(buf.lstrip())
                    except ValueError:
                        break  # the rest of the object is still to come
                    buf = buf.lstrip()[end:]
                    await self.kubelet.send(bytes([_RESIZE]) + json.dumps(size).encode())

    async def _from_kubelet(self) -> None:
        outputs = {_STDOUT: self.streams.get("stdout"), _STDERR: self.streams.get("stderr")}
        error = b""
        while (message := await self.kubelet.receive()) is not None:
            if not isinstance(message, bytes) or len(message) < 2:
                continue  # the empty "streams are up" message says nothing here
            channel, data = message[0], message[1:]
            if channel == _ERROR:
                error += data
            elif (stream := outputs.get(channel)) is not None:
                await self.session.write(stream, data)
        error_stream = self.streams["error"]
        if error:
            await self.session.write(error_stream, self._error_text(error))
        for stream in (error_stream, *outputs.values()):
            if stream is not None:
                await self.session.close(stream)

    def _error_text(self, error: bytes) -> bytes:
        """v4 and v5 take the Status; older protocols its message, nothing on success."""
        if self.statuses:
            return error
        try:
            status: Any = json.loads(error)
        except ValueError:
            return error
        if status.get("status") == "Success":
            return b""
        return str(status.get("message") or "").encode()
