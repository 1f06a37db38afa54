"""Watch fan-out: one write delivered to 100 and 1,000 watchers; delivery latency p50/p99.

Run: .venv/bin/python benches/watch.py [--watchers 100 1000] [--writes 20]
Watchers are HTTPS/1.1 streams spread over two client processes. Each write carries its
send time in an annotation; a watcher's latency is arrival time minus send time, so the
figure includes the clients' own work of reading 1,000 streams on the same two cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import re
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


async def _watcher(host: str, port: int, ctx: ssl.SSLContext, rv: str,
                   out: list[tuple[float, float]], ready: trio.Semaphore,
                   stop: trio.Event) -> None:
    tcp = await trio.open_tcp_stream(host, port)
    stream = trio.SSLStream(tcp, ctx, server_hostname=host)
    request = (f"GET /api/v1/namespaces/bench/pods?watch=1&resourceVersion={rv}"
               f"&timeoutSeconds=600 HTTP/1.1\r\nHost: {host}\r\n\r\n").encode()
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


async def _watch_main(host: str, port: int, pki: str, rv: str, count: int, expected: int,
                      conn: mp.connection.Connection) -> None:
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


def run(server: harness.Server, pki: Path, watchers: int, writes: int) -> dict[str, float]:
    conn = harness.Connection(server.host, server.port, harness.tls_context(pki))
    status, body = conn.request("GET", "/api/v1/namespaces/bench/pods")
    rv = json.loads(body)["metadata"]["resourceVersion"]
    ctx = mp.get_context("fork")
    pipes, procs = [], []
    for i in range(_PROCESSES):
        share = watchers // _PROCESSES + (1 if i < watchers % _PROCESSES else 0)
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_watch_process, args=(
            server.host, server.port, str(pki), rv, share, writes, child))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    for p in pipes:
        assert p.recv() == "ready"
    for i in range(writes):
        pod = harness.realistic_pod(f"w{watchers}-{i}", "bench")
        pod["metadata"]["annotations"]["sent"] = repr(time.time())
        status, body = conn.request("POST", "/api/v1/namespaces/bench/pods",
                                    json.dumps(pod).encode())
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
    return {"p50_ms": harness.median(p50s) * 1e3, "p99_ms": harness.median(p99s) * 1e3,
            "delivered": delivered}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--watchers", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--writes", type=int, default=20)
    a = p.parse_args()
    figures: dict[str, object] = {"bench": "watch", "writes": a.writes}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        server = harness.start_apiserver(data)
        try:
            conn = harness.Connection(server.host, server.port,
                                      harness.tls_context(data / "pki"))
            conn.request("POST", "/api/v1/namespaces",
                         json.dumps({"metadata": {"name": "bench"}}).encode())
            conn.close()
            for n in a.watchers:
                r = run(server, data / "pki", n, a.writes)
                print(f"{n} watchers: delivery p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms "
                      f"(median over {a.writes} writes; {r['delivered']:.0%} delivered)")
                figures[f"w{n}_p50_ms"] = round(r["p50_ms"], 1)
                figures[f"w{n}_p99_ms"] = round(r["p99_ms"], 1)
                figures[f"w{n}_delivered"] = round(r["delivered"], 3)
        finally:
            server.stop()
    harness.emit(figures)


if __name__ == "__main__":
    main()
