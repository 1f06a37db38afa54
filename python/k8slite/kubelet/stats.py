"""The kubelet's resource usage, as upstream serves it: /stats/summary (JSON) and
/metrics/resource (Prometheus text, what metrics-server scrapes).

Container figures come from the runtime (Docker's stats, /proc for host processes, the fake
runtime's synthetic usage), at most one call per container every CACHE_SECONDS; the node's
from the host's /proc (or, for the fake runtime, the sum of its pods).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial

import trio

from k8slite.component.objects import Obj
from k8slite.kubelet import machine
from k8slite.kubelet.podworkers import PodWorkers
from k8slite.kubelet.runtime.base import (
    ContainerRuntimeError,
    ContainerState,
    ContainerStats,
    Runtime,
)

log = logging.getLogger(__name__)

# A scrape every few seconds (metrics-server's 15 s, several callers) costs at most one
# runtime call per container in this long.
CACHE_SECONDS = 5.0
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Usage:
    """One figure of cAdvisor's: CPU as a cumulative counter and a rate, memory as bytes."""

    timestamp: float
    cpu_ns: int
    nano_cores: int
    memory_usage: int
    working_set: int
    rss: int

    def cpu_json(self) -> Obj:
        return {
            "time": _rfc3339(self.timestamp),
            "usageNanoCores": self.nano_cores,
            "usageCoreNanoSeconds": self.cpu_ns,
        }

    def memory_json(self, available: int | None = None) -> Obj:
        out: Obj = {
            "time": _rfc3339(self.timestamp),
            "usageBytes": self.memory_usage,
            "workingSetBytes": self.working_set,
            "rssBytes": self.rss,
            "pageFaults": 0,
            "majorPageFaults": 0,
        }
        if available is not None:
            out["availableBytes"] = available
        return out


@dataclass(frozen=True, slots=True)
class ContainerUsage:
    name: str
    started_at: float
    usage: Usage


@dataclass(frozen=True, slots=True)
class PodUsage:
    name: str
    namespace: str
    uid: str
    started_at: float
    containers: list[ContainerUsage]

    @property
    def total(self) -> Usage:
        return _sum((c.usage for c in self.containers), time.time())


@dataclass(frozen=True, slots=True)
class Snapshot:
    node: Usage
    node_available: int | None
    pods: list[PodUsage]
    errors: bool  # some container's figures could not be read


def _sum(usages: Iterable[Usage], default_time: float) -> Usage:
    items = list(usages)
    return Usage(
        max((u.timestamp for u in items), default=default_time),
        sum(u.cpu_ns for u in items),
        sum(u.nano_cores for u in items),
        sum(u.memory_usage for u in items),
        sum(u.working_set for u in items),
        sum(u.rss for u in items),
    )


