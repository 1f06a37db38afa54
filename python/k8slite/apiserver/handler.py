"""The resource API's ASGI handler: parse, dispatch by verb and subresource, answer, measure."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from k8slite.api import errors
from k8slite.apiserver import http, requestinfo, rest, subresources
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.metrics import ApiMetrics
from k8slite.apiserver.registry import Registry
from k8slite.apiserver.requestinfo import RequestInfo
from k8slite.apiserver.watch import serve_watch
from k8slite.storage import StoreUnavailable

log = logging.getLogger(__name__)


# Runs before a resource request is served; raises ApiError to refuse it (authorization,
# admission and the like plug in here).
RequestFilter = Callable[[http.Request, RequestInfo], Awaitable[None]]


class ResourceHandler:
    """Serves /api/v1/... and /apis/<group>/<version>/... for every resource in the table."""

    def __init__(self, core: ApiCore, metrics: ApiMetrics,
                 filters: list[RequestFilter] | None = None) -> None:
        self.core = core
        self.metrics = metrics
        self.filters: list[RequestFilter] = list(filters or ())

    async def __call__(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> None:
        req = http.Request(scope, receive)
        start = time.perf_counter()
        info: RequestInfo | None = None
        code = 500
        try:
            info = requestinfo.parse(req.method, req.path, req.flag("watch"))
            for check in self.filters:
                await check(req, info)
            reg = self.core.registry(info.resource)
            if info.verb == "watch":
                code = 200
                await self._watch(reg, req, info, send)
            else:
                code, body = await self.dispatch(reg, req, info)
                await http.respond(send, code, body)
        except errors.ApiError as e:
            code = e.code
            await http.respond_error(send, e)
        except StoreUnavailable as e:
            log.error("storage unavailable serving %s %s: %s", req.method, req.path, e)
            code = 503
            await http.respond_error(send, errors.ApiError(
                503, "ServiceUnavailable", f"storage is unavailable: {e}"))
        except Exception:
            log.exception("internal error serving %s %s", req.method, req.path)
            code = 500
            await http.respond_error(send, errors.internal("an unexpected error occurred"))
        finally:
            self._observe(req, info, code, time.perf_counter() - start)

    async def _watch(self, reg: Registry, req: http.Request, info: RequestInfo,
                     send: http.Send) -> None:
        rt = reg.rt
        watchers = self.metrics.watchers.labels(rt.group, rt.version, rt.kind)
        running = self.metrics.longrunning.labels("WATCH", rt.group, rt.version, rt.plural)
        watchers.inc()
        running.inc()
        try:
            await serve_watch(reg, req, info, send)
        finally:
            watchers.dec()
            running.dec()

    async def dispatch(self, reg: Registry, req: http.Request,
                       info: RequestInfo) -> tuple[int, bytes]:
        verb, sub = info.verb, info.subresource
        if verb == "get":
            if sub == "scale":
                return 200, subresources.get_scale(reg, info)
            if sub in (None, "status"):
                return 200, rest.get_object(reg, req, info)
        elif verb == "list":
            return 200, await rest.list_objects(reg, req, info)
        elif verb == "create":
            if sub is None:
                return 201, await rest.create_object(reg, req, info)
            if sub == "binding":
                return 201, await subresources.bind_pod(reg, req, info)
            if sub == "eviction":
                return 201, await subresources.evict_pod(reg, req, info)
        elif verb == "update":
            if sub == "scale":
                return 200, await subresources.update_scale(reg, req, info)
            if sub in (None, "status", "finalize"):
                data, created = await rest.update_object(reg, req, info)
                return (201 if created else 200), data
        elif verb == "patch":
            if sub == "scale":
                return 200, await subresources.update_scale(reg, req, info)
            if sub in (None, "status"):
                return 200, await rest.patch_object(reg, req, info)
        elif verb == "delete" and sub is None:
            data, code = await rest.delete_object(reg, req, info)
            return code, data
        elif verb == "deletecollection":
            return 200, await rest.delete_collection(reg, req, info)
        raise errors.method_not_allowed()

    def _observe(self, req: http.Request, info: RequestInfo | None, code: int,
                 seconds: float) -> None:
        if info is None:
            self.metrics.observe_request(req.method, "", "", "", "", "", code, seconds)
            return
        scope = "resource" if info.name else ("namespace" if info.namespace else "cluster")
        self.metrics.observe_request(info.verb.upper(), info.group, info.version,
                                     info.resource.plural, info.subresource or "", scope,
                                     code, seconds)
