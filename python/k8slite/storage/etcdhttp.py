"""A lean HTTP/1.1 client for etcd's JSON gateway: unary POSTs over keep-alive connections.

Why not httpx for these: at 50 concurrent writes its connection pool spends more CPU per
request than the API server spends on the rest of a create (each request scans every pooled
connection, polling each socket), which halved the create rate on etcd. This client does one
send and reads one response per request; an idle connection is reused only while the server
has not closed it. The watch stream, a single long request, still goes through httpx.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import trio

# Idle connections kept per endpoint; more are closed when they finish.
MAX_IDLE = 64
_MAX_HEAD = 64 * 1024


class ConnectFailed(Exception):
    """No connection could be made: the request was never sent."""


class RequestFailed(Exception):
    """The connection failed after the request was (perhaps partly) sent: outcome unknown."""


class _Connection:
    def __init__(self, stream: trio.abc.Stream, sock: trio.socket.SocketType) -> None:
        self.stream = stream
        self.sock = sock
        self.buf = bytearray()

    def stale(self) -> bool:
        """An idle connection with something to read has been closed (or broken) by etcd."""
        return bool(self.buf) or self.sock.fileno() < 0 or self.sock.is_readable()

    async def _more(self) -> None:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise RequestFailed("etcd closed the connection")
        self.buf += chunk

    async def _line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > _MAX_HEAD:
                raise RequestFailed("etcd sent an overlong line")
            await self._more()
        line = bytes(self.buf[:end])
        del self.buf[: end + 2]
        return line

    async def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self._more()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def request(self, head: bytes, body: bytes) -> tuple[int, bytes, bool]:
        """Send one request; returns (status, body, whether the connection may be reused)."""
        await self.stream.send_all(head + body)
        status_line = await self._line()
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise RequestFailed(f"etcd answered {status_line[:80]!r}")
        status = int(parts[1])
        headers: dict[bytes, bytes] = {}
        while line := await self._line():
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        reusable = headers.get(b"connection", b"").lower() != b"close"
        if b"content-length" in headers:
            data = await self._exactly(int(headers[b"content-length"]))
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            chunks = []
            while size := int((await self._line()).split(b";")[0], 16):
                chunks.append(await self._exactly(size))
                await self._exactly(2)
            while await self._line():  # trailers, up to the blank line
                pass
            data = b"".join(chunks)
        else:  # delimited by the end of the connection
            reusable = False
            try:
                while True:
                    await self._more()
            except RequestFailed:
                pass
            data = bytes(self.buf)
        return status, data, reusable


class EtcdHTTP:
    """POSTs to one etcd endpoint (`http://host:port` or `https://...` with ssl_context)."""

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None) -> None:
        parts = urlsplit(url)
        if parts.hostname is None:
            raise ValueError(f"not an etcd URL: {url!r}")
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        authority = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = f"{authority}:{self.port}".encode()
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        try:
            tcp = await trio.open_tcp_stream(self.host, self.port)
        except OSError as e:
            raise ConnectFailed(f"cannot connect to etcd at {self.host}:{self.port}: {e}") from e
        if not self.tls:
            return _Connection(tcp, tcp.socket)
        stream = trio.SSLStream(tcp, self._ssl, server_hostname=self.host, https_compatible=True)
        try:
            await stream.do_handshake()
        except (trio.BrokenResourceError, OSError) as e:
            await trio.aclose_forcefully(stream)
            raise ConnectFailed(f"TLS to etcd at {self.host}:{self.port} failed: {e}") from e
        return _Connection(stream, tcp.socket)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        conn = None
        while self._idle:
            candidate = self._idle.pop()
            if not candidate.stale():
                conn = candidate
                break
            await trio.aclose_forcefully(candidate.stream)
        if conn is None:
            conn = await self._connect()
        head = (
            b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (path.encode(), self._host_header, len(body))
        )
        reusable = False
        try:
            status, data, reusable = await conn.request(head, body)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ValueError) as e:
            raise RequestFailed(f"etcd {path}: {e!r}") from e
        finally:
            # Cancelled, failed or not reusable: a connection in an unknown state is closed.
            if reusable and len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
            else:
                await trio.aclose_forcefully(conn.stream)
        return status, data

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await trio.aclose_forcefully(conn.stream)
