"""The API server's ASGI app: the resource handler for resource paths, Quart for the rest."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from quart import Response, request
from quart_trio import QuartTrio

from k8slite import GIT_VERSION, KUBERNETES_VERSION
from k8slite._native import dumps
from k8slite.api import errors
from k8slite.apiserver import discovery, http, openapi, reasonphrases
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.handler import ResourceHandler
from k8slite.apiserver.metrics import ApiMetrics
from k8slite.apiserver.requestinfo import is_resource_path
from k8slite.apiserver.streaming import deny
from k8slite.component import serving


def version_info() -> dict[str, str]:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    return {
        "major": major,
        "minor": minor,
        "gitVersion": GIT_VERSION,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "k8slite",
        "platform": "linux/amd64",
    }


def build_quart(core: ApiCore, metrics: ApiMetrics) -> QuartTrio:
    """Health, metrics and version; discovery and OpenAPI register here too."""
    app = QuartTrio("k8slite.apiserver")
    app.config["MAX_CONTENT_LENGTH"] = http.MAX_BODY

    def json(obj: object, status: int = 200) -> Response:
        return Response(dumps(obj), status=status, content_type=http.JSON)

    @app.route("/version")
    async def version() -> Response:
        return json(version_info())

    # Upstream's checks that mean something here: ping, and etcd (the store can serve: on
    # etcd, its last probe got an answer; on RocksDB, no write has failed).
    checks = (serving.PING, serving.Check("etcd", core.store.health))

    @app.route("/healthz")
    @app.route("/livez")
    @app.route("/readyz")
    @app.route("/healthz/<name>")
    @app.route("/livez/<name>")
    @app.route("/readyz/<name>")
    async def health(name: str = "") -> Response:
        root = request.path.strip("/").split("/", 1)[0]
        query = {key: request.args.getlist(key) for key in request.args}
        answer = serving.health(
            root, checks, serving.Request(request.method, request.path, query, {}), name
        )
        body = answer.body if isinstance(answer.body, bytes) else b""
        return Response(
            body, status=answer.status, content_type=answer.content_type, headers=answer.headers
        )

    @app.route("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST)

    discovery.register(app)
    openapi.register(app)
    reasonphrases.install()
    metrics.count_objects(
        lambda: ((reg.rt.plural, len(reg.cache)) for reg in core.registries.values())
    )
    return app


class ApiServerApp:
    """Routes resource requests to the fast handler and everything else to Quart."""

    def __init__(self, core: ApiCore, metrics: ApiMetrics) -> None:
        self.core = core
        self.metrics = metrics
        self.resources = ResourceHandler(core, metrics)
        self.quart = build_quart(core, metrics)

    async def __call__(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> None:
        if scope["type"] == "http" and is_resource_path(scope["path"]):
            await self.resources(scope, receive, send)
        elif scope["type"] == "websocket":
            if is_resource_path(scope["path"]):
                await self.resources.websocket(scope, receive, send)
            else:
                await receive()
                await deny(send, errors.not_found_path())
        else:
            await self.quart(scope, receive, send)  # type: ignore[arg-type]
