"""Userspace mode: Trio listeners on service addresses relaying to ready endpoints."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import trio

from k8slite.proxy.metrics import ProxyMetrics
from k8slite.proxy.serviceports import Endpoint, ServicePort, ServicePortName

log = logging.getLogger(__name__)

# Bytes moved per splice(2) call; the pipe between the sockets holds this much.
PIPE_CHUNK = 256 * 1024
_SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
_YIELD_EVERY = 8
CONNECT_TIMEOUT = 5.0
# A UDP "session" (one client address to one endpoint) ends after this long without traffic.
UDP_IDLE_TIMEOUT = 30.0
# accept() failures that mean "out of resources right now": back off instead of dying.
_TRANSIENT_ACCEPT = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_LINGER_RESET = struct.pack("ii", 1, 0)

Address = tuple[str, int, str]  # (ip, port, protocol)
BalancerKey = tuple[ServicePortName, int]  # (port name, IP version)


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def reset(sock: trio.socket.SocketType) -> None:
    """Close abortively: with SO_LINGER 0 the kernel answers with RST, not FIN, so the
    client sees its connection refused (ECONNRESET) at once instead of an empty reply."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


class Balancer:
    """Chooses an endpoint per new connection for one service port: round robin, or the
    client's previous endpoint while its ClientIP affinity lasts."""

    def __init__(self, name: ServicePortName, metrics: ProxyMetrics | None) -> None:
        self.name = name
        self.endpoints: tuple[Endpoint, ...] = ()
        self.affinity_timeout: int | None = None
        self._next = 0
        # client IP -> (endpoint, trio time the stickiness ends)
        self._affinity: dict[str, tuple[Endpoint, float]] = {}
        self.active = 0
        self.retired = False
        self._gauge = metrics.active_connections.labels(str(name)) if metrics else None
        self._metrics = metrics

    def update(self, endpoints: tuple[Endpoint, ...], affinity_timeout: int | None) -> None:
        if affinity_timeout != self.affinity_timeout:
            self._affinity.clear()
        self.endpoints, self.affinity_timeout = endpoints, affinity_timeout
        now = trio.current_time()
        # Forget clients whose endpoint is gone or whose stickiness ran out.
        live = set(endpoints)
        self._affinity = {
            c: (ep, until)
            for c, (ep, until) in self._affinity.items()
            if ep in live and until > now
        }

    def pick(self, client_ip: str, exclude: Iterable[Endpoint] = ()) -> Endpoint | None:
        excluded = set(exclude)
        candidates = [ep for ep in self.endpoints if ep not in excluded]
        if not candidates:
            return None
        now = trio.current_time()
        if self.affinity_timeout is not None:
            sticky = self._affinity.get(client_ip)
            if sticky is not None and sticky[1] > now and sticky[0] in candidates:
                self._affinity[client_ip] = (sticky[0], now + self.affinity_timeout)
                return sticky[0]
        ep = candidates[self._next % len(candidates)]
        self._next = (self._next + 1) % max(len(self.endpoints), 1)
        if self.affinity_timeout is not None:
            self._affinity[client_ip] = (ep, now + self.affinity_timeout)
        return ep

    def opened(self) -> None:
        self.active += 1
        if self._gauge is not None:
            self._gauge.inc()

    def closed(self) -> None:
        self.active -= 1
        if self._gauge is not None:
            self._gauge.dec()
        self._maybe_forget()

    def retire(self) -> None:
        """The service port is gone; connections in flight finish (draining)."""
        self.retired = True
        self._maybe_forget()

    def _maybe_forget(self) -> None:
        if self.retired and self.active == 0 and self._metrics is not None:
            with contextlib.suppress(KeyError):
                self._metrics.active_connections.remove(str(self.name))


@dataclass(eq=False)
class _Listener:
    address: Address
    sock: trio.socket.SocketType
    balancer: Balancer
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    def close(self) -> None:
        self.scope.cancel()
        self.sock.close()


def _wildcard(version: int) -> str:
    return "::" if version == 6 else "0.0.0.0"


