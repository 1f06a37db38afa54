"""The serving half of the component base: health checks, /metrics and /configz on hypercorn.

Every component (controller manager, scheduler, kubelet, proxy) serves through this module,
as upstream's serve through component-base and apiserver's secure serving:

- /healthz, /livez and /readyz run named checks in upstream's format: "ok" (200), or one
  `[+]name ok` / `[-]name failed: reason withheld` line per check and "<path> check
  failed" (500); `?verbose` lists the lines on success too, `?exclude=name` skips a check,
  and /healthz/<name> runs one check ("internal server error: <reason>" when it fails);
- /metrics is the component's Prometheus registry, /configz its configuration as JSON;
- HTTPS with the cluster's certificates (--tls-cert-file, --tls-private-key-file), or a
  self-signed pair from pki.py; with --client-ca-file the verified client certificate's
  user and groups reach every handler as Request.user (the API server's TLS adapter and
  certificate authenticator, not copies of them); plain HTTP where upstream serves plain.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import enum
import json
import logging
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as serve_plain
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from k8slite.api.errors import ApiError
from k8slite.apiserver.authn import CertAuthenticator, UserInfo
from k8slite.apiserver.tls import serve as serve_tls

log = logging.getLogger(__name__)

HEALTH_PATHS = ("/healthz", "/readyz", "/livez")
TEXT = "text/plain; charset=utf-8"
_JSON = "application/json"
_HEADERS_MAX = 16 * 1024
# The POST routes take small JSON bodies (the dashboard's scale requests).
_BODY_MAX = 64 * 1024


@dataclass(frozen=True)
class Check:
    """A named health check: `check()` is None while healthy, else why not."""

    name: str
    check: Callable[[], str | None]


PING = Check("ping", lambda: None)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    # Who the verified client certificate says the caller is; None without one.
    user: UserInfo | None = None
    # The request body: read only for the POST routes (at most _BODY_MAX bytes).
    body: bytes = b""

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass
class Response:
    status: int
    # Bytes, or chunks streamed until the iterator ends or the client goes away.
    body: bytes | AsyncIterator[bytes] = b""
    content_type: str = TEXT
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


class WebSocket:
    """One WebSocket of a streaming route, over ASGI: accept or deny, then messages."""

    def __init__(self, receive: Any, send: Any, subprotocols: Sequence[str]) -> None:
        self._receive = receive
        self._send = send
        # What the client offered in Sec-WebSocket-Protocol, in its order.
        self.subprotocols = list(subprotocols)
        self.accepted = False
        self.closed = False

    async def accept(self, subprotocol: str | None) -> None:
        await self._send({"type": "websocket.accept", "subprotocol": subprotocol})
        self.accepted = True

    async def deny(self, response: Response) -> None:
        """Refuse the upgrade with an HTTP answer (ASGI's websocket.http.response)."""
        body = response.body if isinstance(response.body, bytes) else b""
        headers = [(b"content-type", response.content_type.encode())]
        headers += [(k.encode(), v.encode()) for k, v in response.headers.items()]
        await self._send(
            {"type": "websocket.http.response.start", "status": response.status, "headers": headers}
        )
        await self._send({"type": "websocket.http.response.body", "body": body})
        self.closed = True

    async def receive(self) -> bytes | str | None:
        """The next message; None once the client closed or went away."""
        while not self.closed:
            message = await self._receive()
            if message["type"] == "websocket.receive":
                data = message.get("bytes")
                return data if data is not None else message.get("text") or ""
            if message["type"] == "websocket.disconnect":
                self.closed = True
        return None

    async def send(self, data: bytes | str) -> None:
        """Send a message; trio.BrokenResourceError once the client has gone."""
        key = "bytes" if isinstance(data, bytes) else "text"
        try:
            await self._send({"type": "websocket.send", key: data})
        except Exception as e:  # the server refuses sends on a closed connection
            self.closed = True
            raise trio.BrokenResourceError("the client went away") from e

    async def close(self, code: int = 1000) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):  # the client may have gone already
                await self._send({"type": "websocket.close", "code": code})


