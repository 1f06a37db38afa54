"""metrics.k8s.io/v1beta1 as upstream's metrics-server serves it: NodeMetrics and PodMetrics,
get and list, label and field selectors, with Status errors."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from k8slite._native import FieldSelector, LabelSelector, SelectorError
from k8slite.component.objects import Obj
from k8slite.component.serving import Request, Response
from k8slite.metricsserver import quantity
from k8slite.metricsserver.scrape import Usage
from k8slite.metricsserver.store import MetricsStore

GROUP = "metrics.k8s.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
PREFIX = f"/apis/{GROUP}"
_JSON = "application/json"


def status(code: int, reason: str, message: str, details: Obj | None = None) -> Response:
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return Response(code, json.dumps(body).encode(), _JSON)


def _json(obj: Obj) -> Response:
    return Response(200, json.dumps(obj).encode(), _JSON)


def _time(when: float) -> str:
    return dt.datetime.fromtimestamp(int(when), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _usage(u: Usage) -> Obj:
    return {"cpu": quantity.cpu(u.nanocores), "memory": quantity.memory(u.memory)}


def group() -> Obj:
    version = {"groupVersion": API_VERSION, "version": VERSION}
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [version],
        "preferredVersion": version,
    }


def resource_list() -> Obj:
    verbs = ["get", "list"]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": API_VERSION,
        "resources": [
            {
                "name": "nodes",
                "singularName": "",
                "namespaced": False,
                "kind": "NodeMetrics",
                "verbs": verbs,
            },
            {
                "name": "pods",
                "singularName": "",
                "namespaced": True,
                "kind": "PodMetrics",
                "verbs": verbs,
            },
        ],
    }


class MetricsApi:
    """Answers metrics.k8s.io requests from the store and the nodes and pods informers."""

    def __init__(
        self,
        store: MetricsStore,
        nodes: Callable[[], list[Obj]],
        pods: Callable[[str | None], list[Obj]],
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.nodes = nodes
        self.pods = pods
        self.clock = clock

    async def handle(self, req: Request) -> Response:
        parts = req.path[len(PREFIX) :].strip("/").split("/") if req.path != PREFIX else []
        if not parts or parts == [""]:
            return _json(group())
        if parts[0] != VERSION:
            return status(404, "NotFound", "the server could not find the requested resource")
        rest = parts[1:]
        namespace = None
        if len(rest) >= 2 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest:
            return _json(resource_list()) if namespace is None else _not_found_path()
        plural, name = rest[0], (rest[1] if len(rest) == 2 else None)
        if len(rest) > 2 or plural not in ("nodes", "pods") or (plural == "nodes" and namespace):
            return _not_found_path()
        try:
            labels = LabelSelector(req.arg("labelSelector") or "")
            fields = FieldSelector(req.arg("fieldSelector") or "")
        except SelectorError as e:
            return status(400, "BadRequest", str(e))
        if plural == "nodes":
            items = self._nodes(labels, fields, name)
            kind = "NodeMetrics"
        else:
            items = self._pods(namespace, labels, fields, name)
            kind = "PodMetrics"
        if name is not None:
            if not items:
                what = name if plural == "nodes" else f"{namespace}/{name}"
                resource = "nodemetrics" if plural == "nodes" else "podmetrics"
                return status(
                    404,
                    "NotFound",
                    f'{resource}.{GROUP} "{what}" not found',
                    {"name": what, "group": GROUP, "kind": plural},
                )
            return _json(items[0])
        return _json(
            {"kind": f"{kind}List", "apiVersion": API_VERSION, "metadata": {}, "items": items}
        )

    def _meta(self, obj: Obj) -> Obj:
        m = obj.get("metadata") or {}
        out: Obj = {"name": m.get("name"), "creationTimestamp": _time(self.clock())}
        if m.get("namespace"):
            out["namespace"] = m["namespace"]
        if m.get("labels"):
            out["labels"] = m["labels"]
        return out

    def _nodes(self, labels: LabelSelector, fields: FieldSelector, name: str | None) -> list[Obj]:
        out = []
        for node in sorted(self.nodes(), key=lambda n: n["metadata"]["name"]):
            m = node["metadata"]
            if name is not None and m["name"] != name:
                continue
            if not labels.matches(m.get("labels") or {}) or not fields.matches(
                {"metadata.name": m["name"]}
            ):
                continue
            u = self.store.node_usage(m["name"])
            if u is None:
                continue
            out.append(
                {
                    "kind": "NodeMetrics",
                    "apiVersion": API_VERSION,
                    "metadata": self._meta(node),
                    "timestamp": _time(u.timestamp),
                    "window": quantity.duration(u.window),
                    "usage": _usage(u),
                }
            )
        return out

    def _pods(
        self, namespace: str | None, labels: LabelSelector, fields: FieldSelector, name: str | None
    ) -> list[Obj]:
        usage = self.store.pod_usage()
        out = []
        pods = sorted(
            self.pods(namespace),
            key=lambda p: (p["metadata"].get("namespace", ""), p["metadata"]["name"]),
        )
        for pod in pods:
            m = pod["metadata"]
            if name is not None and m["name"] != name:
                continue
            selectable = {"metadata.name": m["name"], "metadata.namespace": m.get("namespace", "")}
            if not labels.matches(m.get("labels") or {}) or not fields.matches(selectable):
                continue
            containers = usage.get((m.get("namespace", ""), m["name"]))
            if not containers:
                continue
            # Only while every running container has figures, as upstream's.
            running = _running_containers(pod)
            if not running or not running <= set(containers):
                continue
            listed = [c for c in _spec_names(pod) if c in containers]
            last = max(containers[c].timestamp for c in listed)
            window = max(containers[c].window for c in listed)
            out.append(
                {
                    "kind": "PodMetrics",
                    "apiVersion": API_VERSION,
                    "metadata": self._meta(pod),
                    "timestamp": _time(last),
                    "window": quantity.duration(window),
                    "containers": [{"name": c, "usage": _usage(containers[c])} for c in listed],
                }
            )
        return out


def _spec_names(pod: Obj) -> list[str]:
    spec = pod.get("spec") or {}
    return [c["name"] for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]


def _running_containers(pod: Obj) -> set[str]:
    status_ = pod.get("status") or {}
    statuses: list[Any] = (status_.get("initContainerStatuses") or []) + (
        status_.get("containerStatuses") or []
    )
    return {s["name"] for s in statuses if "running" in (s.get("state") or {})}


def _not_found_path() -> Response:
    return status(404, "NotFound", "the server could not find the requested resource")
