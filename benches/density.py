"""Density and load, as clusterloader2's: N hollow nodes, Deployments up to a pod count,
all Running, a scale-down, then everything deleted; upstream's SLIs measured on the way.

Run: .venv/bin/python benches/density.py [--nodes 5000] [--pods 150000] [--qps 100]
         [--record docs/scale.md]
Quick: .venv/bin/python benches/density.py --nodes 1000 --pods 30000

A fresh API server, `k8slite hollow-nodes --count N`, the scheduler and a controller manager
(its default controllers) on this machine. The pods are spread over N/100 namespaces (at
least one), each holding Deployments of three sizes as clusterloader2's load test: a quarter
of its pods in big ones (250 replicas), a quarter in medium ones (30), the rest in small
ones (5). Deployments are created at --qps a second over 8 connections (clusterloader2's
default is 100 above 500 nodes); then each is scaled to half its replicas, then the
namespaces are deleted.

What is measured, as upstream's SLIs define it where there is one:
- pod start-up latency: from the pod's creation to a watch seeing it Running (hollow nodes
  pull no images). Creation is when the watch saw the pod ADDED (creationTimestamp has
  only whole seconds); also reported from creationTimestamp, upstream's own start point.
  Split into create-to-scheduled and scheduled-to-running as clusterloader2 does.
- API call latency: p99 per (verb, resource, subresource, scope) from the API server's
  apiserver_request_duration_seconds histogram over the whole run, in upstream's four
  classes: mutating (SLO 1 s), GET of one object (1 s), namespace LIST (5 s), cluster LIST
  (30 s).
- watch delivery lag: a ConfigMap is patched twice a second during the run; the time from
  each patch's answer to a watch seeing the change (upstream has no SLO for it yet).
- RSS (peak) and CPU seconds per phase of the API server, controller manager, scheduler
  and the hollow-node process; the data dir's size with everything running and at the end.
- time to create all (first create to all Running), scale down, and delete all.

The last line is the figures as JSON; --record FILE adds a row to the table in FILE
(docs/scale.md). The run is never made smaller to pass: a missed goal is a figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import harness
from hollow_cluster import start_cluster
from scale_table import record, seconds

NS_PREFIX = "density-"
PROBE_NS = "density-probe"
LABEL = "density"
SIZES = (("big", 250), ("medium", 30), ("small", 5))
# Upstream's SLOs (seconds, p99).
SLO = {"mutating": 1.0, "get": 1.0, "namespace_list": 5.0, "cluster_list": 30.0}
POD_STARTUP_SLO = 5.0
MUTATING = {"POST", "PUT", "PATCH", "DELETE", "APPLY"}
COLLECTIONS = "mutating_collections"  # writes of whole collections: no SLO upstream


# ---------------------------------------------------------------------------- the plan


def plan(pods: int, namespaces: int) -> list[tuple[str, str, int]]:
    """(namespace, deployment, replicas), summing to exactly `pods`.

    Per namespace a quarter of its pods in big Deployments, a quarter in medium ones, the
    rest in small ones; a size that does not fit in its share goes to the next smaller."""
    out: list[tuple[str, str, int]] = []
    for n in range(namespaces):
        ns = f"{NS_PREFIX}{n}"
        budget = pods // namespaces + (1 if n < pods % namespaces else 0)
        shares = [budget // 4, budget // 4]
        shares.append(budget - sum(shares))
        carry = 0
        for (kind, size), share in zip(SIZES, shares, strict=True):
            share += carry
            count = share // size
            carry = share - count * size
            out += [(ns, f"{kind}-{i}", size) for i in range(count)]
        if carry:
            out.append((ns, "small-rest", carry))
    return out


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name, LABEL: "1"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "pause",
                            "image": "k8slite/pause:1.0",
                            "resources": {"requests": {"cpu": "10m", "memory": "10M"}},
                        }
                    ],
                },
            },
        },
    }


# ------------------------------------------------------------------------ measurements


@dataclass
class PodTimes:
    added: float  # time.time() the watch saw it first
    created: float  # its creationTimestamp
    scheduled: float | None = None
    running: float | None = None


@dataclass
class PodWatch:
    """Every pod with the bench's label, from one cluster-wide watch in a thread."""

    url: str
    ctx: Any
    rv: str
    pods: dict[str, PodTimes] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)
    running: int = 0
    error: BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    for event in watch_events(self.url, self.ctx, "/api/v1/pods", self, LABEL):
                        self._see(event["type"], event["object"], time.time())
                except Gone:
                    self._relist()
        except BaseException as e:  # noqa: BLE001 - surfaced by the waits
            self.error = e

    def _relist(self) -> None:
        """After a 410: every pod as a LIST shows it now; the ones missing were deleted."""
        seen: set[str] = set()
        now = time.time()
        with httpx.Client(verify=self.ctx, timeout=300, base_url=self.url) as api:
            params = {"labelSelector": LABEL, "limit": "5000"}
            while True:
                page = api.get("/api/v1/pods", params=params).json()
                for pod in page["items"]:
                    seen.add(pod["metadata"]["uid"])
                    self._see("MODIFIED", pod, now)
                if not page["metadata"].get("continue"):
                    break
                params["continue"] = page["metadata"]["continue"]
        for uid in self.live - seen:
            self._see("DELETED", {"metadata": {"uid": uid}}, now)
        self.rv = page["metadata"]["resourceVersion"]

    def _see(self, kind: str, obj: dict[str, Any], now: float) -> None:
        uid = obj["metadata"]["uid"]
        if kind == "DELETED":
            if uid in self.live:
                self.live.discard(uid)
                times = self.pods.get(uid)
                if times is not None and times.running is not None:
                    self.running -= 1
            return
        times = self.pods.get(uid)
        if times is None:
            created = parse_time(obj["metadata"]["creationTimestamp"])
            times = self.pods[uid] = PodTimes(added=now, created=created)
            self.live.add(uid)
        if times.scheduled is None and obj["spec"].get("nodeName"):
            times.scheduled = now
        if times.running is None and (obj.get("status") or {}).get("phase") == "Running":
            times.running = now
            if uid in self.live:
                self.running += 1


