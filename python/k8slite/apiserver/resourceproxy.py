"""pods/proxy, services/proxy and nodes/proxy: an HTTP request relayed to the backend.

As upstream's UpgradeAwareHandler with its rewriting transport: any method, the query
string as it came, bodies streamed both ways as they arrive (never read whole), the
hop-by-hop headers of either side dropped (and those the Connection header names), the
caller's credentials (Authorization, Impersonate-*) kept from the backend as upstream's
authentication filters remove them, X-Forwarded-For and X-Forwarded-Uri added, CORS
headers of the answer dropped, and a redirect's Location on the backend's own host (or a
bare path) rewritten to go through the proxy path again. A request for the proxy's root
without a trailing slash is redirected to it (301), as upstream does for GET and HEAD.

Pods and services are reached over plain HTTP, or HTTPS without checking the backend's
certificate (upstream: pod and service addresses are IPs it cannot verify); a node's
kubelet over mutual TLS with the kubelet-client identity, the kubelet authorizing it.
A backend that cannot be reached is upstream's 503 "error trying to reach service: ...".
A text/html answer is the exception to streaming, as upstream: read whole so that its
links can be rewritten the same way (proxyhtml.py), and sent with its new length.
"""

from __future__ import annotations

import errno
import logging
import posixpath
import ssl
import zlib
from contextlib import suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import h11
import trio

from k8slite.api import errors
from k8slite.apiserver import http, proxyhtml
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.podlogs import KubeletConnector, dial
from k8slite.apiserver.proxylocation import (
    Location,
    node_location,
    pod_location,
    service_location,
    subpath,
)
from k8slite.apiserver.requestinfo import RequestInfo
from k8slite.apiserver.streaming import BackendSocket, WebSocketRefused, relay

log = logging.getLogger(__name__)

# RFC 9110's connection-specific headers, which a proxy never passes on (Go's list).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Spent by the API server's own authentication and impersonation.
_CREDENTIALS = frozenset(
    {"authorization", "impersonate-user", "impersonate-group", "impersonate-uid"}
)
_CREDENTIAL_PREFIX = "impersonate-extra-"
# Removed from answers (upstream's corsRemovingTransport): the API server's CORS policy
# applies, not the backend's.
_CORS = frozenset(
    {
        "access-control-allow-credentials",
        "access-control-allow-headers",
        "access-control-allow-methods",
        "access-control-allow-origin",
    }
)
# A WebSocket handshake's own headers: the API server's handshake with the backend has its own.
_WEBSOCKET_HANDSHAKE = frozenset(
    {
        "host",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    }
)
# Dialing a backend (and its TLS handshake) gives up after this long (upstream's: 30 s).
CONNECT_TIMEOUT = 30.0

Headers = list[tuple[str, str]]


def _connection_tokens(headers: Headers) -> set[str]:
    return {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
        if token.strip()
    }


def without_hop_by_hop(headers: Headers) -> Headers:
    named = _connection_tokens(headers)
    return [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP and k.lower() not in named]


def request_headers(headers: Headers, client_ip: str | None, forwarded_uri: str) -> Headers:
    """What the backend is sent: the caller's headers without the hop-by-hop ones and the
    credentials the API server consumed, with X-Forwarded-For (appended to, as Go's
    ReverseProxy does) and X-Forwarded-Uri (the path the caller used)."""
    out: Headers = []
    prior: list[str] = []
    for name, value in without_hop_by_hop(headers):
        lower = name.lower()
        if lower in _CREDENTIALS or lower.startswith(_CREDENTIAL_PREFIX):
            continue
        if lower == "x-forwarded-for":
            prior.append(value)
        elif lower != "x-forwarded-uri":
            out.append((name, value))
    if client_ip:
        out.append(("X-Forwarded-For", ", ".join([*prior, client_ip])))
    elif prior:
        out.append(("X-Forwarded-For", ", ".join(prior)))
    out.append(("X-Forwarded-Uri", forwarded_uri))
    return out


