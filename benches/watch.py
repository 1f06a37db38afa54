"""Watch fan-out: one write delivered to 100 and 1,000 watchers; delivery latency p50/p99.

Run: .venv/bin/python benches/watch.py [--watchers 100 1000] [--writes 20]
         [--clients trio lean]
Watchers are HTTPS/1.1 streams spread over two client processes. Each write carries its
send time in an annotation; a watcher's latency is arrival time minus send time, so the
figure includes the clients' own work of reading 1,000 streams on the same two cores.
Two kinds of client, in the same run: `trio` watchers are asynchronous Python like the
project's own informers (tens of microseconds per event each); `lean` watchers share one
epoll loop per process on non-blocking sockets (a few), so their figure is mostly the
server's fan-out.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import re
import selectors
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))
import harness

_SENT = re.compile(rb'"sent":"([0-9.]+)"')
_PROCESSES = 2


async def _watcher(
    host: str,
    port: int,
    ctx: ssl.SSLContext,
    rv: str,
    out: list[tuple[float, float]],
    ready: trio.Semaphore,
    stop: trio.Event,
) -> None:
    tcp = await trio.open_tcp_stream(host, port)
    stream = trio.SSLStream(tcp, ctx, server_hostname=host)
    request = (
        f"GET /api/v1/namespaces/bench/pods?watch=1&resourceVersion={rv}"
        f"&timeoutSeconds=600 HTTP/1.1\r\nHost: {host}\r\n\r\n"
    ).encode()
    await stream.send_all(request)
    ready.release()
    async with stream:
        while not stop.is_set():
            data = await stream.receive_some(65536)
            now = time.time()
            if not data:
                return
            for m in _SENT.finditer(data):
                out.append((float(m.group(1)), now - float(m.group(1))))


async def _watch_main(
    host: str,
    port: int,
    pki: str,
    rv: str,
    count: int,
    expected: int,
    conn: mp.connection.Connection,
) -> None:
    ctx = harness.tls_context(Path(pki))
    out: list[tuple[float, float]] = []
    ready = trio.Semaphore(count, max_value=count)
    for _ in range(count):
        await ready.acquire()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(_watcher, host, port, ctx, rv, out, ready, stop)
        for _ in range(count):
            await ready.acquire()
        await trio.sleep(1.0)  # let every watch reach the server
        conn.send("ready")
        with trio.move_on_after(120):
            while len(out) < expected * count:
                await trio.sleep(0.05)
        stop.set()
        nursery.cancel_scope.cancel()
    conn.send(out)


def _watch_process(*args: object) -> None:
    trio.run(_watch_main, *args)


def _lean_process(
    host: str,
    port: int,
    pki: str,
    rv: str,
    count: int,
    expected: int,
    conn: mp.connection.Connection,
) -> None:
    """The same watchers on plain non-blocking sockets and one epoll loop: the client's own
    cost per event is a few microseconds, so the figure is mostly the server's."""
    ctx = harness.tls_context(Path(pki))
    request = (
        f"GET /api/v1/namespaces/bench/pods?watch=1&resourceVersion={rv}"
        f"&timeoutSeconds=600 HTTP/1.1\r\nHost: {host}\r\n\r\n"
    ).encode()
    sel = selectors.DefaultSelector()
    for _ in range(count):
        sock = ctx.wrap_socket(socket.create_connection((host, port)), server_hostname=host)
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:  # the response header: the watch is registered
            head += sock.recv(65536)
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
    conn.send("ready")
    out: list[tuple[float, float]] = []
    deadline = time.monotonic() + 120
    while len(out) < expected * count and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            sock = key.fileobj
            try:
                while True:  # drain what TLS holds, not only what the socket held
                    data = sock.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        sel.unregister(sock)
                        break
                    now = time.time()
                    for m in _SENT.finditer(data):
                        out.append((float(m.group(1)), now - float(m.group(1))))
            except ssl.SSLWantReadError:
                pass
    conn.send(out)


def run(
    server: harness.Server, pki: Path, watchers: int, writes: int, client: str = "trio"
) -> dict[str, float]:
    conn = harness.Connection(server.host, server.port, harness.tls_context(pki))
    status, body = conn.request("GET", "/api/v1/namespaces/bench/pods")
    rv = json.loads(body)["metadata"]["resourceVersion"]
    ctx = mp.get_context("fork")
    pipes, procs = [], []
    for i in range(_PROCESSES):
        share = watchers // _PROCESSES + (1 if i < watchers % _PROCESSES else 0)
        parent, child = ctx.Pipe()
        target = _lean_process if client == "lean" else _watch_process
        proc = ctx.Process(
            target=target, args=(server.host, server.port, str(pki), rv, share, writes, child)
        )
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    for p in pipes:
        assert p.recv() == "ready"
    for i in range(writes):
        pod = harness.realistic_pod(f"w{watchers}-{client}-{i}", "bench")
        pod["metadata"]["annotations"]["sent"] = repr(time.time())
        status, body = conn.request(
            "POST", "/api/v1/namespaces/bench/pods", json.dumps(pod).encode()
        )
        assert status == 201, body[:200]
        time.sleep(0.2)
    samples: list[tuple[float, float]] = []
    for p in pipes:
        samples.extend(p.recv())
    for proc in procs:
        proc.join(10)
    conn.close()
    by_write: dict[float, list[float]] = {}
    for sent, latency in samples:
        by_write.setdefault(sent, []).append(latency)
    p99s = [harness.percentile(v, 0.99) for v in by_write.values()]
    p50s = [harness.percentile(v, 0.5) for v in by_write.values()]
    delivered = len(samples) / (watchers * writes)
    return {
        "p50_ms": harness.median(p50s) * 1e3,
        "p99_ms": harness.median(p99s) * 1e3,
        "delivered": delivered,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--watchers", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--writes", type=int, default=20)
    p.add_argument(
        "--clients",
        nargs="+",
        choices=("trio", "lean"),
        default=["trio", "lean"],
        help="trio: asynchronous Python watchers; lean: one epoll loop per process",
    )
    a = p.parse_args()
    figures: dict[str, object] = {"bench": "watch", "writes": a.writes}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        server = harness.start_apiserver(data)
        try:
            conn = harness.Connection(server.host, server.port, harness.tls_context(data / "pki"))
            conn.request(
                "POST", "/api/v1/namespaces", json.dumps({"metadata": {"name": "bench"}}).encode()
            )
            conn.close()
            for client in a.clients:
                for n in a.watchers:
                    r = run(server, data / "pki", n, a.writes, client)
                    print(
                        f"{n} watchers ({client} clients): delivery p50 {r['p50_ms']:.1f} ms, "
                        f"p99 {r['p99_ms']:.1f} ms (median over {a.writes} writes; "
                        f"{r['delivered']:.0%} delivered)"
                    )
                    tag = f"w{n}" if client == "trio" else f"w{n}_{client}"
                    figures[f"{tag}_p50_ms"] = round(r["p50_ms"], 1)
                    figures[f"{tag}_p99_ms"] = round(r["p99_ms"], 1)
                    figures[f"{tag}_delivered"] = round(r["delivered"], 3)
        finally:
            server.stop()
    harness.emit(figures)


if __name__ == "__main__":
    main()