def parse_time(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


def watch_events(
    url: str, ctx: Any, path: str, owner: Any, label: str | None
) -> Iterator[dict[str, Any]]:
    """A watch from owner.rv, resumed from the last resourceVersion when the server ends
    it or the connection drops, until owner.stop is set. Raises Gone on a 410."""
    params = {"watch": "1", "allowWatchBookmarks": "true"}
    if label:
        params["labelSelector"] = label
    failures = 0
    with httpx.Client(verify=ctx, timeout=httpx.Timeout(30, read=None)) as client:
        while not owner.stop.is_set():
            params["resourceVersion"] = owner.rv
            try:
                with client.stream("GET", url + path, params=params) as r:
                    if r.status_code == 410:
                        raise Gone
                    r.raise_for_status()
                    for line in r.iter_lines():
                        if owner.stop.is_set():
                            return
                        event = json.loads(line)
                        if event["type"] == "ERROR":
                            if event["object"].get("code") == 410:
                                raise Gone
                            raise RuntimeError(f"watch of {path} failed: {event['object']}")
                        owner.rv = event["object"]["metadata"]["resourceVersion"]
                        failures = 0
                        if event["type"] != "BOOKMARK":
                            yield event
            except httpx.TransportError:
                # A dropped connection: resume where it was, unless the server is gone.
                failures += 1
                if failures > 5:
                    raise
                time.sleep(1.0)


@dataclass
class LagProbe:
    """Patches one ConfigMap twice a second; a watch notes how long each change took to
    arrive after the patch was answered."""

    url: str
    ctx: Any
    rv: str = ""
    answered: dict[str, float] = field(default_factory=dict)
    lags: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self, api: httpx.Client) -> None:
        path = f"/api/v1/namespaces/{PROBE_NS}/configmaps"
        r = api.post(path, json={"metadata": {"name": "probe"}, "data": {"n": "0"}})
        r.raise_for_status()
        self.rv = r.json()["metadata"]["resourceVersion"]
        threading.Thread(target=self._watch, args=(path,), daemon=True).start()
        threading.Thread(target=self._patch, args=(path,), daemon=True).start()

    def _watch(self, path: str) -> None:
        while not self.stop.is_set():
            try:
                for event in watch_events(self.url, self.ctx, path, self, None):
                    n = event["object"].get("data", {}).get("n", "")
                    now = time.time()
                    sent = self.answered.pop(n, None)
                    if sent is not None:
                        self.lags.append(max(0.0, now - sent))
                    else:  # seen before the answer came back
                        self.answered[n] = -1.0
            except Gone:
                with httpx.Client(verify=self.ctx, timeout=300, base_url=self.url) as api:
                    self.rv = api.get(path).json()["metadata"]["resourceVersion"]
            except Exception:  # noqa: BLE001
                return  # the probe is best effort; no figures if it died

    def _patch(self, path: str) -> None:
        n = 0
        with httpx.Client(verify=self.ctx, timeout=120, base_url=self.url) as api:
            while not self.stop.wait(0.5):
                n += 1
                try:
                    api.patch(
                        f"{path}/probe",
                        json={"data": {"n": str(n)}},
                        headers={"Content-Type": "application/merge-patch+json"},
                    ).raise_for_status()
                except httpx.HTTPError:
                    continue
                if self.answered.pop(str(n), None) == -1.0:
                    self.lags.append(0.0)
                else:
                    self.answered[str(n)] = time.time()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Sampler:
    """Peak RSS of each process, sampled every second, and the load average."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0.0)
        self.loads: list[float] = []
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            for name, pid in self.pids.items():
                try:
                    self.peak[name] = max(self.peak[name], rss_mib(pid))
                except OSError:
                    pass
            self.loads.append(os.getloadavg()[0])

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}


def dir_mib(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return round(total / (1 << 20), 1)


# --------------------------------------------------------------- API latency from /metrics


def parse_histograms(text: str) -> dict[tuple[str, str, str, str], list[tuple[float, float]]]:
    """apiserver_request_duration_seconds buckets per (verb, resource, subresource, scope)."""
    out: dict[tuple[str, str, str, str], list[tuple[float, float]]] = {}
    prefix = "apiserver_request_duration_seconds_bucket{"
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        labels_text, value = line[len(prefix) :].rsplit("} ", 1)
        labels = dict(
            part.split("=", 1) for part in labels_text.replace('"', "").split(",") if "=" in part
        )
        key = (labels["verb"], labels["resource"], labels.get("subresource", ""), labels["scope"])
        le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
        out.setdefault(key, []).append((le, float(value)))
    return out


def quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus's histogram_quantile: linear within the bucket holding the rank."""
    buckets = sorted(buckets)
    total = buckets[-1][1]
    if total == 0:
        return float("nan")
    rank = q * total
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = le, count
    return lower


