"""Classify each request by the stored FlowSchemas and admit it to its priority level's seats.

A level's seats are its share of the server's total (--max-requests-inflight plus
--max-mutating-requests-inflight, as upstream): ceil(total * nominalConcurrencyShares /
sum of every limited level's shares). Seats are not lent between levels (upstream's
lendablePercent and borrowing are not modelled). Classification is cached per user and
request attributes, so a request costs a dict lookup, not a scan of the FlowSchemas.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from k8slite.api import errors
from k8slite.apiserver import http
from k8slite.apiserver.authn import UserInfo
from k8slite.apiserver.flowcontrol import defaults
from k8slite.apiserver.flowcontrol.matching import Attributes, flow_distinguisher, matches
from k8slite.apiserver.flowcontrol.queueing import Level, Rejected
from k8slite.apiserver.metrics import ApiMetrics
from k8slite.apiserver.requestinfo import SCOPE_KEY, is_resource_path, parse

Obj = dict[str, Any]
# Bounds the classification cache; a full cache is dropped and refilled.
_CACHE_SIZE = 8192


@dataclass(slots=True)
class Flow:
    """A request's classification: FlowSchema, level, queues, answer headers, metrics."""

    schema: str
    level: Level
    hand: tuple[int, ...]
    headers: tuple[tuple[bytes, bytes], ...]
    executing: Any
    inqueue: Any
    dispatched: Any
    waited: Any
    waited_rejected: Any


def _seats(levels: list[Obj], total: int) -> dict[str, int | None]:
    """Each level's nominal concurrency limit; None for exempt levels (or no limit at all)."""
    shares = {
        o["metadata"]["name"]: int(o["spec"]["limited"].get("nominalConcurrencyShares") or 0)
        for o in levels
        if o["spec"].get("type") == "Limited"
    }
    out: dict[str, int | None] = {o["metadata"]["name"]: None for o in levels}
    whole = sum(shares.values())
    if total and whole:
        out.update({n: max(1, math.ceil(total * s / whole)) for n, s in shares.items()})
    return out


def _level(obj: Obj, seats: int | None) -> Level:
    name, uid = obj["metadata"]["name"], obj["metadata"].get("uid", "")
    limited = obj["spec"].get("limited") or {}
    queuing = (limited.get("limitResponse") or {}).get("queuing")
    if seats is None or not queuing:
        return Level(name, uid, seats)
    return Level(
        name,
        uid,
        seats,
        int(queuing.get("queues") or 1),
        int(queuing.get("handSize") or 1),
        int(queuing.get("queueLengthLimit") or 1),
    )


def _key(scope: http.Scope) -> tuple[Any, ...]:
    """What classification depends on, as a cache key; a resource request's RequestInfo is
    left in the scope for the handler. Object names are not part of it (no rule names one)."""
    method, path = scope["method"], scope["path"]
    if not is_resource_path(path):
        return (method.lower(), path)
    try:
        # Long-running requests (watches) are not classified, so watch=false here.
        info = parse(method, path, False)
    except errors.ApiError:
        # Unknown resources still need a level: the handler answers 404 or 405 there.
        return (method.lower(), "", "", None, None)
    scope[SCOPE_KEY] = info
    return (info.verb, info.group, info.resource.plural, info.subresource, info.namespace)


def _attributes(key: tuple[Any, ...]) -> Attributes:
    if len(key) == 2:
        return Attributes(key[0], "", None, None, key[1])
    verb, group, plural, subresource, namespace = key
    resource = f"{plural}/{subresource}" if subresource else plural
    return Attributes(verb, group, resource, namespace, "")


class FlowControl:
    """The FlowSchemas in matching order and a Level per PriorityLevelConfiguration."""

    def __init__(
        self,
        schemas: list[Obj],
        levels: list[Obj],
        total_seats: int,
        queue_wait: float,
        metrics: ApiMetrics,
    ) -> None:
        seats = _seats(levels, total_seats)
        self.levels = {
            o["metadata"]["name"]: _level(o, seats[o["metadata"]["name"]]) for o in levels
        }
        # Lowest matchingPrecedence first; ties by name. A schema naming no level is skipped.
        self.schemas = sorted(
            (s for s in schemas if s["spec"]["priorityLevelConfiguration"]["name"] in self.levels),
            key=lambda s: (s["spec"].get("matchingPrecedence", 1000), s["metadata"]["name"]),
        )
        self.queue_wait = queue_wait
        self.metrics = metrics
        self._cache: dict[tuple[Any, ...], Flow] = {}
        self._flows: dict[tuple[str, str], Flow] = {}

    def classify(self, user: UserInfo, scope: http.Scope) -> Flow:
        request = _key(scope)
        key = (user.name, user.groups, request)
        flow = self._cache.get(key)
        if flow is None:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            flow = self._cache[key] = self._match(user, _attributes(request))
        return flow

    def _match(self, user: UserInfo, a: Attributes) -> Flow:
        schema = next((s for s in self.schemas if matches(s, user, a)), None)
        if schema is None:  # only if catch-all was edited away: upstream's fallback too
            schema = next(
                s for s in defaults.flow_schemas() if s["metadata"]["name"] == "catch-all"
            )
        name = schema["metadata"]["name"]
        level = self.levels.get(schema["spec"]["priorityLevelConfiguration"]["name"])
        if level is None:
            level = self.levels.setdefault(defaults.CATCH_ALL, Level(defaults.CATCH_ALL, "", 1))
        flow_key = f"{name}\x00{flow_distinguisher(schema, user, a)}"
        shared = self._flows.get((level.name, name))
        if shared is None:
            m = self.metrics
            labels = (level.name, name)
            shared = Flow(
                name,
                level,
                (),
                (
                    (b"x-kubernetes-pf-flowschema-uid", schema["metadata"].get("uid", "").encode()),
                    (b"x-kubernetes-pf-prioritylevel-uid", level.uid.encode()),
                ),
                m.fc_executing.labels(*labels),
                m.fc_inqueue.labels(*labels),
                m.fc_dispatched.labels(*labels),
                m.fc_wait.labels(*labels, "true"),
                m.fc_wait.labels(*labels, "false"),
            )
            self._flows[(level.name, name)] = shared
        return Flow(
            name,
            level,
            level.hand(flow_key),
            shared.headers,
            shared.executing,
            shared.inqueue,
            shared.dispatched,
            shared.waited,
            shared.waited_rejected,
        )

    async def admit(self, flow: Flow) -> None:
        """Take a seat for the request, waiting in its queue; 429 when refused."""
        level = flow.level
        if level.try_seat():
            flow.waited.observe(0.0)
        else:
            start = time.perf_counter()
            flow.inqueue.inc()
            try:
                await level.wait_seat(flow.hand, self.queue_wait)
            except Rejected as e:
                flow.waited_rejected.observe(time.perf_counter() - start)
                self.metrics.fc_rejected.labels(level.name, flow.schema, e.reason).inc()
                raise errors.too_many_requests() from None
            finally:
                flow.inqueue.dec()
            flow.waited.observe(time.perf_counter() - start)
        flow.dispatched.inc()
        flow.executing.inc()

    def release(self, flow: Flow) -> None:
        flow.executing.dec()
        flow.level.release()
