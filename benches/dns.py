"""k8slite-dns: queries per second and latency under load, cache hit ratio, and the time from
a Service's creation to its name resolving.

Run: .venv/bin/python benches/dns.py [--services 1000] [--endpoints 10000] [--seconds 10]
         [--clients 64] [--processes 2] [--creations 40] [--churn 20] [--rate 20000]

A real API server holds N Services (one in ten headless) and their EndpointSlices with
--endpoints endpoints in all, created through the API; the real k8slite-dns process watches
it. Load: --processes client processes keep --clients queries in flight between them over
UDP on loopback for --seconds (A for ClusterIP and headless Services, SRV, and names that
do not exist, chosen at random); each query's latency is from its send to its answer. The
clients are prebuilt queries on blocking sockets (one send and one recv per answer); their
own CPU per answer is reported beside the server's, to show they are not the limit. Then
the same mix is offered at --rate queries a second on a fixed schedule (the goal's rate:
latency at that load rather than at saturation). The cache hit ratio is the server's own
(coredns_cache_hits_total over cache requests). Then the closed loop runs again while a
headless Service's EndpointSlice changes --churn times a second, for the hit ratio of a
cache that keeps what a change did not touch. Then, with no load, --creations Services are
created one by one and each is timed from its POST to the first UDP answer that has its
ClusterIP (polled as fast as answers come back). Last, the same load against a second
k8slite-dns started with --cache-size 0, where every answer is parsed and built. Clients
and server share the machine's cores, so the figures are what this box does with both,
not the server's ceiling.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import re
import select
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path
from typing import Any

# This file's own directory comes off the path first: from there, `import dns` would be
# this bench, not dnspython.
sys.path.remove(str(Path(__file__).resolve().parent))
import dns.message

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import harness

from k8slite import pki
from tests.launch import launch, stop

NAMESPACE = "bench"
# The paced client's send granularity, seconds.
_TICK = 0.001
ZONE = "cluster.local"


# ------------------------------------------------------------------------------- objects


def _service(i: int, headless: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    if headless:
        spec["clusterIP"] = "None"
    return {"metadata": {"name": f"svc-{i}"}, "spec": spec}


def _slice(i: int, first: int, count: int) -> dict[str, Any]:
    endpoints = []
    for n in range(first, first + count):
        endpoints.append(
            {
                "addresses": [f"10.{100 + n // 65536}.{n // 256 % 256}.{n % 256}"],
                "conditions": {"ready": True},
                "targetRef": {"kind": "Pod", "name": f"pod-{n}", "namespace": NAMESPACE},
            }
        )
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"svc-{i}-slice",
            "labels": {"kubernetes.io/service-name": f"svc-{i}"},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def populate(server: harness.Server, services: int, endpoints: int, threads: int = 4) -> None:
    """N Services and their slices through the API, from a few keep-alive connections."""
    ctx = harness.tls_context(server.data_dir / "pki")
    conn = harness.Connection(server.host, server.port, ctx)
    status, body = conn.request(
        "POST", "/api/v1/namespaces", json.dumps({"metadata": {"name": NAMESPACE}}).encode()
    )
    assert status == 201, body
    conn.close()
    per = max(1, endpoints // services)

    def work(part: int) -> None:
        c = harness.Connection(server.host, server.port, ctx)
        for i in range(part, services, threads):
            svc = _service(i, headless=i % 10 == 0)
            status, body = c.request(
                "POST", f"/api/v1/namespaces/{NAMESPACE}/services", json.dumps(svc).encode()
            )
            assert status == 201, body
            status, body = c.request(
                "POST",
                f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices",
                json.dumps(_slice(i, i * per, per)).encode(),
            )
            assert status == 201, body
        c.close()

    workers = [threading.Thread(target=work, args=(p,)) for p in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


# ---------------------------------------------------------------------------------- load


def questions(services: int) -> list[bytes]:
    """The query mix: mostly ClusterIP A, some headless A, SRV and names that do not exist."""
    out = []
    for i in range(services):
        name = f"svc-{i}.{NAMESPACE}.svc.{ZONE}"
        out.append(dns.message.make_query(name, "A", use_edns=0, payload=1232).to_wire())
        if i % 5 == 0:
            srv = f"_http._tcp.{name}"
            out.append(dns.message.make_query(srv, "SRV", use_edns=0, payload=1232).to_wire())
        if i % 10 == 1:
            missing = f"missing-{i}.{NAMESPACE}.svc.{ZONE}"
            out.append(dns.message.make_query(missing, "A", use_edns=0, payload=1232).to_wire())
    return out


def prebuilt(pool: list[bytes], rng: random.Random) -> list[bytes]:
    """One finished query per DNS ID, questions drawn at random from the pool: sending is
    then a list index, with no packing or joining per query."""
    return [struct.pack("!H", qid) + rng.choice(pool)[2:] for qid in range(65536)]


def client(port: int, services: int, window: int, seconds: float, seed: int) -> dict[str, Any]:
    """Keep `window` queries in flight for `seconds` (a new one goes out as each answer
    comes in); latencies in seconds.

    The client is kept cheap so that it measures the server, not itself: queries are
    prebuilt, the socket is blocking (one recv and one send per answer, no select), and
    latencies go into a flat array.
    """
    rng = random.Random(seed)
    wires = prebuilt(questions(services), rng)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(0.1)
    pending: dict[int, float] = {}  # ID -> when it was sent
    latencies = array("d")
    record = latencies.append
    clock = time.perf_counter
    send, recv = sock.send, sock.recv
    next_id = sent = lost = truncated = 0
    cpu = time.process_time()
    end = clock() + seconds
    next_sweep = clock() + 0.25
    while True:
        while len(pending) < window:
            next_id = (next_id + 1) & 0xFFFF
            if next_id in pending:
                continue  # still out from 65,536 queries ago (lost, surely)
            pending[next_id] = clock()
            send(wires[next_id])
            sent += 1
        try:
            data = recv(65535)
        except TimeoutError:
            data = b""
        got = clock()
        started = pending.pop((data[0] << 8) | data[1], None) if data else None
        if started is not None:
            record(got - started)
            if data[2] & 0x02:
                truncated += 1
        if got >= end:
            break
        if got >= next_sweep:
            # A datagram unanswered for a second is lost; its slot goes back to the window.
            stale = [qid for qid, at in pending.items() if got - at > 1.0]
            for qid in stale:
                del pending[qid]
            lost += len(stale)
            next_sweep = got + 0.25
    cpu = time.process_time() - cpu
    sock.close()
    return {
        "sent": sent,
        "lost": lost,
        "truncated": truncated,
        "latencies": latencies.tolist(),
        "cpu_s": cpu,
    }


def paced_client(port: int, services: int, rate: float, seconds: float, seed: int) -> dict:
    """Send `rate` queries a second on a fixed schedule for `seconds`, whatever the answers
    do (an offered load, as many clients each asking now and then); latencies in seconds,
    from each query's send to its answer."""
    rng = random.Random(seed)
    wires = prebuilt(questions(services), rng)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    pending: dict[int, float] = {}
    latencies = array("d")
    record = latencies.append
    clock = time.perf_counter
    send, recv = sock.send, sock.recv
    interval = 1.0 / rate
    next_id = sent = truncated = 0
    cpu = time.process_time()
    next_send = clock()
    end = next_send + seconds
    readable = [sock]

    def drain() -> None:
        nonlocal truncated
        while True:
            try:
                data = recv(65535)
            except BlockingIOError:
                return
            started = pending.pop((data[0] << 8) | data[1], None)
            if started is not None:
                record(clock() - started)
                if data[2] & 0x02:
                    truncated += 1

    while True:
        now = clock()
        if now >= end:
            break
        while next_send <= now:
            next_id = (next_id + 1) & 0xFFFF
            pending[next_id] = clock()
            try:
                send(wires[next_id])
            except BlockingIOError:
                del pending[next_id]  # the socket's buffer is full: not offered after all
            sent += 1
            next_send += interval
        drain()
        # Sleep until an answer comes or, at the soonest, a millisecond on: the sends that
        # fell due meanwhile go out together (a burst of rate/1000, as many clients make),
        # which keeps the client's own cost per query well under the server's.
        select.select(readable, [], [], max(_TICK, next_send - clock()))
    # Answers still to come get a moment; what has not come by then is lost.
    wait_until = clock() + 0.5
    while pending and clock() < wait_until:
        select.select(readable, [], [], 0.05)
        drain()
    cpu = time.process_time() - cpu
    sock.close()
    return {
        "cpu_s": cpu,
        "sent": sent,
        "lost": len(pending),
        "truncated": truncated,
        "latencies": latencies.tolist(),
    }


