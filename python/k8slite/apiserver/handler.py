"""The resource API's ASGI handler: parse, dispatch by verb and subresource, answer, measure."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable

from k8slite.api import errors
from k8slite.apiserver import (
    admission,
    audit,
    eviction,
    http,
    podlogs,
    requestinfo,
    resourceproxy,
    rest,
    spdystreams,
    streaming,
    subresources,
    tables,
    versions,
    writes,
)
from k8slite.apiserver.authn import user_of
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.metrics import ApiMetrics
from k8slite.apiserver.registry import Registry
from k8slite.apiserver.requestinfo import RequestInfo
from k8slite.apiserver.watch import serve_watch
from k8slite.apiserver.webhooks import RequestWebhooks, WebhookDispatcher
from k8slite.storage import StoreUnavailable

log = logging.getLogger(__name__)


# Runs before a resource request is served; raises ApiError to refuse it (authorization,
# admission and the like plug in here).
RequestFilter = Callable[[http.Request, RequestInfo], Awaitable[None]]
# Serves every verb of a resource that is computed rather than stored (access reviews):
# returns the status code and body.
VirtualResource = Callable[[http.Request, RequestInfo], Awaitable[tuple[int, bytes]]]
# Serves a create of a subresource with a shape of its own: returns the body.
SubresourceCreate = Callable[[Registry, http.Request, RequestInfo], Awaitable[bytes]]


class ResourceHandler:
    """Serves /api/v1/... and /apis/<group>/<version>/... for every resource in the table."""

    def __init__(
        self, core: ApiCore, metrics: ApiMetrics, filters: list[RequestFilter] | None = None
    ) -> None:
        self.core = core
        self.metrics = metrics
        self.filters: list[RequestFilter] = list(filters or ())
        self.virtual: dict[tuple[str, str], VirtualResource] = {}
        # How pods/log reaches kubelets; set by the server from its PKI.
        self.kubelets: podlogs.KubeletConnector | None = None
        # pods/proxy, services/proxy and nodes/proxy.
        self.proxy = resourceproxy.ResourceProxy(core)
        # serviceaccounts/<name>/token (TokenRequest); set by the server from its keys.
        self.token_request: SubresourceCreate | None = None
        # Admission webhooks called on writes; set by the server.
        self.webhooks: WebhookDispatcher | None = None

    async def __call__(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> None:
        req = http.Request(scope, receive)
        start = time.perf_counter()
        info: RequestInfo | None = None
        code = 500
        try:
            # Parsed already when priority and fairness classified the request.
            info = scope.get(requestinfo.SCOPE_KEY) or requestinfo.parse(
                req.method, req.path, req.flag("watch")
            )
            for check in self.filters:
                await check(req, info)
            if info.subresource == requestinfo.PROXY:
                code = await self.proxy.serve(self.kubelets, req, info, send)
                return
            virtual = self.virtual.get((info.group, info.resource.plural))
            if virtual is not None:
                code, body = await virtual(req, info)
                await http.respond(send, code, body)
                return
            if info.verb == "get" and info.subresource == "log":
                code = 200
                await podlogs.serve_log(self.core, self.kubelets, req, info, send)
                return
            if _streaming(info):
                if spdystreams.is_upgrade(req):
                    code = 101  # until it answers otherwise
                    code = await spdystreams.serve(self.core, self.kubelets, req, info, send)
                    return
                await streaming.refuse_plain(self.core, req, info)
            if info.verb not in info.resource.verbs:
                raise errors.method_not_allowed()
            reg = self.core.registry(info.resource)
            if info.verb == "watch":
                code = 200
                await self._watch(reg, req, info, send)
            else:
                token = admission.CURRENT.set(self._admission(req, info))
                try:
                    code, body = await self.dispatch(reg, req, info)
                finally:
                    admission.CURRENT.reset(token)
                if reg.stored_api_version is not None or reg.on_read is not None:
                    body = versions.convert_body(body, info.resource, reg.on_read)
                content_type, body = _render(req, info, body)
                await http.respond(send, code, body, content_type, writes.warning_headers(req))
        except errors.ApiError as e:
            code = e.code
            await http.respond_error(send, e)
        except RecursionError:
            # Input nested past what the recursive Python code can walk: the input's fault.
            code = 400
            await http.respond_error(send, errors.bad_request("the object nests too deeply"))
        except StoreUnavailable as e:
            log.error("storage unavailable serving %s %s: %s", req.method, req.path, e)
            code = 503
            await http.respond_error(
                send, errors.ApiError(503, "ServiceUnavailable", f"storage is unavailable: {e}")
            )
        except Exception:
            log.exception("internal error serving %s %s", req.method, req.path)
            code = 500
            await http.respond_error(send, errors.internal("an unexpected error occurred"))
        finally:
            self._observe(req, info, code, time.perf_counter() - start)

    async def websocket(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> None:
        """A WebSocket upgrade: pods/exec, attach and portforward stream, the proxy
        subresources pass it to their backend; others are refused.

        The upgrade is a GET, authorized as create on the subresource (what kubectl 1.35
        asks, and upstream's AuthorizePodWebsocketUpgradeCreatePermission), so a role that
        lets a user exec lets them whichever way their client connects.
        """
        if (await receive())["type"] != "websocket.connect":
            return
        req = http.Request({**scope, "method": "GET"}, _no_body)
        start = time.perf_counter()
        info: RequestInfo | None = None
        code = 101
        try:
            info = requestinfo.parse("GET", req.path, False)
            if info.subresource == requestinfo.PROXY:
                # A WebSocket through a proxy is a GET on it, authorized as one (upstream).
                for check in self.filters:
                    await check(req, info)
                code = await self.proxy.serve_websocket(self.kubelets, req, info, receive, send)
                return
            if not _streaming(info):
                raise errors.bad_request("Upgrade request required")
            info = dataclasses.replace(info, verb="create")
            for check in self.filters:
                await check(req, info)
            await streaming.serve_websocket(self.core, self.kubelets, req, info, receive, send)
        except errors.ApiError as e:
            code = e.code
            await streaming.deny(send, e)
        except Exception:
            log.exception("internal error streaming %s", req.path)
            code = 500
            await streaming.deny(send, errors.internal("an unexpected error occurred"))
        finally:
            # Upstream counts streaming requests under the verb CONNECT.
            connect = dataclasses.replace(info, verb="connect") if info is not None else None
            self._observe(req, connect, code, time.perf_counter() - start)

    async def _watch(
        self, reg: Registry, req: http.Request, info: RequestInfo, send: http.Send
    ) -> None:
        rt = reg.rt
        watchers = self.metrics.watchers.labels(rt.group, rt.version, rt.kind)
        running = self.metrics.longrunning.labels("WATCH", rt.group, rt.version, rt.plural)
        watchers.inc()
        running.inc()
        try:
            target = tables.negotiate(req.headers.get("accept"), is_list=False)
            convert = None
            if target is not None:
                include = tables.include_object(req.arg("includeObject"))
                convert = tables.watch_converter(rt, target, include)
            if reg.stored_api_version is not None or reg.on_read is not None:
                convert = versions.watch_converter(rt, reg.on_read, convert)
            await serve_watch(reg, req, info, send, convert, self.metrics.direct_writes)
        finally:
            watchers.dec()
            running.dec()

    def _admission(self, req: http.Request, info: RequestInfo) -> RequestWebhooks | None:
        """The webhook admission of a write of an object or its status (reads have none).

        The subresources with kinds of their own (binding, eviction, scale, token) write
        through the object's registry: judged as object writes they would mislead webhooks,
        so they are not sent.
        """
        if self.webhooks is None or info.verb in ("get", "list", "watch"):
            return None
        if info.subresource not in (None, "status", "finalize", "ephemeralcontainers", "approval"):
            return None
        options: dict[str, object] = {}
        if req.arg("fieldManager"):
            options["fieldManager"] = req.arg("fieldManager")
        if req.query.get("dryRun"):
            options["dryRun"] = list(req.query["dryRun"])
        return self.webhooks.for_request(
            user_of(req.scope),
            options,
            lambda text: writes.warn(req, text),
            lambda key, value: audit.annotate(req.scope, key, value),
        )

    async def dispatch(
        self, reg: Registry, req: http.Request, info: RequestInfo
    ) -> tuple[int, bytes]:
        verb, sub = info.verb, info.subresource
        if verb == "get":
            if not req.arg("resourceVersion"):
                await reg.store.sync()  # the most recent state, as a quorum read gives
            if sub == "scale":
                return 200, subresources.get_scale(reg, info)
            if sub in (None, "status", "ephemeralcontainers", "approval"):
                return 200, rest.get_object(reg, req, info)
        elif verb == "list":
            return 200, await rest.list_objects(reg, req, info)
        elif verb == "create":
            if sub is None:
                return 201, await rest.create_object(reg, req, info)
            if sub == "binding":
                return 201, await subresources.bind_pod(reg, req, info)
            if sub == "eviction":
                return await eviction.evict_pod(self.core, reg, req, info)
            if sub == "token" and self.token_request is not None:
                return 201, await self.token_request(reg, req, info)
        elif verb == "update":
            if sub == "scale":
                return 200, await subresources.update_scale(reg, req, info)
            if sub in (None, "status", "finalize", "ephemeralcontainers", "approval"):
                data, created = await rest.update_object(reg, req, info)
                return (201 if created else 200), data
        elif verb == "patch":
            if sub == "scale":
                return 200, await subresources.update_scale(reg, req, info)
            if sub in (None, "status", "ephemeralcontainers", "approval"):
                data, created = await rest.patch_object(reg, req, info)
                return (201 if created else 200), data
        elif verb == "delete" and sub is None:
            data, code = await rest.delete_object(reg, req, info)
            return code, data
        elif verb == "deletecollection":
            return 200, await rest.delete_collection(reg, req, info)
        raise errors.method_not_allowed()

    def _observe(
        self, req: http.Request, info: RequestInfo | None, code: int, seconds: float
    ) -> None:
        if info is None:
            self.metrics.observe_request(req.method, "", "", "", "", "", code, seconds)
            return
        # Upstream's CleanScope: a create is of one object, so "resource", like a named call.
        if info.name or info.verb == "create":
            scope = "resource"
        else:
            scope = "namespace" if info.namespace else "cluster"
        verb = _REPORTED_VERBS.get(info.verb, info.verb.upper())
        if verb == "PATCH" and req.content_type == "application/apply-patch+yaml":
            verb = "APPLY"
        self.metrics.observe_request(
            verb,
            info.group,
            info.version,
            info.resource.plural,
            info.subresource or "",
            scope,
            code,
            seconds,
        )


# The verb label of the request metrics, as upstream's: the HTTP method, but LIST and WATCH
# for reads of collections and APPLY for server-side apply (dashboards and clusterloader2's
# SLO queries match on these), CONNECT for exec, attach, port-forward and proxy.
_REPORTED_VERBS = {
    "create": "POST",
    "update": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
    "deletecollection": "DELETE",
    "get": "GET",
    "list": "LIST",
    "watch": "WATCH",
    "connect": "CONNECT",
}


def _streaming(info: RequestInfo) -> bool:
    return (
        info.subresource in streaming.SUBRESOURCES
        and info.resource.plural == "pods"
        and not info.group
    )


async def _no_body() -> http.Message:
    # A WebSocket upgrade has no request body; its messages are the stream's.
    return {"type": "http.request", "body": b"", "more_body": False}


def _render(req: http.Request, info: RequestInfo, body: bytes) -> tuple[str, bytes]:
    """Server-side printing (Tables, partial metadata) and ?pretty for gets and lists."""
    content_type = http.JSON
    if info.verb in ("get", "list") and info.subresource is None:
        target = tables.negotiate(req.headers.get("accept"), is_list=info.verb == "list")
        if target is not None:
            include = tables.include_object(req.arg("includeObject"))
            body = tables.convert(body, info.resource, target, include, info.verb == "list")
            content_type = target.content_type
    if req.flag("pretty"):
        body = json.dumps(json.loads(body), indent=2).encode() + b"\n"
    return content_type, body