def host_stats() -> tuple[ContainerStats, int]:
    """The host's CPU time (all cores) and memory from /proc, and its available memory."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    # user nice system idle iowait irq softirq steal: busy is everything but idle and iowait.
    ticks = sum(int(v) for i, v in enumerate(fields[:8]) if i not in (3, 4))
    mem = machine.meminfo()
    total, available = mem.get("MemTotal", 0), mem.get("MemAvailable", 0)
    used = total - mem.get("MemFree", 0)
    stats = ContainerStats(
        timestamp=time.time(),
        cpu_usage_ns=ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK"),
        memory_usage=used,
        memory_working_set=total - available,
        memory_rss=total - available,
    )
    return stats, available


class StatsProvider:
    """Usage of one kubelet's node and running containers, cached and rated."""

    def __init__(
        self,
        runtime: Runtime,
        workers: PodWorkers,
        node_name: str,
        host: Callable[[], tuple[ContainerStats, int]] | None = host_stats,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime = runtime
        self.workers = workers
        self.node_name = node_name
        # None: the node's usage is its pods' (the fake runtime's simulated node).
        self.host = host
        self.clock = clock
        self.started = time.time()
        # id -> (when read, figures): the cache, and the sample before it for the rate.
        self._latest: dict[str, tuple[float, ContainerStats]] = {}
        self._previous: dict[str, ContainerStats] = {}
        self._available: int | None = None
        # A simulated node's CPU counter: (when, core-nanoseconds, nanocores then).
        self._node_cpu: tuple[float, int, int] | None = None

    def _rated(self, key: str, stats: ContainerStats, started_at: float) -> Usage:
        prev = self._previous.get(key)
        if prev is not None and stats.timestamp > prev.timestamp:
            rate = (stats.cpu_usage_ns - prev.cpu_usage_ns) / (stats.timestamp - prev.timestamp)
        else:
            # The first sample: the average since the container started.
            rate = stats.cpu_usage_ns / max(stats.timestamp - started_at, 1e-3)
        return Usage(
            stats.timestamp,
            stats.cpu_usage_ns,
            max(int(rate), 0),
            stats.memory_usage,
            stats.memory_working_set,
            stats.memory_rss,
        )

    async def _read(
        self, key: str, read: Callable[[], Awaitable[ContainerStats]]
    ) -> ContainerStats:
        cached = self._latest.get(key)
        now = self.clock()
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        stats = await read()
        if cached is not None:
            self._previous[key] = cached[1]
        self._latest[key] = (now, stats)
        return stats

    async def snapshot(self) -> Snapshot:
        """Every running container's usage now (cached figures at most CACHE_SECONDS old)."""
        running: list[tuple[str, str, str, str, float, str, float]] = []
        for worker in list(self.workers.workers.values()):
            if worker.done:
                continue
            pod_start = _parse_rfc3339((worker.pod.get("status") or {}).get("startTime"))
            for rec in worker.state.records.values():
                cs = rec.current
                if cs is None or cs.state is not ContainerState.RUNNING:
                    continue
                running.append(
                    (
                        worker.namespace,
                        worker.name,
                        worker.uid,
                        rec.name,
                        pod_start or cs.created_at,
                        cs.id,
                        cs.started_at or cs.created_at,
                    )
                )
        results: dict[str, ContainerStats] = {}
        errors = False

        async def one(cid: str) -> None:
            nonlocal errors
            try:
                results[cid] = await self._read(cid, partial(self.runtime.container_stats, cid))
            except ContainerRuntimeError as e:
                # Stopped between the listing and the read, or the runtime failed.
                log.debug("stats of container %s: %s", cid, e)
                errors = True

        async with trio.open_nursery() as nursery:
            for row in running:
                nursery.start_soon(one, row[5])
        live = set(results)
        for gone in set(self._latest) - live - {"node"}:
            self._latest.pop(gone, None)
            self._previous.pop(gone, None)

        pods: dict[str, PodUsage] = {}
        for namespace, name, uid, container, pod_start, cid, started in running:
            stats = results.get(cid)
            if stats is None:
                continue
            pod = pods.get(uid)
            if pod is None:
                pod = pods[uid] = PodUsage(name, namespace, uid, pod_start, [])
            pod.containers.append(
                ContainerUsage(container, started, self._rated(cid, stats, started))
            )
        pod_list = sorted(pods.values(), key=lambda p: (p.namespace, p.name))
        now = round(time.time(), 3)  # to the millisecond, as samples are stamped
        if self.host is None:
            node, available = self._simulated_node(pod_list, now), None
        else:
            raw = await self._read("node", self._host)
            node, available = self._rated("node", raw, machine_boot_time()), self._available
        return Snapshot(node, available, pod_list, errors)

    def _simulated_node(self, pods: list[PodUsage], now: float) -> Usage:
        """A simulated node's usage: its pods' memory, and a CPU counter of its own that
        grows at the pods' current rate (their counters, read at different times and
        starting with each pod, do not add up to one that only grows)."""
        total = _sum((p.total for p in pods), now)
        if self._node_cpu is not None:
            last_time, last_cpu, last_rate = self._node_cpu
            cpu = last_cpu + int(last_rate * max(now - last_time, 0.0))
        else:
            cpu = 0
        self._node_cpu = (now, cpu, total.nano_cores)
        return Usage(now, cpu, total.nano_cores, total.memory_usage, total.working_set, total.rss)

    async def _host(self) -> ContainerStats:
        assert self.host is not None
        stats, self._available = await trio.to_thread.run_sync(self.host)
        return stats

    async def summary(self) -> Obj:
        """/stats/summary: upstream's statsapi Summary (node, pods, containers)."""
        snap = await self.snapshot()
        node: Obj = {
            "nodeName": self.node_name,
            "startTime": _rfc3339(self.started),
            "cpu": snap.node.cpu_json(),
            "memory": snap.node.memory_json(snap.node_available),
        }
        pods = []
        for pod in snap.pods:
            total = pod.total
            pods.append(
                {
                    "podRef": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
                    "startTime": _rfc3339(pod.started_at),
                    "containers": [
                        {
                            "name": c.name,
                            "startTime": _rfc3339(c.started_at),
                            "cpu": c.usage.cpu_json(),
                            "memory": c.usage.memory_json(),
                        }
                        for c in pod.containers
                    ],
                    "cpu": total.cpu_json(),
                    "memory": total.memory_json(),
                }
            )
        return {"node": node, "pods": pods}

    async def resource_metrics(self) -> str:
        """/metrics/resource: upstream's stable resource metrics, with sample timestamps."""
        snap = await self.snapshot()
        families: dict[str, list[str]] = {name: [] for name in _FAMILIES}

        def add(family: str, labels: dict[str, str], value: float, when: float) -> None:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            name = f"{family}{{{text}}}" if text else family
            families[family].append(f"{name} {value!r} {round(when * 1000)}")

        for pod in snap.pods:
            for c in pod.containers:
                labels = {"container": c.name, "namespace": pod.namespace, "pod": pod.name}
                u = c.usage
                add("container_cpu_usage_seconds_total", labels, u.cpu_ns / 1e9, u.timestamp)
                add("container_memory_working_set_bytes", labels, float(u.working_set), u.timestamp)
                add("container_start_time_seconds", labels, c.started_at, u.timestamp)
            labels = {"namespace": pod.namespace, "pod": pod.name}
            total = pod.total
            add("pod_cpu_usage_seconds_total", labels, total.cpu_ns / 1e9, total.timestamp)
            add("pod_memory_working_set_bytes", labels, float(total.working_set), total.timestamp)
        n = snap.node
        add("node_cpu_usage_seconds_total", {}, n.cpu_ns / 1e9, n.timestamp)
        add("node_memory_working_set_bytes", {}, float(n.working_set), n.timestamp)
        lines = []
        for family, (kind, help_text) in _FAMILIES.items():
            if family == "resource_scrape_error":
                families[family].append(f"{family} {1 if snap.errors else 0}")
            lines.append(f"# HELP {family} [STABLE] {help_text}")
            lines.append(f"# TYPE {family} {kind}")
            lines.extend(families[family])
        return "\n".join(lines) + "\n"


# Upstream's families, in its (alphabetical) order.
_FAMILIES = {
    "container_cpu_usage_seconds_total": (
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
    ),
    "container_memory_working_set_bytes": (
        "gauge",
        "Current working set of the container in bytes",
    ),
    "container_start_time_seconds": (
        "gauge",
        "Start time of the container since unix epoch in seconds",
    ),
    "node_cpu_usage_seconds_total": (
        "counter",
        "Cumulative cpu time consumed by the node in core-seconds",
    ),
    "node_memory_working_set_bytes": ("gauge", "Current working set of the node in bytes"),
    "pod_cpu_usage_seconds_total": (
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
    ),
    "pod_memory_working_set_bytes": ("gauge", "Current working set of the pod in bytes"),
    "resource_scrape_error": (
        "gauge",
        "1 if there was an error while getting container metrics, 0 otherwise",
    ),
}


def machine_boot_time() -> float:
    """When the host booted (the node's CPU counter counts from then)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _rfc3339(when: float) -> str:
    return dt.datetime.fromtimestamp(int(when), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_rfc3339(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
