"""Watch frames written straight onto HTTP/1.1 connections (apiserver/directsend.py).

A raw TLS client reads the chunked body byte for byte, so a framing mistake, a lost or
reordered frame, or bytes interleaved with hypercorn's own writes would show.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import BACKENDS, ServerHandle, apiserver_on


@pytest.fixture(scope="module", params=BACKENDS)
def apiserver(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerHandle]:
    """This module's API server, once on each storage backend (RocksDB, a real etcd)."""
    with apiserver_on(request.param, tmp_path_factory.mktemp(request.param)) as server:
        yield server


class ChunkedWatch:
    """A watch over one HTTP/1.1 TLS connection, its body parsed strictly as chunks."""

    def __init__(self, server: ServerHandle, path: str) -> None:
        url = urlsplit(server.url)
        ctx = ssl.create_default_context(cafile=str(server.ca))
        ctx.load_cert_chain(*server.cert("admin"))
        raw = socket.create_connection((url.hostname, url.port))
        # A small receive buffer, so that a reader that pauses fills the socket quickly.
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        self.sock = ctx.wrap_socket(raw, server_hostname=url.hostname)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {url.hostname}\r\n\r\n".encode())
        self.buf = b""
        head = self._until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"transfer-encoding: chunked" in head.lower(), head
        self.ended = False

    def _fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("connection closed inside the body")
        self.buf += data

    def _until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            self._fill()
        part, self.buf = self.buf.split(sep, 1)
        return part

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        part, self.buf = self.buf[:n], self.buf[n:]
        return part

    def chunk(self) -> bytes:
        """The next chunk's payload; b"" for the last chunk."""
        size = int(self._until(b"\r\n"), 16)
        if size == 0:
            assert self._until(b"\r\n") == b""  # no trailers, then the end
            self.ended = True
            return b""
        payload = self._exactly(size)
        assert self._exactly(2) == b"\r\n", "chunk not followed by CRLF"
        return payload

    def events(self, count: int, timeout: float = 30.0) -> list[dict[str, object]]:
        """The next `count` events (a chunk holds whole lines, one or more)."""
        self.sock.settimeout(timeout)
        out: list[dict[str, object]] = []
        while len(out) < count:
            payload = self.chunk()
            assert payload, "the watch ended early"
            assert payload.endswith(b"\n"), payload[-80:]
            out.extend(json.loads(line) for line in payload.splitlines())
        return out

    def close(self) -> None:
        self.sock.close()


def direct_writes(api: httpx.Client) -> float:
    text = api.get("/metrics").text
    m = re.search(r"^apiserver_watch_direct_writes_total (\S+)$", text, re.MULTILINE)
    assert m, "apiserver_watch_direct_writes_total is not exported"
    return float(m.group(1))


def _rv(api: httpx.Client, namespace: str) -> str:
    r = api.get(f"/api/v1/namespaces/{namespace}/configmaps")
    return str(r.json()["metadata"]["resourceVersion"])


def test_http11_watch_frames_go_straight_to_the_connection(
    apiserver: ServerHandle, api: httpx.Client, namespace: str
) -> None:
    before = direct_writes(api)
    rv = _rv(api, namespace)
    watch = ChunkedWatch(
        apiserver,
        f"/api/v1/namespaces/{namespace}/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=3",
    )
    try:
        for i in range(20):
            r = api.post(
                f"/api/v1/namespaces/{namespace}/configmaps",
                json={"metadata": {"name": f"cm{i}"}, "data": {"i": str(i)}},
            )
            assert r.status_code == 201, r.text
        api.delete(f"/api/v1/namespaces/{namespace}/configmaps/cm0")
        events = watch.events(21)
        assert [e["type"] for e in events] == ["ADDED"] * 20 + ["DELETED"]
        names = [e["object"]["metadata"]["name"] for e in events]  # type: ignore[index]
        assert names == [f"cm{i}" for i in range(20)] + ["cm0"]
        # The stream then ends at timeoutSeconds with hypercorn's last chunk.
        watch.sock.settimeout(10)
        assert watch.chunk() == b""
        assert watch.ended
    finally:
        watch.close()
    assert direct_writes(api) > before, "no frame took the direct path"


def test_a_reader_that_pauses_gets_every_frame_intact(
    apiserver: ServerHandle, api: httpx.Client, namespace: str
) -> None:
    """Frames larger than the socket buffers: partial writes finish through Trio, in order,
    and the server keeps answering others while this connection's writes wait."""
    rv = _rv(api, namespace)
    watch = ChunkedWatch(
        apiserver,
        f"/api/v1/namespaces/{namespace}/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=60",
    )
    try:
        value = "x" * (700 * 1024)
        count = 12  # about 8 MiB of frames against a reader that is not reading
        for i in range(count):
            r = api.post(
                f"/api/v1/namespaces/{namespace}/configmaps",
                json={"metadata": {"name": f"big{i}"}, "data": {"v": value}},
            )
            assert r.status_code == 201, r.text
        started = time.monotonic()
        assert api.get("/api/v1/namespaces").status_code == 200
        assert time.monotonic() - started < 5
        events = watch.events(count)
        assert [e["object"]["metadata"]["name"] for e in events] == [  # type: ignore[index]
            f"big{i}" for i in range(count)
        ]
        assert all(e["object"]["data"]["v"] == value for e in events)  # type: ignore[index]
    finally:
        watch.close()


def test_http2_watches_take_the_ordinary_path(apiserver: ServerHandle, namespace: str) -> None:
    with apiserver.client(http2=True) as client:
        rv = _rv(client, namespace)
        with client.stream(
            "GET",
            f"/api/v1/namespaces/{namespace}/configmaps",
            params={"watch": "1", "resourceVersion": rv, "timeoutSeconds": "2"},
        ) as r:
            assert r.http_version == "HTTP/2"
            created = client.post(
                f"/api/v1/namespaces/{namespace}/configmaps", json={"metadata": {"name": "h2"}}
            )
            assert created.status_code == 201
            lines = [json.loads(line) for line in r.iter_lines() if line]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [("ADDED", "h2")]
