"""The userspace proxier on loopback addresses: balancing, refusal, draining, half-close."""

from __future__ import annotations

import socket

import pytest
import trio

from k8slite.proxy.metrics import ProxyMetrics
from k8slite.proxy.serviceports import Endpoint, ServicePort, ServicePortName
from k8slite.proxy.userspace import Balancer, UserspaceProxier

NAME = ServicePortName("ns", "web", "http", "TCP")
# A loopback address stands in for the ClusterIP: the relaying is the same.
VIP = "127.0.0.50"


def port(
    *endpoints: Endpoint, affinity: int | None = None, vport: int = 0, node_port: int | None = None
) -> ServicePort:
    return ServicePort(NAME, VIP, vport, "TCP", node_port, affinity, tuple(endpoints))


async def test_balancer_round_robin_and_exclusion() -> None:
    b = Balancer(NAME, None)
    a, c, d = Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80), Endpoint("10.0.0.3", 80)
    b.update((a, c, d), None)
    assert [b.pick("1.1.1.1") for _ in range(6)] == [a, c, d, a, c, d]
    assert b.pick("1.1.1.1", exclude=[a, c, d]) is None
    assert b.pick("1.1.1.1", exclude=[a]) in (c, d)
    b.update((), None)
    assert b.pick("1.1.1.1") is None


async def test_balancer_affinity_expires(autojump_clock: trio.abc.Clock) -> None:
    b = Balancer(NAME, None)
    a, c = Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80)
    b.update((a, c), 60)
    first = b.pick("1.1.1.1")
    assert all(b.pick("1.1.1.1") == first for _ in range(5))
    assert b.pick("2.2.2.2") != first  # a new client continues the round robin
    await trio.sleep(61)
    b.pick("3.3.3.3")  # moves the round robin on, so 1.1.1.1 now lands elsewhere
    assert b.pick("1.1.1.1") != first
    # An endpoint that leaves takes its clients' stickiness with it.
    sticky = b.pick("4.4.4.4")
    b.update(tuple(ep for ep in (a, c) if ep != sticky), 60)
    assert b.pick("4.4.4.4") != sticky


async def backend(name: str, *, task_status: trio.TaskStatus[Endpoint]) -> None:
    """Greets with its name, echoes, and passes end-of-stream on (half-close)."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    async def handle(conn: trio.socket.SocketType) -> None:
        with conn:
            await conn.send(f"{name}\n".encode())
            while data := await conn.recv(65536):
                await conn.send(data)
            conn.shutdown(socket.SHUT_WR)

    with listener:
        async with trio.open_nursery() as nursery:
            task_status.started(Endpoint("127.0.0.1", listener.getsockname()[1]))
            while True:
                conn, _ = await listener.accept()
                nursery.start_soon(handle, conn)


async def greeting(port: int) -> str:
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(VIP, port)
        async with stream:
            return (await stream.receive_some(100)).decode().strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((VIP, 0))
        return int(s.getsockname()[1])


async def test_relays_round_robin_and_counts_connections(nursery: trio.Nursery) -> None:
    eps = [await nursery.start(backend, n) for n in ("a", "b")]
    metrics = ProxyMetrics()
    proxier = UserspaceProxier(metrics)
    await nursery.start(proxier.run)
    vport = free_port()
    assert await proxier.sync([port(*eps, vport=vport)], None)
    assert [await greeting(vport) for _ in range(4)] == ["a", "b", "a", "b"]

    # An open connection shows in the gauge; half-close is passed on both ways.
    stream = await trio.open_tcp_stream(VIP, vport)
    assert (await stream.receive_some(100)) == b"a\n"
    gauge = metrics.registry.get_sample_value(
        "kubeproxy_userspace_active_connections", {"service": "ns/web:http"}
    )
    assert gauge == 1
    await stream.send_all(b"ping")
    await stream.send_eof()
    data = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some(100):
            data += chunk
    assert data == b"ping"
    await stream.aclose()


async def test_no_endpoints_resets_at_once(nursery: trio.Nursery) -> None:
    proxier = UserspaceProxier()
    await nursery.start(proxier.run)
    vport = free_port()
    assert await proxier.sync([port(vport=vport)], None)
    with trio.fail_after(2), pytest.raises((ConnectionResetError, trio.BrokenResourceError)):
        stream = await trio.open_tcp_stream(VIP, vport)
        await stream.receive_some(100)


async def test_dead_endpoint_is_skipped(nursery: trio.Nursery) -> None:
    live = await nursery.start(backend, "live")
    dead = Endpoint("127.0.0.1", free_port())  # nothing listens there
    proxier = UserspaceProxier()
    await nursery.start(proxier.run)
    vport = free_port()
    assert await proxier.sync([port(dead, live, vport=vport)], None)
    assert [await greeting(vport) for _ in range(3)] == ["live"] * 3


async def test_removal_drains_and_closes_listener(nursery: trio.Nursery) -> None:
    ep = await nursery.start(backend, "a")
    proxier = UserspaceProxier()
    await nursery.start(proxier.run)
    vport = free_port()
    assert await proxier.sync([port(ep, vport=vport)], None)
    stream = await trio.open_tcp_stream(VIP, vport)
    assert await stream.receive_some(100) == b"a\n"
    assert await proxier.sync([], None)
    assert proxier.addresses == set()
    with pytest.raises(OSError):
        await trio.open_tcp_stream(VIP, vport)
    # The connection made before the removal still works.
    await stream.send_all(b"hello")
    assert await stream.receive_some(100) == b"hello"
    await stream.aclose()


async def test_node_port_listens_on_given_addresses(nursery: trio.Nursery) -> None:
    ep = await nursery.start(backend, "a")
    proxier = UserspaceProxier()
    await nursery.start(proxier.run)
    vport, node_port = free_port(), free_port()
    assert await proxier.sync([port(ep, vport=vport, node_port=node_port)], ("127.0.0.51",))
    assert (VIP, vport, "TCP") in proxier.addresses
    assert ("127.0.0.51", node_port, "TCP") in proxier.addresses
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.51", node_port)
        assert await stream.receive_some(100) == b"a\n"
        await stream.aclose()


async def test_bind_failure_is_reported(nursery: trio.Nursery) -> None:
    proxier = UserspaceProxier()
    await nursery.start(proxier.run)
    with socket.socket() as taken:
        taken.bind((VIP, 0))
        taken.listen(1)
        assert not await proxier.sync([port(vport=taken.getsockname()[1])], None)
