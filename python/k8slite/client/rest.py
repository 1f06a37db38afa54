"""The async REST client: CRUD, patch, subresources and watch against an API server."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Literal, Self

import httpx
import trio

from k8slite.client import _json
from k8slite.client.backoff import Backoff
from k8slite.client.errors import ApiConnectionError, ApiError, error_for, status_for
from k8slite.client.kubeconfig import ClientCertReloader, ClientConfig, FileTokenAuth
from k8slite.client.ratelimit import TokenBucket
from k8slite.client.resource import Resource
from k8slite.component.objects import meta

log = logging.getLogger(__name__)

JSON = "application/json"
PatchType = Literal["merge", "json", "strategic", "apply"]
PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    # JSON is YAML, so an apply body can be sent as the JSON we already encode.
    "apply": "application/apply-patch+yaml",
}
# Verbs whose repetition cannot do anything the first attempt did not already do.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Raised before a single byte of the request left this process: safe to retry any verb.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
# A watch's read timeout exceeds the server-side timeoutSeconds by this much, so a healthy
# stream always ends from the server's side and only a stalled one trips the client.
_WATCH_READ_SLACK = 30.0

# Closing connections is quick; the bound only keeps a wedged peer from holding up shutdown.
_CLOSE_TIMEOUT = 2.0

Selector = str | Mapping[str, str] | None


def selector_text(selector: Selector) -> str | None:
    """A label selector as query text; a dict means equality on every key."""
    if selector is None or isinstance(selector, str):
        return selector or None
    return ",".join(f"{k}={v}" for k, v in selector.items()) or None


def _params(**values: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None or value is False:
            continue
        out[key] = "true" if value is True else str(value)
    return out


def _namespace_of(body: Mapping[str, Any], namespace: str | None) -> str | None:
    return namespace or meta(body).get("namespace") or None


def _name_of(body: Mapping[str, Any]) -> str:
    name = meta(body).get("name")
    if not name:
        raise ValueError("object has no metadata.name")
    return str(name)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # the HTTP-date form; nobody we talk to sends it
        return None


def _decode(content: bytes) -> Any:
    return _json.loads(content) if content else None


def raise_for_status(response: httpx.Response, content: bytes) -> None:
    """Turn a non-2xx answer into the typed ApiError carrying its Status."""
    code = response.status_code
    if code < 400:
        return
    status: dict[str, Any] | None = None
    try:
        body = _json.loads(content) if content else None
        if isinstance(body, dict) and body.get("kind") == "Status":
            status = body
    except ValueError:
        pass
    if status is None:
        text = content.decode(errors="replace").strip() or response.reason_phrase
        status = status_for(code, text, _REASONS.get(code, ""))
    raise error_for(code, status)


class ApiClient:
    """An async client for one API server; use as `async with ApiClient(config) as api:`."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        headers = {"User-Agent": config.user_agent, "Accept": JSON}
        auth = None
        if config.token_file is not None:
            auth = FileTokenAuth(config.token_file, config.token)
        elif config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        self._auth, self._headers = auth, headers
        self._http = self._new_http()
        # Ends in "/"; request paths are joined to it as httpx joins them to base_url.
        self._base_url = str(self._http.base_url).rstrip("/") + "/"
        self._bucket = TokenBucket(config.qps, config.burst) if config.qps > 0 else None
        self._cert_reloader = (
            ClientCertReloader(config.ssl_context, config.client_cert_file, config.client_key_file)
            if config.ssl_context is not None
            and config.client_cert_file is not None
            and config.client_key_file is not None
            else None
        )
        # Streams (watches, followed logs) hold their connection for long: not counted.
        self._in_flight = (
            None if config.http2 else trio.CapacityLimiter(max(1, config.max_in_flight))
        )

    def _new_http(self) -> httpx.AsyncClient:
        config = self.config
        if config.http2:  # h2 only for those that use it: it costs memory to load
            from k8slite.client import http2  # noqa: F401  (wider windows, see there)
        return httpx.AsyncClient(
            auth=self._auth,
            base_url=config.server,
            verify=config.ssl_context if config.ssl_context is not None else True,
            http2=config.http2,
            headers=self._headers,
            timeout=httpx.Timeout(config.timeout),
            # Every informer holds a watch open; keep-alive spares a TLS handshake per call.
            limits=httpx.Limits(
                max_connections=None, max_keepalive_connections=64, keepalive_expiry=60.0
            ),
        )

    async def _use_new_certificate(self) -> None:
        """The client certificate's files changed (a kubelet rotated it): new connections,
        and the old ones closed, as client-go closes them on rotation, since the server
        refuses a certificate that has expired even on a connection made before."""
        old, self._http = self._http, self._new_http()
        log.info("client certificate %s changed: reconnecting", self.config.client_cert_file)
        with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await old.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await self._http.aclose()

    # ------------------------------------------------------------------ transport

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = JSON,
        timeout: httpx.Timeout | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send with client-side rate limiting and retries; the caller reads the response."""
        idempotent = method in _IDEMPOTENT
        backoff = Backoff(initial=0.2, cap=10.0)
        headers = {"Content-Type": content_type} if body is not None else None
        attempt = 0
        while True:
            if self._bucket is not None:
                await self._bucket.wait()
            if self._cert_reloader is not None and self._cert_reloader.check():
                await self._use_new_certificate()
            request = self._build_request(method, path, params, body, headers, timeout)
            try:
                if stream or self._in_flight is None:
                    response = await self._http.send(request, stream=stream)
                else:
                    async with self._in_flight:
                        response = await self._http.send(request)
            except httpx.TransportError as e:
                if attempt >= self.config.max_retries or not (
                    idempotent or isinstance(e, _NOT_SENT)
                ):
                    raise ApiConnectionError(f"{method} {path}: {e!r}") from e
                delay = backoff.next()
                log.debug("%s %s failed (%r); retry in %.2fs", method, path, e, delay)
            else:
                code = response.status_code
                # A 429 was refused before any work was done, so even a POST may repeat it.
                retryable = code == 429 or (code >= 500 and idempotent)
                if not retryable or attempt >= self.config.max_retries:
                    return response
                after = _retry_after(response)
                delay = after if after is not None else backoff.next()
                await response.aclose()
                log.debug("%s %s answered %d; retry in %.2fs", method, path, code, delay)
            attempt += 1
            await trio.sleep(delay)

    def _build_request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        timeout: httpx.Timeout | None,
    ) -> httpx.Request:
        """What httpx's build_request makes, with the URL parsed once instead of three
        times (base merge, query merge, request): at about 100 us a parse, that was most
        of a small request's client-side CPU outside the HTTP/TLS stack."""
        url = self._base_url + path.lstrip("/")
        if params:
            url += "?" + str(httpx.QueryParams(params))
        merged = httpx.Headers(self._http.headers)
        if headers:
            merged.update(headers)
        timeout = timeout if timeout is not None else self._http.timeout
        return httpx.Request(
            method, url, content=body, headers=merged, extensions={"timeout": timeout.as_dict()}
        )

    async def request_bytes(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = JSON,
    ) -> bytes:
        """One request; the raw body of a 2xx answer, or a typed ApiError."""
        response = await self._send(
            method, path, params=params, body=body, content_type=content_type
        )
        content = response.content
        raise_for_status(response, content)
        return content

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = JSON,
    ) -> Any:
        """One JSON request: `body` is encoded, the answer decoded (None when empty)."""
        raw = _json.dumps(body) if body is not None else None
        content = await self.request_bytes(
            method, path, params=params, body=raw, content_type=content_type
        )
        return _decode(content)

    async def open_stream(self, path: str) -> httpx.Response:
        """GET a long-lived stream (a followed pod log): the open response, whose body the
        caller reads and closes; a typed ApiError when the server refuses it."""
        response = await self._send(
            "GET", path, timeout=httpx.Timeout(self.config.timeout, read=None), stream=True
        )
        if response.status_code >= 400:
            try:
                content = await response.aread()
            finally:
                await response.aclose()
            raise_for_status(response, content)
        return response

    # ---------------------------------------------------------------------- verbs

    async def get(
        self,
        res: Resource,
        name: str,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """GET one object (or one of its subresources, e.g. "status", "scale")."""
        params = _params(resourceVersion=resource_version)
        path = res.path(namespace, name, subresource)
        result: dict[str, Any] = await self.request("GET", path, params=params)
        return result

    async def list(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: Selector = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
        timeout_seconds: int | None = None,
    ) -> dict[str, Any]:
        """One LIST call: the List object (items, metadata.resourceVersion/continue)."""
        params = _params(
            labelSelector=selector_text(label_selector),
            fieldSelector=field_selector or None,
            limit=limit,
            resourceVersion=resource_version,
            resourceVersionMatch=resource_version_match,
            timeoutSeconds=timeout_seconds,
            **{"continue": continue_ or None},
        )
        result: dict[str, Any] = await self.request("GET", res.path(namespace), params=params)
        return result

    async def list_all(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: Selector = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> dict[str, Any]:
        """A consistent LIST, fetched page by page, returned as one List object.

        If a continue token expires mid-way (410), the list starts over unpaginated, as
        client-go's pager does: pages of one list must all come from the same snapshot.
        """
        kwargs: dict[str, Any] = {
            "namespace": namespace,
            "label_selector": label_selector,
            "field_selector": field_selector,
        }
        first = await self.list(res, limit=page_size or None, **kwargs)
        items: list[dict[str, Any]] = list(first.get("items") or [])
        token = meta(first).get("continue")
        last = first
        while token:
            try:
                last = await self.list(res, limit=page_size, continue_=token, **kwargs)
            except ApiError as e:
                if e.code != 410:
                    raise
                log.info("continue token for %s expired; listing unpaginated", res)
                return await self.list(res, **kwargs)
            items.extend(last.get("items") or [])
            token = meta(last).get("continue")
        merged = dict(first)
        merged["items"] = items
        merged_meta = dict(meta(first))
        merged_meta.pop("continue", None)
        merged_meta.pop("remainingItemCount", None)
        merged_meta["resourceVersion"] = meta(last).get(
            "resourceVersion", merged_meta.get("resourceVersion")
        )
        merged["metadata"] = merged_meta
        return merged

    async def create(
        self,
        res: Resource,
        body: Mapping[str, Any],
        *,
        namespace: str | None = None,
        subresource: str | None = None,
        field_manager: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """POST a new object; with `subresource` (binding, eviction) POST to the named object's."""
        ns = _namespace_of(body, namespace)
        name = _name_of(body) if subresource else None
        params = _params(fieldManager=field_manager, dryRun="All" if dry_run else None)
        path = res.path(ns, name, subresource)
        result: dict[str, Any] = await self.request("POST", path, params=params, body=body)
        return result

    async def update(
        self,
        res: Resource,
        body: Mapping[str, Any],
        *,
        namespace: str | None = None,
        subresource: str | None = None,
        field_manager: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """PUT the object (optimistically locked by its metadata.resourceVersion, if set)."""
        path = res.path(_namespace_of(body, namespace), _name_of(body), subresource)
        params = _params(fieldManager=field_manager, dryRun="All" if dry_run else None)
        result: dict[str, Any] = await self.request("PUT", path, params=params, body=body)
        return result

    async def update_status(
        self, res: Resource, body: Mapping[str, Any], *, namespace: str | None = None
    ) -> dict[str, Any]:
        """PUT the status subresource."""
        return await self.update(res, body, namespace=namespace, subresource="status")

    async def patch(
        self,
        res: Resource,
        name: str,
        patch: Any,
        *,
        namespace: str | None = None,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """PATCH with a merge, JSON, strategic-merge or server-side apply patch."""
        try:
            content_type = PATCH_CONTENT_TYPES[patch_type]
        except KeyError:
            raise ValueError(f"unknown patch type {patch_type!r}") from None
        params = _params(fieldManager=field_manager, force=force, dryRun="All" if dry_run else None)
        result: dict[str, Any] = await self.request(
            "PATCH",
            res.path(namespace, name, subresource),
            params=params,
            body=patch,
            content_type=content_type,
        )
        return result

    async def apply(
        self,
        res: Resource,
        body: Mapping[str, Any],
        *,
        field_manager: str,
        namespace: str | None = None,
        force: bool = False,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Server-side apply of a (partial) object named by its metadata."""
        return await self.patch(
            res,
            _name_of(body),
            body,
            namespace=_namespace_of(body, namespace),
            patch_type="apply",
            subresource=subresource,
            field_manager=field_manager,
            force=force,
        )

    async def delete(
        self,
        res: Resource,
        name: str,
        *,
        namespace: str | None = None,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
        preconditions: Mapping[str, str] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """DELETE one object; returns the object (still terminating) or a success Status."""
        options = _delete_options(grace_period_seconds, propagation_policy, preconditions)
        params = _params(dryRun="All" if dry_run else None)
        result: dict[str, Any] = await self.request(
            "DELETE", res.path(namespace, name), params=params, body=options
        )
        return result

    async def delete_collection(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: Selector = None,
        field_selector: str | None = None,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
    ) -> dict[str, Any]:
        """DELETE every matching object of a collection; returns the List (or Status)."""
        options = _delete_options(grace_period_seconds, propagation_policy, None)
        params = _params(
            labelSelector=selector_text(label_selector), fieldSelector=field_selector or None
        )
        result: dict[str, Any] = await self.request(
            "DELETE", res.path(namespace), params=params, body=options
        )
        return result

    def watch(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: Selector = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        timeout_seconds: int | None = None,
        allow_watch_bookmarks: bool = True,
        send_initial_events: bool | None = None,
    ) -> Watch:
        """A watch stream of (type, object) events; see Watch."""
        params = _params(
            watch="1",
            labelSelector=selector_text(label_selector),
            fieldSelector=field_selector or None,
            resourceVersion=resource_version,
            timeoutSeconds=timeout_seconds,
            allowWatchBookmarks=allow_watch_bookmarks,
            sendInitialEvents=send_initial_events,
        )
        if send_initial_events:
            params["resourceVersionMatch"] = "NotOlderThan"
        read = timeout_seconds + _WATCH_READ_SLACK if timeout_seconds else None
        timeout = httpx.Timeout(self.config.timeout, read=read)
        return Watch(self, res.path(namespace), params, timeout)


def _delete_options(
    grace_period_seconds: int | None,
    propagation_policy: str | None,
    preconditions: Mapping[str, str] | None,
) -> dict[str, Any] | None:
    options: dict[str, Any] = {}
    if grace_period_seconds is not None:
        options["gracePeriodSeconds"] = grace_period_seconds
    if propagation_policy is not None:
        options["propagationPolicy"] = propagation_policy
    if preconditions:
        options["preconditions"] = dict(preconditions)
    if not options:
        return None
    return {"kind": "DeleteOptions", "apiVersion": "v1", **options}


class Watch:
    """A watch stream, parsed frame by frame into (type, object).

    Use it as `async with api.watch(...) as events: async for etype, obj in events:` so the
    connection is closed when the block is left; iterating it bare also works and closes it
    when the stream ends. Types are ADDED, MODIFIED, DELETED, BOOKMARK and ERROR (whose
    object is a Status; code 410 means the resourceVersion expired: relist).
    """

    def __init__(
        self, client: ApiClient, path: str, params: dict[str, str], timeout: httpx.Timeout
    ) -> None:
        self._client = client
        self._path = path
        self._params = params
        self._timeout = timeout
        self._response: httpx.Response | None = None
        self._chunks: AsyncIterator[bytes] | None = None
        self._buffer = bytearray()  # an incomplete last frame
        self._frames: deque[bytes] = deque()  # complete frames not yet handed out
        self._closed = False

    async def __aenter__(self) -> Self:
        await self._open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _open(self) -> None:
        if self._response is not None or self._closed:
            return
        response = await self._client._send(
            "GET", self._path, params=self._params, timeout=self._timeout, stream=True
        )
        if response.status_code >= 400:
            try:
                content = await response.aread()
            finally:
                await response.aclose()
            raise_for_status(response, content)
        self._response = response
        self._chunks = response.aiter_bytes()

    async def aclose(self) -> None:
        self._closed = True
        chunks, self._chunks = self._chunks, None
        response, self._response = self._response, None
        # Usually called because the watcher was cancelled; shield the close so the
        # connection is really released rather than left to the garbage collector.
        with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            if chunks is not None and hasattr(chunks, "aclose"):
                await chunks.aclose()
            if response is not None:
                await response.aclose()

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> tuple[str, dict[str, Any]]:
        if self._response is None:
            if self._closed:
                raise StopAsyncIteration
            await self._open()
        while not self._frames:
            assert self._chunks is not None
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                # The server ended the watch (timeoutSeconds); a last unterminated frame counts.
                tail = bytes(self._buffer).strip()
                self._buffer.clear()
                await self.aclose()
                if tail:
                    return self._parse(tail)
                raise
            except httpx.TransportError as e:
                await self.aclose()
                raise ApiConnectionError(f"watch {self._path}: {e!r}") from e
            self._feed(chunk)
        return self._parse(self._frames.popleft())

    def _feed(self, chunk: bytes) -> None:
        # Split each chunk once: one server write can carry hundreds of frames, and cutting
        # them off a shared buffer one by one would copy the rest of it every time.
        end = chunk.rfind(b"\n")
        if end < 0:
            self._buffer += chunk
            return
        complete = bytes(self._buffer) + chunk[:end] if self._buffer else chunk[:end]
        self._buffer = bytearray(chunk[end + 1 :])
        self._frames.extend(line for line in complete.split(b"\n") if line.strip())

    def _parse(self, line: bytes) -> tuple[str, dict[str, Any]]:
        try:
            event = _json.loads(line)
            return str(event["type"]), event["object"]
        except (ValueError, KeyError, TypeError) as e:
            raise ApiConnectionError(f"watch {self._path}: bad frame {line[:200]!r}") from e