class UserspaceProxier:
    """Owns one listening socket per service address and relays connections through it.

    Connections run in the proxier's nursery, not under their listener, so removing a
    service or an endpoint never cuts a connection short: it drains, while new
    connections go only where the current endpoints say.
    """

    mode = "userspace"

    def __init__(self, metrics: ProxyMetrics | None = None) -> None:
        self.metrics = metrics
        self._listeners: dict[Address, _Listener] = {}
        self._balancers: dict[BalancerKey, Balancer] = {}
        self._failed: set[Address] = set()
        self._nursery: trio.Nursery | None = None

    @property
    def addresses(self) -> set[Address]:
        return set(self._listeners)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for listener in self._listeners.values():
                listener.close()
            self._listeners.clear()

    async def cleanup(self) -> None:
        """Nothing outlives the process in this mode."""

    async def sync(self, ports: list[ServicePort], nodeport_ips: tuple[str, ...] | None) -> bool:
        """Bring listeners and balancers in line with `ports`; False if some bind failed.

        `nodeport_ips` are the addresses NodePorts answer on; None means all of this host's
        (a wildcard bind).
        """
        assert self._nursery is not None, "run() the proxier before syncing it"
        wanted: dict[Address, Balancer] = {}
        balancers: dict[BalancerKey, Balancer] = {}
        for sp in ports:
            key = (sp.name, sp.version)
            balancer = (
                balancers.get(key) or self._balancers.get(key) or Balancer(sp.name, self.metrics)
            )
            balancer.update(sp.endpoints, sp.affinity_timeout)
            balancers[key] = balancer
            wanted[(sp.cluster_ip, sp.port, sp.protocol)] = balancer
            if sp.node_port:
                for ip in nodeport_ips if nodeport_ips is not None else (_wildcard(sp.version),):
                    if ("." in ip) == (sp.version == 4):
                        wanted[(ip, sp.node_port, sp.protocol)] = balancer
        for key, balancer in self._balancers.items():
            if key not in balancers:
                balancer.retire()
        self._balancers = balancers
        for address in [a for a in self._listeners if a not in wanted]:
            self._listeners.pop(address).close()
            log.info("closed %s:%d/%s", *address)
        self._failed &= wanted.keys()
        complete = True
        for address, balancer in wanted.items():
            listener = self._listeners.get(address)
            if listener is not None:
                listener.balancer = balancer
            elif not await self._open(address, balancer):
                complete = False
        return complete

    async def _open(self, address: Address, balancer: Balancer) -> bool:
        ip, port, protocol = address
        kind = socket.SOCK_STREAM if protocol == "TCP" else socket.SOCK_DGRAM
        sock = trio.socket.socket(_family(ip), kind)
        try:
            if protocol == "TCP":
                # A restarted proxy must rebind while old connections sit in TIME_WAIT.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if ":" in ip:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            await sock.bind((ip, port))
            if protocol == "TCP":
                sock.listen(socket.SOMAXCONN)
        except OSError as e:
            sock.close()
            # Retried every second until it works: say it loudly once, then quietly.
            level = logging.DEBUG if address in self._failed else logging.WARNING
            self._failed.add(address)
            log.log(
                level, "cannot listen on %s:%d/%s for %s: %s", ip, port, protocol, balancer.name, e
            )
            return False
        self._failed.discard(address)
        listener = _Listener(address, sock, balancer)
        self._listeners[address] = listener
        assert self._nursery is not None
        serve = self._serve_tcp if protocol == "TCP" else self._serve_udp
        self._nursery.start_soon(serve, listener)
        log.info("listening on %s:%d/%s for %s", ip, port, protocol, balancer.name)
        return True

    # ------------------------------------------------------------------------- TCP

    async def _serve_tcp(self, listener: _Listener) -> None:
        with listener.scope:
            while True:
                try:
                    conn, peer = await listener.sock.accept()
                except (trio.ClosedResourceError, OSError) as e:
                    if isinstance(e, OSError) and e.errno in _TRANSIENT_ACCEPT:
                        log.warning("accept on %s:%d: %s", *listener.address[:2], e)
                        await trio.sleep(0.1)
                        continue
                    if isinstance(e, OSError) and e.errno == errno.ECONNABORTED:
                        continue
                    return
                assert self._nursery is not None
                self._nursery.start_soon(self._relay_tcp, conn, peer[0], listener.balancer)

    async def _connect(self, balancer: Balancer, client_ip: str) -> trio.socket.SocketType | None:
        """A connection to the first endpoint that takes one, trying each at most once."""
        tried: list[Endpoint] = []
        while (ep := balancer.pick(client_ip, tried)) is not None:
            sock = trio.socket.socket(_family(ep.ip), socket.SOCK_STREAM)
            try:
                with trio.fail_after(CONNECT_TIMEOUT):
                    await sock.connect((ep.ip, ep.port))
            except (OSError, trio.TooSlowError) as e:
                sock.close()
                log.debug("%s: endpoint %s failed: %s", balancer.name, ep, e)
                tried.append(ep)
                continue
            except BaseException:
                sock.close()
                raise
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        return None

    async def _relay_tcp(
        self, client: trio.socket.SocketType, client_ip: str, balancer: Balancer
    ) -> None:
        backend = None
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            backend = await self._connect(balancer, client_ip)
        finally:
            if backend is None:
                reset(client)  # no endpoint took it: refuse, do not leave the client hanging
        if backend is None:
            return
        balancer.opened()
        failed = False
        try:
            async with trio.open_nursery() as nursery:

                def fail() -> None:
                    nonlocal failed
                    failed = True
                    nursery.cancel_scope.cancel()

                nursery.start_soon(_pump, client, backend, fail)
                nursery.start_soon(_pump, backend, client, fail)
        finally:
            balancer.closed()
            # A broken side is passed on as a reset, so the other peer does not take it
            # for a clean end of stream.
            for sock in (client, backend):
                reset(sock) if failed else sock.close()

    # ------------------------------------------------------------------------- UDP

    async def _serve_udp(self, listener: _Listener) -> None:
        sessions: dict[tuple[str, int], _UdpSession] = {}
        with listener.scope:
            async with trio.open_nursery() as nursery:
                while True:
                    try:
                        data, peer = await listener.sock.recvfrom(65535)
                    except trio.ClosedResourceError:
                        return
                    except OSError:
                        continue  # an ICMP error for an earlier reply; nothing to do
                    session = sessions.get(peer[:2])
                    if session is None:
                        session = await self._udp_session(listener, peer, sessions, nursery)
                        if session is None:
                            continue  # no endpoint: dropped, as a closed port would
                    session.last = trio.current_time()
                    with contextlib.suppress(OSError):
                        await session.backend.send(data)

    async def _udp_session(
        self,
        listener: _Listener,
        peer: tuple[str, int],
        sessions: dict[tuple[str, int], _UdpSession],
        nursery: trio.Nursery,
    ) -> _UdpSession | None:
        ep = listener.balancer.pick(peer[0])
        if ep is None:
            return None
        backend = trio.socket.socket(_family(ep.ip), socket.SOCK_DGRAM)
        try:
            await backend.connect((ep.ip, ep.port))
        except OSError:
            backend.close()
            return None
        session = _UdpSession(backend, trio.current_time())
        sessions[peer[:2]] = session
        nursery.start_soon(self._udp_replies, listener, session, peer, sessions)
        return session

    async def _udp_replies(
        self,
        listener: _Listener,
        session: _UdpSession,
        peer: tuple[str, int],
        sessions: dict[tuple[str, int], _UdpSession],
    ) -> None:
        balancer = listener.balancer
        balancer.opened()
        try:
            while True:
                with trio.move_on_at(session.last + UDP_IDLE_TIMEOUT):
                    data = await session.backend.recv(65535)
                    # Replies leave from the service address, which the client sent to.
                    await listener.sock.sendto(data, peer)
                    continue
                if trio.current_time() >= session.last + UDP_IDLE_TIMEOUT:
                    return
        except (OSError, trio.ClosedResourceError):
            return
        finally:
            balancer.closed()
            sessions.pop(peer[:2], None)
            session.backend.close()