def _go_join(prefix: str, path: str) -> str:
    """Go's path.Join of two absolute paths: joined and cleaned ("." and ".." resolved)."""
    joined = posixpath.normpath(f"{prefix}/{path}")
    return "/" + joined.lstrip("/")  # normpath keeps a leading "//"; Go's Clean does not


def forwarded_uri(path_prepend: str, backend_path: str) -> str:
    """X-Forwarded-Uri: the backend path under the proxy prefix (upstream's Transport)."""
    uri = _go_join(path_prepend, backend_path or "/")
    return uri + "/" if backend_path.endswith("/") and not uri.endswith("/") else uri


def rewrite_location(value: str, path_prepend: str, backend: str, request_host: str) -> str:
    """A redirect's Location as upstream's proxy Transport.rewriteURL rewrites it.

    Another host, or a relative path, is left alone. A Location on the backend's own host
    (or on the Host the caller used) with an absolute path is put under the proxy path;
    the backend's scheme and host are dropped (upstream's transport knows neither of the
    caller's), except when the Location names the caller's Host.
    """
    try:
        url = urlsplit(value)
    except ValueError:
        return value
    different_host = bool(url.netloc) and url.netloc not in (backend, request_host)
    if different_host or not url.path.startswith("/"):
        return value
    scheme, netloc = url.scheme, url.netloc
    if netloc != request_host:
        scheme, netloc = "", ""
    path = url.path
    if not path.startswith(path_prepend):
        path = _go_join(path_prepend, path)
        if url.path.endswith("/") and not path.endswith("/"):
            path += "/"
    return urlunsplit((scheme, netloc, path, url.query, url.fragment))


def response_headers(
    headers: Headers, path_prepend: str, backend: str, request_host: str
) -> list[tuple[bytes, bytes]]:
    out = []
    for name, value in without_hop_by_hop(headers):
        lower = name.lower()
        if lower in _CORS or lower == "date":
            continue  # the API server's own Date goes out on every answer; not two of them
        if lower == "location":
            value = rewrite_location(value, path_prepend, backend, request_host)
        out.append((lower.encode("latin-1"), value.encode("latin-1")))
    return out


@dataclass(frozen=True)
class Rewriter:
    """How an answer is made to point back through the proxy: its Location, and the links
    of an HTML page (upstream's Transport with its PathPrepend)."""

    prepend: str  # the proxy path before the proxied path
    backend: str  # the backend's host:port
    request_host: str  # the Host the caller used

    def url(self, value: str) -> str:
        return rewrite_location(value, self.prepend, self.backend, self.request_host)

    def headers(self, headers: Headers) -> list[tuple[bytes, bytes]]:
        return response_headers(headers, self.prepend, self.backend, self.request_host)


def html_encoding(headers: Headers) -> str | None:
    """The Content-Encoding of an HTML answer whose links are to be rewritten, or None:
    not HTML, a redirect (its Location is rewritten instead), or an encoding upstream
    does not undo."""
    values = {k.lower(): v for k, v in headers}
    content_type = values.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "text/html" or values.get("location"):
        return None
    encoding = values.get("content-encoding", "").strip().lower()
    return encoding if encoding in proxyhtml.ENCODINGS else None


def path_prepend(request_path: str, backend_path: str) -> str:
    """The part of the caller's path before the proxied path (upstream's PathPrepend)."""
    suffix = backend_path
    if request_path.endswith("/") and not suffix.endswith("/"):
        suffix += "/"
    if suffix and request_path.endswith(suffix):
        return request_path[: len(request_path) - len(suffix)]
    return request_path


