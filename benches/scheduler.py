"""Scheduler throughput: the native kernel against the Python reference, and end to end.

Run: .venv/bin/python benches/scheduler.py [--nodes 500 5000] [--runs 3] [--e2e-runs 3]
         [--e2e-nodes 5000] [--e2e-pods 10000] [--modes ceiling backlog stream paced]
         [--skip-e2e]

Kernel: pods placed per CPU-second (summary built, every node filtered and scored, the best
node assumed) on synthetic clusters of 500 and 5,000 nodes, native NodeTable against the pure
Python reference (tests/reference/scheduler.py), in the same run.

End to end, like upstream's SchedulingBasic: a real API server holding 5,000 node objects
(written straight into RocksDB, no kubelets) and the k8slite-scheduler binary.
  backlog: 10,000 pending pods are in the store before the scheduler starts.
  stream:  the scheduler is running; 10,000 pods are created over 50 HTTPS connections.
  paced:   the same, 3,000 pods created at a steady 100 per second (latency when the API
           server is not saturated by the creations themselves).
Bindings are observed by a watch; pods/s is counted from the first binding to the last, and
creation-to-binding (stream) from each POST's answer to the binding's arrival. The binding
ceiling is the same API server taking pods/binding POSTs from 50 lean HTTPS clients with no
scheduler at all: what the binding path can carry on this machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import harness

from k8slite import _native, pki
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.registry import encoder
from k8slite.storage import Op, RocksStore
from tests.reference import scheduler as reference

GI = 1 << 30
MI = 1 << 20
NAMESPACE = "bench"
_BATCH = 1000
_CLIENTS = 50
_PROCESSES = 2

# ------------------------------------------------------------------------------- kernel

IMAGES = [
    (["registry.k8s.io/pause:3.9"], 744 * 1024),
    (["busybox:1.36"], 4 * MI),
    (["nginx:1.25"], 187 * MI),
    (["postgres:16"], 431 * MI),
    (["registry.k8s.io/kube-proxy:v1.35.0"], 30 * MI),
]


def synthetic_cluster(impl: Any, nodes: int, seed: int) -> Any:
    """Nodes of mixed sizes in three zones, three tainted control-plane nodes, images, and
    five running pods per node from twenty ReplicaSets."""
    rng = random.Random(seed)
    table = impl.NodeTable()
    for i in range(nodes):
        name = f"node-{i:05}"
        cpu = rng.choice([4000, 8000, 16000, 32000])
        taints = [("node-role.kubernetes.io/control-plane", "", "NoSchedule")] if i < 3 else []
        if rng.random() < 0.05:
            taints.append(("example.com/maintenance", "soon", "PreferNoSchedule"))
        table.set_node(
            name,
            allocatable={
                "cpu": cpu,
                "memory": cpu * 4 * MI,
                "ephemeral-storage": 100 * GI,
                "pods": 110,
            },
            labels={
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "topology.kubernetes.io/zone": f"zone-{i % 3}",
                "node.kubernetes.io/instance-type": f"m{cpu // 1000}",
            },
            taints=taints,
            images=rng.sample(IMAGES, rng.randint(1, 4)),
        )
        for j in range(5):
            spec = impl.PodSpec(**pod_kwargs(rng, i * 5 + j))
            table.add_pod(f"bench/running-{i}-{j}", name, spec)
    return table


def pod_kwargs(rng: random.Random, i: int) -> dict[str, Any]:
    """A pod as a Deployment makes it: requests, default tolerations, an image, an owner;
    one in ten with a zone selector, one in ten preferring an instance type, one in twenty
    anti-affine to its own kind per host."""
    rs = f"ReplicaSet/rs-{i % 20}"
    cpu, memory = rng.choice([(100, 128 * MI), (250, 256 * MI), (500, GI), (110, 80 * MI)])
    kwargs: dict[str, Any] = {
        "namespace": NAMESPACE,
        "labels": {"app": f"app-{i % 20}", "pod-template-hash": "x"},
        "requests": {"cpu": cpu, "memory": memory},
        "nonzero": (cpu, memory),
        "tolerations": [
            ("node.kubernetes.io/not-ready", "Exists", "", "NoExecute"),
            ("node.kubernetes.io/unreachable", "Exists", "", "NoExecute"),
        ],
        "images": [rng.choice(IMAGES)[0][0]],
        "spread_key": rs,
    }
    roll = rng.random()
    if roll < 0.1:
        kwargs["node_selector"] = {"topology.kubernetes.io/zone": f"zone-{i % 3}"}
    elif roll < 0.2:
        kwargs["preferred"] = [
            (50, ([("node.kubernetes.io/instance-type", "In", ["m16", "m32"])], []))
        ]
    elif roll < 0.25:
        kwargs["anti_affinity"] = [
            ([("app", "In", [f"app-{i % 20}"])], None, "kubernetes.io/hostname")
        ]
    return kwargs


def place(impl: Any, nodes: int, pods: int, budget: float, seed: int) -> tuple[float, int]:
    """Pods per CPU-second placing up to `pods` pods (or as many as `budget` seconds allow).

    Timed by this thread's CPU time (the native call runs on it, GIL released), so that other
    work on a shared machine does not count against either implementation.
    """
    table = synthetic_cluster(impl, nodes, seed)
    rng = random.Random(seed + 1)
    placed = 0
    start = time.thread_time()
    for i in range(pods):
        spec = impl.PodSpec(**pod_kwargs(rng, i))
        result = table.schedule(spec)
        if result.node is not None:
            table.add_pod(f"bench/new-{i}", result.node, spec)
            placed += 1
        if time.thread_time() - start > budget:
            break
    elapsed = time.thread_time() - start
    return (i + 1) / elapsed, placed


def kernel(sizes: list[int], runs: int, figures: dict[str, Any]) -> None:
    for nodes in sizes:
        native = [place(_native, nodes, 5000, 30.0, seed)[0] for seed in range(runs)]
        ref = [place(reference, nodes, 200, 3.0, seed)[0] for seed in range(runs)]
        n, r = harness.median(native), harness.median(ref)
        print(
            f"kernel {nodes} nodes: native {n:,.0f} pods/s ({1e3 / n:.2f} ms/pod), "
            f"reference {r:,.1f} pods/s; {n / r:,.0f}x"
        )
        figures[f"kernel_{nodes}_native_pods_per_s"] = round(n)
        figures[f"kernel_{nodes}_reference_pods_per_s"] = round(r, 1)
        figures[f"kernel_{nodes}_speedup"] = round(n / r)


# ---------------------------------------------------------------------------- end to end


def node_object(i: int) -> dict[str, Any]:
    name = f"node-{i:05}"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": f"zone-{i % 3}",
            },
        },
        "spec": {},
    }


def node_status() -> dict[str, Any]:
    resources = {"cpu": "4", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    return {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        "images": [{"names": names, "sizeBytes": size} for names, size in IMAGES[:3]],
    }


def pod_object(name: str) -> dict[str, Any]:
    pod = harness.realistic_pod(name, NAMESPACE)
    pod["spec"].pop("volumes", None)
    return pod


async def populate(db: Path, nodes: int, pods: int) -> None:
    async with RocksStore(db) as store:
        core = ApiCore(store)  # type: ignore[arg-type]
        core.warm()
        await core.ensure_system_namespaces()
        ns_reg = core.registries[("", "namespaces")]
        ns = ns_reg.prepare_new(None, {"metadata": {"name": NAMESPACE}})
        await store.txn([Op("create", ns_reg.key(None, NAMESPACE), encoder(ns))])
        node_reg = core.registries[("", "nodes")]
        for first in range(0, nodes, _BATCH):
            ops = []
            for i in range(first, min(first + _BATCH, nodes)):
                obj = node_reg.prepare_new(None, node_object(i))
                obj["status"] = node_status()
                ops.append(Op("create", node_reg.key(None, obj["metadata"]["name"]), encoder(obj)))
            await store.txn(ops)
        pod_reg = core.registries[("", "pods")]
        for first in range(0, pods, _BATCH):
            ops = []
            for i in range(first, min(first + _BATCH, pods)):
                obj = pod_reg.prepare_new(NAMESPACE, pod_object(f"web-{i:06}"))
                ops.append(
                    Op("create", pod_reg.key(NAMESPACE, obj["metadata"]["name"]), encoder(obj))
                )
            await store.txn(ops)


class BindingWatch:
    """A pod watch in a thread, noting when each pod is first seen bound (time.time())."""

    def __init__(self, server: harness.Server, pki_dir: Path, rv: str) -> None:
        self.bound: dict[str, float] = {}
        self.server, self.pki_dir, self.rv = server, pki_dir, rv
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(30)

    def _run(self) -> None:
        ctx = harness.tls_context(self.pki_dir)
        raw = socket.create_connection((self.server.host, self.server.port))
        sock = ctx.wrap_socket(raw, server_hostname=self.server.host)
        sock.sendall(
            f"GET /api/v1/namespaces/{NAMESPACE}/pods?watch=1&resourceVersion="
            f"{self.rv}&timeoutSeconds=3600 HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        self.ready.set()
        buf = b""
        while True:
            try:
                chunk = sock.recv(1 << 20)
            except (OSError, ssl.SSLError):
                return
            if not chunk:
                return
            now = time.time()
            buf += chunk
            # Frames are newline-terminated JSON inside the chunked body; the chunk-size
            # lines between them are not JSON and are skipped.
            *lines, buf = buf.split(b"\n")
            for line in lines:
                start = line.find(b'{"type"')
                if start < 0:
                    continue
                try:
                    event = json.loads(line[start:])
                except ValueError:
                    continue
                pod = event.get("object") or {}
                if (pod.get("spec") or {}).get("nodeName"):
                    self.bound.setdefault(pod["metadata"]["name"], now)


def _create_worker(args: tuple[str, int, str, int, int, int, float]) -> dict[str, float]:
    host, port, pki_dir, proc, threads, total, rate = args
    ctx = harness.tls_context(Path(pki_dir))
    created: dict[str, float] = {}
    lock = threading.Lock()
    start = time.time() + 0.5

    def run(t: int) -> None:
        conn = harness.Connection(host, port, ctx)
        mine = {}
        for i in range(proc * threads + t, total, threads * _PROCESSES):
            if rate:  # paced: pod i is due at start + i / rate
                delay = start + i / rate - time.time()
                if delay > 0:
                    time.sleep(delay)
            name = f"web-{i:06}"
            status, _ = conn.request(
                "POST",
                f"/api/v1/namespaces/{NAMESPACE}/pods",
                json.dumps(pod_object(name)).encode(),
            )
            if status == 201:
                mine[name] = time.time()
        conn.close()
        with lock:
            created.update(mine)

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return created


def _bind_worker(args: tuple[str, int, str, int, int, int, int]) -> int:
    host, port, pki_dir, proc, threads, total, nodes = args
    ctx = harness.tls_context(Path(pki_dir))
    done = [0]
    lock = threading.Lock()

    def run(t: int) -> None:
        conn = harness.Connection(host, port, ctx)
        ok = 0
        for i in range(proc * threads + t, total, threads * _PROCESSES):
            name = f"web-{i:06}"
            body = {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "target": {"apiVersion": "v1", "kind": "Node", "name": f"node-{i % nodes:05}"},
            }
            status, _ = conn.request(
                "POST",
                f"/api/v1/namespaces/{NAMESPACE}/pods/{name}/binding",
                json.dumps(body).encode(),
            )
            ok += status == 201
        conn.close()
        with lock:
            done[0] += ok

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return done[0]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_scheduler(server: harness.Server, pki_dir: Path, data: Path) -> harness.Server:
    kubeconfig = pki.kubeconfig_path(pki_dir, "scheduler")
    return harness.start(
        [
            sys.executable,
            "-m",
            "k8slite.cmd.scheduler",
            "--kubeconfig",
            str(kubeconfig),
            "--master",
            server.url,
            "--leader-elect=false",
            "--secure-port",
            "0",
            "--bind-address",
            "127.0.0.1",
        ],
        data / "scheduler",
    )


def metric(url: str, name: str) -> float:
    """A sample from the scheduler's /metrics, summed over its label sets (0 when absent)."""
    host, port = url.removeprefix("https://").rsplit(":", 1)
    conn = harness.Connection(host, int(port), ssl._create_unverified_context())
    _, body = conn.request("GET", "/metrics")
    conn.close()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.decode().splitlines()
        if line.startswith((name + " ", name + "{"))
    )


