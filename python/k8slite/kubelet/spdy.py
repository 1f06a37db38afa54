"""A SPDY/3.1 server session: the framing kubectl's port-forward speaks (no PyPI package does).

Frames are 8-byte headers: control frames start with the bit 1, version 3, a type, flags
and a 24-bit length; data frames with a 31-bit stream id, flags and the length. Header
blocks (SYN_STREAM, SYN_REPLY) are name/value lists compressed by one zlib stream per
direction, primed with SPDY/3's dictionary. Only what a port-forward server needs is
here: the client opens the streams (SYN_STREAM), the server accepts them (SYN_REPLY),
both send data and end their half with FIN, RST_STREAM aborts one, PINGs are echoed and
GOAWAY ends the session. Flow-control windows are not enforced, like the Go library
(moby/spdystream) kubectl and the kubelet use.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = (
    1,
    2,
    3,
    4,
    6,
    7,
    8,
    9,
)
FLAG_FIN = 0x01
RST_CANCEL = 5
_MAX_FRAME = 16 * 1024 * 1024
_DATA_CHUNK = 32 * 1024


def _dictionary() -> bytes:
    """SPDY/3's header compression dictionary (draft-mbelshe-httpbis-spdy-00, 2.6.10.1)."""
    words = [
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
    ]
    words += ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive"]
    words += ["origin"]
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
        "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
        "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
        "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8"
        "charset=iso-8859-1,utf-,*,enq=0."
    )
    return b"".join(len(w).to_bytes(4, "big") + w.encode() for w in words) + tail.encode()


DICTIONARY = _dictionary()


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3.1."""


def encode_headers(headers: dict[str, str]) -> bytes:
    out = [len(headers).to_bytes(4, "big")]
    for name, value in headers.items():
        for part in (name.lower().encode(), value.encode()):
            out += [len(part).to_bytes(4, "big"), part]
    return b"".join(out)


def decode_headers(block: bytes) -> dict[str, str]:
    try:
        (count,) = struct.unpack_from(">I", block)
        offset, headers = 4, {}
        for _ in range(count):
            pair = []
            for _ in range(2):
                (size,) = struct.unpack_from(">I", block, offset)
                pair.append(block[offset + 4 : offset + 4 + size].decode(errors="replace"))
                offset += 4 + size
            headers[pair[0].lower()] = pair[1]
    except struct.error:
        raise ProtocolError("truncated header block") from None
    return headers


@dataclass
class Stream:
    """One stream the client opened: its headers, its incoming data, whether we ended ours."""

    id: int
    headers: dict[str, str]
    incoming: trio.MemorySendChannel[bytes]
    data: trio.MemoryReceiveChannel[bytes]
    closed: bool = False
    reset: trio.Event = field(default_factory=trio.Event)


class Session:
    """The server side of a SPDY/3.1 connection over `receive`/`send` of raw bytes."""

    def __init__(
        self,
        receive: Callable[[], Awaitable[bytes | None]],
        send: Callable[[bytes], Awaitable[None]],
    ) -> None:
        self._receive = receive
        self._send = send
        self._send_lock = trio.Lock()
        self._buf = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(zdict=DICTIONARY)
        self.streams: dict[int, Stream] = {}

    async def _read(self, size: int) -> bytes | None:
        while len(self._buf) < size:
            chunk = await self._receive()
            if chunk is None:  # the end; an empty message is just empty
                return None
            self._buf += chunk
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    async def _frame(self, head: bytes) -> None:
        async with self._send_lock:
            await self._send(head)

    def _control(self, kind: int, flags: int, body: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(body)) + body

    async def accept(self, stream: Stream) -> None:
        """SYN_REPLY: the stream is taken."""
        block = self._deflate.compress(encode_headers({})) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        await self._frame(self._control(SYN_REPLY, 0, struct.pack(">I", stream.id) + block))

    async def write(self, stream: Stream, data: bytes) -> None:
        for i in range(0, len(data), _DATA_CHUNK):
            chunk = data[i : i + _DATA_CHUNK]
            await self._frame(struct.pack(">II", stream.id, len(chunk)) + chunk)

    async def close(self, stream: Stream) -> None:
        """End our half of the stream (an empty DATA frame with FIN)."""
        if not stream.closed:
            stream.closed = True
            await self._frame(struct.pack(">II", stream.id, FLAG_FIN << 24))

    async def reset(self, stream: Stream) -> None:
        stream.closed = True
        await self._frame(self._control(RST_STREAM, 0, struct.pack(">II", stream.id, RST_CANCEL)))

    async def serve(self, on_stream: Callable[[Stream], Awaitable[None]]) -> None:
        """Read frames until the connection ends; on_stream(stream) for each new stream."""
        while (head := await self._read(8)) is not None:
            first, second = struct.unpack(">II", head)
            flags, length = second >> 24, second & 0xFFFFFF
            if length > _MAX_FRAME:
                raise ProtocolError(f"frame of {length} bytes")
            body = await self._read(length) if length else b""
            if body is None:
                return
            if first & 0x80000000:
                if (first >> 16) & 0x7FFF != VERSION:
                    raise ProtocolError(f"SPDY version {(first >> 16) & 0x7FFF}, not 3")
                if await self._control_frame(first & 0xFFFF, flags, body, on_stream):
                    return
            else:
                await self._data_frame(first & 0x7FFFFFFF, flags, body)

    async def _control_frame(
        self, kind: int, flags: int, body: bytes, on_stream: Callable[[Stream], Awaitable[None]]
    ) -> bool:
        if kind == SYN_STREAM:
            stream_id = struct.unpack_from(">I", body)[0] & 0x7FFFFFFF
            try:
                block = self._inflate.decompress(body[10:])
            except zlib.error as e:
                raise ProtocolError(f"header block: {e}") from None
            send, receive = trio.open_memory_channel[bytes](64)
            stream = Stream(stream_id, decode_headers(block), send, receive)
            self.streams[stream_id] = stream
            if flags & FLAG_FIN:
                send.close()
            await on_stream(stream)
        elif kind == RST_STREAM:
            gone = self.streams.pop(struct.unpack_from(">I", body)[0] & 0x7FFFFFFF, None)
            if gone is not None:
                stream = gone
                stream.closed = True
                stream.incoming.close()
                stream.reset.set()
        elif kind == PING:
            await self._frame(self._control(PING, 0, body[:4]))
        elif kind == GOAWAY:
            return True
        # SETTINGS, HEADERS and WINDOW_UPDATE change nothing a port-forward server does.
        return False

    async def _data_frame(self, stream_id: int, flags: int, body: bytes) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        if body:
            try:
                await stream.incoming.send(body)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass
        if flags & FLAG_FIN:
            stream.incoming.close()
