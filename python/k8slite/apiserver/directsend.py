"""A short cut for watch frames and responses: bytes written straight onto the TLS connection.

Sending one frame the ordinary way (ASGI send, hypercorn's HTTP stream, h11's chunk
framing, hypercorn's send lock, then Trio's SSLStream with its checkpoints and locks) costs
about 150 µs of Python on the development machine, against about 20 µs for encrypting the
same bytes and handing them to the socket. Fanned out to 1,000 watchers per event, that
difference is most of the delivery time.

So a watch on an HTTP/1.1 connection writes each chunk itself: the chunk framing h11 would
write, one TLS record, one non-blocking write(2). It does so only while nothing else is
being sent on the connection (hypercorn's send lock and the SSLStream's are both free and
the TLS output buffer is empty) and h11 is in the middle of a chunked body; whatever
else is true (HTTP/2, a send in progress, a Trio or h11 without the expected internals)
the frame goes the ordinary way. The stream's end still goes through hypercorn, which
writes the last chunk. A socket that takes only part of a frame gets the rest through
Trio's own send, with both locks still held, so frames never interleave.

Every other write of a connection's (hypercorn's bytes: an HTTP/1.1 response's head and
body, see tls._H11Protocol, or HTTP/2 frames) takes the same way under the same
conditions (`write_raw`, from tls.PeerCertServer.protocol_send): Trio's SSLStream and
hypercorn's lock around them were about 6% of a create's CPU, the write(2) itself about
7% (docs/performance.md).
"""

from __future__ import annotations

import os
import ssl
from typing import Any

import h11
import trio

try:  # h11's writer for chunked bodies: the framing written here must be the one it uses
    from h11._writers import ChunkedWriter
except ImportError:  # pragma: no cover - another h11: always the ordinary way
    ChunkedWriter = None  # type: ignore[assignment,misc]

SCOPE_KEY = "k8slite.direct_chunks"
_STREAM_PARTS = ("_ssl_object", "_outgoing", "_inner_send_lock", "_delayed_outgoing", "_state")


class DirectChunks:
    """One HTTP/1.1 connection's short cut; `write` says whether it took the frame."""

    def __init__(self, server: Any, stream: trio.SSLStream[Any]) -> None:
        self.server = server  # hypercorn's TCPServer: its send_lock and protocol
        self.stream = stream
        self.broken = not (
            ChunkedWriter is not None
            and hasattr(server, "send_lock")
            and all(hasattr(stream, part) for part in _STREAM_PARTS)
        )

    def _in_chunked_body(self) -> bool:
        h11_protocol = getattr(getattr(self.server, "protocol", None), "protocol", None)
        conn = getattr(h11_protocol, "connection", None)
        return (
            isinstance(conn, h11.Connection)
            and conn.our_state is h11.SEND_BODY
            and isinstance(getattr(conn, "_writer", None), ChunkedWriter)
        )

    async def write(self, data: bytes) -> bool:
        """Send data as one chunk of the response body; False: send it the ordinary way."""
        if self.broken or not data:
            return False
        return await self._write(data, chunk=True)

    async def write_raw(self, data: bytes) -> bool:
        """Send bytes hypercorn framed already (a whole response, say) the same short way;
        False: nothing was sent, send them the ordinary way (which also meets, and
        handles, a connection that broke here)."""
        if self.broken or not data:
            return False
        return await self._write(data, chunk=False)

    async def _write(self, data: bytes, chunk: bool) -> bool:
        stream = self.stream
        outer = self.server.send_lock
        inner = stream._inner_send_lock
        try:
            outer.acquire_nowait()
        except trio.WouldBlock:
            return False
        try:
            try:
                inner.acquire_nowait()
            except trio.WouldBlock:
                return False
            try:
                return await self._write_locked(stream, data, chunk)
            finally:
                inner.release()
        finally:
            outer.release()

    async def _write_locked(self, stream: Any, data: bytes, chunk: bool) -> bool:
        if (
            getattr(stream._state, "name", None) != "OK"
            or stream._delayed_outgoing is not None
            or stream._outgoing.pending
            or (chunk and not self._in_chunked_body())
        ):
            return False
        try:
            stream._ssl_object.write(b"%x\r\n%b\r\n" % (len(data), data) if chunk else data)
        except ssl.SSLError:
            self.broken = True
            return False  # the ordinary way meets the same error and closes the connection
        out = stream._outgoing.read()
        try:
            sent = os.write(stream.transport_stream.socket.fileno(), out)
        except BlockingIOError:
            sent = 0
        except OSError:
            # The peer is gone. Nothing more can reach it; a watch ends when the
            # disconnect is read, and until then frames take the ordinary way, which
            # meets the broken connection and closes it (as it does a response's bytes).
            self.broken = True
            return chunk
        if sent < len(out):
            # A slow reader: the rest goes out through Trio, both locks held, shielded like
            # hypercorn's own sends (a cancelled partial TLS record would corrupt the stream).
            with trio.CancelScope(shield=True):
                try:
                    await stream.transport_stream.send_all(memoryview(out)[sent:])
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self.broken = True
        return True
