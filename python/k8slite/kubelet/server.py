"""The kubelet API (HTTPS, port 10250): /healthz, /pods, /metrics and /containerLogs.

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
import ssl
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from k8slite.kubelet.authz import AuthorizationError, Authorizer, attributes
from k8slite.kubelet.httpserver import Request, Response
from k8slite.kubelet.podworkers import PodWorker, PodWorkers
from k8slite.kubelet.runtime.base import NotFoundError, Runtime

log = logging.getLogger(__name__)

APISERVER_KUBELET_CLIENT = "kube-apiserver-kubelet-client"
_JSON = "application/json"


def serving_context(cert: Path, key: Path, client_ca: Path) -> ssl.SSLContext:
    """TLS for the kubelet API: our serving certificate, client certificates required."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
    ctx.load_cert_chain(str(cert), str(key))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


# Prometheus scrapes /metrics with a certificate in this group (upstream grants it the
# equivalent of nodes/metrics), without a SubjectAccessReview per scrape.
MONITORING_GROUP = "system:monitoring"
AUTHENTICATED = "system:authenticated"


def _identity(der: bytes) -> tuple[str, frozenset[str]]:
    """The certificate's user (CN) and groups (O, and system:authenticated as upstream's
    x509 authenticator adds)."""
    cert = x509.load_der_x509_certificate(der)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    groups = {str(g.value) for g in orgs}
    return (str(names[0].value) if names else "", frozenset(groups | {AUTHENTICATED}))


def _text(status: int, message: str) -> Response:
    return Response(status, (message + "\n").encode())


class KubeletApi:
    """Request routing of the kubelet API; healthz is also served alone on plain HTTP."""

    def __init__(
        self,
        workers: PodWorkers,
        runtime: Runtime,
        registry: CollectorRegistry,
        authorizer: Authorizer | None = None,
        allowed_users: frozenset[str] = frozenset({APISERVER_KUBELET_CLIENT}),
    ) -> None:
        self.workers = workers
        self.runtime = runtime
        self.registry = registry
        # None: only the fast paths below (a kubelet without an API server to ask).
        self.authorizer = authorizer
        self.allowed_users = allowed_users
        self._names: dict[bytes, tuple[str, frozenset[str]]] = {}

    async def healthz(self, req: Request) -> Response:
        if req.path in ("/healthz", "/healthz/ping"):
            return _text(200, "ok")
        return _text(404, "404 page not found")

    async def handle(self, req: Request) -> Response:
        if req.peer_cert is None:
            return _text(401, "Unauthorized")
        identity = self._names.get(req.peer_cert)
        if identity is None:
            identity = self._names[req.peer_cert] = _identity(req.peer_cert)
        user, groups = identity
        scraping = req.path == "/metrics" and MONITORING_GROUP in groups
        if user not in self.allowed_users and not scraping:
            refused = await self._authorize(req, user, groups)
            if refused is not None:
                return refused
        if req.method not in ("GET", "HEAD"):
            return _text(405, "405 method not allowed")
        parts = req.path.strip("/").split("/")
        if parts[0] == "healthz":
            return _text(200, "ok")
        if parts == ["pods"]:
            return self._pods()
        if parts == ["metrics"]:
            return Response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        if parts[0] == "containerLogs" and len(parts) == 4:
            return await self._logs(req, parts[1], parts[2], parts[3])
        return _text(404, "404 page not found")

    async def _authorize(self, req: Request, user: str, groups: frozenset[str]) -> Response | None:
        """None when the API server says the user may; else the answer (upstream's words)."""
        verb, subresources = attributes(req.method, req.path)
        what = (
            f"user={user}, verb={verb}, resource=nodes, subresource(s)=[{' '.join(subresources)}]"
        )
        if self.authorizer is None:
            return _text(403, f"Forbidden ({what})")
        try:
            if await self.authorizer.allowed(user, groups, verb, subresources):
                return None
        except AuthorizationError as e:
            log.warning("kubelet API authorization of %s failed: %s", user, e)
            return _text(500, f"Authorization error ({what})")
        return _text(403, f"Forbidden ({what})")

    def _pods(self) -> Response:
        items = []
        for worker in list(self.workers.workers.values()):
            if worker.done:
                continue
            items.append(
                {**worker.pod, "status": {**(worker.pod.get("status") or {}), **worker.status()}}
            )
        body = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
        return Response(200, json.dumps(body).encode(), _JSON)

    async def _logs(self, req: Request, namespace: str, pod: str, container: str) -> Response:
        worker = self.workers.find(namespace, pod)
        if worker is None:
            return _text(404, f'pod "{pod}" in namespace "{namespace}" not found')
        found = log_container_id(worker, container, _flag(req, "previous"))
        if isinstance(found, Response):
            return found
        try:
            await self.runtime.container_status(found)
        except NotFoundError:
            return _text(404, f'container "{container}" in pod "{pod}" is not available')
        try:
            tail = _int(req, "tailLines")
            since = _int(req, "sinceSeconds")
            limit = _int(req, "limitBytes")
        except ValueError as e:
            return _text(400, str(e))
        since_time = req.arg("sinceTime")
        if since_time and since is None:
            try:
                t = dt.datetime.fromisoformat(since_time)
            except ValueError:
                return _text(400, f"invalid sinceTime {since_time!r}")
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
    statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    st = next((s for s in statuses if s["name"] == container), None)
    if st is None:
        return _text(400, f"container {container} is not valid for pod {worker.name}")
    state, last = st.get("state") or {}, (st.get("lastState") or {}).get("terminated")
    pod = worker.name
    cid = ""
    if previous:
        if not last or not last.get("containerID"):
            return _text(
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
        return _text(400, f'container "{container}" in pod "{pod}" is waiting to start: {words}')
    if not cid:
        return _text(
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