def _dial_error(location: Location, e: BaseException) -> errors.ApiError:
    """Upstream's 503 for a backend that cannot be reached, in Go's words where it can."""
    # Trio reports a failed connect as an OSError caused by the attempts' errors.
    while True:
        if isinstance(e, BaseExceptionGroup) and e.exceptions:
            e = e.exceptions[0]
        elif isinstance(e, OSError) and e.errno is None and e.__cause__ is not None:
            e = e.__cause__
        else:
            break
    if isinstance(e, trio.TooSlowError):
        why = f"dial tcp {location.netloc}: i/o timeout"
    elif isinstance(e, OSError) and e.errno is not None:
        text = {
            errno.ECONNREFUSED: "connection refused",
            errno.EHOSTUNREACH: "no route to host",
            errno.ENETUNREACH: "network is unreachable",
            errno.ETIMEDOUT: "connection timed out",
        }.get(e.errno, (e.strerror or str(e)).lower())
        why = f"dial tcp {location.netloc}: connect: {text}"
    elif isinstance(e, ssl.SSLError):
        why = f"tls: {e.reason or e}"
    else:
        why = str(e) or "EOF"
    return _unreachable(why)


def _unreachable(why: str) -> errors.ApiError:
    return errors.ApiError(503, "ServiceUnavailable", f"error trying to reach service: {why}")


def _port(location: Location) -> int:
    if not location.port:
        return 443 if location.scheme == "https" else 80
    if not location.port.isdigit() or not 0 < int(location.port) < 65536:
        raise _unreachable(f"dial tcp {location.netloc}: unknown port")
    return int(location.port)


