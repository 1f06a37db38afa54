"""The kubelet API (HTTPS, port 10250): /pods, /containerLogs, the resource usage of
/stats/summary and /metrics/resource (stats.py), the node's log directory on /logs/
(systemlogs.py), and the streaming /exec, /attach and /portForward (streaming.py), with the
component base's /healthz, /metrics and /configz.

Callers present a client certificate from the cluster CA. The API server's own identity
(kube-apiserver-kubelet-client) may do everything, and group system:monitoring may scrape
/metrics, without a round trip; anyone else is authorized as upstream's kubelet does it, by
a SubjectAccessReview to the API server for nodes/<subresource> (see authz.py), so RBAC
decides: `kubectl create clusterrole ... --resource=nodes/proxy` lets a user in.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

from prometheus_client import CollectorRegistry

from k8slite.component.serving import PING, ComponentServer, Handler, Request, Response, text
from k8slite.kubelet.authz import AuthorizationError, Authorizer, attributes
from k8slite.kubelet.podworkers import PodWorker, PodWorkers
from k8slite.kubelet.runtime.base import NotFoundError, Runtime
from k8slite.kubelet.stats import PROMETHEUS_TEXT, StatsProvider
from k8slite.kubelet.streaming import StreamingServer
from k8slite.kubelet.systemlogs import PREFIX, SystemLogs

log = logging.getLogger(__name__)

APISERVER_KUBELET_CLIENT = "kube-apiserver-kubelet-client"
_JSON = "application/json"
# Upstream's kubelet registers its health checks on /healthz only (no livez or readyz).
HEALTHZ = {"/healthz": (PING,)}

# Prometheus scrapes /metrics with a certificate in this group (upstream grants it the
# equivalent of nodes/metrics), without a SubjectAccessReview per scrape.
MONITORING_GROUP = "system:monitoring"


def read_only_server() -> ComponentServer:
    """The read-only health port (10248, plain HTTP, loopback): /healthz and nothing else."""
    return ComponentServer(checks=HEALTHZ)


class KubeletApi:
    """The kubelet API's own routes and its authorization; the component base serves them
    with /healthz, /metrics and /configz."""

    def __init__(
        self,
        workers: PodWorkers,
        runtime: Runtime,
        registry: CollectorRegistry,
        authorizer: Authorizer | None = None,
        allowed_users: frozenset[str] = frozenset({APISERVER_KUBELET_CLIENT}),
        config: Callable[[], Any] | None = None,
        stats: StatsProvider | None = None,
        system_logs: SystemLogs | None = None,
    ) -> None:
        self.workers = workers
        self.runtime = runtime
        self.registry = registry
        # None: only the fast paths below (a kubelet without an API server to ask).
        self.authorizer = authorizer
        self.allowed_users = allowed_users
        self.config = config
        self.stats = stats
        self.system_logs = system_logs

    def server(self) -> ComponentServer:
        """The authenticated API (10250): every path needs a certificate and permission."""
        return ComponentServer(
            checks=HEALTHZ,
            registry=self.registry,
            configz={"kubeletconfig": self.config} if self.config is not None else None,
            routes=self._routes(),
            streams=StreamingServer(self.workers, self.runtime).routes(),
            authorize=self.authorize,
        )

    def _routes(self) -> dict[str, Handler]:
        routes: dict[str, Handler] = {"/pods": self._pods, "/containerLogs/": self._logs}
        if self.stats is not None:
            routes["/stats/summary"] = self._summary
            routes["/metrics/resource"] = self._resource_metrics
        if self.system_logs is not None:
            routes["/logs"] = routes[PREFIX] = self.system_logs.serve
        return routes

    async def authorize(self, req: Request) -> Response | None:
        """None when the caller may; else the refusal (401 without a certificate)."""
        if req.user is None:
            return text(401, "Unauthorized")
        user, groups = req.user.name, frozenset(req.user.groups)
        scraping = req.path == "/metrics" and MONITORING_GROUP in groups
        if user in self.allowed_users or scraping:
            return None
        return await self._authorize(req, user, groups)

    async def _authorize(self, req: Request, user: str, groups: frozenset[str]) -> Response | None:
        """None when the API server says the user may; else the answer (upstream's words)."""
        verb, subresources = attributes(req.method, req.path)
        what = (
            f"user={user}, verb={verb}, resource=nodes, subresource(s)=[{' '.join(subresources)}]"
        )
        if self.authorizer is None:
            return text(403, f"Forbidden ({what})")
        try:
            if await self.authorizer.allowed(user, groups, verb, subresources):
                return None
        except AuthorizationError as e:
            log.warning("kubelet API authorization of %s failed: %s", user, e)
            return text(500, f"Authorization error ({what})")
        return text(403, f"Forbidden ({what})")

    async def _pods(self, req: Request) -> Response:
        items = []
        for worker in list(self.workers.workers.values()):
            if worker.done:
                continue
            items.append(
                {**worker.pod, "status": {**(worker.pod.get("status") or {}), **worker.status()}}
            )
        body = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
        return Response(200, json.dumps(body).encode(), _JSON)

    async def _summary(self, req: Request) -> Response:
        assert self.stats is not None
        body = await self.stats.summary()
        return Response(200, json.dumps(body).encode(), _JSON)

    async def _resource_metrics(self, req: Request) -> Response:
        assert self.stats is not None
        return Response(200, (await self.stats.resource_metrics()).encode(), PROMETHEUS_TEXT)

    async def _logs(self, req: Request) -> Response:
        parts = req.path.strip("/").split("/")
        if len(parts) != 4:
            return text(404, "404 page not found")
        namespace, pod, container = parts[1:]
        worker = self.workers.find(namespace, pod)
        if worker is None:
            return text(404, f'pod "{pod}" in namespace "{namespace}" not found')
        found = log_container_id(worker, container, _flag(req, "previous"))
        if isinstance(found, Response):
            return found
        try:
            await self.runtime.container_status(found)
        except NotFoundError:
            return text(404, f'container "{container}" in pod "{pod}" is not available')
        try:
            tail = _int(req, "tailLines")
            since = _int(req, "sinceSeconds")
            limit = _int(req, "limitBytes")
        except ValueError as e:
            return text(400, str(e))
        since_time = req.arg("sinceTime")
        if since_time and since is None:
            try:
                t = dt.datetime.fromisoformat(since_time)
            except ValueError:
                return text(400, f"invalid sinceTime {since_time!r}")
            since = max(0, int(dt.datetime.now(dt.UTC).timestamp() - t.timestamp()))
        body = self.runtime.logs(
            found,
            follow=_flag(req, "follow"),
            tail_lines=tail,
            since_seconds=since,
            timestamps=_flag(req, "timestamps"),
        )
        return Response(200, _limited(body, limit))


def log_container_id(worker: PodWorker, container: str, previous: bool) -> str | Response:
    """Which container instance's logs to read, with upstream's refusals."""
    status = worker.status()
    statuses = [
        *(status.get("initContainerStatuses") or ()),
        *(status.get("containerStatuses") or ()),
        *(status.get("ephemeralContainerStatuses") or ()),
    ]
    st = next((s for s in statuses if s["name"] == container), None)
    if st is None:
        return text(400, f"container {container} is not valid for pod {worker.name}")
    state, last = st.get("state") or {}, (st.get("lastState") or {}).get("terminated")
    pod = worker.name
    cid = ""
    if previous:
        if not last or not last.get("containerID"):
            return text(
                400, f'previous terminated container "{container}" in pod "{pod}" not found'
            )
        cid = last["containerID"]
    elif "running" in state or "terminated" in state:
        cid = st.get("containerID") or ""
    elif last and last.get("containerID"):
        cid = last["containerID"]
    elif "waiting" in state:
        reason = state["waiting"].get("reason") or ""
        words = {
            "ErrImagePull": "image can't be pulled",
            "ImagePullBackOff": "trying and failing to pull image",
        }.get(reason, reason)
        return text(400, f'container "{container}" in pod "{pod}" is waiting to start: {words}')
    if not cid:
        return text(
            400, f'container "{container}" in pod "{pod}" is waiting to start - no logs yet'
        )
    return cid.split("://", 1)[-1]


def _flag(req: Request, name: str) -> bool:
    return (req.arg(name) or "").lower() in ("1", "true")


def _int(req: Request, name: str) -> int | None:
    value = req.arg(name)
    if value in (None, ""):
        return None
    try:
        return int(value)  # type: ignore[arg-type]
    except ValueError:
        raise ValueError(f'invalid value for {name}: "{value}"') from None


async def _limited(body: Any, limit: int | None) -> AsyncIterator[bytes]:
    """The log stream, cut after limit bytes; the runtime's generator is always closed."""
    sent = 0
    async with aclosing(body) as chunks:
        async for chunk in chunks:
            if limit is not None:
                chunk = chunk[: max(limit - sent, 0)]
            sent += len(chunk)
            if chunk:
                yield chunk
            if limit is not None and sent >= limit:
                return