@dataclass(eq=False)
class _UdpSession:
    backend: trio.socket.SocketType
    last: float


async def _pump(
    src: trio.socket.SocketType, dst: trio.socket.SocketType, fail: Callable[[], None]
) -> None:
    """Copy one direction until end of stream, then pass the half-close on.

    The bytes go socket -> pipe -> socket with splice(2), inside the kernel: the relay
    never copies them into Python, which doubles its throughput.
    """
    pipe_r, pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError):  # a bigger pipe means fewer calls; optional
            fcntl.fcntl(pipe_w, fcntl.F_SETPIPE_SZ, PIPE_CHUNK)
        streak = 0  # chunks moved since this task last waited (and so let others run)
        while True:
            try:
                n = os.splice(src.fileno(), pipe_w, PIPE_CHUNK, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                streak = 0
                await trio.lowlevel.wait_readable(src)
                continue
            if n == 0:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            while n:
                try:
                    n -= os.splice(pipe_r, dst.fileno(), n, flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    streak = 0
                    await trio.lowlevel.wait_writable(dst)
            streak += 1
            if streak >= _YIELD_EVERY:
                # A stream that never has to wait must not starve the other connections.
                streak = 0
                await trio.lowlevel.checkpoint()
    except (OSError, trio.ClosedResourceError):
        fail()
    finally:
        os.close(pipe_r)
        os.close(pipe_w)
