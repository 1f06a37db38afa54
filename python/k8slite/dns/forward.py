"""Forwarding to the upstream resolvers: names outside the cluster, as CoreDNS's `forward`."""

from __future__ import annotations

import ipaddress
import logging
import secrets
import socket
import time
from collections.abc import Iterable
from pathlib import Path

import trio

log = logging.getLogger(__name__)

Upstream = tuple[str, int]
# Each upstream gets this long; all of them together never more than _TOTAL.
TIMEOUT = 2.0
_TOTAL = 5.0


def parse_upstreams(text: str) -> list[Upstream]:
    """ "10.0.0.2", "10.0.0.2:5353", "[2001:db8::1]:53", comma-separated."""
    out = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = int(rest.lstrip(":") or 53)
        elif item.count(":") == 1:
            host, _, p = item.partition(":")
            port = int(p)
        else:
            host, port = item, 53
        ipaddress.ip_address(host)  # an address, not a name: resolving it would need us
        if not 0 < port < 65536:
            raise ValueError(f"upstream {item!r}: port out of range")
        out.append((host, port))
    return out


def resolv_conf_nameservers(path: Path = Path("/etc/resolv.conf")) -> list[Upstream]:
    """The host's resolvers, as CoreDNS's `forward . /etc/resolv.conf`."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            host = fields[1].partition("%")[0]  # a link-local zone is not ours to use
            try:
                ipaddress.ip_address(host)
            except ValueError:
                continue
            out.append((host, 53))
    return out


def without_self(upstreams: Iterable[Upstream], bind: str, port: int) -> list[Upstream]:
    """Drop our own address: forwarding to ourselves would loop."""
    mine = {("127.0.0.1", port), ("::1", port)} if bind in ("0.0.0.0", "::", "") else set()
    mine.add((bind, port))
    return [u for u in upstreams if u not in mine]


class Forwarder:
    def __init__(
        self, upstreams: list[Upstream], max_concurrent: int = 1000, timeout: float = TIMEOUT
    ) -> None:
        self.upstreams = upstreams
        self.max_concurrent = max_concurrent
        self.timeout = timeout
        self.in_flight = 0
        self._next = 0

    def full(self) -> bool:
        return self.in_flight >= self.max_concurrent

    async def exchange(self, query: bytes, tcp: bool) -> tuple[bytes, Upstream] | None:
        """The first upstream's answer to `query` (its ID restored), or None when none
        answered in time."""
        if not self.upstreams or len(query) < 12:
            return None
        self.in_flight += 1
        try:
            start = self._next
            self._next = (self._next + 1) % len(self.upstreams)
            with trio.move_on_after(_TOTAL):
                for i in range(len(self.upstreams)):
                    upstream = self.upstreams[(start + i) % len(self.upstreams)]
                    answer = await self._one(upstream, query, tcp)
                    if answer is not None:
                        return query[:2] + answer[2:], upstream
            return None
        finally:
            self.in_flight -= 1

    async def _one(self, upstream: Upstream, query: bytes, tcp: bool) -> bytes | None:
        # A fresh random ID (and, over UDP, a fresh source port) for every exchange, so an
        # off-path spoofer has to guess both.
        qid = secrets.token_bytes(2)
        wire = qid + query[2:]
        started = time.perf_counter()
        with trio.move_on_after(self.timeout):
            try:
                answer = await (_tcp if tcp else _udp)(upstream, wire, qid)
            except OSError as e:
                log.debug("upstream %s:%d: %s", *upstream, e)
                return None
            log.debug("upstream %s:%d answered in %.3fs", *upstream, time.perf_counter() - started)
            return answer
        # Per query, so debug: a dead upstream under load would flood the log otherwise.
        log.debug(
            "upstream %s:%d did not answer within %.1fs", upstream[0], upstream[1], self.timeout
        )
        return None


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


async def _udp(upstream: Upstream, wire: bytes, qid: bytes) -> bytes | None:
    with trio.socket.socket(_family(upstream[0]), socket.SOCK_DGRAM) as sock:
        await sock.connect(upstream)
        await sock.send(wire)
        while True:
            answer = await sock.recv(65535)
            # Only a response to this query counts; anything else is ignored, not trusted.
            if len(answer) >= 12 and answer[:2] == qid and answer[2] & 0x80:
                return answer


async def _tcp(upstream: Upstream, wire: bytes, qid: bytes) -> bytes | None:
    stream = await trio.open_tcp_stream(*upstream)
    async with stream:
        await stream.send_all(len(wire).to_bytes(2, "big") + wire)
        data = await read_exactly(stream, 2)
        if data is None:
            return None
        answer = await read_exactly(stream, int.from_bytes(data, "big"))
        if answer is None or len(answer) < 12 or answer[:2] != qid:
            return None
        return answer


async def read_exactly(stream: trio.abc.ReceiveStream, n: int) -> bytes | None:
    """n bytes from the stream, or None if it ends first."""
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.receive_some(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)
