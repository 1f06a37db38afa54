"""The handler chain in front of the API: authentication, impersonation, priority and fairness,
deadline, audit.

Upstream's order: authenticate (401), then impersonation (403 unless the caller may act as
whom the Impersonate-* headers name), then API Priority and Fairness (a seat in the
request's priority level, else 429; long-running requests take none), then the request
deadline (504 after 60 s, long-running requests exempt), then authorization. A write's
body is read before its seat is taken, within its own deadline (408 past a quarter of the
request timeout), so a client trickling a body in holds no seat.
Resource requests are authorized by the resource handler's filters, which know the parsed
request; non-resource paths (/healthz, /version, /api, /openapi, ...) are authorized here.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import trio

from k8slite._native import loads
from k8slite.api import errors
from k8slite.apiserver import http
from k8slite.apiserver.audit import ANNOTATIONS_KEY, AuditLog
from k8slite.apiserver.authn import SCOPE_KEY, Authenticator, UserInfo, user_of
from k8slite.apiserver.authz.attributes import Attributes
from k8slite.apiserver.authz.authorizer import ATTRIBUTES_KEY, Authorizer
from k8slite.apiserver.flowcontrol.controller import FlowControl
from k8slite.apiserver.impersonation import IMPERSONATOR_KEY, ImpersonationError, impersonate
from k8slite.apiserver.limits import REQUEST_TIMEOUT, is_long_running, is_mutating, request_deadline
from k8slite.apiserver.metrics import ApiMetrics
from k8slite.apiserver.requestinfo import is_resource_path
from k8slite.apiserver.streaming import deny

log = logging.getLogger(__name__)
ASGIApp = Any
# hypercorn decides whether an HTTP/1.1 connection carries another request when a response
# ends: if the request's body has not all arrived by then, it closes the connection without
# telling the client, whose next request on it fails. So a request answered without its
# body being read (a 401, a 413, ...) has the rest read and dropped before the answer, up
# to this much and this long; beyond, the answer says "Connection: close".
_DRAIN_LIMIT = http.MAX_BODY
_DRAIN_SECONDS = 2.0


def _timeout() -> errors.ApiError:
    return errors.ApiError(
        504,
        "Timeout",
        "Timeout: request did not complete within requested timeout - context deadline exceeded",
        {},
    )


def _body_timeout(seconds: float) -> errors.ApiError:
    return errors.ApiError(
        408, "Timeout", f"Timeout: the request body did not arrive within {seconds:g}s", {}
    )


class _Receive:
    """Passes the request's messages on and notes whether its body was read to the end."""

    __slots__ = ("done", "receive")

    def __init__(self, receive: http.Receive, has_body: bool) -> None:
        self.receive = receive
        self.done = not has_body

    async def __call__(self) -> http.Message:
        message = await self.receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        return message

    async def drain(self) -> bool:
        """Read what is left of the body; whether it all came."""
        size = 0
        with trio.move_on_after(_DRAIN_SECONDS):
            while not self.done and size <= _DRAIN_LIMIT:
                size += len((await self()).get("body", b""))
        return self.done


class _Replay:
    """Hands the app a body read beforehand, then whatever the connection says next."""

    __slots__ = ("message", "receive")

    def __init__(self, body: bytes, receive: http.Receive) -> None:
        self.message: http.Message | None = {
            "type": "http.request",
            "body": body,
            "more_body": False,
        }
        self.receive = receive

    async def __call__(self) -> http.Message:
        message, self.message = self.message, None
        return message if message is not None else await self.receive()


