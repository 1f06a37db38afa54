"""Hollow nodes: nodes held by one process, heartbeats per second, memory per node.

Run: .venv/bin/python benches/hollow.py [--nodes 1000 5000] [--window 30]

For each size: a fresh API server, then `k8slite hollow-nodes --count N` with upstream's
periods (Lease renewed every 10 s, status computed every 10 s, reported every minute).
Registration time is to the process's "nodes ready" line; heartbeats per second are the
Lease updates a watch sees over the window (the goal is N/10); memory is the process's
resident set at the end, also per node.
"""

from __future__ import annotations

import argparse
import json
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import harness


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def count_renewals(
    url: str, ctx: ssl.SSLContext, rv: str, stop: threading.Event, out: list[int]
) -> None:
    path = f"{url}/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
    with (
        httpx.Client(verify=ctx, timeout=None) as client,
        client.stream("GET", path, params={"watch": "1", "resourceVersion": rv}) as r,
    ):
        for line in r.iter_lines():
            if stop.is_set():
                return
            if json.loads(line)["type"] == "MODIFIED":
                out[0] += 1


def measure(count: int, window: float, extra: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="k8slite-hollow-") as tmp:
        data = Path(tmp) / "data"
        server = harness.start_apiserver(data)
        kubeconfig = Path(tmp) / "admin.kubeconfig"
        text = (data / "pki" / "admin.kubeconfig").read_text()
        kubeconfig.write_text(text.replace("https://127.0.0.1:8080", server.url))
        started = time.monotonic()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "k8slite.cmd.k8slite",
                "hollow-nodes",
                "--count",
                str(count),
                "--kubeconfig",
                str(kubeconfig),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=(Path(tmp) / "hollow.log").open("ab"),
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if b"nodes ready" not in line:
                raise RuntimeError(f"hollow nodes did not start: {line!r}")
            registered = time.monotonic() - started
            ctx = harness.tls_context(data / "pki")
            with httpx.Client(verify=ctx, timeout=60) as api:
                leases = api.get(
                    f"{server.url}/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                    params={"limit": 1},
                ).json()
            # Let the heartbeat schedule settle into its period before measuring.
            time.sleep(10)
            seen = [0]
            stop = threading.Event()
            watcher = threading.Thread(
                target=count_renewals,
                daemon=True,
                args=(server.url, ctx, leases["metadata"]["resourceVersion"], stop, seen),
            )
            watcher.start()
            time.sleep(1)
            base, cpu0, t0 = seen[0], cpu_seconds(proc.pid), time.monotonic()
            api0 = cpu_seconds(server.proc.pid)
            time.sleep(window)
            beats, cpu1, t1 = seen[0] - base, cpu_seconds(proc.pid), time.monotonic()
            api1 = cpu_seconds(server.proc.pid)
            stop.set()
            rss = rss_mib(proc.pid)
            with httpx.Client(verify=ctx, timeout=60) as api:
                nodes = api.get(f"{server.url}/api/v1/nodes").json()["items"]
            ready = sum(
                1
                for n in nodes
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in n["status"]["conditions"]
                )
            )
            return {
                "nodes": count,
                "ready": ready,
                "register_s": round(registered, 1),
                "heartbeats_per_s": round(beats / (t1 - t0), 1),
                "goal_heartbeats_per_s": count / 10,
                "cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
                "apiserver_cpu_percent": round(100 * (api1 - api0) / (t1 - t0), 1),
                "rss_mib": round(rss, 1),
                "kib_per_node": round(rss * 1024 / count, 1),
            }
        finally:
            harness.stop(proc, 30)
            server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nodes", type=int, nargs="+", default=[1000, 5000])
    p.add_argument("--window", type=float, default=30.0)
    p.add_argument(
        "--concurrency",
        type=int,
        default=32,
        help="API requests the hollow process keeps in flight",
    )
    a = p.parse_args()
    results = {}
    for count in a.nodes:
        r = measure(count, a.window, ["--concurrency", str(a.concurrency)])
        print(
            f"{count} nodes: registered in {r['register_s']}s, {r['ready']} Ready, "
            f"{r['heartbeats_per_s']} heartbeats/s (goal {r['goal_heartbeats_per_s']}), "
            f"{r['rss_mib']} MiB ({r['kib_per_node']} KiB/node), "
            f"{r['cpu_percent']}% CPU (API server {r['apiserver_cpu_percent']}%)",
            flush=True,
        )
        results[str(count)] = r
    harness.emit({"bench": "hollow", **{f"n{k}": v for k, v in results.items()}})


if __name__ == "__main__":
    main()