class ResourceProxy:
    """Serves the proxy subresources."""

    def __init__(self, core: ApiCore) -> None:
        self.core = core
        self._insecure: ssl.SSLContext | None = None

    def _tls(self, location: Location, kubelets: KubeletConnector | None) -> ssl.SSLContext | None:
        """The kubelet client's mutual TLS; for an https pod or service, TLS that checks
        nothing (upstream's proxy transport: an IP cannot be verified); else plain TCP."""
        if location.kubelet:
            if kubelets is None:
                raise errors.ApiError(
                    503, "ServiceUnavailable", "this API server has no kubelet client"
                )
            return kubelets.ssl_context()
        if location.scheme != "https":
            return None
        if self._insecure is None:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self._insecure = ctx
        return self._insecure

    def _target(self, req: http.Request, info: RequestInfo) -> tuple[Location, str, str]:
        """The backend, the proxied path (unescaped) and the path prefix before it."""
        location = self.locate(info)
        # The path's segments after api/v1/[namespaces/<ns>/]<resource>/<name>/proxy.
        after = 2 + (2 if info.namespace else 0) + 3
        backend_path = subpath(req.path, after)
        return location, backend_path, path_prepend(req.path, backend_path)

    def _request_headers(
        self, req: http.Request, prepend: str, backend_path: str, drop: frozenset[str]
    ) -> Headers:
        raw = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in req.scope["headers"]
            if k.decode("latin-1").lower() not in drop
        ]
        peer = req.scope.get("client")
        return request_headers(raw, peer[0] if peer else None, forwarded_uri(prepend, backend_path))

    async def serve_websocket(
        self,
        kubelets: KubeletConnector | None,
        req: http.Request,
        info: RequestInfo,
        receive: http.Receive,
        send: http.Send,
    ) -> int:
        """A WebSocket through the proxy: the backend's handshake answer decides (a refusal
        is passed back as it came), then messages are relayed both ways unchanged."""
        location, backend_path, prepend = self._target(req, info)
        ctx = self._tls(location, kubelets)
        port = _port(location)
        headers = self._request_headers(req, prepend, backend_path, _WEBSOCKET_HANDSHAKE)
        query = req.scope.get("query_string", b"").decode("latin-1")
        target = (_escape(backend_path) or "/") + (f"?{query}" if query else "")
        stream = await self._dial(location, port, ctx, req.path)
        try:
            backend = await BackendSocket.over(
                stream,
                req.headers.get("host") or location.netloc,
                target,
                list(req.scope.get("subprotocols") or ()),
                headers,
            )
        except WebSocketRefused as e:
            answer = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in e.headers]
            rewriter = Rewriter(prepend, location.netloc, req.headers.get("host", ""))
            start = {"status": e.status, "headers": rewriter.headers(answer)}
            await send({"type": "websocket.http.response.start", **start})
            await send({"type": "websocket.http.response.body", "body": e.body})
            return e.status
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            trio.TooSlowError,
            OSError,
        ) as e:
            raise _dial_error(location, e) from None
        await relay(backend, receive, send, req.path)
        return 101

    async def _dial(
        self, location: Location, port: int, ctx: ssl.SSLContext | None, what: str
    ) -> trio.abc.Stream:
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                return await dial(location.host, port, ctx)
        except (OSError, trio.TooSlowError, trio.BrokenResourceError) as e:
            log.info("proxying %s to %s: %r", what, location.netloc, e)
            raise _dial_error(location, e) from None

    def locate(self, info: RequestInfo) -> Location:
        assert info.name is not None
        plural = info.resource.plural
        if plural == "pods":
            return pod_location(self.core, info.namespace or "", info.name)
        if plural == "services":
            return service_location(self.core, info.namespace or "", info.name)
        return node_location(self.core, info.name)

    async def serve(
        self,
        kubelets: KubeletConnector | None,
        req: http.Request,
        info: RequestInfo,
        send: http.Send,
    ) -> int:
        """Relay the request; the status code answered."""
        location, backend_path, prepend = self._target(req, info)
        query = req.scope.get("query_string", b"").decode("latin-1")
        if not backend_path and req.method in ("GET", "HEAD"):
            # Upstream's redirect of the proxy's root to itself with a trailing slash.
            target = req.path + "/" + (f"?{query}" if query else "")
            await http.respond(send, 301, b"", "text/plain", {"location": target})
            return 301
        ctx = self._tls(location, kubelets)
        port = _port(location)
        headers = self._request_headers(req, prepend, backend_path, frozenset())
        if not any(k.lower() == "host" for k, _ in headers):
            headers.insert(0, ("Host", location.netloc))
        has_body = _has_body(req.headers)
        if has_body and "content-length" not in req.headers:
            headers.append(("Transfer-Encoding", "chunked"))
        target = (_escape(backend_path) or "/") + (f"?{query}" if query else "")
        stream = await self._dial(location, port, ctx, req.path)
        try:
            exchange = _Exchange(stream, req.receive, send)
            return await exchange.run(
                h11.Request(method=req.method, target=target, headers=headers),
                has_body,
                Rewriter(prepend, location.netloc, req.headers.get("host", "")),
            )
        finally:
            await trio.aclose_forcefully(stream)


def _has_body(headers: dict[str, str]) -> bool:
    """Whether the caller sends a body (Go: a Content-Length above 0, or chunked)."""
    length = headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "transfer-encoding" in headers


def _escape(path: str) -> str:
    """The proxied path escaped for the request line as Go's URL.EscapedPath does."""
    return quote(path, safe="/!$&'()*+,;=:@-._~")