def wait_ready(url: str, timeout: float = 300.0) -> None:
    ctx = ssl._create_unverified_context()  # the scheduler's self-signed serving cert
    host, port = url.removeprefix("https://").rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = harness.Connection(host, int(port), ctx)
            status, _ = conn.request("GET", "/readyz")
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("scheduler never became ready")


def list_rv(server: harness.Server, pki_dir: Path) -> str:
    conn = harness.Connection(server.host, server.port, harness.tls_context(pki_dir))
    status, body = conn.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods?limit=1")
    conn.close()
    assert status == 200, body[:200]
    return str(json.loads(body)["metadata"]["resourceVersion"])


def wait_bound(watch: BindingWatch, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(watch.bound) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    if len(watch.bound) < count:
        raise RuntimeError(f"only {len(watch.bound)} of {count} pods bound in {timeout}s")


def rate(times: list[float]) -> float:
    times = sorted(times)
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")


def e2e(mode: str, nodes: int, pods: int, tmp: Path, pace: float = 0.0) -> dict[str, float]:
    data = tmp / mode
    pki_dir = data / "pki"
    pki.ensure_pki(pki_dir)
    backlog = pods if mode in ("backlog", "ceiling") else 0
    trio.run(populate, data / "db", nodes, backlog)
    server = harness.start_apiserver(data)
    out: dict[str, float] = {}
    try:
        watch = BindingWatch(server, pki_dir, list_rv(server, pki_dir))
        api_cpu = cpu_seconds(server.proc.pid)
        if mode == "ceiling":
            per = _CLIENTS // _PROCESSES
            bind_jobs = [
                (server.host, server.port, str(pki_dir), p, per, pods, nodes)
                for p in range(_PROCESSES)
            ]
            with mp.get_context("fork").Pool(_PROCESSES) as pool:
                done = sum(pool.map(_bind_worker, bind_jobs))
            wait_bound(watch, done, 60)
            out["per_s"] = rate(list(watch.bound.values()))
            out["api_cpu_ms_per_pod"] = (cpu_seconds(server.proc.pid) - api_cpu) / done * 1e3
            return out
        sched = start_scheduler(server, pki_dir, data)
        try:
            wait_ready(sched.url)
            started = time.time()
            sched_cpu = cpu_seconds(sched.proc.pid)
            api_cpu = cpu_seconds(server.proc.pid)
            created: dict[str, float] = {}
            if mode in ("stream", "paced"):
                per = _CLIENTS // _PROCESSES
                jobs = [
                    (server.host, server.port, str(pki_dir), p, per, pods, pace)
                    for p in range(_PROCESSES)
                ]
                with mp.get_context("fork").Pool(_PROCESSES) as pool:
                    for part in pool.map(_create_worker, jobs):
                        created.update(part)
                out["create_per_s"] = rate(list(created.values()))
            wait_bound(watch, pods, 600)
            out["per_s"] = rate(list(watch.bound.values()))
            out["sched_cpu_ms_per_pod"] = (cpu_seconds(sched.proc.pid) - sched_cpu) / pods * 1e3
            out["api_cpu_ms_per_pod"] = (cpu_seconds(server.proc.pid) - api_cpu) / pods * 1e3
            out["events_dropped"] = metric(sched.url, "k8slite_events_dropped_total")
            # The scheduler's own view: queued to bound, as upstream's SLI metric has it.
            sli = "scheduler_pod_scheduling_sli_duration_seconds"
            out["sli_mean_s"] = metric(sched.url, sli + "_sum") / max(
                1.0, metric(sched.url, sli + "_count")
            )
            # Of which the attempt itself: the algorithm, then the binding's round trip.
            attempt = "scheduler_scheduling_attempt_duration_seconds"
            out["attempt_mean_s"] = metric(sched.url, attempt + "_sum") / max(
                1.0, metric(sched.url, attempt + "_count")
            )
            if mode in ("stream", "paced"):
                lat = [watch.bound[n] - t for n, t in created.items() if n in watch.bound]
                out["p50_s"] = harness.percentile(lat, 0.5)
                out["p99_s"] = harness.percentile(lat, 0.99)
            else:
                out["all_bound_s"] = max(watch.bound.values()) - started
        finally:
            sched.stop()
    finally:
        server.stop()
    return out


MODES = ("ceiling", "backlog", "stream", "paced")


def end_to_end(
    nodes: int,
    pods: int,
    runs: int,
    paced: tuple[int, float],
    modes: list[str],
    figures: dict[str, Any],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            count, pace = paced if mode == "paced" else (pods, 0.0)
            results = [e2e(mode, nodes, count, Path(tmp) / f"{mode}{r}", pace) for r in range(runs)]
            med = {k: harness.median([r[k] for r in results]) for k in results[0]}
            print(
                f"e2e {mode} ({nodes} nodes, {count} pods): "
                + ", ".join(f"{k} {v:,.3f}" for k, v in sorted(med.items()))
            )
            for k, v in med.items():
                figures[f"e2e_{mode}_{k}"] = round(v, 3 if v < 10 else 1)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--nodes", type=int, nargs="+", default=[500, 5000])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--e2e-nodes", type=int, default=5000)
    p.add_argument("--e2e-pods", type=int, default=10000)
    p.add_argument("--e2e-runs", type=int, default=1)
    p.add_argument("--paced-pods", type=int, default=3000)
    p.add_argument(
        "--paced-rate", type=float, default=100.0, help="pods created per second in the paced run"
    )
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--skip-e2e", action="store_true")
    a = p.parse_args()
    figures: dict[str, Any] = {
        "bench": "scheduler",
        "runs": a.runs,
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    kernel(a.nodes, a.runs, figures)
    if not a.skip_e2e:
        figures.update(
            {
                "e2e_nodes": a.e2e_nodes,
                "e2e_pods": a.e2e_pods,
                "e2e_runs": a.e2e_runs,
                "e2e_paced_pods": a.paced_pods,
                "e2e_paced_rate": a.paced_rate,
            }
        )
        end_to_end(
            a.e2e_nodes, a.e2e_pods, a.e2e_runs, (a.paced_pods, a.paced_rate), a.modes, figures
        )
    harness.emit(figures)


if __name__ == "__main__":
    main()
