"""Probes against local servers (HTTP, HTTPS, TCP, gRPC) and host processes, and the Prober."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
import trio
import trio.testing

from k8slite.kubelet.probes import USER_AGENT, Prober, ProbeResult, run_probe
from k8slite.kubelet.runtime import ContainerConfig
from k8slite.kubelet.runtime.fake import FakeRuntime
from k8slite.kubelet.runtime.process import ProcessRuntime
from k8slite.pki import ensure_pki

Handler = Callable[[trio.abc.Stream], Awaitable[None]]


async def serve(nursery: trio.Nursery, handler: Handler) -> int:
    """Serve handler on an ephemeral 127.0.0.1 port until the nursery is cancelled."""
    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


async def http_handler(stream: trio.abc.Stream) -> None:
    """A minimal HTTP/1.1 server: /ok, /redirect, /fail, /slow and /echo (of two headers)."""
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = await stream.receive_some()
        if not chunk:
            return
        request += chunk
    head = request.split(b"\r\n\r\n", 1)[0].decode()
    path = head.split(" ")[1]
    headers = {
        k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head.split("\r\n")[1:])
    }
    status, body = {
        "/ok": ("200 OK", "fine"),
        "/redirect": ("302 Found", ""),
        "/fail": ("500 Internal Server Error", "broken"),
    }.get(path, ("404 Not Found", ""))
    if path == "/slow":
        await trio.sleep(30)
    if path == "/echo":
        status, body = "200 OK", f"{headers.get('user-agent')}|{headers.get('x-probe')}"
    await stream.send_all(
        f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n"
        f"Location: /ok\r\nConnection: close\r\n\r\n{body}".encode()
    )
    await stream.aclose()


@pytest.fixture
async def http_port() -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        yield await serve(nursery, http_handler)
        nursery.cancel_scope.cancel()


@pytest.fixture
async def process_runtime(tmp_path: Path) -> AsyncIterator[tuple[ProcessRuntime, str]]:
    rt = ProcessRuntime("probe-node", tmp_path / "state")
    sandbox = await rt.run_sandbox({"metadata": {"name": "p", "namespace": "d", "uid": "u"}})
    cid = await rt.create_container(
        sandbox, ContainerConfig("c", "x", command=["sleep", "60"], env=[("WHO", "probe")])
    )
    await rt.start_container(cid)
    yield rt, cid
    await rt.remove_sandbox(sandbox.id)


def probe_http(port: int | str, path: str = "/ok", **kw: Any) -> dict[str, Any]:
    return {"httpGet": {"port": port, "path": path, **kw}, "timeoutSeconds": 1}


async def check(probe: dict[str, Any], **kw: Any) -> ProbeResult:
    kw.setdefault("runtime", FakeRuntime("n"))
    kw.setdefault("container_id", "none")
    return await run_probe(probe, pod_ip="127.0.0.1", **kw)


async def test_exec_probe(process_runtime: tuple[ProcessRuntime, str]) -> None:
    rt, cid = process_runtime
    ok = await check(
        {"exec": {"command": ["sh", "-c", "echo $WHO; exit 0"]}}, runtime=rt, container_id=cid
    )
    assert ok == ProbeResult(True, "probe\n")
    failed = await check(
        {"exec": {"command": ["sh", "-c", "echo nope; exit 1"]}}, runtime=rt, container_id=cid
    )
    assert failed == ProbeResult(False, "nope\n")
    slow = await check(
        {"exec": {"command": ["sleep", "10"]}, "timeoutSeconds": 1}, runtime=rt, container_id=cid
    )
    assert not slow.success and "timed out" in slow.message
    await rt.stop_container(cid, 0)
    stopped = await check({"exec": {"command": ["true"]}}, runtime=rt, container_id=cid)
    assert not stopped.success and "not running" in stopped.message


async def test_http_probe(http_port: int) -> None:
    assert await check(probe_http(http_port)) == ProbeResult(True, "fine")
    # A redirect is a success without being followed (upstream: 200 <= code < 400).
    assert (await check(probe_http(http_port, "/redirect"))).success
    failed = await check(probe_http(http_port, "/fail"))
    assert failed == ProbeResult(False, "HTTP probe failed with statuscode: 500")
    assert not (await check(probe_http(http_port, "/missing"))).success
    echoed = await check(
        probe_http(http_port, "echo", httpHeaders=[{"name": "X-Probe", "value": "yes"}])
    )
    assert echoed == ProbeResult(True, f"{USER_AGENT}|yes")
    assert USER_AGENT == "kube-probe/1.35"
    container = {"name": "web", "ports": [{"name": "web", "containerPort": http_port}]}
    assert (await check(probe_http("web"), container=container)).success
    assert (await check(probe_http(str(http_port)))).success
    unnamed = await check(probe_http("nope"), container=container)
    assert not unnamed.success and "couldn't find port" in unnamed.message
    slow = await check(probe_http(http_port, "/slow"))
    assert not slow.success and "deadline exceeded" in slow.message
    refused = await check(probe_http(closed_port()))
    assert not refused.success and refused.message.startswith('Get "http://127.0.0.1:')


async def test_https_probe_does_not_verify(tmp_path: Path) -> None:
    ensure_pki(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")

    async def handler(stream: trio.abc.Stream) -> None:
        tls = trio.SSLStream(stream, context, server_side=True)
        with contextlib.suppress(trio.BrokenResourceError):
            await http_handler(tls)

    async with trio.open_nursery() as nursery:
        port = await serve(nursery, handler)
        result = await check(probe_http(port, scheme="HTTPS"))
        assert result == ProbeResult(True, "fine")
        nursery.cancel_scope.cancel()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def full_listener() -> Iterator[int]:
    """A port whose accept queue is full, so that a new connection hangs (on loopback)."""
    with socket.socket() as server, socket.socket() as first:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        first.connect(server.getsockname())
        yield int(server.getsockname()[1])


async def test_tcp_probe(http_port: int, full_listener: int) -> None:
    assert (await check({"tcpSocket": {"port": http_port}})).success
    container = {"ports": [{"name": "p", "containerPort": http_port}]}
    assert (await check({"tcpSocket": {"port": "p"}}, container=container)).success
    refused = await check({"tcpSocket": {"port": closed_port()}})
    assert not refused.success and refused.message.startswith("dial tcp 127.0.0.1:")
    hung = await check({"tcpSocket": {"port": full_listener}, "timeoutSeconds": 1})
    assert hung == ProbeResult(False, f"dial tcp 127.0.0.1:{full_listener}: i/o timeout")


def _grpc_frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


async def grpc_health_handler(stream: trio.abc.Stream) -> None:
    """grpc.health.v1.Health/Check over h2c: "" serves, "sick" does not, others are unknown."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    await stream.send_all(conn.data_to_send())
    bodies: dict[int, bytes] = {}
    while data := await stream.receive_some():
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                bodies[event.stream_id] = b""
            elif isinstance(event, h2.events.DataReceived):
                bodies[event.stream_id] += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                body = bodies.pop(event.stream_id)
                service = body[7:].decode()  # frame header, field tag, length (short names)
                respond(conn, event.stream_id, service)
        await stream.send_all(conn.data_to_send())