class _Exchange:
    """One HTTP/1.1 request to a backend and its answer, both bodies streamed at once.

    Full duplex as Go's transport is: the caller's body goes out while the answer comes
    back, so a backend that answers as it reads (an echo) does not stall on full buffers.
    """

    _READ = 64 * 1024

    def __init__(self, stream: trio.abc.Stream, receive: http.Receive, send: http.Send) -> None:
        self.stream = stream
        self.receive = receive
        self.send = send
        self.status = 0  # the backend's, once its answer has begun
        self.received = 0  # bytes from the backend
        self.method = b""
        # Backend header blocks up to 1 MiB (Go's default limit), not h11's 16 KiB.
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 20)

    async def run(
        self,
        request: h11.Request,
        has_body: bool,
        rewrite: Rewriter,
    ) -> int:
        self.method = bytes(request.method)
        try:
            await self.stream.send_all(self.conn.send(request))
            if not has_body:
                await self.stream.send_all(self.conn.send(h11.EndOfMessage()))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
            raise _unreachable(str(e) or "EOF") from None
        except h11.LocalProtocolError as e:
            raise errors.bad_request(f"invalid request to proxy: {e}") from None
        failure: errors.ApiError | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._from_caller, has_body, nursery.cancel_scope)
            try:
                await self._answer(rewrite)
            except errors.ApiError as e:
                failure = e  # raised outside the nursery, not wrapped in an exception group
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
        # The caller may have left before any answer: nobody got one, nothing to count but
        # that (499, as proxies log a request its client closed).
        return self.status or 499

    async def _from_caller(self, has_body: bool, scope: trio.CancelScope) -> None:
        """The caller's body to the backend; then wait for the caller to leave, which ends
        the exchange. A backend that stops reading (it answered early) just gets no more."""
        sending = has_body
        while True:
            message = await self.receive()
            if message["type"] != "http.request":
                scope.cancel()
                return
            if not sending:
                continue
            try:
                chunk = message.get("body", b"")
                if chunk:
                    await self.stream.send_all(self.conn.send(h11.Data(data=chunk)))
                if not message.get("more_body", False):
                    await self.stream.send_all(self.conn.send(h11.EndOfMessage()))
                    sending = False
            except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError) as e:
                log.debug("backend stopped reading the body: %r", e)
                sending = False

    async def _event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self.stream.receive_some(self._READ)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            self.received += len(data)
            self.conn.receive_data(bytes(data))

    async def _answer(self, rewrite: Rewriter) -> None:
        try:
            event = await self._event()
            while isinstance(event, h11.InformationalResponse):  # 100 Continue and the like
                event = await self._event()
        except h11.RemoteProtocolError as e:
            # Go's words: a connection closed before any answer is "EOF".
            raise _unreachable(
                f"malformed HTTP response: {e}" if self.received else "EOF"
            ) from None
        if not isinstance(event, h11.Response):
            raise _unreachable("EOF")
        self.status = status = int(event.status_code)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
        encoding = html_encoding(headers)
        if encoding is not None and self.method != b"HEAD" and status not in (204, 304):
            await self._html(status, headers, encoding, rewrite)
            return
        start = {
            "type": "http.response.start",
            "status": status,
            "headers": rewrite.headers(headers),
        }
        await self.send(start)
        try:
            while True:
                event = await self._event()
                if isinstance(event, h11.Data):
                    await http.stream_chunk(self.send, bytes(event.data))
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
        except h11.RemoteProtocolError as e:
            # The answer has begun: it can only be cut short (the connection closes
            # unended, so the caller sees a truncated body, not a complete one).
            log.info("proxied answer cut short: %r", e)
            return
        with suppress(Exception):
            await http.end_stream(self.send)

    async def _html(self, status: int, headers: Headers, encoding: str, rewrite: Rewriter) -> None:
        """An HTML page read whole, its links rewritten, sent with its new length (as
        upstream, which buffers it too); a page that cannot be decoded passes unchanged."""
        chunks: list[bytes] = []
        try:
            while not isinstance(
                event := await self._event(), h11.EndOfMessage | h11.ConnectionClosed
            ):
                if isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
        except h11.RemoteProtocolError as e:
            raise _unreachable(f"reading the page: {e}") from None
        body = b"".join(chunks)
        try:
            body = proxyhtml.encode(
                proxyhtml.rewrite_html(proxyhtml.decode(body, encoding), rewrite.url), encoding
            )
        except (OSError, EOFError, zlib.error) as e:
            log.info("proxied page not rewritten: %r", e)
        kept = [(k, v) for k, v in headers if k.lower() != "content-length"]
        out = [*rewrite.headers(kept), (b"content-length", str(len(body)).encode())]
        await self.send({"type": "http.response.start", "status": status, "headers": out})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})
