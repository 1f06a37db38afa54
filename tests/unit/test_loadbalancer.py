"""The local load balancer on plain TCP echo servers: the first healthy server takes each
connection, a refused one moves it to the next, and a server found unhealthy has its
connections cut."""

from __future__ import annotations

import pytest
import trio

from k8slite.loadbalancer import LoadBalancer, parse_server


async def _echo(tag: bytes, stream: trio.SocketStream) -> None:
    async with stream:
        while data := await stream.receive_some(1024):
            await stream.send_all(tag + data)


async def _echo_server(
    tag: bytes, connections: trio.Nursery, *, task_status: trio.TaskStatus[tuple[int, object]]
) -> None:
    """Listen until cancelled; connections live in `connections`, so they outlive it."""
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listener:
        port = listener.socket.getsockname()[1]
        with trio.CancelScope() as scope:
            task_status.started((port, scope))
            while True:
                stream = await listener.accept()
                connections.start_soon(_echo, tag, stream)


async def _ask(port: int) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"x")
        return await stream.receive_some(1024)


async def test_failover_and_cut_connections() -> None:
    async with trio.open_nursery() as nursery:
        port_a, scope_a = await nursery.start(_echo_server, b"A:", nursery)
        port_b, _ = await nursery.start(_echo_server, b"B:", nursery)
        balancer = LoadBalancer(
            [f"https://127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"], interval=0.1
        )
        port = await nursery.start(balancer.serve, "127.0.0.1", 0)

        assert await _ask(port) == b"A:x"  # the first healthy server
        held = await trio.open_tcp_stream("127.0.0.1", port)
        await held.send_all(b"y")
        assert await held.receive_some(1024) == b"A:y"

        scope_a.cancel()  # A stops listening; its connection stays open on A's side
        # New connections go to B at once (a refused connect moves on).
        assert await _ask(port) == b"B:x"
        # The health check finds A down and cuts the connection still open to it.
        with trio.fail_after(10):
            assert await held.receive_some(1024) == b""
        await held.aclose()
        assert [b.healthy for b in balancer.backends] == [False, True]
        nursery.cancel_scope.cancel()


def test_parse_server() -> None:
    assert parse_server("https://127.0.0.1:6443") == ("127.0.0.1", 6443)
    assert parse_server("localhost:8080") == ("localhost", 8080)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_server("https://127.0.0.1")
    with pytest.raises(ValueError):
        LoadBalancer([])