def respond(conn: h2.connection.H2Connection, stream_id: int, service: str) -> None:
    head = [(":status", "200"), ("content-type", "application/grpc")]
    if service not in ("", "sick"):
        # A trailers-only response: the status comes in the headers.
        conn.send_headers(
            stream_id,
            [*head, ("grpc-status", "5"), ("grpc-message", "unknown service")],
            end_stream=True,
        )
        return
    conn.send_headers(stream_id, head)
    conn.send_data(stream_id, _grpc_frame(b"\x08" + (b"\x02" if service else b"\x01")))
    conn.send_headers(stream_id, [("grpc-status", "0")], end_stream=True)


async def test_grpc_probe() -> None:
    async with trio.open_nursery() as nursery:
        port = await serve(nursery, grpc_health_handler)
        assert await check({"grpc": {"port": port}}) == ProbeResult(True)
        sick = await check({"grpc": {"port": port, "service": "sick"}})
        assert sick == ProbeResult(False, 'service unhealthy (responded with "NOT_SERVING")')
        unknown = await check({"grpc": {"port": port, "service": "other"}})
        assert not unknown.success and "unknown service" in unknown.message
        nursery.cancel_scope.cancel()
    refused = await check({"grpc": {"port": closed_port()}})
    assert not refused.success and "failed to connect" in refused.message


OK, BAD = ProbeResult(True), ProbeResult(False, "bad")


def test_prober_thresholds() -> None:
    async def never() -> ProbeResult:
        raise AssertionError("not run")

    readiness = Prober("readiness", {"successThreshold": 2, "failureThreshold": 3}, never)
    assert not readiness.healthy
    changes = [readiness.observe(r) for r in (OK, BAD, OK, OK, BAD, BAD, OK, BAD, BAD, BAD)]
    assert changes == [False, False, False, True, False, False, False, False, False, True]
    assert not readiness.healthy and readiness.last == BAD

    liveness = Prober("liveness", {}, never)  # failureThreshold 3, successThreshold 1
    assert liveness.healthy
    assert [liveness.observe(r) for r in (BAD, BAD, OK, BAD, BAD, BAD, OK)] == [
        False,
        False,
        False,
        False,
        False,
        True,
        True,
    ]

    startup = Prober("startup", {"failureThreshold": 30}, never)
    assert not startup.healthy
    assert startup.observe(OK) and startup.healthy
    with pytest.raises(ValueError):
        Prober("sometimes", {}, never)


async def test_prober_run_schedule(autojump_clock: trio.testing.MockClock) -> None:
    results = iter([BAD, OK, OK, BAD, BAD, OK])
    probed_at: list[float] = []
    changes: list[tuple[float, bool]] = []

    async def probe() -> ProbeResult:
        probed_at.append(trio.current_time())
        return next(results)

    prober = Prober(
        "readiness", {"initialDelaySeconds": 5, "periodSeconds": 10, "failureThreshold": 2}, probe
    )
    with trio.move_on_after(56):
        await prober.run(lambda p: changes.append((trio.current_time(), p.healthy)))
    assert probed_at == [5, 15, 25, 35, 45, 55]
    assert changes == [(15, True), (45, False), (55, True)]

    # A startup probe stops once it has succeeded.
    startup = Prober("startup", {"periodSeconds": 1}, probe)
    results = iter([BAD, BAD, OK, BAD])
    probed_at.clear()
    await startup.run(lambda p: None)
    assert len(probed_at) == 3 and startup.healthy
