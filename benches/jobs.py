"""Job throughput: 1,000 one-pod Jobs on 100 hollow nodes, from creation to all Complete.

Run: .venv/bin/python benches/jobs.py [--jobs 1000] [--nodes 100] [--run-time 1s]
         [--qps 2000] [--job-syncs 5]

A fresh API server, `k8slite hollow-nodes` (fake runtime: a Job's container exits 0
--run-time after it starts), the scheduler and the controller manager, each a process of
its own. The Jobs are created over 20 concurrent requests; jobs/s is 1,000 over the time
from the first creation to the moment a watch sees the last Complete condition. The
components' client rate limits are raised (--kube-api-qps), as a scale test of upstream
does: at upstream's default of 20 QPS the Job controller alone could not exceed ~5 jobs/s;
the bench's own client gets the same QPS (at client-go's default of 50 the creates alone
took 18 s).

Printed besides: each stage's median/p90/max seconds per Job from the API's own stamps
(Job created -> its pod created -> PodScheduled -> container started -> finished -> Job
completionTime; whole seconds), so the slow stage shows; the CPU seconds of every process
over the run (controller CPU per job is the controller manager's divided by the jobs); the
API requests per job by verb and resource, from the API server's metrics; and the Job
controller's syncs per job and wall-clock milliseconds per sync, from its workqueue's
metrics (with the backlog this bench makes, jobs/s is about the workers divided by syncs
per job times seconds per sync: the workers wait on their writes in turn).

Where the time goes (docs/controllers.md has the figures): every process is CPU-bound
Python on a 2-core machine. One Job costs about 12 requests (its create, 3 status writes -
active, the uncounted uid, the count with Complete - the pod's create, binding, 2 kubelet
status patches, the finalizer patch, about 3 events), which is 45-60 ms of CPU summed over
the four processes (about half of it in the API server, about 2 ms a request). Two cores
therefore finish at most ~35-40 Jobs a second, whatever the pipeline does; 200 jobs/s
would need each request to cost a fifth of what the Python HTTP/TLS stacks on both ends
cost now.
"""

from __future__ import annotations

import argparse
import collections
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).parent))
import harness
from harness import percentile

from k8slite.api.meta import parse_time
from k8slite.client import ApiClient, load_kubeconfig
from k8slite.client.resource import JOBS, NAMESPACES, PODS
from tests.conftest import ServerHandle
from tests.launch import REPO, after, launch, stop

