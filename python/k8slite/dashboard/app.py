"""The dashboard's routes on the component base: pages, static files, the stream, scaling."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from k8slite.client import ApiClient, ApiConnectionError, ApiError
from k8slite.component.serving import ComponentServer, Request, Response
from k8slite.dashboard.hub import RESOURCES, Hub
from k8slite.dashboard.security import SECURITY_HEADERS, SessionGuard

PAGES = ("cluster", "workloads", "events")
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


class Dashboard:
    def __init__(self, client: ApiClient, hub: Hub, guard: SessionGuard) -> None:
        self.client = client
        self.hub = hub
        self.guard = guard
        self.files = _static()

    def server(self) -> ComponentServer:
        # "/" is a prefix route on ComponentServer (it ends in "/"): index() answers the rest.
        routes = {"/": self.index, "/api/stream": self.stream}
        routes.update({f"/{page}": self.page for page in PAGES})
        return ComponentServer(
            routes=routes, posts={"/api/scale": self.scale}, authorize=self.guard.authorize
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
        except ApiError as e:
            # The API server's own answer (403 when RBAC says no, 422 for a negative count).
            return _json(e.code or 502, {"message": e.message, "reason": e.reason})
        except ApiConnectionError as e:
            return _json(502, {"message": str(e)})
        return _json(200, {"replicas": (result.get("spec") or {}).get("replicas")})
