"""A lean pool of keep-alive HTTPS/1.1 connections for the scheduler's hot writes.

Bindings, events and status patches are small JSON writes, one or more per pod; at a
thousand pods a second the general client's per-request overhead (and its pool's linear
scans over every connection) would cost more CPU than filtering and scoring 5,000 nodes.
This pool does the one thing needed: send a request on an idle connection (or a new one),
read one response, keep the connection for the next caller.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import trio

from k8slite._native import dumps, loads
from k8slite.client import ApiConnectionError, ClientConfig
from k8slite.client.errors import ApiError, error_for, status_for

_MAX_HEADER = 64 * 1024
_READ = 65536
_STALE = (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError, EOFError)


_T = TypeVar("_T")


class _TLSSocket(trio.abc.AsyncResource):
    """TLS on a non-blocking socket of the ssl module, waiting for readiness in Trio.

    The ssl module's own record layer on the socket: trio.SSLStream's MemoryBIO state
    machine costs several times its CPU per small request, and the binder sends one or
    two requests per pod.
    """

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock

    @classmethod
    async def connect(cls, host: str, port: int, context: ssl.SSLContext) -> _TLSSocket:
        family, kind, proto, _, address = (
            await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        )[0]
        raw = socket.socket(family, kind, proto)
        try:
            raw.setblocking(False)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = raw.connect_ex(address)
            if code not in (0, errno.EINPROGRESS):
                raise OSError(code, os.strerror(code))
            await trio.lowlevel.wait_writable(raw)
            code = raw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, os.strerror(code))
            sock = context.wrap_socket(raw, server_hostname=host, do_handshake_on_connect=False)
        except BaseException:
            raw.close()
            raise
        conn = cls(sock)
        try:
            await conn._io(sock.do_handshake)
        except BaseException:
            sock.close()
            raise
        return conn

    async def _io(self, call: Callable[..., _T], *args: Any) -> _T:
        while True:
            try:
                return call(*args)
            except ssl.SSLWantReadError:
                await trio.lowlevel.wait_readable(self.sock)
            except ssl.SSLWantWriteError:
                await trio.lowlevel.wait_writable(self.sock)

    async def send_all(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        view = memoryview(data)
        while view:
            view = view[await self._io(self.sock.send, view) :]

    async def receive_some(self, max_bytes: int) -> bytes:
        return await self._io(self.sock.recv, max_bytes)

    async def aclose(self) -> None:
        self.sock.close()
        await trio.lowlevel.checkpoint()


class _Connection:
    """One HTTPS/1.1 connection and the bytes read past the last response."""

    def __init__(self, stream: _TLSSocket) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def _fill(self) -> None:
        data = await self.stream.receive_some(_READ)
        if not data:
            raise EOFError("server closed the connection")
        self.buf += data

    async def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def _line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            await self._fill()
        line = bytes(self.buf[:end])
        del self.buf[: end + 2]
        return line

    async def exchange(self, request: bytes) -> tuple[int, bytes, bool]:
        """(status, body, reusable) for one request."""
        await self.stream.send_all(request)
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if len(self.buf) > _MAX_HEADER:
                raise EOFError("response header too large")
            await self._fill()
        head = bytes(self.buf[:end]).split(b"\r\n")
        del self.buf[: end + 4]
        status = int(head[0].split(b" ", 2)[1])
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        if b"content-length" in headers:
            body = await self._take(int(headers[b"content-length"]))
        elif headers.get(b"transfer-encoding") == b"chunked":
            parts = []
            while size := int((await self._line()).split(b";")[0], 16):
                parts.append(await self._take(size))
                await self._take(2)
            await self._take(2)
            body = b"".join(parts)
        else:
            body = b""
        return status, body, headers.get(b"connection") != b"close"


class WritePool:
    """POST and PATCH JSON to one API server over reused connections (bounded by callers)."""

    def __init__(self, config: ClientConfig, *, max_idle: int = 64) -> None:
        url = urlsplit(config.server)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 443
        self.context = config.ssl_context or ssl.create_default_context()
        self.timeout = config.timeout
        self.max_idle = max_idle
        head = [
            f"Host: {url.netloc}",
            f"User-Agent: {config.user_agent}",
            "Accept: application/json",
        ]
        if config.token:
            head.append(f"Authorization: Bearer {config.token}")
        self._head = ("\r\n".join(head) + "\r\n").encode()
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        return _Connection(await _TLSSocket.connect(self.host, self.port, self.context))

    async def request(
        self, method: str, path: str, body: Any, content_type: str = "application/json"
    ) -> Any:
        """One JSON request; the decoded answer, or the typed ApiError of a failure."""
        payload = dumps(body)
        request = (
            f"{method} {path} HTTP/1.1\r\n".encode()
            + self._head
            + f"Content-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        for attempt in (1, 2):
            conn = self._idle.pop() if self._idle else None
            reused = conn is not None
            try:
                with trio.fail_after(self.timeout):
                    if conn is None:
                        conn = await self._connect()
                    status, content, reusable = await conn.exchange(request)
            except (*_STALE, trio.TooSlowError) as e:
                if conn is not None:
                    await trio.aclose_forcefully(conn.stream)
                # A kept-alive connection the server had meanwhile closed: one fresh try.
                if reused and attempt == 1 and not isinstance(e, trio.TooSlowError):
                    continue
                raise ApiConnectionError(f"{method} {path}: {e!r}") from e
            if reusable and len(self._idle) < self.max_idle:
                self._idle.append(conn)
            else:
                await trio.aclose_forcefully(conn.stream)
            if status >= 400:
                raise _error(status, content)
            return loads(content) if content else None
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await trio.aclose_forcefully(conn.stream)


def _error(code: int, content: bytes) -> ApiError:
    try:
        status = loads(content)
    except ValueError:
        status = None
    if not isinstance(status, dict) or status.get("kind") != "Status":
        status = status_for(code, content.decode(errors="replace").strip() or str(code))
    return error_for(code, status)


def pod_path(namespace: str, name: str, subresource: str = "") -> str:
    path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}"
    return f"{path}/{subresource}" if subresource else path