# A streaming route: a Response refuses the upgrade; None once it accepted and served it.
StreamHandler = Callable[[Request, WebSocket], Awaitable[Response | None]]
# Called before any routing: None lets the request through, a Response refuses it.
Authorizer = Callable[[Request], Awaitable[Response | None]]


def _headers(raw: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """Header names lower-cased; a repeated header's values joined with ", " (RFC 9110), so
    that none is lost (X-Remote-Group names one group per header)."""
    out: dict[str, str] = {}
    for k, v in raw:
        name, value = k.decode("latin-1").lower(), v.decode("latin-1")
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def text(status: int, message: str) -> Response:
    """A plain-text answer, newline-terminated like Go's http.Error."""
    return Response(status, (message + "\n").encode())


@dataclass
class ServingOptions:
    """Where and how a component serves (upstream's SecureServingOptions and friends)."""

    bind_address: str = "0.0.0.0"
    secure_port: int = 0  # 0: a free port, reported by serve()
    tls_cert_file: Path | None = None
    tls_private_key_file: Path | None = None
    # Client certificates signed by this CA are verified and identify the caller.
    client_ca_file: Path | None = None
    # With a client CA: the paths open to callers without a certificate.
    always_allow: tuple[str, ...] = HEALTH_PATHS
    # False: plain HTTP (the kubelet's read-only health port, the proxy's endpoints).
    secure: bool = True

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> ServingOptions:
        """Options from the flags add_flags() defined."""
        return cls(
            bind_address=a.bind_address,
            secure_port=a.secure_port,
            tls_cert_file=a.tls_cert_file,
            tls_private_key_file=a.tls_private_key_file,
            client_ca_file=a.client_ca_file,
            always_allow=tuple(p for p in a.authorization_always_allow_paths.split(",") if p),
        )

    def authorizer(self) -> Authorizer | None:
        """With a client CA, certificates are required outside the always-allowed paths."""
        if self.client_ca_file is None:
            return None
        return client_certificate_required(self.always_allow)

    @staticmethod
    def add_flags(parser: argparse.ArgumentParser, default_port: int) -> None:
        """The secure serving flags upstream's controller manager and scheduler share."""
        group = parser.add_argument_group("secure serving (/healthz, /metrics, /configz)")
        group.add_argument("--bind-address", default="0.0.0.0")
        group.add_argument(
            "--secure-port",
            type=int,
            default=default_port,
            help="HTTPS port; 0 picks a free one (printed on start)",
        )
        group.add_argument(
            "--tls-cert-file",
            type=Path,
            help="serving certificate (default: a self-signed one, made at start)",
        )
        group.add_argument("--tls-private-key-file", type=Path)
        group.add_argument(
            "--client-ca-file",
            type=Path,
            help="require client certificates from this CA outside the always-allowed paths",
        )
        group.add_argument("--authorization-always-allow-paths", default=",".join(HEALTH_PATHS))


def client_certificate_required(always_allow: Sequence[str]) -> Authorizer:
    """Paths outside `always_allow` need a verified client certificate ("/x/*" allows a
    prefix, as upstream's --authorization-always-allow-paths)."""
    exact = frozenset(p for p in always_allow if not p.endswith("*"))
    prefixes = tuple(p[:-1] for p in always_allow if p.endswith("*"))

    async def authorize(req: Request) -> Response | None:
        if req.user is None and req.path not in exact and not req.path.startswith(prefixes):
            return text(403, "forbidden: a client certificate is required")
        return None

    return authorize


class ComponentServer:
    """A component's endpoints as an ASGI app: health, metrics, configz and its own routes.

    `checks` maps the health paths served ("/healthz", "/livez", "/readyz") to their
    checks; `routes` maps exact paths, or prefixes ending in "/", to handlers and takes
    precedence over the built-in endpoints (the proxy's /healthz is JSON, as upstream's).
    """

    def __init__(
        self,
        *,
        checks: Mapping[str, Sequence[Check]] | None = None,
        registry: CollectorRegistry | None = None,
        configz: Mapping[str, Callable[[], Any]] | None = None,
        routes: Mapping[str, Handler] | None = None,
        streams: Mapping[str, StreamHandler] | None = None,
        authorize: Authorizer | None = None,
        posts: Mapping[str, Handler] | None = None,
    ) -> None:
        self.checks = dict(checks if checks is not None else dict.fromkeys(HEALTH_PATHS, (PING,)))
        self.registry = registry
        self.configz = dict(configz or {})
        self.routes = {p: h for p, h in (routes or {}).items() if not p.endswith("/")}
        self.prefixes = {p: h for p, h in (routes or {}).items() if p.endswith("/")}
        # WebSocket routes by path prefix (the kubelet's /exec/, /attach/, /portForward/).
        self.streams = dict(streams or {})
        # POST routes by exact path; every other route answers GET and HEAD only.
        self.posts = dict(posts or {})
        self.authorize = authorize
        self._authenticator = CertAuthenticator()

    async def handle(self, req: Request) -> Response:
        """The answer to one request: authorization, then routing."""
        if self.authorize is not None:
            refused = await self.authorize(req)
            if refused is not None:
                return refused
        if req.method == "POST" and req.path in self.posts:
            return await self.posts[req.path](req)
        if req.method not in ("GET", "HEAD"):
            return text(405, "405 method not allowed")
        handler = self.routes.get(req.path)
        if handler is None:
            handler = next((h for p, h in self.prefixes.items() if req.path.startswith(p)), None)
        if handler is not None:
            return await handler(req)
        root, _, name = req.path[1:].partition("/")
        checks = self.checks.get(f"/{root}")
        if checks is not None:
            return health(root, checks, req, name)
        if req.path == "/metrics" and self.registry is not None:
            return Response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        if req.path == "/configz" and self.configz:
            body = {key: jsonable(get()) for key, get in self.configz.items()}
            return Response(200, json.dumps(body).encode(), _JSON)
        return text(404, "404 page not found")

    def _request(self, scope: dict[str, Any]) -> Request:
        user: UserInfo | None
        try:
            user = self._authenticator.authenticate(scope)
        except ApiError:  # plain HTTP, no certificate, or one that expired while connected
            user = None
        return Request(
            scope["method"],
            scope["path"],
            parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True),
            _headers(scope["headers"]),
            user,
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        req = self._request(scope)
        try:
            if req.method == "POST" and req.path in self.posts:
                req.body = await _read_body(receive)
            response = await self.handle(req)
        except _BodyTooLarge:
            response = text(413, "request entity too large")
        except Exception:
            log.exception("handling %s %s", req.method, req.path)
            response = text(500, "internal error")
        await _send(response, req.method == "HEAD", receive, send)

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """A WebSocket upgrade: authorized as a GET, then the streaming route's."""
        if (await receive())["type"] != "websocket.connect":
            return
        req = self._request({**scope, "method": "GET"})
        ws = WebSocket(receive, send, scope.get("subprotocols") or ())
        try:
            refused = await self.authorize(req) if self.authorize is not None else None
            if refused is None:
                handler = next((h for p, h in self.streams.items() if req.path.startswith(p)), None)
                refused = text(404, "404 page not found") if handler is None else None
                if handler is not None:
                    refused = await handler(req, ws)
        except Exception as e:
            if ws.accepted:  # the streams were up: one side went away, or broke
                log.info("stream %s ended: %r", req.path, e)
            else:
                log.exception("streaming %s", req.path)
            refused = text(500, "internal error")
        if refused is not None and not ws.accepted:
            await ws.deny(refused)
        else:
            await ws.close()


def health(root: str, checks: Sequence[Check], req: Request, name: str = "") -> Response:
    """Upstream's healthz handlers: the whole list at /<root>, one check at /<root>/<name>."""
    headers = {"x-content-type-options": "nosniff"}
    if name:
        check = next((c for c in checks if c.name == name), None)
        if check is None:
            return text(404, "404 page not found")
        reason = check.check()
        if reason is not None:
            return Response(500, f"internal server error: {reason}\n".encode(), headers=headers)
        return Response(200, b"ok", headers=headers)
    excluded = {n.strip() for v in req.query.get("exclude", ()) for n in v.split(",") if n.strip()}
    lines, failed = [], False
    for check in checks:
        if check.name in excluded:
            excluded.discard(check.name)
            lines.append(f"[+]{check.name} excluded: ok")
            continue
        reason = check.check()
        if reason is None:
            lines.append(f"[+]{check.name} ok")
        else:
            # The reason goes to the log, not to callers (upstream withholds it too).
            log.info("%s check %s failed: %s", root, check.name, reason)
            lines.append(f"[-]{check.name} failed: reason withheld")
            failed = True
    if excluded:
        names = ",".join(sorted(excluded))
        lines.append(f"warn: some health checks cannot be excluded: no matches for {names}")
    if failed:
        body = "\n".join([*lines, f"{root} check failed"]) + "\n"
        return Response(500, body.encode(), headers=headers)
    if "verbose" not in req.query:
        return Response(200, b"ok", headers=headers)
    return Response(
        200, "\n".join([*lines, f"{root} check passed"]).encode() + b"\n", headers=headers
    )


def jsonable(value: Any) -> Any:
    """A configuration as JSON: dataclass fields in camelCase, as upstream's config types."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_camel(f.name): jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(w[:1].upper() + w[1:] for w in rest)


async def _send(response: Response, head_only: bool, receive: Any, send: Any) -> None:
    headers = [(b"content-type", response.content_type.encode())]
    headers += [(k.encode(), v.encode()) for k, v in response.headers.items()]
    body = response.body
    if isinstance(body, bytes):
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head_only else body})
        return
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
        try:
            if not head_only:
                async for chunk in body:
                    if chunk:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            # The runtime's generator (a log stream) is closed even when the client hung
            # up and the copy above was cancelled.
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()
        nursery.cancel_scope.cancel()


class _BodyTooLarge(Exception):
    pass


async def _read_body(receive: Any) -> bytes:
    """The request body of a POST route, refused past _BODY_MAX."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _BODY_MAX:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _cancel_on_disconnect(receive: Any, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _hypercorn_config(options: ServingOptions) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [_bind(options.bind_address, options.secure_port)]
    hc.accesslog = None
    hc.errorlog = log
    hc.graceful_timeout = 1
    hc.ssl_handshake_timeout = 10
    hc.h11_max_incomplete_size = _HEADERS_MAX
    hc.include_server_header = False
    return hc


async def serve(
    app: ComponentServer,
    options: ServingOptions,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` until cancelled; reports (URL, port) once listening.

    The URL names 127.0.0.1 when every address is bound, so it can be used as it is.
    """
    hc = _hypercorn_config(options)
    async with trio.open_nursery() as nursery:
        if options.secure:
            # A self-signed pair is needed only until the TLS context has read it.
            with tempfile.TemporaryDirectory(prefix="k8slite-serving-") as tmp:
                _tls(hc, options, Path(tmp))
                binds = await nursery.start(serve_tls, app, hc)
        else:
            binds = await nursery.start(serve_plain, app, hc)
        port = int(binds[0].rsplit(":", 1)[1])
        host = options.bind_address
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        scheme = "https" if options.secure else "http"
        task_status.started((f"{scheme}://{_bind(host, port)}", port))


def _tls(hc: HypercornConfig, options: ServingOptions, tmp: Path) -> None:
    if options.tls_cert_file is not None and options.tls_private_key_file is not None:
        cert, key = options.tls_cert_file, options.tls_private_key_file
    else:
        # Here, not at the top: cryptography (8 MiB) is for components that make their own
        # certificate; the proxy and the kubelet, given theirs or serving plain, skip it.
        from k8slite import pki

        cert, key = pki.self_signed(tmp, socket.gethostname())
    hc.certfile, hc.keyfile = str(cert), str(key)
    if options.client_ca_file is not None:
        # Optional, so the always-allowed paths stay open to callers without one.
        hc.ca_certs = str(options.client_ca_file)
        hc.verify_mode = ssl.CERT_OPTIONAL


def split_host_port(text: str, default_port: int) -> tuple[str, int]:
    """ "127.0.0.1:10249", "[::1]:0", "0.0.0.0" (default port) or ":10256" (all addresses)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host or "0.0.0.0", int(port or default_port)
    return text or "0.0.0.0", default_port
