"""The dashboard's routes on the component base: pages, static files, the streams, and the
actions taken with the user's credentials (scale, rollout restart and undo, a pod's YAML,
log and exec)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import h11
import trio

from k8slite.apiserver.streaming import WebSocketRefused
from k8slite.client import ApiClient, ApiConnectionError, ApiError
from k8slite.component.serving import ComponentServer, Request, Response, WebSocket
from k8slite.dashboard import pods, rollout
from k8slite.dashboard.hub import RESOURCES, Hub
from k8slite.dashboard.metrics import Sampler
from k8slite.dashboard.security import SECURITY_HEADERS, SessionGuard

PAGES = ("cluster", "workloads", "pods", "events", "metrics")
# Kinds whose scale subresource the Workloads page's Scale button patches.
SCALABLE = frozenset({"deployments", "statefulsets", "replicasets"})
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
_JSON = "application/json"


def _static() -> dict[str, tuple[bytes, str]]:
    """The package's static files by name, read once (they ship in the wheel)."""
    files: dict[str, tuple[bytes, str]] = {}
    for entry in resources.files("k8slite.dashboard").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in _TYPES:
            files[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return files


def _ok(body: bytes, content_type: str, status: int = 200) -> Response:
    return Response(status, body, content_type, dict(SECURITY_HEADERS))


def _json(status: int, value: Any) -> Response:
    return _ok(json.dumps(value).encode(), _JSON, status)


def _api_error(e: ApiError | ApiConnectionError) -> Response:
    """The API server's own answer (403 when RBAC says no, 404, 422...), or 502."""
    if isinstance(e, ApiError):
        return _json(e.code or 502, {"message": e.message, "reason": e.reason})
    return _json(502, {"message": str(e)})


def _names(req: Request) -> tuple[str, str] | None:
    namespace, name = req.arg("namespace"), req.arg("name")
    if not namespace or not name:
        return None
    return namespace, name


class Dashboard:
    def __init__(
        self,
        client: ApiClient,
        hub: Hub,
        guard: SessionGuard,
        sampler: Sampler | None = None,
        nursery: trio.Nursery | None = None,
    ) -> None:
        self.client = client
        self.hub = hub
        self.guard = guard
        self.sampler = sampler
        self.nursery = nursery
        self.files = _static()

    def server(self) -> ComponentServer:
        # "/" is a prefix route on ComponentServer (it ends in "/"): index() answers the rest.
        routes = {
            "/": self.index,
            "/api/stream": self.stream,
            "/api/pod": self.pod,
            "/api/logs": self.logs,
            "/api/metrics": self.metrics,
        }
        routes.update({f"/{page}": self.page for page in PAGES})
        return ComponentServer(
            routes=routes,
            posts={"/api/scale": self.scale, "/api/rollout": self.rollout},
            streams={"/api/exec": self.exec},
            authorize=self.guard.authorize,
        )

    async def index(self, req: Request) -> Response:
        if req.path.startswith("/static/"):
            return await self.static(req)
        if req.path != "/":
            return _ok(b"404 page not found\n", "text/plain; charset=utf-8", 404)
        if req.arg("session") is not None:  # the guard has checked it
            return self.guard.login()
        return Response(303, b"", headers={**SECURITY_HEADERS, "location": "/cluster"})

    async def page(self, req: Request) -> Response:
        body, content_type = self.files[f"{req.path[1:]}.html"]
        return _ok(body, content_type)

    async def static(self, req: Request) -> Response:
        found = self.files.get(req.path.removeprefix("/static/"))
        if found is None:
            return _ok(b"404 page not found\n", "text/plain; charset=utf-8", 404)
        return _ok(*found)

    async def stream(self, req: Request) -> Response:
        """Server-sent events of the kinds named in ?kinds= (the page's own)."""
        kinds = frozenset(k for k in (req.arg("kinds") or "").split(",") if k)
        unknown = kinds - set(RESOURCES)
        if not kinds or unknown:
            return _json(400, {"message": f"unknown kinds: {sorted(unknown) or 'none given'}"})
        headers = {**SECURITY_HEADERS, "x-accel-buffering": "no"}
        return Response(200, self.hub.stream(kinds), "text/event-stream", headers)

    async def pod(self, req: Request) -> Response:
        """A pod as YAML, read from the API server (the pages hold trimmed pods only)."""
        names = _names(req)
        if names is None:
            return _json(400, {"message": "want ?namespace=&name="})
        try:
            return _json(200, {"yaml": await pods.pod_yaml(self.client, *names)})
        except (ApiError, ApiConnectionError) as e:
            return _api_error(e)

    async def logs(self, req: Request) -> Response:
        """A pod's log followed live: pods/log?follow=true relayed as server-sent events."""
        names = _names(req)
        if names is None:
            return _json(400, {"message": "want ?namespace=&name=[&container=]"})
        try:
            response = await pods.open_log(self.client, *names, req.arg("container"))
        except (ApiError, ApiConnectionError) as e:
            return _api_error(e)
        headers = {**SECURITY_HEADERS, "x-accel-buffering": "no"}
        return Response(200, pods.log_events(response), "text/event-stream", headers)

    async def exec(self, req: Request, ws: WebSocket) -> Response | None:
        """The browser's WebSocket relayed to pods/exec on the API server."""
        names = _names(req)
        command = [c for c in req.query.get("command") or () if c] or ["sh"]
        if names is None:
            return _json(400, {"message": "want ?namespace=&name=[&container=][&command=...]"})
        try:
            api = await pods.open_exec(self.client, *names, req.arg("container"), command)
        except WebSocketRefused as e:
            # The browser sees only that the upgrade failed: say why on an accepted socket.
            await ws.accept(None)
            await ws.send(json.dumps({"exit": None, "message": pods.refusal_message(e)}))
            return None
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, h11.ProtocolError) as e:
            await ws.accept(None)
            await ws.send(json.dumps({"exit": None, "message": f"cannot reach the API: {e}"}))
            return None
        try:
            await ws.accept(None)
            await pods.relay_exec(ws, api)
        finally:
            await api.aclose()
        return None

    async def metrics(self, req: Request) -> Response:
        if self.sampler is None:
            return _json(404, {"message": "metrics are not sampled"})
        if self.nursery is not None:
            self.sampler.ensure_running(self.nursery)
        headers = {**SECURITY_HEADERS, "x-accel-buffering": "no"}
        return Response(200, self.sampler.stream(), "text/event-stream", headers)

    async def rollout(self, req: Request) -> Response:
        """kubectl rollout restart or undo of a workload, with the user's credentials."""
        if not req.headers.get("content-type", "").startswith(_JSON):
            return _json(415, {"message": "the body must be application/json"})
        try:
            body = json.loads(req.body)
            action, kind = body["action"], body["kind"]
            name, namespace = body["name"], body["namespace"]
        except (ValueError, KeyError, TypeError):
            return _json(400, {"message": "want {action, kind, namespace, name}"})
        if action not in ("restart", "undo"):
            return _json(400, {"message": f"unknown action {action!r}"})
        if not all(isinstance(v, str) and v for v in (kind, name, namespace)):
            return _json(400, {"message": "kind, name and namespace must be non-empty strings"})
        do = rollout.restart if action == "restart" else rollout.undo
        try:
            message = await do(self.client, kind, namespace, name)
        except rollout.RolloutRefused as e:
            return _json(400, {"message": str(e)})
        except (ApiError, ApiConnectionError) as e:
            return _api_error(e)
        return _json(200, {"message": message})

    async def scale(self, req: Request) -> Response:
        """PATCH a workload's scale subresource with the user's credentials."""
        if not req.headers.get("content-type", "").startswith(_JSON):
            return _json(415, {"message": "the body must be application/json"})
        try:
            body = json.loads(req.body)
            kind, name, namespace = body["kind"], body["name"], body["namespace"]
            replicas = body["replicas"]
        except (ValueError, KeyError, TypeError):
            return _json(400, {"message": "want {kind, namespace, name, replicas}"})
        if kind not in SCALABLE or not isinstance(replicas, int) or isinstance(replicas, bool):
            return _json(400, {"message": f"cannot scale {kind!r} to {replicas!r}"})
        if not all(isinstance(v, str) and v for v in (name, namespace)):
            return _json(400, {"message": "name and namespace must be non-empty strings"})
        try:
            result = await self.client.patch(
                RESOURCES[kind],
                name,
                {"spec": {"replicas": replicas}},
                namespace=namespace,
                subresource="scale",
            )
        except (ApiError, ApiConnectionError) as e:
            return _api_error(e)
        return _json(200, {"replicas": (result.get("spec") or {}).get("replicas")})
