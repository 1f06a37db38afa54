"""The DNS protocol side: queries in over UDP and TCP, answers out, never a crash.

A query is answered from the answer cache when it can be (no parsing at all; for a
lower-case question not even a walk over its name), else parsed
with dnspython and answered from the record store; names that are not the cluster's go to
the upstream resolvers in a task of their own, so a slow upstream holds up nobody else.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import trio

from k8slite.dns.cache import AnswerCache, exact_key, patched, query_key, with_id
from k8slite.dns.forward import Forwarder, read_exactly
from k8slite.dns.metrics import DnsMetrics, rcode_text
from k8slite.dns.resolve import Answer, Resolver

log = logging.getLogger(__name__)

# What we advertise, and the most we send over UDP whatever a client advertises: beyond
# this, IP fragments get lost more than they arrive.
UDP_PAYLOAD = 4096
_UDP_MIN = 512
# Per readiness wake-up of the UDP socket, at most this many queries before other tasks
# (TCP, informers, /metrics) get a turn: a flood slows them down, it does not stop them.
_UDP_BATCH = 64
# A TCP client gets this long to send its next query, and at most this many connections
# are open at once: one more is closed at once, so idle connections cannot pile up.
TCP_IDLE = 10.0
MAX_TCP = 512
_UNSUPPORTED = frozenset(
    dns.rdatatype.from_text(t)
    for t in ("AXFR", "IXFR", "MAILA", "MAILB", "ANY", "OPT", "TSIG", "TKEY")
)
_UDP, _TCP = b"u", b"t"


@dataclass
class Pending:
    """A query that needs the upstream resolvers: forwarded whole, or to chase a CNAME."""

    query: dns.message.Message
    data: bytes
    answer: Answer
    proto: str
    family: str
    started: float


class DnsServer:
    def __init__(
        self,
        resolver: Resolver,
        forwarder: Forwarder,
        metrics: DnsMetrics,
        cache: AnswerCache | None = None,
    ) -> None:
        self.resolver = resolver
        self.store = resolver.store
        self.forwarder = forwarder
        self.metrics = metrics
        self.cache = cache if cache is not None else AnswerCache()
        self.store.listeners.append(self.cache.invalidate)

    # ------------------------------------------------------------------ answers

    def respond(self, data: bytes, proto: str, family: str) -> bytes | Pending | None:
        """The response to one query, or a Pending for finish(), or None (dropped)."""
        started = time.perf_counter()
        transport = _TCP if proto == "tcp" else _UDP
        # The fast path: a lower-case question is its own key; no walk, no parse.
        keyed: tuple[bytes, int] | None = None
        entry = self.cache.get(exact_key(data, transport))
        if entry is not None:
            reply = with_id(entry[0], data)
        else:
            keyed = query_key(data, transport)
            if keyed is not None:
                entry = self.cache.get(keyed[0])
                if entry is not None:
                    reply = patched(entry[0], data, keyed[1])
                else:
                    self.metrics.cache_miss()
        if entry is not None:
            response, denial, qtype, _ = entry
            self.metrics.cache_hit(denial)
            self.metrics.observe(
                proto, family, qtype, response[3] & 0xF, "cache", time.perf_counter() - started
            )
            return reply
        try:
            query = dns.message.from_wire(data)
        except dns.message.ShortHeader:
            return None  # not even an ID to answer to
        except (dns.exception.DNSException, ValueError, UnicodeError):
            if data[2] & 0x80:
                return None  # a response sent to us: never answer those
            return self._header_only(data, dns.rcode.FORMERR, proto, family, started)
        if query.flags & dns.flags.QR:
            return None
        if query.opcode() != dns.opcode.QUERY:
            return self._error(query, dns.rcode.NOTIMP, proto, family, started)
        if len(query.question) != 1:
            return self._error(query, dns.rcode.FORMERR, proto, family, started)
        if query.edns > 0:
            return self._error(query, dns.rcode.BADVERS, proto, family, started)
        question = query.question[0]
        if question.rdclass != dns.rdataclass.IN:
            return self._error(query, dns.rcode.REFUSED, proto, family, started)
        if question.rdtype in _UNSUPPORTED:
            return self._error(query, dns.rcode.NOTIMP, proto, family, started)
        answer = self.resolver.resolve(question.name, question.rdtype)
        if answer.forward or answer.chase is not None:
            if self.forwarder.full():
                # CoreDNS's forward refuses beyond max_concurrent rather than queue.
                return self._error(query, dns.rcode.REFUSED, proto, family, started)
            return Pending(query, data, answer, proto, family, started)
        wire = self._wire(self._message(query, answer), query, proto)
        if keyed is not None and answer.rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            self.cache.put(keyed[0], keyed[1], wire, answer.denial, frozenset(answer.names))
            self.metrics.cache_entries.set(len(self.cache))
        self.metrics.observe(
            proto,
            family,
            question.rdtype,
            answer.rcode,
            "kubernetes",
            time.perf_counter() - started,
        )
        return wire

    async def finish(self, pending: Pending) -> bytes:
        """Answer a Pending through the upstream resolvers; SERVFAIL when none answers."""
        query, answer = pending.query, pending.answer
        tcp = pending.proto == "tcp"
        qtype = query.question[0].rdtype
        if answer.forward:
            result = await self.forwarder.exchange(pending.data, tcp)
            elapsed = time.perf_counter() - pending.started
            if result is not None:
                wire, upstream = result
                rcode = wire[3] & 0xF
                self.metrics.forward_duration.labels(
                    "forward", f"{upstream[0]}:{upstream[1]}", rcode_text(rcode)
                ).observe(elapsed)
                self.metrics.observe(
                    pending.proto, pending.family, qtype, rcode, "forward", elapsed
                )
                return wire
            return self._error(
                query, dns.rcode.SERVFAIL, pending.proto, pending.family, pending.started
            )
        assert answer.chase is not None
        sub = dns.message.make_query(answer.chase, qtype)
        result = await self.forwarder.exchange(sub.to_wire(), tcp)
        if result is not None:
            try:
                chased = dns.message.from_wire(result[0])
            except (dns.exception.DNSException, ValueError, UnicodeError):
                chased = None
            if chased is not None:
                # The upstream's records for the target follow the CNAME, as the spec's
                # example shows; its NXDOMAIN is the answer's (the rcode of the last name).
                answer.answer += chased.answer
                if chased.rcode() == dns.rcode.NXDOMAIN:
                    answer.rcode = dns.rcode.NXDOMAIN
        wire = self._wire(self._message(query, answer), query, pending.proto)
        self.metrics.observe(
            pending.proto,
            pending.family,
            qtype,
            answer.rcode,
            "kubernetes",
            time.perf_counter() - pending.started,
        )
        return wire

    def _message(self, query: dns.message.Message, answer: Answer) -> dns.message.Message:
        response = dns.message.make_response(
            query, recursion_available=True, our_payload=UDP_PAYLOAD
        )
        if answer.authoritative:
            response.flags |= dns.flags.AA
        response.set_rcode(answer.rcode)
        response.answer = answer.answer
        response.authority = answer.authority
        response.additional = answer.additional
        return response

    def _wire(self, response: dns.message.Message, query: dns.message.Message, proto: str) -> bytes:
        if proto == "tcp":
            return response.to_wire(max_size=65535)
        # The client's EDNS buffer size (512 without EDNS): what does not fit is left out
        # and TC tells the client to ask again over TCP.
        limit = max(_UDP_MIN, min(query.payload, UDP_PAYLOAD)) if query.edns >= 0 else _UDP_MIN
        return response.to_wire(max_size=limit, prefer_truncation=True)

    def _error(
        self,
        query: dns.message.Message,
        rcode: dns.rcode.Rcode,
        proto: str,
        family: str,
        started: float,
    ) -> bytes:
        response = dns.message.make_response(
            query, recursion_available=True, our_payload=UDP_PAYLOAD
        )
        response.set_rcode(rcode)
        qtype = query.question[0].rdtype if query.question else 0
        self.metrics.observe(proto, family, qtype, rcode, "", time.perf_counter() - started)
        return self._wire(response, query, proto)

    def _header_only(
        self, data: bytes, rcode: dns.rcode.Rcode, proto: str, family: str, started: float
    ) -> bytes:
        """FORMERR for a query we could not parse: its ID, opcode and RD, nothing else."""
        response = dns.message.Message(id=int.from_bytes(data[:2], "big"))
        response.flags = dns.flags.QR | (int.from_bytes(data[2:4], "big") & 0x7900)
        response.set_rcode(rcode)
        self.metrics.observe(proto, family, 0, rcode, "", time.perf_counter() - started)
        return response.to_wire()

    def _respond_safely(self, data: bytes, proto: str, family: str) -> bytes | Pending | None:
        try:
            return self.respond(data, proto, family)
        except Exception:
            # A bug answering one query must not take the server down with it.
            log.exception("answering a %s query", proto)
            return None

    async def _finish_safely(self, pending: Pending) -> bytes | None:
        try:
            return await self.finish(pending)
        except Exception:
            log.exception("answering a %s query through the upstreams", pending.proto)
            return None

    # ---------------------------------------------------------------------- UDP

    async def serve_udp(self, sock: socket.socket) -> None:
        """Answer datagrams on `sock` (bound, non-blocking) until cancelled."""
        family = "2" if sock.family == socket.AF_INET6 else "1"
        async with trio.open_nursery() as nursery:
            while True:
                await trio.lowlevel.wait_readable(sock)
                for _ in range(_UDP_BATCH):
                    try:
                        data, addr = sock.recvfrom(65535)
                    except BlockingIOError:
                        break
                    except OSError:
                        continue  # an ICMP error for an earlier reply: nothing to do
                    reply = self._respond_safely(data, "udp", family)
                    if isinstance(reply, Pending):
                        nursery.start_soon(self._udp_later, sock, reply, addr)
                    elif reply is not None:
                        _sendto(sock, reply, addr)
                else:
                    # A full batch and maybe more waiting: the others get a turn first.
                    # (A drained socket goes straight back to waiting, which yields too:
                    # one trip through the scheduler per wake-up, not two.)
                    await trio.lowlevel.checkpoint()

    async def _udp_later(self, sock: socket.socket, pending: Pending, addr: Any) -> None:
        reply = await self._finish_safely(pending)
        if reply is not None:
            _sendto(sock, reply, addr)

    # ---------------------------------------------------------------------- TCP

    async def serve_tcp(self, listeners: list[trio.SocketListener]) -> None:
        """Answer queries on TCP connections (several per connection) until cancelled."""
        limiter = trio.CapacityLimiter(MAX_TCP)

        async def handle(stream: trio.SocketStream) -> None:
            try:
                limiter.acquire_nowait()
            except trio.WouldBlock:
                await stream.aclose()
                return
            try:
                await self._tcp_connection(stream)
            finally:
                limiter.release()

        await trio.serve_listeners(handle, listeners)

    async def _tcp_connection(self, stream: trio.SocketStream) -> None:
        family = "2" if stream.socket.family == socket.AF_INET6 else "1"
        async with stream:
            try:
                while True:
                    with trio.move_on_after(TCP_IDLE) as idle:
                        length = await read_exactly(stream, 2)
                        data = (
                            await read_exactly(stream, int.from_bytes(length, "big"))
                            if length
                            else None
                        )
                    if idle.cancelled_caught or data is None:
                        return
                    reply = self._respond_safely(data, "tcp", family)
                    if isinstance(reply, Pending):
                        reply = await self._finish_safely(reply)
                    if reply is None:
                        return  # nothing sensible to say: close, as for a garbled stream
                    await stream.send_all(len(reply).to_bytes(2, "big") + reply)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return  # the client went away


def _sendto(sock: socket.socket, reply: bytes, addr: Any) -> None:
    try:
        sock.sendto(reply, addr)
    except OSError:
        pass  # a full send buffer or an unreachable client: UDP may drop, and does


def udp_socket(host: str, port: int) -> socket.socket:
    """A bound, non-blocking UDP socket with room for bursts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