async def _read_body(scope: http.Scope, receive: http.Receive) -> bytes | None:
    """The whole body (413 past upstream's 3 MiB); None if the client went away."""
    length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
    if length is not None and length.isdigit() and int(length) > http.MAX_BODY:
        raise errors.too_large()
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > http.MAX_BODY:
            raise errors.too_large()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class _Response:
    """Watches what the app sends: the status, and (for the audit of creates) the first body.

    Before an HTTP/1.1 answer starts, the unread rest of the request body is drained. The
    answer carries the request's FlowSchema and priority level UIDs (upstream's headers).
    """

    __slots__ = ("body", "extra", "give_up", "keep_body", "request", "send", "status")

    def __init__(self, send: http.Send, request: _Receive | None, keep_body: bool) -> None:
        self.send = send
        self.request = request
        self.status = 0
        self.body = b""
        self.keep_body = keep_body
        self.extra: tuple[tuple[bytes, bytes], ...] = ()
        self.give_up = False  # close the connection rather than wait for the body's rest

    async def __call__(self, message: http.Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if self.extra:
                message = {**message, "headers": [*message.get("headers", ()), *self.extra]}
            if (
                self.request is not None
                and not self.request.done
                and (self.give_up or not await self.request.drain())
            ):
                message = {
                    **message,
                    "headers": [*message.get("headers", ()), (b"connection", b"close")],
                }
        elif self.keep_body and not self.body and message["type"] == "http.response.body":
            self.body = message.get("body", b"")
        await self.send(message)


class SecureApp:
    """Wraps the API server's ASGI app with the checks every request goes through."""

    def __init__(
        self,
        app: ASGIApp,
        authorizer: Authorizer,
        flowcontrol: FlowControl,
        metrics: ApiMetrics,
        audit: AuditLog | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        authn: Authenticator | None = None,
    ) -> None:
        self.app = app
        self.authn = authn or Authenticator()
        self.authorizer = authorizer
        self.flowcontrol = flowcontrol
        self.body_reads = metrics.body_reads
        self.inflight = {
            False: metrics.inflight.labels("readOnly"),
            True: metrics.inflight.labels("mutating"),
        }
        self.audit = audit
        self.request_timeout = request_timeout
        # A write's body must arrive before the request takes a seat, within the time it
        # could have waited in a queue (a quarter of the request timeout: 15 s, in which
        # 3 MiB needs 1.7 Mbit/s). Past it: 408 and the connection closes.
        self.body_timeout = request_timeout / 4

    async def __call__(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> None:
        if scope["type"] == "websocket":
            # Long-running: neither limited nor timed; authorized by the resource handler.
            try:
                scope[SCOPE_KEY] = self.authn.authenticate(scope)
            except errors.ApiError as e:
                await receive()
                await deny(send, e)
                return
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.time()
        mutating = is_mutating(scope["method"])
        long_running = is_long_running(scope)
        # Writes carry bodies; a read that carries one anyway loses keep-alive if refused.
        # HTTP/2 streams end on their own, and long-running requests stream their input.
        request: _Receive | None = None
        if mutating and not long_running and scope.get("http_version") in ("1.1", "1.0"):
            request = receive = _Receive(receive, True)
        response = _Response(send, request, keep_body=self.audit is not None and mutating)
        user: UserInfo | None = None
        try:
            user = self.authn.authenticate(scope)
            scope[SCOPE_KEY] = user
            acting = impersonate(scope, user, self.authorizer)
            if acting is not None:
                scope[SCOPE_KEY] = acting
            await self._limited(scope, receive, response, acting or user, mutating, long_running)
        except errors.ApiError as e:
            if not response.status:  # else the answer is on its way and cannot change
                await http.respond_error(response, e)
        except ImpersonationError as e:
            # Upstream's answer is a plain-text internal error naming the request.
            uri = scope["path"] + (
                "?" + scope["query_string"].decode() if scope.get("query_string") else ""
            )
            text = f'Internal Server Error: "{uri}": {e}\n'
            await http.respond(response, 500, text.encode(), "text/plain; charset=utf-8")
        finally:
            if self.audit is not None and mutating:
                self._audit(scope, user, response, started)

    async def _limited(
        self,
        scope: http.Scope,
        receive: http.Receive,
        response: _Response,
        user: UserInfo,
        mutating: bool,
        long_running: bool,
    ) -> None:
        if long_running:
            await self._authorized(scope, receive, response)
            return
        with trio.move_on_after(request_deadline(scope, self.request_timeout)) as deadline:
            if mutating:
                # The body first, holding no seat: a slow sender only ties up its own socket.
                self.body_reads.inc()
                try:
                    with trio.move_on_after(self.body_timeout) as waited:
                        body = await _read_body(scope, receive)
                finally:
                    self.body_reads.dec()
                if waited.cancelled_caught:
                    response.give_up = True
                    raise _body_timeout(self.body_timeout)
                if body is None:
                    return  # the client left; nobody to answer
                receive = _Replay(body, receive)
            flow = self.flowcontrol.classify(user, scope)
            response.extra = flow.headers
            await self.flowcontrol.admit(flow)
            inflight = self.inflight[mutating]
            inflight.inc()
            try:
                await self._authorized(scope, receive, response)
            finally:
                inflight.dec()
                self.flowcontrol.release(flow)
        if deadline.cancelled_caught:
            log.warning("%s %s timed out", scope["method"], scope["path"])
            if not response.status:
                raise _timeout()

    async def _authorized(
        self, scope: http.Scope, receive: http.Receive, response: _Response
    ) -> None:
        if not is_resource_path(scope["path"]):
            self.authorizer.check_path(scope)
        await self.app(scope, receive, response)

    def _audit(
        self, scope: http.Scope, user: UserInfo | None, response: _Response, started: float
    ) -> None:
        assert self.audit is not None
        attrs: Attributes | None = scope.get(ATTRIBUTES_KEY)
        headers = dict(scope.get("headers") or ())
        client = scope.get("client") or ("", 0)
        query = scope.get("query_string", b"").decode("latin-1")
        uri = scope["path"] + (f"?{query}" if query else "")
        verb = attrs.verb if attrs else scope["method"].lower()
        # user is the authenticated one; an impersonated one is the scope's user now.
        impersonated = user_of(scope) if scope.get(IMPERSONATOR_KEY) is not None else None
        self.audit.record(
            user=user,
            impersonated=impersonated,
            verb=verb,
            uri=uri,
            code=response.status or 500,
            started=started,
            finished=time.time(),
            source_ip=str(client[0]),
            user_agent=headers.get(b"user-agent", b"").decode("latin-1"),
            object_ref=_object_ref(attrs, response) if attrs else None,
            annotations=scope.get(ANNOTATIONS_KEY),
        )


def _object_ref(attrs: Attributes, response: _Response) -> dict[str, str] | None:
    if not attrs.resource_request:
        return None
    name = attrs.name
    if not name and attrs.verb == "create" and response.status in (200, 201) and response.body:
        # A create names its object in the body; the answer carries the final name.
        try:
            name = str(loads(response.body).get("metadata", {}).get("name") or "")
        except Exception:  # noqa: BLE001 - a partial or odd body just leaves the name out
            name = ""
    ref = {
        "resource": attrs.resource,
        "namespace": attrs.namespace,
        "name": name,
        "apiGroup": attrs.api_group,
        "apiVersion": attrs.api_version,
        "subresource": attrs.subresource,
    }
    return {k: v for k, v in ref.items() if v}
