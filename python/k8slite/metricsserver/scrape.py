"""What one scrape of a kubelet's /metrics/resource says, and usage from two scrapes."""

from __future__ import annotations

import re
from dataclasses import dataclass

# name{labels} value [timestamp-ms]
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?\s*$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, slots=True)
class Point:
    """Cumulative CPU (core-seconds) and working set (bytes) at a time (epoch seconds)."""

    timestamp: float
    cpu_seconds: float
    memory: int
    start_time: float = 0.0


# (namespace, pod, container)
ContainerKey = tuple[str, str, str]


@dataclass
class Scrape:
    node: Point | None
    containers: dict[ContainerKey, Point]


def _unescape(value: str) -> str:
    return value.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")


def parse(text: str, now: float) -> Scrape:
    """The node's and containers' points of a /metrics/resource page (samples without a
    timestamp are taken as of now)."""
    node_cpu: tuple[float, float] | None = None
    node_mem: int | None = None
    cpu: dict[ContainerKey, tuple[float, float]] = {}
    mem: dict[ContainerKey, int] = {}
    start: dict[ContainerKey, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            continue
        name, labels_text, value_text, stamp = m.groups()
        try:
            value = float(value_text)
        except ValueError:
            continue
        when = int(stamp) / 1000 if stamp else now
        if name == "node_cpu_usage_seconds_total":
            node_cpu = (when, value)
        elif name == "node_memory_working_set_bytes":
            node_mem = int(value)
        elif name.startswith("container_"):
            labels = {k: _unescape(v) for k, v in _LABEL.findall(labels_text or "")}
            key = (labels.get("namespace", ""), labels.get("pod", ""), labels.get("container", ""))
            if not all(key):
                continue
            if name == "container_cpu_usage_seconds_total":
                cpu[key] = (when, value)
            elif name == "container_memory_working_set_bytes":
                mem[key] = int(value)
            elif name == "container_start_time_seconds":
                start[key] = value
    node = None
    if node_cpu is not None and node_mem is not None:
        node = Point(node_cpu[0], node_cpu[1], node_mem)
    containers = {
        key: Point(when, seconds, mem[key], start.get(key, 0.0))
        for key, (when, seconds) in cpu.items()
        if key in mem
    }
    return Scrape(node, containers)


@dataclass(frozen=True, slots=True)
class Usage:
    """Resource usage over a window: CPU in nanocores, memory in bytes."""

    timestamp: float
    window: float
    nanocores: int
    memory: int


def usage(prev: Point, last: Point) -> Usage | None:
    """The CPU rate between two points, the latest memory; None when they cannot be
    compared (no time between them, or the counter went back: a restart)."""
    if last.timestamp <= prev.timestamp or last.cpu_seconds < prev.cpu_seconds:
        return None
    window = last.timestamp - prev.timestamp
    rate = (last.cpu_seconds - prev.cpu_seconds) / window
    return Usage(last.timestamp, window, int(rate * 1e9), last.memory)
