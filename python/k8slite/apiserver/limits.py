"""Request limits: the seat total, request deadlines, long-running requests, body nesting depth."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import yaml

from k8slite._native import DecodeError, loads
from k8slite.api import errors
from k8slite.apiserver import yamlbody
from k8slite.apiserver.http import Request
from k8slite.apiserver.requestinfo import PROXY, RequestInfo, is_proxy_path
from k8slite.component.flags import Duration

# Upstream's --max-requests-inflight and --max-mutating-requests-inflight defaults; with
# priority and fairness their sum is the seats shared out among the priority levels.
MAX_REQUESTS_INFLIGHT = 400
MAX_MUTATING_REQUESTS_INFLIGHT = 200
# Upstream's --request-timeout: the most a non-long-running request may take.
REQUEST_TIMEOUT = 60.0
# Deepest object nesting a written body may have. Upstream's decoder allows more, but
# here objects are walked by recursive Python (copying, patching, validation), which must
# never meet a RecursionError; real objects nest a few dozen levels at most.
MAX_DEPTH = 100
# Upstream's long-running subresources: they stream and are neither timed out nor counted.
_LONG_RUNNING_SUBRESOURCES = {"attach", "exec", "log", "portforward", "proxy"}
_READONLY_METHODS = {"GET", "HEAD", "OPTIONS"}
_WRITE_VERBS = {"create", "update", "patch"}


def is_mutating(method: str) -> bool:
    return method not in _READONLY_METHODS


def is_long_running(scope: Any) -> bool:
    """Watches and streaming subresources (upstream's LongRunningRequestCheck).

    A proxy is long-running whatever its method (upstream decides by subresource alone): it
    may stream a body either way, which must not be read whole first nor cut off at 60 s.
    """
    if is_proxy_path(scope["path"]):
        return True
    if scope["method"] not in ("GET", "HEAD", "POST"):
        return False
    parts = scope["path"].rstrip("/").split("/")
    # /api/v1/watch/... and /apis/<group>/<version>/watch/...: the legacy watch paths.
    legacy = 3 if parts[1:2] == ["api"] else 4 if parts[1:2] == ["apis"] else 0
    if legacy and len(parts) > legacy and parts[legacy] == "watch":
        return True
    if parts[-1] in _LONG_RUNNING_SUBRESOURCES:
        return True
    query = scope.get("query_string", b"")
    if b"watch=" in query:
        values = parse_qs(query.decode("latin-1")).get("watch") or [""]
        return values[-1].lower() in ("1", "true")
    return False


def request_deadline(scope: Any, default: float = REQUEST_TIMEOUT) -> float:
    """Seconds a request may run: ?timeout= when shorter than the server's limit (upstream)."""
    query = scope.get("query_string", b"")
    if b"timeout=" not in query:
        return default
    values = parse_qs(query.decode("latin-1")).get("timeout")
    if not values or not values[-1]:
        return default
    try:
        wanted = Duration.parse(values[-1]).seconds
    except ValueError as e:
        raise errors.bad_request(f"invalid timeout specified in the request URL: {e}") from None
    return min(wanted, default) if wanted > 0 else default


def _too_deep() -> errors.ApiError:
    return errors.bad_request(f"the object nests deeper than {MAX_DEPTH} levels")


def _too_many_aliases() -> errors.ApiError:
    return errors.bad_request("yaml: document contains excessive aliasing")


def walk_limits(obj: Any, max_depth: int, max_nodes: int) -> tuple[bool, bool]:
    """(too deep, too many nodes) of nested lists and dicts, walked without recursion.

    Stops as soon as a limit is passed, so a YAML document whose aliases expand to a huge
    tree costs no more than `max_nodes` steps.
    """
    nodes = 0
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Iterator[Any] = iter(value.values())
        elif isinstance(value, list):
            children = iter(value)
        else:
            continue
        nodes += 1
        if depth > max_depth:
            return True, False
        if nodes > max_nodes:
            return False, True
        stack.extend((child, depth + 1) for child in children)
    return False, False


async def check_body_depth(req: Request, info: RequestInfo) -> None:
    """A resource handler filter: refuse write bodies nested deeper than MAX_DEPTH.

    A JSON body with fewer brackets than the limit cannot exceed it, which settles almost
    every request with two byte counts; others are decoded once more and walked. A YAML body
    is also refused when its aliases make it expand to more containers than it has bytes
    (the "billion laughs"), before anything else decodes it.
    """
    if info.verb not in _WRITE_VERBS or info.subresource == PROXY:
        return  # a proxied body is the backend's business, streamed on unread
    body = await req.body()
    if "yaml" in req.content_type:
        try:
            obj = yamlbody.load(body)
        except RecursionError:
            raise _too_deep() from None
        except yaml.YAMLError:
            return  # the handler reports the syntax error
    else:
        if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
            return
        try:
            obj = loads(body)
        except (DecodeError, ValueError):
            return  # likewise
    too_deep, too_many = walk_limits(obj, MAX_DEPTH, max(len(body), 1))
    if too_deep:
        raise _too_deep()
    if too_many:
        raise _too_many_aliases()
