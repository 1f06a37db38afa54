"""The API server on etcd against RocksDB, in one run:

- creates/s and latency with 50 clients (benches/create.py's load): RocksDB, a single etcd
  member, and a three-member etcd cluster, interleaved run by run;
- LIST of 100,000 pods from the watch cache on RocksDB and on etcd (the pods are written
  straight into each store, then a fresh API server on each warms its cache from it; both
  servers are asked in turn, so both see the same load);
- watch delivery across API servers: pods created through API server A at a steady rate,
  watched on API server B, both on the three-member cluster; the time from sending each
  create to B's watcher receiving its ADDED event;
- failover: two API servers on the cluster behind the local load balancer (as
  `k8slite up --ha`); a component's client (k8slite.client.ApiClient) creates ConfigMaps
  through it; the API server in use is killed with -9; the time to the next write that
  succeeds.

etcd is Debian's `etcd` on loopback with its data in tmp, fsyncing its WAL as RocksDB does.
The machine's load average is printed at the start and end: on a shared machine the
figures move with it.

Run: .venv/bin/python benches/etcd.py [--requests 10000] [--clients 50] [--runs 3]
     [--list-size 100000] [--watch-events 2000] [--watch-rate 100] [--failovers 3]
(`--runs 0`, `--list-size 0`, `--watch-events 0`, `--failovers 0` leave a section out.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).parent))
import harness
from create import load
from list import measure as measure_list
from list import populate as populate_rocksdb

from k8slite import pki
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.registry import encoder
from k8slite.client.errors import ApiConnectionError, ApiError
from k8slite.client.kubeconfig import ClientConfig
from k8slite.client.rest import ApiClient
from k8slite.freeport import free_port
from k8slite.storage import Op
from k8slite.storage.etcd import EtcdStore
from tests.etcd_server import EtcdProcess, cluster_flags, start_etcd, start_etcd_cluster
from tests.launch import launch, stop

BACKENDS = ("rocksdb", "etcd1", "etcd3")
PODS = "/api/v1/namespaces/default/pods"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
# etcd refuses a txn of more than 128 ops (--max-txn-ops).
_ETCD_BATCH = 100


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# Creates.


def creates(backend: str, base: Path, requests: int, clients: int, run: int) -> dict[str, float]:
    data = base / f"create-{backend}-{run}"
    members: list[EtcdProcess] = []
    if backend == "etcd1":
        members = [start_etcd(base / f"etcd1-{run}")]
    elif backend == "etcd3":
        members = start_etcd_cluster(base / f"etcd3-{run}")
    try:
        server = harness.start_apiserver(data, *(cluster_flags(members) if members else []))
        try:
            return load(server, data / "pki", requests, clients, f"{backend}{run}")
        finally:
            server.stop()
    finally:
        for member in members:
            member.stop()


# LIST from the watch cache.


async def populate_etcd(url: str, count: int) -> None:
    """As benches/list.py's populate, into etcd (in txns of 100: etcd's limit is 128 ops)."""
    async with EtcdStore([url], compaction_interval=0) as store:
        core = ApiCore(store)  # type: ignore[arg-type]
        core.warm()
        await core.ensure_system_namespaces()
        pods = core.registries[("", "pods")]
        for first in range(0, count, _ETCD_BATCH):
            ops = []
            for i in range(first, min(first + _ETCD_BATCH, count)):
                obj = pods.prepare_new("default", harness.realistic_pod(f"web-{i:07}"))
                ops.append(Op("create", pods.key("default", obj["metadata"]["name"]), encoder(obj)))
            await store.txn(ops)


def list_from_cache(base: Path, size: int, runs: int) -> dict[str, dict[str, float]]:
    """LIST `size` pods from the watch cache of an API server on RocksDB and of one on etcd,
    both up at once and asked in turn, so both see the same load on a shared machine."""
    figures: dict[str, dict[str, float]] = {}
    servers: dict[str, harness.Server] = {}
    etcd = start_etcd(base / "etcd-list")
    try:
        for backend in ("rocksdb", "etcd"):
            data = base / f"list-{backend}"
            pki.ensure_pki(data / "pki")
            start = time.perf_counter()
            if backend == "rocksdb":
                trio.run(populate_rocksdb, data / "db", size)
            else:
                trio.run(populate_etcd, etcd.url, size)
            populated = time.perf_counter() - start
            start = time.perf_counter()
            # Warming 100,000 pods takes a while on a busy machine.
            flags = etcd.flags if backend == "etcd" else []
            servers[backend] = harness.start_apiserver(data, *flags, timeout=600)
            figures[backend] = {
                "startup_s": time.perf_counter() - start,
                "populate_s": populated,
            }
        times: dict[str, list[float]] = {backend: [] for backend in servers}
        for _ in range(runs):
            for backend, server in servers.items():
                took, nbytes = measure_list(server, server.data_dir / "pki", 1)
                times[backend] += took
                figures[backend]["mb"] = nbytes / 1e6
        for backend, server in servers.items():
            figures[backend]["ms"] = harness.median(times[backend]) * 1e3
            figures[backend]["rss_mib"] = server.rss_mib()
    finally:
        for server in servers.values():
            server.stop()
        etcd.stop()
    return figures


# Two API servers on one etcd cluster, sharing a PKI (B starts from a copy of A's).


def two_servers(base: Path, members: list[EtcdProcess]) -> tuple[harness.Server, harness.Server]:
    a = harness.start_apiserver(base / "a", *cluster_flags(members))
    try:
        shutil.copytree(base / "a" / "pki", base / "b" / "pki")
        b = harness.start_apiserver(base / "b", *cluster_flags(members))
    except BaseException:
        a.stop()
        raise
    return a, b


def client_context(server: harness.Server) -> ssl.SSLContext:
    return harness.tls_context(server.data_dir / "pki")


# Watch delivery across API servers.


def watch_delivery(
    base: Path, members: list[EtcdProcess], events: int, rate: float
) -> dict[str, Any]:
    a, b = two_servers(base, members)
    try:
        received: dict[str, float] = {}
        done = threading.Event()
        ctx = client_context(b)
        with httpx.Client(base_url=b.url, verify=ctx, timeout=30) as api:
            rv = api.get(PODS).json()["metadata"]["resourceVersion"]
        opened = threading.Event()

        def watch() -> None:
            params = {"watch": "1", "resourceVersion": rv, "timeoutSeconds": "600"}
            with (
                httpx.Client(base_url=b.url, verify=ctx, timeout=None) as api,
                api.stream("GET", PODS, params=params) as r,
            ):
                opened.set()
                for line in r.iter_lines():
                    if not line:
                        continue
                    at = time.perf_counter()
                    event = json.loads(line)
                    if event["type"] == "ADDED":
                        received[event["object"]["metadata"]["name"]] = at
                        if len(received) >= events:
                            done.set()
                            return

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        opened.wait(30)
        sent: dict[str, float] = {}
        acked: list[float] = []
        conn = harness.Connection(a.host, a.port, client_context(a))
        interval = 1.0 / rate
        start = time.perf_counter()
        for i in range(events):
            name = f"watched-{i:06}"
            body = json.dumps(harness.realistic_pod(name)).encode()
            wait = start + i * interval - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            sent[name] = time.perf_counter()
            status, reply = conn.request("POST", PODS, body)
            acked.append(time.perf_counter() - sent[name])
            assert status == 201, reply[:200]
        conn.close()
        if not done.wait(60):
            raise RuntimeError(f"B's watcher saw {len(received)} of {events} creates")
        delays = [received[name] - sent[name] for name in sent]
        return {
            "events": events,
            "rate": rate,
            "p50_ms": harness.percentile(delays, 0.5) * 1e3,
            "p99_ms": harness.percentile(delays, 0.99) * 1e3,
            "max_ms": max(delays) * 1e3,
            "write_p50_ms": harness.percentile(acked, 0.5) * 1e3,
        }
    finally:
        a.stop()
        b.stop()


# Failover.


def start_balancer(base: Path, servers: list[harness.Server]) -> tuple[Any, str]:
    """The local load balancer, as `k8slite up --ha` runs it, in front of servers."""
    port = free_port()
    p = servers[0].data_dir / "pki"
    args = [
        sys.executable,
        "-m",
        "k8slite.cmd.k8slite",
        "load-balancer",
        "--listen",
        f"127.0.0.1:{port}",
        "--servers",
        ",".join(s.url for s in servers),
        "--health-cafile",
        str(p / "ca.pem"),
        "--health-certfile",
        str(p / "client-admin.pem"),
        "--health-keyfile",
        str(p / "client-admin.key"),
    ]
    proc, _ = launch(args, base / "lb.log", "balancing ", what="load balancer")
    return proc, f"https://127.0.0.1:{port}"


async def write_until_failover(url: str, ctx: ssl.SSLContext, kill: Callable[[], None]) -> float:
    """Seconds from kill() to the first create that succeeds after it (sent after it)."""
    config = ClientConfig(server=url, ssl_context=ctx, qps=0)
    async with ApiClient(config) as api:
        i = 0
        killed_at: float | None = None
        while True:
            i += 1
            body = json.dumps({"metadata": {"name": f"failover-{i:06}"}}).encode()
            sent = time.perf_counter()
            try:
                await api.request_bytes("POST", CONFIGMAPS, body=body)
            except (ApiError, ApiConnectionError):  # a controller would requeue
                await trio.sleep(0.01)
                continue
            if killed_at is not None and sent > killed_at:
                return time.perf_counter() - killed_at
            if killed_at is None and i >= 20:
                kill()
                killed_at = time.perf_counter()


def failover(base: Path, members: list[EtcdProcess]) -> float:
    a, b = two_servers(base, members)
    try:
        proc, url = start_balancer(base, [a, b])
        try:
            # The balancer prefers the first healthy server: A serves the client.
            return trio.run(write_until_failover, url, client_context(a), a.proc.kill)
        finally:
            stop(proc)
    finally:
        a.stop()
        b.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=10000)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--list-size", type=int, default=100_000)
    p.add_argument("--list-runs", type=int, default=5)
    p.add_argument("--watch-events", type=int, default=2000)
    p.add_argument("--watch-rate", type=float, default=100.0, help="creates per second")
    p.add_argument("--failovers", type=int, default=3)
    a = p.parse_args()
    load_before = loadavg()
    print(f"load average before: {load_before} ({os.cpu_count()} CPUs)", flush=True)
    figures: dict[str, Any] = {"bench": "etcd", "clients": a.clients, "requests": a.requests}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)

        results: dict[str, list[dict[str, float]]] = {b: [] for b in BACKENDS}
        for run in range(a.runs):  # --runs 0 leaves the creates out
            for backend in BACKENDS:
                results[backend].append(creates(backend, base, a.requests, a.clients, run))
        for backend, runs in results.items():
            if not runs:
                continue
            m = {k: harness.median([r[k] for r in runs]) for k in runs[0]}
            print(
                f"creates {backend}: {m['per_s']:.0f}/s p50 {m['p50_ms']:.1f} ms "
                f"p99 {m['p99_ms']:.1f} ms (errors {m['errors']:.0f}; median of {a.runs})",
                flush=True,
            )
            figures[f"{backend}_creates_per_s"] = round(m["per_s"])
            figures[f"{backend}_p99_ms"] = round(m["p99_ms"], 1)
            figures[f"{backend}_errors"] = round(m["errors"])
        for backend in ("etcd1", "etcd3") if a.runs else ():
            ratio = figures[f"{backend}_creates_per_s"] / figures["rocksdb_creates_per_s"]
            figures[f"{backend}_to_rocksdb"] = round(ratio, 3)
            print(f"{backend} / RocksDB create rate: {ratio:.2f} (goal for etcd3: >= 0.5)")

        if a.list_size:
            lists = list_from_cache(base, a.list_size, a.list_runs)
            for backend, m in lists.items():
                print(
                    f"LIST {a.list_size} pods from the cache on {backend}: median {m['ms']:.0f} ms "
                    f"({m['mb']:.1f} MB, median of {a.list_runs}); populate "
                    f"{m['populate_s']:.0f} s, server start with warm-up {m['startup_s']:.1f} s, "
                    f"RSS {m['rss_mib']:.0f} MiB",
                    flush=True,
                )
                figures[f"list_{backend}_ms"] = round(m["ms"], 1)
                figures[f"list_{backend}_startup_s"] = round(m["startup_s"], 1)
            ratio = lists["etcd"]["ms"] / lists["rocksdb"]["ms"]
            figures["list_size"] = a.list_size
            figures["list_etcd_to_rocksdb"] = round(ratio, 3)
            print(f"LIST etcd / RocksDB: {ratio:.2f} (goal: within 1.2)")

        members = start_etcd_cluster(base / "etcd-ha")
        try:
            if a.watch_events:
                w = watch_delivery(base / "watch", members, a.watch_events, a.watch_rate)
                figures["watch_p50_ms"] = round(w["p50_ms"], 1)
                figures["watch_p99_ms"] = round(w["p99_ms"], 1)
                figures["watch_rate"] = a.watch_rate
                print(
                    f"watch delivery A -> B ({w['events']} pod creates at {w['rate']:.0f}/s): "
                    f"p50 {w['p50_ms']:.1f} ms p99 {w['p99_ms']:.1f} ms max {w['max_ms']:.1f} ms "
                    f"(create p50 {w['write_p50_ms']:.1f} ms; goal p99 < 100 ms)",
                    flush=True,
                )
            times = []
            for run in range(a.failovers):
                times.append(failover(base / f"failover-{run}", members))
                print(f"failover {run + 1}: next write {times[-1]:.3f} s after kill -9", flush=True)
            if times:
                med = harness.median(times)
                print(f"failover: median {med:.3f} s, max {max(times):.3f} s (goal < 2 s)")
                figures["failover_s"] = round(med, 3)
                figures["failover_max_s"] = round(max(times), 3)
        finally:
            for member in members:
                member.stop()
    load_after = loadavg()
    print(f"load average after: {load_after}")
    figures["loadavg_before"] = load_before
    figures["loadavg_after"] = load_after
    figures["runs"] = a.runs
    harness.emit(figures)


if __name__ == "__main__":
    main()
