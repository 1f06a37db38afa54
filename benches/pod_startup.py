"""Pod start-up latency with Docker: pods on one kubelet, creation to Running seen by a watch.

Run: .venv/bin/python benches/pod_startup.py [--pods 50] [--rate 0] [--runs 1] [--runtime docker]

Each pod (busybox, one container) is created bound to the node (the scheduler is not part
of this); its latency is the time from sending the create to the watch event that shows it
Running, as upstream's pod start-up SLI. --rate 0 creates them all at once (a burst);
--rate N creates N pods per second. Needs a Docker engine and hack/build-images.
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
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
import harness

from k8slite import pki


def start_kubelet(
    server: harness.Server, node: str, workdir: Path, network: str, runtime: str
) -> tuple[subprocess.Popen[bytes], int]:
    pki_dir = server.data_dir / "pki"
    pki.ensure_pki(pki_dir, nodes=[node])
    args = [
        sys.executable,
        "-m",
        "k8slite.cmd.kubelet",
        "--node-name",
        node,
        "--runtime",
        runtime,
        "--kubeconfig",
        str(pki_dir / f"node-{node}.kubeconfig"),
        "--pki-dir",
        str(pki_dir),
        "--root-dir",
        str(workdir / "kubelet"),
        "--port",
        "0",
        "--healthz-port",
        "0",
        "--docker-network",
        network,
    ]
    # The kubeconfig points at the default URL; use the bench server's.
    kubeconfig = workdir / "node.kubeconfig"
    text = (pki_dir / f"node-{node}.kubeconfig").read_text()
    kubeconfig.write_text(text.replace(pki.DEFAULT_SERVER_URL, server.url))
    args[args.index("--kubeconfig") + 1] = str(kubeconfig)
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=(workdir / "kubelet.log").open("ab")
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if b" ready: " not in line:
        raise RuntimeError(f"kubelet did not start; see {workdir / 'kubelet.log'}")
    port = int(line.split(b"API listening on https://", 1)[1].split(b",")[0].rsplit(b":", 1)[1])
    return proc, port


def runtime_means(pki_dir: Path, port: int) -> dict[str, float]:
    """Mean seconds per runtime operation, from the kubelet's own metrics."""
    ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.pem"))
    ctx.load_cert_chain(
        str(pki_dir / "client-apiserver-kubelet-client.pem"),
        str(pki_dir / "client-apiserver-kubelet-client.key"),
    )
    text = httpx.get(f"https://127.0.0.1:{port}/metrics", verify=ctx).text
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in text.splitlines():
        for suffix, into in (("_sum{", sums), ("_count{", counts)):
            prefix = "kubelet_runtime_operations_duration_seconds" + suffix
            if line.startswith(prefix):
                op = line.split('operation_type="', 1)[1].split('"', 1)[0]
                into[op] = float(line.rsplit(" ", 1)[1])
    return {op: round(sums[op] / counts[op], 4) for op in sums if counts.get(op)}


def pod(name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "startup"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": "busybox:1.35", "command": ["sleep", "3600"]}],
        },
    }


def run_once(
    server: harness.Server, ctx: ssl.SSLContext, node: str, count: int, rate: float
) -> list[float]:
    sent: dict[str, float] = {}
    running: dict[str, float] = {}
    done = threading.Event()
    base = f"{server.url}/api/v1/namespaces/default/pods"
    with httpx.Client(verify=ctx, timeout=60) as api:
        rv = api.get(base, params={"limit": 1}).json()["metadata"]["resourceVersion"]

        def watch() -> None:
            with (
                httpx.Client(verify=ctx, timeout=None) as w,
                w.stream(
                    "GET",
                    base,
                    params={"watch": "1", "resourceVersion": rv, "labelSelector": "bench=startup"},
                ) as r,
            ):
                for line in r.iter_lines():
                    event = json.loads(line)
                    obj = event["object"]
                    name = obj["metadata"]["name"]
                    if obj.get("status", {}).get("phase") == "Running" and name not in running:
                        running[name] = time.perf_counter()
                        if len(running) == count:
                            done.set()
                            return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        time.sleep(0.5)
        names = [f"startup-{uuid.uuid4().hex[:8]}" for _ in range(count)]
        creators = []

        def create(name: str) -> None:
            sent[name] = time.perf_counter()
            r = api.post(base, json=pod(name, node))
            assert r.status_code == 201, r.text

        start = time.perf_counter()
        for i, name in enumerate(names):
            if rate > 0:
                time.sleep(max(0.0, start + i / rate - time.perf_counter()))
            t = threading.Thread(target=create, args=(name,))
            t.start()
            creators.append(t)
        for t in creators:
            t.join()
        if not done.wait(300):
            raise RuntimeError(f"only {len(running)} of {count} pods ran")
        latencies = [running[n] - sent[n] for n in names]
        for name in names:
            api.request("DELETE", f"{base}/{name}", json={"gracePeriodSeconds": 0})
        deadline = time.monotonic() + 120
        while api.get(base, params={"labelSelector": "bench=startup"}).json()["items"]:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
    return latencies


