"""A local TCP load balancer in front of several API servers (as k3s's agent runs one).

Every component's kubeconfig, and kubectl's, keeps one address: 127.0.0.1:PORT of this
balancer. Each new connection goes to the first API server that is healthy and accepts it;
a refused or timed-out connect moves on to the next at once, so a killed API server costs a
client one broken connection and a reconnect, not a timeout. Bytes pass through untouched:
TLS ends at the API server, so the client's certificate still authenticates it there.

Health: every `interval` seconds each server's /readyz is fetched (with a client
certificate that may read it, such as the monitoring identity; without one, a TCP connect
is the check). A server that turns unhealthy has its connections cut, so long watches move
to a live server instead of hanging on one that stopped answering.
"""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import trio

log = logging.getLogger("k8slite.loadbalancer")

CONNECT_TIMEOUT = 2.0
HEALTH_INTERVAL = 1.0
HEALTH_TIMEOUT = 2.0
_CHUNK = 65536


@dataclass(eq=False)
class Backend:
    """One API server: its address, whether it passed its last check, its connections."""

    host: str
    port: int
    healthy: bool = True
    connections: set[trio.CancelScope] = field(default_factory=set)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_server(url: str) -> tuple[str, int]:
    """host and port of https://HOST:PORT (or HOST:PORT)."""
    parts = urlsplit(url if "//" in url else f"//{url}")
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"{url!r}: expected https://HOST:PORT")
    return parts.hostname, parts.port


class LoadBalancer:
    def __init__(
        self,
        servers: Sequence[str],
        *,
        health_context: ssl.SSLContext | None = None,
        interval: float = HEALTH_INTERVAL,
    ) -> None:
        if not servers:
            raise ValueError("no API servers to balance")
        self.backends = [Backend(*parse_server(s)) for s in servers]
        self._health_context = health_context
        self._interval = interval
        self.port = 0

    def order(self) -> list[Backend]:
        """The servers to try, in turn: the healthy ones first, in their given order (one
        preferred server keeps watch caches warm), then the rest, as a last resort."""
        return [b for b in self.backends if b.healthy] + [b for b in self.backends if not b.healthy]

    async def serve(
        self, host: str = "127.0.0.1", port: int = 0, *, task_status: trio.TaskStatus[int]
    ) -> None:
        """Listen on host:port (0: a free port) and balance until cancelled; task_status
        gets the port listened on."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._check_health)
            task_status.started(self.port)
            await trio.serve_listeners(self._handle, listeners)

    async def _connect(self) -> tuple[Backend, trio.SocketStream] | None:
        for backend in self.order():
            with trio.move_on_after(CONNECT_TIMEOUT):
                try:
                    return backend, await trio.open_tcp_stream(backend.host, backend.port)
                except OSError as e:
                    log.info("%s refused a connection (%s); trying the next", backend.address, e)
            self._mark(backend, healthy=False)
        return None

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            picked = await self._connect()
            if picked is None:
                log.warning("no API server accepts connections")
                return
            backend, server = picked
            async with server:
                with trio.CancelScope() as scope:
                    backend.connections.add(scope)
                    try:
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(_pipe, client, server, nursery.cancel_scope)
                            nursery.start_soon(_pipe, server, client, nursery.cancel_scope)
                    finally:
                        backend.connections.discard(scope)

    def _mark(self, backend: Backend, *, healthy: bool) -> None:
        if backend.healthy == healthy:
            return
        backend.healthy = healthy
        if healthy:
            log.info("API server %s is healthy again", backend.address)
            return
        log.warning(
            "API server %s is unhealthy; cutting its %d connections",
            backend.address,
            len(backend.connections),
        )
        for scope in list(backend.connections):
            scope.cancel()

    async def _check_health(self) -> None:
        context = self._health_context
        async with httpx.AsyncClient(
            verify=context if context is not None else False, timeout=HEALTH_TIMEOUT
        ) as http:
            while True:
                async with trio.open_nursery() as nursery:
                    for backend in self.backends:
                        nursery.start_soon(self._check_one, http, backend)
                await trio.sleep(self._interval)

    async def _check_one(self, http: httpx.AsyncClient, backend: Backend) -> None:
        ok = False
        with trio.move_on_after(HEALTH_TIMEOUT):
            try:
                if self._health_context is not None:
                    r = await http.get(f"https://{backend.address}/readyz")
                    ok = r.status_code == 200
                else:
                    stream = await trio.open_tcp_stream(backend.host, backend.port)
                    await stream.aclose()
                    ok = True
            except (OSError, httpx.HTTPError):
                ok = False
        self._mark(backend, healthy=ok)


async def _pipe(
    source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope
) -> None:
    """Copy until source ends, then end the whole connection (both directions): a TLS
    connection half-closed by one side is over."""
    try:
        while data := await source.receive_some(_CHUNK):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        scope.cancel()


def health_context(cafile: Path, certfile: Path, keyfile: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.load_cert_chain(str(certfile), str(keyfile))
    return ctx


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="k8slite load-balancer",
        description="A local TCP load balancer in front of several API servers.",
    )
    p.add_argument("--listen", default="127.0.0.1:6443", help="HOST:PORT to listen on")
    p.add_argument(
        "--servers", required=True, help="comma-separated API server URLs, https://HOST:PORT"
    )
    p.add_argument("--health-cafile", type=Path, help="CA that verifies the API servers")
    p.add_argument("--health-certfile", type=Path, help="client certificate that reads /readyz")
    p.add_argument("--health-keyfile", type=Path, help="its key")
    p.add_argument("--health-interval", type=float, default=HEALTH_INTERVAL)
    p.add_argument("-v", "--v", dest="verbosity", type=int, default=0)
    a = p.parse_args(argv)
    health = (a.health_cafile, a.health_certfile, a.health_keyfile)
    if any(health) and not all(health):
        p.error("--health-cafile, --health-certfile and --health-keyfile go together")
    return a


def main(argv: list[str] | None = None) -> int:
    from k8slite.component.logging import setup_logging

    a = parse_args(argv)
    setup_logging(a.verbosity)
    try:
        host, port = parse_server(a.listen)
        servers = [s.strip() for s in a.servers.split(",") if s.strip()]
        context = None
        if a.health_cafile:
            context = health_context(a.health_cafile, a.health_certfile, a.health_keyfile)
        balancer = LoadBalancer(servers, health_context=context, interval=a.health_interval)
    except (ValueError, OSError) as e:
        print(f"k8slite load-balancer: {e}", file=sys.stderr)
        return 2

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            listening = await nursery.start(balancer.serve, host, port)
            # On stdout, for whoever started us to wait for (as the API server's line).
            print(f"balancing {', '.join(servers)} on {host}:{listening}", flush=True)

    try:
        trio.run(run)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
