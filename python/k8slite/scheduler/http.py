"""A lean pool of keep-alive HTTPS/1.1 connections for the scheduler's hot writes.

Bindings, events and status patches are small JSON writes, one or more per pod; at a
thousand pods a second the general client's per-request overhead (and its pool's linear
scans over every connection) would cost more CPU than filtering and scoring 5,000 nodes.
This pool does the one thing needed: send a request on an idle connection (or a new one),
read one response, keep the connection for the next caller.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import quote, urlsplit

import trio

from k8slite._native import dumps, loads
from k8slite.client import ApiConnectionError, ClientConfig
from k8slite.client.errors import ApiError, error_for, status_for

_MAX_HEADER = 64 * 1024
_READ = 65536
_STALE = (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError, EOFError)


class _Connection:
    """One HTTPS/1.1 connection and the bytes read past the last response."""

    def __init__(self, stream: trio.SSLStream[trio.SocketStream]) -> None:
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
        tcp = await trio.open_tcp_stream(self.host, self.port)
        stream = trio.SSLStream(tcp, self.context, server_hostname=self.host)
        await stream.do_handshake()
        return _Connection(stream)

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