def api_latency(text: str) -> dict[str, Any]:
    """p99 per call in upstream's four SLO classes, the worst of each, and the calls over.

    Upstream's mutating SLI is for single objects (scope "resource", creates included);
    collection writes (the namespace controller's delete-collections) are reported apart,
    as "mutating_collections", with no SLO."""
    classes: dict[str, dict[str, dict[str, float]]] = {c: {} for c in (*SLO, COLLECTIONS)}
    for (verb, resource, sub, scope), buckets in parse_histograms(text).items():
        if verb in MUTATING:
            cls = "mutating" if scope == "resource" else COLLECTIONS
        elif verb == "GET" and scope == "resource":
            cls = "get"
        elif verb == "LIST":
            cls = "namespace_list" if scope == "namespace" else "cluster_list"
        else:
            continue
        name = f"{verb} {resource}{'/' + sub if sub else ''} {scope}"
        count = max(c for _, c in buckets)
        if count:
            classes[cls][name] = {"p99_s": round(quantile(0.99, buckets), 3), "count": count}
    out: dict[str, Any] = {}
    for cls, calls in classes.items():
        worst = max(calls.items(), key=lambda kv: kv[1]["p99_s"], default=None)
        slo = SLO.get(cls)
        out[cls] = {
            "slo_s": slo,
            "worst": worst[0] if worst else None,
            "worst_p99_s": worst[1]["p99_s"] if worst else None,
            "over_slo": sorted(n for n, v in calls.items() if slo is not None and v["p99_s"] > slo),
            # The five slowest, to keep the line readable.
            "slowest": dict(sorted(calls.items(), key=lambda kv: -kv[1]["p99_s"])[:5]),
        }
    return out


# ------------------------------------------------------------------------------ the run


