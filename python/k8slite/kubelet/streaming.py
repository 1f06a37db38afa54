"""The kubelet's streaming API over WebSockets: /exec, /attach and /portForward.

Messages carry a channel number first: a byte in the binary protocols (channel.k8s.io,
v4.channel.k8s.io, v5.channel.k8s.io), a digit followed by base64 in the text ones
(base64.channel.k8s.io, v4.base64.channel.k8s.io). Exec and attach use 0 stdin, 1 stdout,
2 stderr, 3 errors and 4 terminal resizes ({"Width": w, "Height": h}); from v4 on the error
channel carries a Status (Success, or Failure with reason NonZeroExitCode and the exit code
as the cause ExitCode), and v5 adds the close signal (channel 255, then the channel
closed: how a client ends stdin). Port-forward gives port i the data channel 2i and the
error channel 2i+1, each first announced by the port as two little-endian bytes.
The first protocol of the client's list that the kubelet speaks wins, as upstream.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import trio

from k8slite.component.serving import Request, Response, WebSocket, text
from k8slite.kubelet import spdy
from k8slite.kubelet.podworkers import PodWorker, PodWorkers
from k8slite.kubelet.runtime.base import (
    STDERR,
    STDOUT,
    ContainerRuntimeError,
    Runtime,
    StreamSession,
)

log = logging.getLogger(__name__)

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
V1 = "channel.k8s.io"
V1_BASE64 = "base64.channel.k8s.io"
EXEC_PROTOCOLS = (V5, V4, V4_BASE64, V1, V1_BASE64)
PORT_FORWARD_PROTOCOLS = (V4, V4_BASE64, V1, V1_BASE64)
# kubectl's port-forward: SPDY/3.1 carried in binary WebSocket messages (upstream's
# PortForwardWebsockets), streams named by the headers streamType, port and requestID.
SPDY_TUNNEL = "SPDY/3.1+portforward.k8s.io"

STDIN, ERROR, RESIZE, CLOSE = 0, 3, 4, 255
# Port-forward reads from the pod: as much as is there, so that a fast stream goes in few
# large messages (the cost through the API server is per message more than per byte).
_READ = 256 * 1024


def negotiate(offered: list[str], supported: tuple[str, ...]) -> str | None | Response:
    """The protocol to accept (None: the client named none, so channel.k8s.io unnamed)."""
    if not offered:
        return None
    chosen = next((p for p in offered if p in supported), None)
    if chosen is None:
        return text(
            400,
            "unable to upgrade: unable to negotiate protocol: client supports "
            f"{offered}, server supports {list(supported)}",
        )
    return chosen


class Channels:
    """Channel-numbered messages on an accepted WebSocket, in the negotiated encoding."""

    def __init__(self, ws: WebSocket, protocol: str | None) -> None:
        self.ws = ws
        self.protocol = protocol or V1
        self.base64 = "base64" in self.protocol
        self._lock = trio.Lock()

    @property
    def statuses(self) -> bool:
        """Whether the error channel carries Status objects (v4 and v5)."""
        return self.protocol.startswith(("v4.", "v5."))

    async def write(self, channel: int, data: bytes) -> None:
        async with self._lock:
            if self.base64:
                await self.ws.send(f"{channel}{base64.b64encode(data).decode()}")
            else:
                await self.ws.send(bytes([channel]) + data)

    async def read(self) -> tuple[int, bytes] | None:
        """The next message as (channel, data); None once the client is gone."""
        while True:
            message = await self.ws.receive()
            if message is None:
                return None
            if isinstance(message, str):
                if not message:
                    continue
                if not self.base64:
                    message = message.encode()
                else:
                    return ord(message[0]) - ord("0"), base64.b64decode(message[1:])
            if message:
                return message[0], bytes(message[1:])


def _flag(req: Request, *names: str) -> bool:
    return any((req.arg(n) or "").lower() in ("1", "true") for n in names)


@dataclass(frozen=True)
class StreamOptions:
    """What a client asked to connect: upstream's stdin, stdout, stderr and tty."""

    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def of(cls, req: Request) -> StreamOptions:
        # The API server passes input/output/error (upstream's kubelet parameters).
        tty = _flag(req, "tty")
        return cls(
            stdin=_flag(req, "input", "stdin"),
            stdout=_flag(req, "output", "stdout"),
            # With a TTY, stderr is merged into stdout.
            stderr=_flag(req, "error", "stderr") and not tty,
            tty=tty,
        )