NAMESPACE = "bench-jobs"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def request_counts(server: ServerHandle) -> collections.Counter[str]:
    """The API server's request counter, as 'VERB resource[/sub]' -> count (watches aside)."""
    with httpx.Client(verify=harness.tls_context(server.pki), base_url=server.url) as api:
        text = api.get("/metrics").text
    out: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels.get("verb") == "WATCH":
            continue
        sub = labels.get("subresource")
        what = labels.get("resource", "") + (f"/{sub}" if sub else "")
        out[f"{labels.get('verb')} {what}"] += int(float(line.rsplit(" ", 1)[1]))
    return out


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
) -> tuple[subprocess.Popen[bytes], str]:
    """The component's process and the URL it serves health and metrics on."""
    marker = "serving on " if module == "controller_manager" else "listening on "
    proc, line = launch(
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
    return proc, after(line, marker).split()[0]


def job_syncs(server: ServerHandle, manager_url: str) -> tuple[int, float]:
    """The Job controller's syncs so far and the seconds they took, from its workqueue."""
    # The manager serves on a self-signed certificate of its own; the admin client
    # certificate is what authorizes the scrape.
    tls = harness.tls_context(server.pki)
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    with httpx.Client(verify=tls, base_url=manager_url) as c:
        text = c.get("/metrics").text
    count = total = 0.0
    for line in text.splitlines():
        if 'name="job"' not in line:
            continue
        if line.startswith("workqueue_work_duration_seconds_count"):
            count = float(line.rsplit(" ", 1)[1])
        elif line.startswith("workqueue_work_duration_seconds_sum"):
            total = float(line.rsplit(" ", 1)[1])
    return int(count), total


STAGES = ("pod created", "scheduled", "started", "finished", "job complete")


def stage_times(jobs: list[dict[str, Any]], pods: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per job, the seconds (whole seconds, as the API stamps them) each stage took."""
    by_owner = {ref["uid"]: p for p in pods for ref in p["metadata"].get("ownerReferences") or ()}
    out: dict[str, list[float]] = {s: [] for s in STAGES}
    for j in jobs:
        pod = by_owner.get(j["metadata"]["uid"])
        if pod is None or not (j.get("status") or {}).get("completionTime"):
            continue
        scheduled = next(
            (c for c in pod["status"].get("conditions") or () if c["type"] == "PodScheduled"), {}
        )
        ends = [
            (s.get("state") or {}).get("terminated") or {}
            for s in pod["status"].get("containerStatuses") or ()
        ]
        stamps = [
            j["metadata"]["creationTimestamp"],
            pod["metadata"]["creationTimestamp"],
            scheduled.get("lastTransitionTime"),
            ends[0].get("startedAt") if ends else None,
            ends[0].get("finishedAt") if ends else None,
            j["status"]["completionTime"],
        ]
        if None in stamps:
            continue
        times = [parse_time(t).timestamp() for t in stamps]
        for name, a, b in zip(STAGES, times, times[1:], strict=False):
            out[name].append(b - a)
    return out


def is_complete(job: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Complete" and c["status"] == "True"
        for c in (job.get("status") or {}).get("conditions") or ()
    )


async def create_and_wait(
    server: ServerHandle, count: int, qps: int, timeout: float
) -> tuple[float, float]:
    """Create the jobs; return (seconds from first create to all Complete, create seconds)."""
    # The bench's own client is throttled like the components (client-go's default 50 QPS
    # alone would take 18 s to create 1,000 Jobs).
    config = replace(load_kubeconfig(server.kubeconfig), qps=qps, burst=qps)
    async with ApiClient(config) as client:
        await client.create(
            NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        )
        complete: set[str] = set()
        all_complete = trio.Event()

        async def watch_completions() -> None:
            """Follow the jobs with list+watch (polling a list of 1,000 jobs every second
            would be load of its own and a second of error)."""
            while True:
                listed = await client.list(JOBS, namespace=NAMESPACE)
                complete.clear()
                complete.update(j["metadata"]["name"] for j in listed["items"] if is_complete(j))
                rv = listed["metadata"]["resourceVersion"]
                async with client.watch(JOBS, namespace=NAMESPACE, resource_version=rv) as w:
                    async for etype, obj in w:
                        if etype in ("ADDED", "MODIFIED") and is_complete(obj):
                            complete.add(obj["metadata"]["name"])
                        if len(complete) == count:
                            all_complete.set()
                            return

        limiter = trio.CapacityLimiter(20)
        started = time.monotonic()
        created = 0.0

        async def one(i: int) -> None:
            async with limiter:
                await client.create(JOBS, job(i), namespace=NAMESPACE)

        with trio.move_on_after(timeout) as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_completions)
                async with trio.open_nursery() as creates:
                    for i in range(count):
                        creates.start_soon(one, i)
                created = time.monotonic() - started
                await all_complete.wait()
        elapsed = time.monotonic() - started
        if scope.cancelled_caught:
            raise RuntimeError(f"only {len(complete)} of {count} jobs completed in {timeout}s")
        jobs = (await client.list(JOBS, namespace=NAMESPACE))["items"]
        pods = (await client.list(PODS, namespace=NAMESPACE))["items"]
        stages = stage_times(jobs, pods)
        print(
            "Seconds per stage (median/p90/max, to whole seconds): "
            + ", ".join(
                f"{name} {percentile(v, 0.5):.0f}/{percentile(v, 0.9):.0f}/{max(v, default=0):.0f}"
                for name, v in stages.items()
            )
        )
        return elapsed, created


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
            hollow = hollow_nodes(server, a.nodes, a.run_time)
            procs.append(hollow)
            rates = (f"--kube-api-qps={a.qps}", f"--kube-api-burst={a.qps}")
            scheduler, _ = component(server, "scheduler", "scheduler", *rates)
            procs.append(scheduler)
            manager, manager_url = component(
                server,
                "controller_manager",
                "controller-manager",
                *rates,
                f"--concurrent-job-syncs={a.job_syncs}",
            )
            procs.append(manager)
            pids = {
                "manager": manager.pid,
                "apiserver": api.proc.pid,
                "scheduler": scheduler.pid,
                "hollow": hollow.pid,
            }
            requests_before = request_counts(server)
            syncs_before = job_syncs(server, manager_url)
            cpu_before = {k: cpu_seconds(pid) for k, pid in pids.items()}
            elapsed, create_s = trio.run(create_and_wait, server, a.jobs, a.qps, a.timeout)
            cpu = {k: cpu_seconds(pid) - cpu_before[k] for k, pid in pids.items()}
            requests = request_counts(server) - requests_before
            syncs_after = job_syncs(server, manager_url)
            syncs = syncs_after[0] - syncs_before[0]
            sync_seconds = syncs_after[1] - syncs_before[1]
        finally:
            for proc in reversed(procs):
                stop(proc)
            api.stop()
    print(
        f"{a.jobs} jobs on {a.nodes} hollow nodes: all Complete in {elapsed:.1f}s "
        f"({a.jobs / elapsed:.1f} jobs/s; created in {create_s:.1f}s); controller manager "
        f"CPU {cpu['manager']:.1f}s ({1000 * cpu['manager'] / a.jobs:.1f} ms per job)"
    )
    print("CPU seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()))
    print(
        f"API requests per job ({sum(requests.values()) / a.jobs:.1f} in all): "
        + ", ".join(f"{k} {n / a.jobs:.2f}" for k, n in requests.most_common() if n >= a.jobs / 20)
    )
    print(
        f"Job controller: {syncs / a.jobs:.1f} syncs per job, "
        f"{1000 * sync_seconds / max(syncs, 1):.1f} ms (wall) per sync"
    )
    harness.emit(
        {
            "bench": "jobs",
            "jobs": a.jobs,
            "nodes": a.nodes,
            "seconds_to_all_complete": round(elapsed, 2),
            "jobs_per_second": round(a.jobs / elapsed, 1),
            "create_seconds": round(create_s, 2),
            "controller_cpu_ms_per_job": round(1000 * cpu["manager"] / a.jobs, 2),
            **{f"{k}_cpu_s": round(v, 1) for k, v in cpu.items()},
            "requests_per_job": round(sum(requests.values()) / a.jobs, 1),
            "job_syncs_per_job": round(syncs / a.jobs, 1),
        }
    )


if __name__ == "__main__":
    main()
