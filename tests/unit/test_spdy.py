"""The kubelet's SPDY/3.1 server session, driven by frames a client would send."""

from __future__ import annotations

import struct
import zlib

import pytest
import trio

from k8slite.kubelet import spdy


def _control(kind: int, flags: int, body: bytes) -> bytes:
    return struct.pack(">HHI", 0x8003, kind, (flags << 24) | len(body)) + body


class Client:
    """The client half: compresses its header blocks with the shared dictionary."""

    def __init__(self) -> None:
        self.deflate = zlib.compressobj(zdict=spdy.DICTIONARY)
        self.inflate = zlib.decompressobj(zdict=spdy.DICTIONARY)

    def syn_stream(self, stream_id: int, headers: dict[str, str], fin: bool = False) -> bytes:
        block = self.deflate.compress(spdy.encode_headers(headers))
        block += self.deflate.flush(zlib.Z_SYNC_FLUSH)
        body = struct.pack(">IIH", stream_id, 0, 0) + block
        return _control(spdy.SYN_STREAM, spdy.FLAG_FIN if fin else 0, body)


def test_header_blocks_round_trip() -> None:
    headers = {"streamtype": "data", "port": "8080", "requestid": "0"}
    assert spdy.decode_headers(spdy.encode_headers(headers)) == headers
    with pytest.raises(spdy.ProtocolError):
        spdy.decode_headers(b"\x00\x00\x00\x01\x00\x00")


def test_dictionary_is_spdy3s() -> None:
    # The DICTID every SPDY/3 header stream carries (kubectl's first bytes: 78 bb e3 c6 a7 c2).
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2


async def test_session_streams_data_ping_and_reset() -> None:
    to_server, server_in = trio.open_memory_channel[bytes | None](100)
    out: list[bytes] = []

    async def receive() -> bytes | None:
        return await server_in.receive()

    async def send(data: bytes) -> None:
        out.append(data)

    session = spdy.Session(receive, send)
    seen: list[spdy.Stream] = []
    received: list[bytes] = []

    async def on_stream(stream: spdy.Stream) -> None:
        await session.accept(stream)
        seen.append(stream)

    client = Client()
    # Frames split at odd places, and an empty message, as kubectl's tunnel sends them.
    frames = client.syn_stream(1, {"streamtype": "error", "port": "80", "requestid": "0"}, True)
    frames += client.syn_stream(3, {"streamtype": "data", "port": "80", "requestid": "0"})
    frames += struct.pack(">II", 3, 5) + b"hello"
    frames += struct.pack(">II", 3, spdy.FLAG_FIN << 24)
    frames += _control(spdy.PING, 0, b"\x00\x00\x00\x07")
    frames += _control(spdy.RST_STREAM, 0, struct.pack(">II", 1, spdy.RST_CANCEL))
    for i in range(0, len(frames), 7):
        await to_server.send(frames[i : i + 7])
    await to_server.send(b"")
    await to_server.send(None)
    with trio.fail_after(5):
        await session.serve(on_stream)
    assert [s.id for s in seen] == [1, 3]
    assert seen[1].headers == {"streamtype": "data", "port": "80", "requestid": "0"}
    async for chunk in seen[1].data:
        received.append(chunk)
    assert received == [b"hello"]
    assert seen[0].reset.is_set()
    await session.write(seen[1], b"back")
    await session.close(seen[1])
    sent = b"".join(out)
    # Two SYN_REPLYs (each with a compressed, empty header block), the PING echoed, the
    # data frame and the FIN.
    replies = [m for m in out if m[:4] == b"\x80\x03\x00\x02"]
    assert len(replies) == 2
    assert client.inflate.decompress(replies[0][12:]) == b"\x00\x00\x00\x00"
    assert _control(spdy.PING, 0, b"\x00\x00\x00\x07") in out
    assert struct.pack(">II", 3, 4) + b"back" in out
    assert sent.endswith(struct.pack(">II", 3, spdy.FLAG_FIN << 24))