def _client_entry(args: tuple[int, int, float, float, int], paced: bool, out: Any) -> None:
    out.put(paced_client(*args) if paced else client(*args))


def run_load(
    port: int,
    services: int,
    clients: int,
    processes: int,
    seconds: float,
    rate: float | None = None,
) -> dict:
    """Closed loop (`clients` queries in flight), or paced at `rate` queries a second."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    window = max(1, clients // processes)
    share = (rate or 0) / processes
    procs = [
        ctx.Process(
            target=_client_entry,
            args=((port, services, share if rate else window, seconds, p), bool(rate), out),
        )
        for p in range(processes)
    ]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    latencies = [x for r in results for x in r["latencies"]]
    return {
        "qps": round(len(latencies) / seconds),
        "p50_ms": round(harness.percentile(latencies, 0.5) * 1000, 3),
        "p99_ms": round(harness.percentile(latencies, 0.99) * 1000, 3),
        "answered": len(latencies),
        "lost": sum(r["lost"] for r in results),
        "truncated": sum(r["truncated"] for r in results),
        "in_flight": None if rate else window * processes,
        # The clients' own CPU per answer: well under the server's, or they are the limit.
        "client_cpu_us_per_query": round(
            sum(r["cpu_s"] for r in results) / max(1, len(latencies)) * 1e6, 1
        ),
    }


# ----------------------------------------------------------------------------- creation


class Churn:
    """Endpoint changes at a steady rate: a headless Service's slice, one endpoint's ready
    condition flipped each time (as pods come and go)."""

    def __init__(self, server: harness.Server, per_second: float, endpoints_per: int) -> None:
        self.server, self.period, self.per = server, 1.0 / per_second, endpoints_per
        self.stop = threading.Event()
        self.changes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        ctx = harness.tls_context(self.server.data_dir / "pki")
        conn = harness.Connection(self.server.host, self.server.port, ctx)
        path = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices/svc-0-slice"
        endpoints = _slice(0, 0, self.per)["endpoints"]
        while not self.stop.wait(self.period):
            flip = endpoints[self.changes % len(endpoints)]["conditions"]
            flip["ready"] = not flip["ready"]
            status, body = conn.request(
                "PATCH",
                path,
                json.dumps({"endpoints": endpoints}).encode(),
                "application/merge-patch+json",
            )
            assert status == 200, body
            self.changes += 1
        conn.close()


def creation_to_resolution(server: harness.Server, dns_port: int, count: int) -> list[float]:
    ctx = harness.tls_context(server.data_dir / "pki")
    conn = harness.Connection(server.host, server.port, ctx)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", dns_port))
    sock.settimeout(1.0)
    out = []
    for i in range(count):
        name = f"new-{i}"
        body = json.dumps({"metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}})
        started = time.perf_counter()
        status, raw = conn.request(
            "POST", f"/api/v1/namespaces/{NAMESPACE}/services", body.encode()
        )
        assert status == 201, raw
        ip = json.loads(raw)["spec"]["clusterIP"]
        query = dns.message.make_query(f"{name}.{NAMESPACE}.svc.{ZONE}", "A")
        while True:
            sock.send(query.to_wire())
            try:
                answer = dns.message.from_wire(sock.recv(65535))
            except TimeoutError:
                continue
            if any(r.to_text() == ip for rrset in answer.answer for r in rrset):
                out.append(time.perf_counter() - started)
                break
            if time.perf_counter() - started > 60:
                raise RuntimeError(f"{name} did not resolve within 60 s")
    sock.close()
    conn.close()
    return out


def start_dns(kubeconfig: Path, log: Path, *extra: str) -> tuple[Any, int, str]:
    """The real k8slite-dns on a free loopback port; (process, DNS port, serving URL)."""
    argv = [
        sys.executable,
        "-m",
        "k8slite.cmd.dns",
        "--kubeconfig",
        str(kubeconfig),
        "--bind-address",
        "127.0.0.1",
        "--dns-port",
        "0",
        "--secure-port",
        "0",
        "--upstream-dns",
        "",
        *extra,
    ]
    proc, line = launch(argv, log, "k8slite-dns ready: ", what="k8slite-dns")
    found = re.search(r"DNS on 127\.0\.0\.1:(\d+) .*serving on (\S+)", line)
    assert found, line
    return proc, int(found[1]), found[2]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(url: str) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the server's self-signed serving certificate
    host, port = url.removeprefix("https://").rsplit(":", 1)
    conn = harness.Connection(host, int(port), ctx)
    status, body = conn.request("GET", "/metrics")
    conn.close()
    assert status == 200
    return body.decode()


def metric(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--endpoints", type=int, default=10_000)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=64, help="queries in flight, all processes")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--creations", type=int, default=40)
    p.add_argument("--churn", type=float, default=20.0, help="endpoint changes per second")
    p.add_argument(
        "--rate", type=float, default=20_000, help="queries per second of the paced phase"
    )
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="k8slite-bench-dns-"))
    server = harness.start_apiserver(tmp / "api")
    dns_proc = None
    try:
        started = time.perf_counter()
        populate(server, args.services, args.endpoints)
        populate_s = time.perf_counter() - started
        pki_dir = server.data_dir / "pki"
        kubeconfig = tmp / "dns.kubeconfig"
        pki.write_kubeconfig(
            kubeconfig,
            server.url,
            (pki_dir / "ca.pem").read_bytes(),
            (pki_dir / "client-dns.pem").read_bytes(),
            (pki_dir / "client-dns.key").read_bytes(),
            "dns",
        )
        started = time.perf_counter()
        dns_proc, port, serving = start_dns(kubeconfig, tmp / "dns.log")
        sync_s = time.perf_counter() - started
        cpu_before = cpu_seconds(dns_proc.pid)
        load = run_load(port, args.services, args.clients, args.processes, args.seconds)
        cpu = cpu_seconds(dns_proc.pid) - cpu_before
        # The goal's rate, offered on a schedule: the latency at that load, not at saturation.
        paced = run_load(
            port, args.services, args.clients, args.processes, args.seconds, rate=args.rate
        )
        text = scrape(serving)
        hits = metric(text, "coredns_cache_hits_total")
        requests = metric(text, "coredns_cache_requests_total")
        records = metric(text, "k8slite_dns_records")
        rss = 0.0
        for status_line in Path(f"/proc/{dns_proc.pid}/status").read_text().splitlines():
            if status_line.startswith("VmRSS:"):
                rss = int(status_line.split()[1]) / 1024
        # Again with endpoints changing --churn times a second: the cache drops what each
        # change touched, and only that.
        churn = Churn(server, args.churn, max(1, args.endpoints // args.services))
        churn.thread.start()
        churned = run_load(port, args.services, args.clients, args.processes, args.seconds)
        churn.stop.set()
        churn.thread.join()
        after = scrape(serving)
        churn_hits = metric(after, "coredns_cache_hits_total") - hits
        churn_requests = metric(after, "coredns_cache_requests_total") - requests
        creations = creation_to_resolution(server, port, args.creations)
        # The same load on a server with its answer cache off: every answer parsed and built.
        uncached_proc, uncached_port, _ = start_dns(
            kubeconfig, tmp / "dns-uncached.log", "--cache-size", "0"
        )
        try:
            uncached = run_load(
                uncached_port, args.services, args.clients, args.processes, args.seconds
            )
        finally:
            stop(uncached_proc)
        figures = {
            "bench": "dns",
            "services": args.services,
            "endpoints": args.endpoints,
            "records": int(records),
            "populate_s": round(populate_s, 1),
            "start_to_ready_s": round(sync_s, 2),
            **load,
            # The server's own CPU per answer: what it would do with a core to itself.
            "server_cpu_us_per_query": round(cpu / max(1, load["answered"]) * 1e6, 1),
            "server_cpu_s": round(cpu, 2),
            "cache_hit_ratio": round(hits / requests, 4) if requests else None,
            "paced_rate": args.rate,
            "paced_qps": paced["qps"],
            "paced_p50_ms": paced["p50_ms"],
            "paced_p99_ms": paced["p99_ms"],
            "paced_lost": paced["lost"],
            "paced_client_cpu_us_per_query": paced["client_cpu_us_per_query"],
            "create_to_resolve_p50_ms": round(harness.percentile(creations, 0.5) * 1000, 1),
            "create_to_resolve_p99_ms": round(harness.percentile(creations, 0.99) * 1000, 1),
            "dns_rss_mib": round(rss, 1),
            "churn_changes_per_s": round(churn.changes / args.seconds, 1),
            "churn_qps": churned["qps"],
            "churn_p99_ms": churned["p99_ms"],
            "churn_cache_hit_ratio": round(churn_hits / churn_requests, 4)
            if churn_requests
            else None,
            "uncached_qps": uncached["qps"],
            "uncached_p50_ms": uncached["p50_ms"],
            "uncached_p99_ms": uncached["p99_ms"],
            "goal": "20000 q/s, p99 < 5 ms",
        }
        harness.emit(figures)
    finally:
        if dns_proc is not None:
            stop(dns_proc)
        server.stop()


if __name__ == "__main__":
    main()