def wait_idle(pki_dir: Path, port: int, timeout: float = 120.0) -> None:
    """Until the kubelet has removed every pod: stopping it mid-removal can leave Docker
    with a stale network endpoint."""
    ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.pem"))
    ctx.load_cert_chain(
        str(pki_dir / "client-apiserver-kubelet-client.pem"),
        str(pki_dir / "client-apiserver-kubelet-client.key"),
    )
    deadline = time.monotonic() + timeout
    with httpx.Client(verify=ctx, trust_env=False, timeout=10) as client:
        while (
            client.get(f"https://127.0.0.1:{port}/pods").json()["items"]
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)


def cleanup_docker(node: str, network: str) -> None:
    import docker

    from k8slite.kubelet.runtime.docker_network import remove_leftovers

    client = docker.APIClient(timeout=60)
    try:
        remove_leftovers(client, [node], network)
    finally:
        client.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--pods", type=int, default=50)
    p.add_argument("--rate", type=float, default=0.0, help="pods per second; 0: all at once")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument(
        "--runtime",
        default="docker",
        choices=("docker", "fake"),
        help="fake measures the kubelet and API server alone",
    )
    a = p.parse_args()
    node = f"bench-{uuid.uuid4().hex[:6]}"
    network = f"k8slite-{node}"
    with tempfile.TemporaryDirectory(prefix="k8slite-bench-") as tmp:
        workdir = Path(tmp)
        server = harness.start_apiserver(workdir / "data")
        kubelet = None
        try:
            kubelet, port = start_kubelet(server, node, workdir, network, a.runtime)
            ctx = harness.tls_context(workdir / "data" / "pki")
            # A first pod warms the pod network and the image cache.
            run_once(server, ctx, node, 1, 0)
            runs = []
            for i in range(a.runs):
                # Each run starts on an idle node, not amid the last run's teardown.
                wait_idle(workdir / "data" / "pki", port)
                lat = run_once(server, ctx, node, a.pods, a.rate)
                runs.append(
                    {
                        "p50": harness.median(lat),
                        "p99": harness.percentile(lat, 0.99),
                        "max": max(lat),
                    }
                )
                print(
                    f"run {i + 1}: p50 {runs[-1]['p50']:.3f}s p99 {runs[-1]['p99']:.3f}s "
                    f"max {runs[-1]['max']:.3f}s",
                    flush=True,
                )
            means = runtime_means(workdir / "data" / "pki", port)
            print(
                "mean seconds per runtime operation:",
                ", ".join(f"{op} {v:.3f}" for op, v in sorted(means.items())),
                flush=True,
            )
        finally:
            if kubelet is not None:
                wait_idle(workdir / "data" / "pki", port)
                kubelet.terminate()
                kubelet.wait(30)
            server.stop()
            if a.runtime == "docker":
                cleanup_docker(node, network)
    harness.emit(
        {
            "bench": "pod_startup",
            "runtime": a.runtime,
            "pods": a.pods,
            "rate": a.rate,
            "p50_s": round(harness.median([r["p50"] for r in runs]), 3),
            "p99_s": round(harness.median([r["p99"] for r in runs]), 3),
            "runs": len(runs),
        }
    )


if __name__ == "__main__":
    main()
