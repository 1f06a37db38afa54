"""Job throughput: 1,000 one-pod Jobs on 100 hollow nodes, from creation to all Complete.

Run: .venv/bin/python benches/jobs.py [--jobs 1000] [--nodes 100] [--run-time 1s]
         [--qps 2000] [--job-syncs 5]

A fresh API server, `k8slite hollow-nodes` (fake runtime: a Job's container exits 0
--run-time after it starts), the scheduler and the controller manager, each a process of
its own. The Jobs are created over 20 concurrent requests; jobs/s is 1,000 over the time
from the first creation to the moment a poll (every second) sees the last Complete
condition. Controller
CPU per job is the controller manager's user+system CPU over the run divided by the jobs.
The components' client rate limits are raised (--kube-api-qps), as a scale test of upstream
does: at upstream's default of 20 QPS the Job controller alone could not exceed ~5 jobs/s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))
import harness

from k8slite.client import ApiClient, load_kubeconfig
from k8slite.client.resource import JOBS, NAMESPACES
from tests.conftest import ServerHandle
from tests.launch import REPO, launch, stop

NAMESPACE = "bench-jobs"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def job(i: int) -> dict[str, object]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"job-{i}"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "work", "image": "busybox:1.35", "command": ["true"]}],
                }
            }
        },
    }


def hollow_nodes(server: ServerHandle, count: int, run_time: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "k8slite.cmd.k8slite",
            "hollow-nodes",
            "--count",
            str(count),
            "--kubeconfig",
            str(server.kubeconfig),
            "--completion-time",
            run_time,
        ],
        stdout=subprocess.PIPE,
        stderr=(server.data_dir / "hollow.log").open("ab"),
        cwd=REPO,
    )
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if b"nodes ready" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(300):
        stop(proc)
        raise RuntimeError("hollow nodes did not register")
    return proc


def component(
    server: ServerHandle, module: str, identity: str, *extra: str
) -> subprocess.Popen[bytes]:
    marker = "serving on " if module == "controller_manager" else "listening on "
    proc, _ = launch(
        [
            sys.executable,
            "-m",
            f"k8slite.cmd.{module}",
            "--kubeconfig",
            str(server.kubeconfig_for(identity)),
            "--secure-port",
            "0",
            "--bind-address",
            "127.0.0.1",
            *extra,
        ],
        server.data_dir / f"{module}.log",
        marker,
        what=module,
        timeout=60,
    )
    return proc


async def create_and_wait(server: ServerHandle, count: int, timeout: float) -> tuple[float, float]:
    """Create the jobs; return (seconds from first create to all Complete, create seconds)."""
    async with ApiClient(load_kubeconfig(server.kubeconfig)) as client:
        await client.create(
            NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        )
        limiter = trio.CapacityLimiter(20)
        started = time.monotonic()

        async def one(i: int) -> None:
            async with limiter:
                await client.create(JOBS, job(i), namespace=NAMESPACE)

        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(one, i)
        created = time.monotonic() - started
        while True:
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"not all {count} jobs completed in {timeout}s")
            items = (await client.list(JOBS, namespace=NAMESPACE))["items"]
            done = sum(
                1
                for j in items
                if any(
                    c["type"] == "Complete" and c["status"] == "True"
                    for c in (j.get("status") or {}).get("conditions") or ()
                )
            )
            if done == count:
                return time.monotonic() - started, created
            # Listing every job is itself load on the API server: not too often.
            await trio.sleep(1.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--run-time", default="1s", help="how long each hollow container runs")
    p.add_argument("--qps", type=int, default=2000, help="--kube-api-qps of the components")
    p.add_argument("--job-syncs", type=int, default=5, help="--concurrent-job-syncs")
    p.add_argument("--timeout", type=float, default=900, help="give up after this long")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="k8slite-jobs-") as tmp:
        data = Path(tmp) / "data"
        api = harness.start_apiserver(data)
        server = ServerHandle(api.url, data, api.proc)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            procs.append(hollow_nodes(server, a.nodes, a.run_time))
            rates = (f"--kube-api-qps={a.qps}", f"--kube-api-burst={a.qps}")
            procs.append(component(server, "scheduler", "scheduler", *rates))
            manager = component(
                server,
                "controller_manager",
                "controller-manager",
                *rates,
                f"--concurrent-job-syncs={a.job_syncs}",
            )
            procs.append(manager)
            cpu_before = cpu_seconds(manager.pid)
            elapsed, create_s = trio.run(create_and_wait, server, a.jobs, a.timeout)
            cpu = cpu_seconds(manager.pid) - cpu_before
        finally:
            for proc in reversed(procs):
                stop(proc)
            api.stop()
    print(
        f"{a.jobs} jobs on {a.nodes} hollow nodes: all Complete in {elapsed:.1f}s "
        f"({a.jobs / elapsed:.1f} jobs/s; created in {create_s:.1f}s); controller manager "
        f"CPU {cpu:.1f}s ({1000 * cpu / a.jobs:.1f} ms per job)"
    )
    harness.emit(
        {
            "bench": "jobs",
            "jobs": a.jobs,
            "nodes": a.nodes,
            "seconds_to_all_complete": round(elapsed, 2),
            "jobs_per_second": round(a.jobs / elapsed, 1),
            "create_seconds": round(create_s, 2),
            "controller_cpu_ms_per_job": round(1000 * cpu / a.jobs, 2),
        }
    )


if __name__ == "__main__":
    main()
