"""The handler chain in front of the API: authentication, in-flight limit, deadline, audit.

Upstream's order: authenticate (401), then the max-in-flight limit (429, system:masters
exempt, long-running requests not counted), then the request deadline (504 after 60 s,
long-running requests exempt), then authorization. Resource requests are authorized by the
resource handler's filters, which know the parsed request; non-resource paths (/healthz,
/version, /api, /openapi, ...) are authorized here.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import trio

from k8slite._native import loads
from k8slite.api import errors
from k8slite.apiserver import http
from k8slite.apiserver.audit import AuditLog
from k8slite.apiserver.authn import MASTERS, SCOPE_KEY, Authenticator, UserInfo
from k8slite.apiserver.authz.attributes import Attributes
from k8slite.apiserver.authz.authorizer import ATTRIBUTES_KEY, Authorizer
from k8slite.apiserver.limits import (
    REQUEST_TIMEOUT,
    InflightLimiter,
    is_long_running,
    is_mutating,
    request_deadline,
)
from k8slite.apiserver.requestinfo import is_resource_path

log = logging.getLogger(__name__)
ASGIApp = Any
# hypercorn decides whether an HTTP/1.1 connection carries another request when a response
# ends: if the request's body has not all arrived by then, it closes the connection without
# telling the client, whose next request on it fails. So a request answered without its
# body being read (a 403, a 429, ...) has the rest read and dropped before the answer, up
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


class _Response:
    """Watches what the app sends: the status, and (for the audit of creates) the first body.

    Before an HTTP/1.1 answer starts, the unread rest of the request body is drained.
    """

    __slots__ = ("body", "keep_body", "request", "send", "status")

    def __init__(self, send: http.Send, request: _Receive | None, keep_body: bool) -> None:
        self.send = send
        self.request = request
        self.status = 0
        self.body = b""
        self.keep_body = keep_body

    async def __call__(self, message: http.Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if (
                self.request is not None
                and not self.request.done
                and not await self.request.drain()
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
        limiter: InflightLimiter | None = None,
        audit: AuditLog | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        authn: Authenticator | None = None,
    ) -> None:
        self.app = app
        self.authn = authn or Authenticator()
        self.authorizer = authorizer
        self.limiter = limiter or InflightLimiter()
        self.audit = audit
        self.request_timeout = request_timeout

    async def __call__(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> None:
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
            await self._limited(scope, receive, response, user, mutating, long_running)
        except errors.ApiError as e:
            if not response.status:  # else the answer is on its way and cannot change
                await http.respond_error(response, e)
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
        counted = MASTERS not in user.groups
        if counted and not self.limiter.acquire(mutating):
            raise errors.too_many_requests()
        try:
            with trio.move_on_after(request_deadline(scope, self.request_timeout)) as deadline:
                await self._authorized(scope, receive, response)
            if deadline.cancelled_caught:
                log.warning("%s %s timed out", scope["method"], scope["path"])
                if not response.status:
                    raise _timeout()
        finally:
            if counted:
                self.limiter.release(mutating)

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
        self.audit.record(
            user=user,
            verb=verb,
            uri=uri,
            code=response.status or 500,
            started=started,
            finished=time.time(),
            source_ip=str(client[0]),
            user_agent=headers.get(b"user-agent", b"").decode("latin-1"),
            object_ref=_object_ref(attrs, response) if attrs else None,
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