def success_status() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_status(argv: list[str], code: int) -> dict[str, Any]:
    return {
        "metadata": {},
        "status": "Failure",
        "message": (
            "command terminated with non-zero exit code: error executing command "
            f"[{' '.join(argv)}], exit code {code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def error_status(message: str) -> dict[str, Any]:
    return {
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }


class StreamingServer:
    """The kubelet's /exec, /attach and /portForward handlers."""

    def __init__(self, workers: PodWorkers, runtime: Runtime) -> None:
        self.workers = workers
        self.runtime = runtime

    def routes(self) -> dict[str, Callable[[Request, WebSocket], Awaitable[Response | None]]]:
        return {
            "/exec/": self.exec,
            "/attach/": self.attach,
            "/portForward/": self.port_forward,
        }

    def _pod(self, req: Request, parts: int) -> tuple[PodWorker, list[str]] | Response:
        # /<verb>/<namespace>/<pod>[/<uid>]/<container>: the uid is optional, as upstream.
        path = req.path.strip("/").split("/")[1:]
        if len(path) not in (parts, parts + 1):
            return text(404, "404 page not found")
        worker = self.workers.find(path[0], path[1])
        if worker is None or worker.done:
            return text(404, "pod does not exist")
        if len(path) == parts + 1 and path[2] != worker.uid:
            return text(404, "pod does not exist")
        return worker, path

    def _container_id(self, worker: PodWorker, name: str) -> str | Response:
        status = worker.status()
        statuses = [
            *(status.get("initContainerStatuses") or ()),
            *(status.get("containerStatuses") or ()),
            *(status.get("ephemeralContainerStatuses") or ()),
        ]
        st = next((s for s in statuses if s.get("name") == name), None)
        if st is None or "running" not in (st.get("state") or {}) or not st.get("containerID"):
            return text(500, f'container not found ("{name}")')
        return str(st["containerID"]).split("://", 1)[-1]

    async def exec(self, req: Request, ws: WebSocket) -> Response | None:
        found = self._pod(req, 3)
        if isinstance(found, Response):
            return found
        worker, path = found
        argv = req.query.get("command") or []
        opts = StreamOptions.of(req)
        if not argv:
            return text(400, "you must specify at least one command for the container")
        return await self._session(
            ws,
            worker,
            path[-1],
            opts,
            lambda cid: self.runtime.exec_stream(cid, argv, stdin=opts.stdin, tty=opts.tty),
            argv,
        )

    async def attach(self, req: Request, ws: WebSocket) -> Response | None:
        found = self._pod(req, 3)
        if isinstance(found, Response):
            return found
        worker, path = found
        opts = StreamOptions.of(req)
        return await self._session(
            ws,
            worker,
            path[-1],
            opts,
            lambda cid: self.runtime.attach(cid, stdin=opts.stdin, tty=opts.tty),
            None,
        )

    async def _session(
        self,
        ws: WebSocket,
        worker: PodWorker,
        container: str,
        opts: StreamOptions,
        start: Callable[[str], Awaitable[StreamSession]],
        argv: list[str] | None,
    ) -> Response | None:
        if not (opts.stdin or opts.stdout or opts.stderr):
            return text(400, "you must specify at least 1 of stdin, stdout, stderr")
        protocol = negotiate(ws.subprotocols, EXEC_PROTOCOLS)
        if isinstance(protocol, Response):
            return protocol
        cid = self._container_id(worker, container)
        if isinstance(cid, Response):
            return cid
        try:
            session = await start(cid)
        except ContainerRuntimeError as e:
            return text(500, str(e))
        try:
            await ws.accept(protocol)
            channels = Channels(ws, protocol)
            await _serve_session(channels, session, opts, argv)
        finally:
            with trio.CancelScope(shield=True):
                await session.aclose()
        return None

    async def port_forward(self, req: Request, ws: WebSocket) -> Response | None:
        found = self._pod(req, 2)
        if isinstance(found, Response):
            return found
        worker, _ = found
        protocol = negotiate(ws.subprotocols, (*PORT_FORWARD_PROTOCOLS, SPDY_TUNNEL))
        if isinstance(protocol, Response):
            return protocol
        ports: list[int] = []
        if protocol != SPDY_TUNNEL:
            # Over channels the ports are named up front; SPDY streams name their own.
            try:
                ports = [int(p) for v in req.query.get("port") or () for p in v.split(",") if p]
            except ValueError:
                return text(400, "invalid port")
            if not ports or any(not 0 < p < 65536 for p in ports):
                return text(400, 'query parameter "port" is required and must be 1-65535')
        sandbox = worker.state.sandbox
        if sandbox is None or worker.sandbox_stopped:
            return text(500, f"pod {worker.namespace}/{worker.name} has no running sandbox")

        def connect(port: int) -> Awaitable[Any]:
            assert sandbox is not None
            return self.runtime.port_forward(sandbox, port)

        await ws.accept(protocol)
        if protocol == SPDY_TUNNEL:
            await _serve_spdy_ports(ws, worker, connect)
        else:
            await _serve_ports(Channels(ws, protocol), ports, connect)
        return None


async def _serve_session(
    channels: Channels, session: StreamSession, opts: StreamOptions, argv: list[str] | None
) -> None:
    """Copy between the channels and the session; the status last, then the close."""
    # An empty message on the lowest writable channel tells the client the streams are up.
    first = STDOUT if opts.stdout else STDERR if opts.stderr else ERROR
    await channels.write(first, b"")

    async def output(kind: int, data: bytes) -> None:
        wanted = opts.stdout if kind == STDOUT else opts.stderr
        if wanted:
            await channels.write(kind, data)

    async def input_loop(cancel: trio.CancelScope) -> None:
        while (message := await channels.read()) is not None:
            channel, data = message
            # Input for a process that already ended its stdin (or exited) is dropped; a bad
            # or refused size leaves the terminal as it is. The session goes on either way.
            with suppress(
                trio.BrokenResourceError,
                trio.ClosedResourceError,
                OSError,
                ValueError,
                TypeError,
                AttributeError,
                ContainerRuntimeError,
            ):
                if channel == STDIN and opts.stdin:
                    await session.write_stdin(data)
                elif channel == CLOSE and channels.protocol == V5 and data[:1] == bytes([STDIN]):
                    await session.close_stdin()
                elif channel == RESIZE and opts.tty:
                    size = json.loads(data)
                    await session.resize(int(size.get("Width", 0)), int(size.get("Height", 0)))
        # The client is gone: nothing more to deliver.
        cancel.cancel()

    error: str | None = None
    code: int | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(input_loop, nursery.cancel_scope)
        try:
            await session.copy_output(output)
            code = await session.wait()
        except ContainerRuntimeError as e:
            error = str(e)
        except trio.BrokenResourceError:  # the client went away: nobody to tell
            nursery.cancel_scope.cancel()
            return
        nursery.cancel_scope.cancel()
    if channels.ws.closed:
        return
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        if channels.statuses:
            status = (
                error_status(error)
                if error is not None
                else exit_status(argv, code)
                if argv is not None and code
                else success_status()
            )
            await channels.write(ERROR, json.dumps(status).encode())
        elif error is not None or (argv is not None and code):
            message = error or f"command terminated with non-zero exit code: exit code {code}"
            await channels.write(ERROR, message.encode())


async def _serve_ports(
    channels: Channels, ports: list[int], connect: Callable[[int], Awaitable[Any]]
) -> None:
    """Port i's data on channel 2i, its errors on 2i+1; done when every connection is."""
    streams: dict[int, Any] = {}
    try:
        for i, port in enumerate(ports):
            announce = port.to_bytes(2, "little")
            await channels.write(2 * i, announce)
            await channels.write(2 * i + 1, announce)
            try:
                streams[i] = await connect(port)
            except ContainerRuntimeError as e:
                await channels.write(2 * i + 1, str(e).encode())
        async with trio.open_nursery() as nursery:
            remaining = len(streams)

            async def pod_to_client(i: int, stream: Any) -> None:
                nonlocal remaining
                with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    while chunk := await stream.receive_some(_READ):
                        await channels.write(2 * i, chunk)
                remaining -= 1
                if remaining == 0:
                    nursery.cancel_scope.cancel()

            for i, stream in streams.items():
                nursery.start_soon(pod_to_client, i, stream)
            if not streams:
                return
            while (message := await channels.read()) is not None:
                channel, data = message
                stream = streams.get(channel // 2)
                if channel % 2 == 0 and stream is not None and data:
                    with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        await stream.send_all(data)
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            for stream in streams.values():
                await trio.aclose_forcefully(stream)


async def _serve_spdy_ports(
    ws: WebSocket, worker: PodWorker, connect: Callable[[int], Awaitable[Any]]
) -> None:
    """Each connection is a pair of streams (error, data) sharing a requestID."""
    pairs: dict[str, dict[str, spdy.Stream]] = {}

    async def receive() -> bytes | None:
        message = await ws.receive()
        if isinstance(message, str):
            raise spdy.ProtocolError("a text message in a SPDY tunnel")
        return message

    session = spdy.Session(receive, ws.send)

    async def forward(data: spdy.Stream, error: spdy.Stream) -> None:
        port = int(data.headers.get("port") or 0)
        try:
            tcp = await connect(port)
        except ContainerRuntimeError as e:
            message = f"error forwarding port {port} to pod {worker.uid}, uid : {e}"
            await session.write(error, message.encode())
            await session.close(error)
            await session.close(data)
            return
        async with tcp, trio.open_nursery() as nursery:

            async def client_to_pod() -> None:
                with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    async for chunk in data.data:
                        await tcp.send_all(chunk)
                    await tcp.send_eof()

            async def reset() -> None:
                await data.reset.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(client_to_pod)
            nursery.start_soon(reset)
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                while chunk := await tcp.receive_some(_READ):
                    await session.write(data, chunk)
            nursery.cancel_scope.cancel()
        # Both halves end: the client waits for the error stream to end, empty when fine.
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await session.close(data)
            await session.close(error)

    async with trio.open_nursery() as nursery:

        async def on_stream(stream: spdy.Stream) -> None:
            await session.accept(stream)
            kind = stream.headers.get("streamtype", "")
            if kind not in ("data", "error"):
                await session.reset(stream)
                return
            pair = pairs.setdefault(stream.headers.get("requestid", ""), {})
            pair[kind] = stream
            if "data" in pair and "error" in pair:
                del pairs[stream.headers.get("requestid", "")]
                nursery.start_soon(forward, pair["data"], pair["error"])

        try:
            await session.serve(on_stream)
        except spdy.ProtocolError as e:
            log.info("port-forward to %s/%s: %s", worker.namespace, worker.name, e)
        nursery.cancel_scope.cancel()