def wait_until(check: Any, timeout: float, what: str, watch: PodWatch) -> float:
    """Seconds until check() holds, polled every 0.2 s; raises after timeout. Says how far
    it got every 30 s, so that a long run shows its progress."""
    started = last = time.monotonic()
    while not check():
        if watch.error is not None:
            raise RuntimeError(f"the pod watch failed: {watch.error!r}")
        now = time.monotonic()
        if now - started > timeout:
            raise TimeoutError(f"{what}: not done in {timeout:.0f} s")
        if now - last >= 30:
            last = now
            print(
                f"  {what}: {now - started:.0f} s, {len(watch.live)} pods, "
                f"{watch.running} Running; load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        time.sleep(0.2)
    return time.monotonic() - started


def in_parallel(jobs: list[Any], workers: int, url: str, ctx: Any, rate: float) -> list[str]:
    """Run jobs (callables taking an httpx.Client) on `workers` connections, started at
    `rate` a second overall (0: as fast as they go). Returns the errors."""
    work: queue.Queue[Any] = queue.Queue()
    for job in jobs:
        work.put(job)
    errors: list[str] = []
    started = time.monotonic()
    issued = [0]
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(verify=ctx, timeout=300, base_url=url) as api:
            while True:
                try:
                    job = work.get_nowait()
                except queue.Empty:
                    return
                if rate > 0:
                    with lock:
                        slot = started + issued[0] / rate
                        issued[0] += 1
                    time.sleep(max(0.0, slot - time.monotonic()))
                try:
                    job(api)
                except Exception as e:  # noqa: BLE001 - counted and reported
                    errors.append(repr(e))

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def checked(r: httpx.Response) -> None:
    if r.status_code >= 300:
        raise RuntimeError(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}")


def startup_figures(pods: list[PodTimes]) -> dict[str, Any]:
    ran = [p for p in pods if p.running is not None]
    startup = [p.running - p.added for p in ran]  # type: ignore[operator]
    from_stamp = [p.running - p.created for p in ran]  # type: ignore[operator]
    to_sched = [p.scheduled - p.added for p in ran if p.scheduled is not None]
    sched_to_run = [p.running - p.scheduled for p in ran if p.scheduled is not None]  # type: ignore[operator]

    def pcts(values: list[float]) -> dict[str, float]:
        return {
            f"p{int(q * 100)}": round(harness.percentile(values, q), 2) for q in (0.5, 0.9, 0.99)
        }

    return {
        "pods": len(ran),
        "startup_s": pcts(startup),
        "startup_from_creation_timestamp_s": pcts(from_stamp),
        "create_to_scheduled_s": pcts(to_sched),
        "scheduled_to_running_s": pcts(sched_to_run),
    }


class Unfinished(Exception):
    """A phase did not end within its time: the run stops there and reports what it saw."""


def run(a: argparse.Namespace) -> dict[str, Any]:
    namespaces = a.namespaces or max(1, a.nodes // 100)
    layout = plan(a.pods, namespaces)
    with tempfile.TemporaryDirectory(prefix="k8slite-density-") as tmp_name:
        tmp = Path(tmp_name)
        t_setup = time.monotonic()
        cluster = start_cluster(tmp, a.nodes, a.controllers, qps=a.controller_qps)
        server, procs = cluster.server, cluster.procs
        setup_s = time.monotonic() - t_setup
        figures: dict[str, Any] = {}
        sampler: Sampler | None = None
        try:
            pids = {"apiserver": server.proc.pid, **{k: p.pid for k, p in procs.items()}}
            sampler = Sampler(pids)
            ctx = harness.tls_context(server.data_dir / "pki")
            # Phase ends, by name: None for a phase that did not end.
            took: dict[str, float | None] = dict.fromkeys(
                ("creates_issued", "create_all", "scale_down", "delete_pods", "delete_all")
            )
            unfinished: str | None = None
            deadline = time.monotonic() + a.deadline if a.deadline else float("inf")

            def wait(check: Any, what: str) -> None:
                limit = min(a.timeout, deadline - time.monotonic())
                try:
                    wait_until(check, limit, what, watch)
                except TimeoutError:
                    raise Unfinished(
                        f"{what}: not done in {time.monotonic() - t_phase:.0f} s "
                        f"({len(watch.live)} pods, {watch.running} Running)"
                    ) from None

            with httpx.Client(verify=ctx, timeout=300, base_url=server.url) as api:
                for ns in [PROBE_NS, *sorted({ns for ns, _, _ in layout})]:
                    checked(api.post("/api/v1/namespaces", json={"metadata": {"name": ns}}))
                rv = api.get("/api/v1/pods", params={"limit": 1}).json()["metadata"][
                    "resourceVersion"
                ]
                watch = PodWatch(server.url, ctx, rv)
                watch.start()
                probe = LagProbe(server.url, ctx)
                probe.start(api)
                cpu = [sampler.cpu()]
                at_full: dict[str, Any] = {}

                def snapshot() -> None:
                    """What "everything running" (or as far as the run got) looked like."""
                    at_full.update(
                        startup=startup_figures(list(watch.pods.values())),
                        load=os.getloadavg(),
                        data=dir_mib(server.data_dir),
                        rss={k: round(rss_mib(p), 1) for k, p in pids.items()},
                    )

                try:
                    # Create: every Deployment at --qps, until every pod is Running.
                    t_phase = t0 = time.monotonic()

                    def create(ns: str, name: str, replicas: int) -> Any:
                        return lambda c: checked(
                            c.post(
                                f"/apis/apps/v1/namespaces/{ns}/deployments",
                                json=deployment(name, replicas),
                            )
                        )

                    errors = in_parallel(
                        [create(*d) for d in layout], a.workers, server.url, ctx, a.qps
                    )
                    if errors:
                        raise RuntimeError(f"{len(errors)} creates failed, first: {errors[0]}")
                    took["creates_issued"] = time.monotonic() - t0
                    wait(lambda: watch.running >= a.pods, "all pods Running")
                    took["create_all"] = time.monotonic() - t0
                    cpu.append(sampler.cpu())
                    snapshot()

                    # Scale down: every Deployment to half, until the extra pods are gone.
                    t_phase = t1 = time.monotonic()
                    target = sum(r // 2 for _, _, r in layout)

                    def scale(ns: str, name: str, replicas: int) -> Any:
                        return lambda c: checked(
                            c.patch(
                                f"/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale",
                                json={"spec": {"replicas": replicas // 2}},
                                headers={"Content-Type": "application/merge-patch+json"},
                            )
                        )

                    errors = in_parallel(
                        [scale(*d) for d in layout], a.workers, server.url, ctx, a.qps
                    )
                    if errors:
                        raise RuntimeError(f"{len(errors)} scales failed, first: {errors[0]}")
                    wait(lambda: len(watch.live) <= target, "scaled down")
                    took["scale_down"] = time.monotonic() - t1
                    cpu.append(sampler.cpu())

                    # Delete: the namespaces, until no pod and no namespace is left.
                    t_phase = t2 = time.monotonic()
                    for ns in sorted({ns for ns, _, _ in layout}):
                        checked(api.delete(f"/api/v1/namespaces/{ns}"))
                    wait(lambda: not watch.live, "all pods deleted")
                    took["delete_pods"] = time.monotonic() - t2

                    def namespaces_gone() -> bool:
                        items = api.get("/api/v1/namespaces").json()["items"]
                        return not any(
                            i["metadata"]["name"].startswith(NS_PREFIX)
                            and i["metadata"]["name"] != PROBE_NS
                            for i in items
                        )

                    wait(namespaces_gone, "namespaces deleted")
                    took["delete_all"] = time.monotonic() - t2
                    cpu.append(sampler.cpu())
                except Unfinished as e:
                    unfinished = str(e)
                    print(f"  stopped: {unfinished}", flush=True)
                    cpu.append(sampler.cpu())
                    if not at_full:
                        snapshot()
                probe.stop.set()
                watch.stop.set()
                metrics = api.get("/metrics").text
            sampler.stop.set()
            phases = ("create", "scale_down", "delete")
            cpu_s = {
                name: {
                    phase: round(cpu[i + 1][name] - cpu[i][name], 1)
                    for i, phase in enumerate(phases[: len(cpu) - 1])
                }
                for name in pids
            }
            lags = probe.lags
            create_s = took["create_all"]
            figures = {
                "nodes": a.nodes,
                "pods": a.pods,
                "namespaces": namespaces,
                "deployments": len(layout),
                "qps": a.qps,
                "unfinished": unfinished,
                "setup_s": round(setup_s, 1),
                **{f"{k}_s": round(v, 1) if v is not None else None for k, v in took.items()},
                "pods_per_s": round(a.pods / create_s, 1) if create_s else None,
                "pod_startup": at_full["startup"],
                "pod_startup_slo_s": POD_STARTUP_SLO,
                "api": api_latency(metrics),
                "watch_lag_s": {
                    "samples": len(lags),
                    **{
                        f"p{int(q * 100)}": round(harness.percentile(lags, q), 3)
                        for q in (0.5, 0.9, 0.99)
                    },
                    "max": round(max(lags), 3) if lags else None,
                },
                "rss_peak_mib": {k: round(v, 1) for k, v in sampler.peak.items()},
                "rss_all_running_mib": at_full["rss"],
                "cpu_s": cpu_s,
                "data_dir_all_running_mib": at_full["data"],
                "data_dir_end_mib": dir_mib(server.data_dir),
                "load_average_at_all_running": [round(x, 2) for x in at_full["load"]],
                "load_average_max": round(max(sampler.loads), 2) if sampler.loads else None,
                "load_average_mean": (
                    round(sum(sampler.loads) / len(sampler.loads), 2) if sampler.loads else None
                ),
            }
        finally:
            if sampler is not None:
                sampler.stop.set()
            cluster.stop()
            if a.keep_logs:
                a.keep_logs.mkdir(parents=True, exist_ok=True)
                for log in [*tmp.glob("*.log"), server.data_dir / "server.log"]:
                    name = "apiserver.log" if log.name == "server.log" else log.name
                    (a.keep_logs / name).write_bytes(log.read_bytes())
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nodes", type=int, default=5000)
    p.add_argument("--pods", type=int, default=None, help="default 30 per node")
    p.add_argument("--namespaces", type=int, default=0, help="default nodes/100, at least 1")
    p.add_argument(
        "--qps",
        type=float,
        default=None,
        help="Deployment creates (and scales) a second; "
        "default as clusterloader2: 10 up to 500 nodes, else 100",
    )
    p.add_argument("--workers", type=int, default=8, help="client connections for creates")
    p.add_argument("--controller-qps", type=int, default=500)
    p.add_argument("--controllers", default="*")
    p.add_argument("--timeout", type=float, default=3600.0, help="per phase")
    p.add_argument(
        "--deadline",
        type=float,
        default=0,
        help="seconds for all phases together (0: none); a phase still going then, or one "
        "past --timeout, ends the run, which reports what it saw and which phase it stopped in",
    )
    p.add_argument("--record", type=Path, help="add a row to this Markdown file's table")
    p.add_argument("--keep-logs", type=Path, help="copy the components' logs here")
    p.add_argument(
        "--profile",
        type=Path,
        help="profile every component with cProfile (slower) into this directory: "
        "COMPONENT-PID.prof, for `python -m pstats`",
    )
    a = p.parse_args()
    if a.profile:
        a.profile.mkdir(parents=True, exist_ok=True)
        os.environ["K8SLITE_PROFILE_DIR"] = str(a.profile.resolve())
    if a.pods is None:
        a.pods = 30 * a.nodes
    if a.qps is None:
        a.qps = 10.0 if a.nodes <= 500 else 100.0
    command = "benches/density.py " + " ".join(sys.argv[1:])
    f = run(a)
    s = f["pod_startup"]["startup_s"]
    print(
        f"{a.nodes} nodes, {a.pods} pods in {f['deployments']} Deployments: all Running in "
        f"{seconds(f['create_all_s'])}; start-up of the {f['pod_startup']['pods']} that ran: "
        f"p50 {s['p50']} s p90 {s['p90']} s p99 {s['p99']} s (SLO {POD_STARTUP_SLO} s); "
        f"scale-down {seconds(f['scale_down_s'])}, delete all {seconds(f['delete_all_s'])}; "
        f"load average mean {f['load_average_mean']} max {f['load_average_max']}",
        flush=True,
    )
    if f["unfinished"]:
        print(f"  NOT FINISHED: {f['unfinished']}", flush=True)
    for cls, v in f["api"].items():
        slo = f"{v['slo_s']} s" if v["slo_s"] is not None else "none"
        print(
            f"  {cls}: worst p99 {v['worst_p99_s']} s ({v['worst']}), SLO {slo},"
            f" over: {v['over_slo'] or 'none'}",
            flush=True,
        )
    if a.record:
        record(a.record, f, command)
    harness.emit({"bench": "density", **f})


if __name__ == "__main__":
    main()
