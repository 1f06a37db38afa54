"""The latest two points of every node and container, and the usage they give."""

from __future__ import annotations

from dataclasses import dataclass, field

from k8slite.metricsserver.scrape import ContainerKey, Point, Scrape, Usage, usage


@dataclass
class _Series:
    prev: Point | None
    last: Point

    def advance(self, point: Point) -> _Series:
        return _Series(self.last, point)


@dataclass
class MetricsStore:
    """What the scrapes of every node said, by node."""

    nodes: dict[str, _Series] = field(default_factory=dict)
    # node -> its containers' series
    containers: dict[str, dict[ContainerKey, _Series]] = field(default_factory=dict)

    def record(self, node: str, scrape: Scrape) -> None:
        """One successful scrape of the node's kubelet."""
        if scrape.node is not None:
            old = self.nodes.get(node)
            if old is None or scrape.node.timestamp > old.last.timestamp:
                self.nodes[node] = (
                    _Series(None, scrape.node) if old is None else old.advance(scrape.node)
                )
        before = self.containers.get(node, {})
        now: dict[ContainerKey, _Series] = {}
        for key, point in scrape.containers.items():
            old_series = before.get(key)
            if old_series is None or old_series.last.start_time != point.start_time:
                # New or restarted: its CPU counter counts from its start.
                start = Point(point.start_time, 0.0, point.memory, point.start_time)
                now[key] = _Series(start if point.start_time else None, point)
            elif point.timestamp > old_series.last.timestamp:
                now[key] = old_series.advance(point)
            else:
                now[key] = old_series  # the kubelet's cached figures: nothing new
        self.containers[node] = now

    def forget(self, nodes: set[str]) -> None:
        """Drop every node but these (and their containers)."""
        for name in set(self.nodes) - nodes:
            del self.nodes[name]
        for name in set(self.containers) - nodes:
            del self.containers[name]

    def node_usage(self, node: str) -> Usage | None:
        series = self.nodes.get(node)
        if series is None or series.prev is None:
            return None
        return usage(series.prev, series.last)

    def pod_usage(self) -> dict[tuple[str, str], dict[str, Usage]]:
        """(namespace, pod) -> container -> usage, for containers with two points."""
        out: dict[tuple[str, str], dict[str, Usage]] = {}
        for containers in self.containers.values():
            for (namespace, pod, container), series in containers.items():
                if series.prev is None:
                    continue
                found = usage(series.prev, series.last)
                if found is not None:
                    out.setdefault((namespace, pod), {})[container] = found
        return out
