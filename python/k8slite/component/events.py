"""Events for `kubectl describe`: one recorder for every component, with client-go's correlator.

A component calls recorder.event(...) and carries on: the event goes on a bounded queue (a
full queue drops it, counted in k8slite_events_dropped_total) and one background task per
process correlates and writes them, as client-go's broadcaster and EventCorrelator do:

- an identical event (same source, object, type, reason and message) bumps the count and
  lastTimestamp of the Event written before (a PATCH) instead of making a new one;
- similar events (the same but for the message) are aggregated: from the tenth distinct
  message within ten minutes on, they go to one Event whose message is
  "(combined from similar events): <latest message>", counted up like a repeat;
- each source and object has a token bucket (burst 25, one more every five minutes, as
  EventSourceObjectSpamFilter); an event finding it empty is dropped and counted.

Events are core/v1 Events (count, firstTimestamp, lastTimestamp), as every component writes.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import trio
from prometheus_client import CollectorRegistry, Counter

from k8slite.api.meta import now as now_text
from k8slite.client import ApiClient, ApiConnectionError, ApiError, NotFound
from k8slite.client.resource import EVENTS
from k8slite.component.objects import Obj
from k8slite.metrics import PerRegistry

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"
# Events waiting to be written; past this, new ones are dropped rather than block a caller.
QUEUE_CAPACITY = 1000
# Entries each of the correlator's caches keeps (client-go's maxLruCacheEntries).
CACHE_SIZE = 4096
# Similar events aggregate from the tenth distinct message within ten minutes.
AGGREGATE_MAX_EVENTS = 10
AGGREGATE_INTERVAL = 600.0
COMBINED = "(combined from similar events): "
# The spam filter's token bucket per source and object: 25 at once, then one per 5 minutes.
SPAM_BURST = 25
SPAM_REFILL_SECONDS = 300.0
QUEUE_FULL = "queue_full"
SPAM_FILTERED = "spam_filtered"


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def involved_object(obj: Obj, field_path: str = "") -> Obj:
    """An ObjectReference to obj, as events carry it (empty fields left out)."""
    m = obj.get("metadata") or {}
    ref: Obj = {
        "kind": obj.get("kind", ""),
        "namespace": m.get("namespace", ""),
        "name": m.get("name", ""),
        "uid": m.get("uid", ""),
        "apiVersion": obj.get("apiVersion", ""),
        "resourceVersion": m.get("resourceVersion", ""),
        "fieldPath": field_path,
    }
    return {k: v for k, v in ref.items() if v}


class _Lru(Generic[K, V]):
    """A dict that forgets its least recently used entry past CACHE_SIZE."""

    def __init__(self) -> None:
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > CACHE_SIZE:
            self._items.popitem(last=False)

    def pop(self, key: K) -> None:
        self._items.pop(key, None)


@dataclass
class _Similar:
    """The distinct messages seen for one aggregation key, and when the last one came."""

    messages: set[str] = field(default_factory=set)
    last: float = 0.0


@dataclass
class _Written:
    namespace: str
    name: str
    count: int


@dataclass
class _Bucket:
    tokens: float
    updated: float


# k8slite_events_dropped_total, once per registry (several broadcasters may share one).
_dropped_counter = PerRegistry(
    lambda registry: Counter(
        "k8slite_events_dropped_total",
        "Events not written: the queue was full, or the spam filter held them back.",
        ("reason",),
        registry=registry,
    )
)


class EventRecorder:
    """What a component holds: emits events attributed to one source."""

    def __init__(self, broadcaster: EventBroadcaster, source: Obj, instance: str) -> None:
        self._broadcaster = broadcaster
        self.source = source
        self.instance = instance

    def event(
        self,
        obj: Obj,
        event_type: str,
        reason: str,
        message: str,
        *,
        field_path: str = "",
        action: str = "",
    ) -> None:
        """Queue an event about obj (field_path: the part of it, e.g. a container); never waits."""
        ref = involved_object(obj, field_path)
        stamp = now_text()
        component = self.source["component"]
        event: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{ref.get('name', 'unknown')}.{time.time_ns():x}",
                # Cluster-scoped objects' events go to default, as upstream's.
                "namespace": ref.get("namespace") or "default",
            },
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "source": self.source,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "type": event_type,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": self.instance,
        }
        if action:
            event["action"] = action
        self._broadcaster.submit(event)


class EventBroadcaster:
    """Takes the events of every recorder in the process, correlates them and writes them."""

    def __init__(
        self,
        client: ApiClient,
        *,
        host: str | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.client = client
        self.host = host or socket.gethostname()
        self.registry = registry if registry is not None else CollectorRegistry()
        self._dropped = _dropped_counter(self.registry)
        self._send, self._receive = trio.open_memory_channel[Obj](QUEUE_CAPACITY)
        self._similar: _Lru[tuple[str, ...], _Similar] = _Lru()
        self._written: _Lru[tuple[str, ...], _Written] = _Lru()
        self._buckets: _Lru[tuple[str, ...], _Bucket] = _Lru()

    def recorder(self, component: str, *, host: str = "", instance: str = "") -> EventRecorder:
        """A recorder for `component`; host (a kubelet's node) goes in the event's source,
        instance (default: host, else the broadcaster's) in reportingInstance."""
        source = {"component": component, "host": host} if host else {"component": component}
        return EventRecorder(self, source, instance or host or self.host)

    def submit(self, event: Obj) -> None:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self._dropped.labels(QUEUE_FULL).inc()
            log.debug(
                "event queue full; dropped %s for %s: %s",
                event["reason"],
                event["involvedObject"].get("name"),
                event["message"],
            )

    async def run(self) -> None:
        """Correlate and write queued events until cancelled."""
        async for event in self._receive:
            correlated = self._correlate(event)
            if correlated is None:
                continue
            try:
                await self._write(*correlated)
            except (ApiError, ApiConnectionError) as e:
                log.warning(
                    "could not write event %s for %s: %s",
                    event["reason"],
                    event["involvedObject"].get("name"),
                    e,
                )

    def _correlate(self, event: Obj) -> tuple[tuple[str, ...], Obj] | None:
        """(the key it counts up under, the event to write), or None if spam-filtered."""
        now = time.monotonic()
        ref, source = event["involvedObject"], event["source"]
        # client-go's keys: the spam filter's per source and object, similar events' also
        # by type and reason, an identical event's also by the object's part and message.
        object_key = (
            source["component"],
            source.get("host", ""),
            ref.get("kind", ""),
            ref.get("namespace", ""),
            ref.get("name", ""),
            ref.get("uid", ""),
            ref.get("apiVersion", ""),
        )
        if not self._allow(object_key, now):
            self._dropped.labels(SPAM_FILTERED).inc()
            return None
        similar_key = (*object_key, event["type"], event["reason"], event["reportingInstance"])
        similar = self._similar.get(similar_key)
        if similar is None or now - similar.last > AGGREGATE_INTERVAL:
            similar = _Similar()
        similar.messages.add(event["message"])
        similar.last = now
        self._similar.put(similar_key, similar)
        if len(similar.messages) < AGGREGATE_MAX_EVENTS:
            return (*similar_key, ref.get("fieldPath", ""), event["message"]), event
        # Keep the set from growing: each further new message aggregates again.
        similar.messages.pop()
        return similar_key, {**event, "message": COMBINED + event["message"]}

    def _allow(self, key: tuple[str, ...], now: float) -> bool:
        """Take a token from key's bucket, if it has one."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(SPAM_BURST), now)
        refill = (now - bucket.updated) / SPAM_REFILL_SECONDS
        bucket.tokens = min(float(SPAM_BURST), bucket.tokens + refill)
        bucket.updated = now
        self._buckets.put(key, bucket)
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    async def _write(self, key: tuple[str, ...], event: Obj) -> None:
        written = self._written.get(key)
        if written is not None:
            patch = {
                "count": written.count + 1,
                "lastTimestamp": event["lastTimestamp"],
                "message": event["message"],
            }
            try:
                await self.client.patch(EVENTS, written.name, patch, namespace=written.namespace)
                written.count += 1
                return
            except NotFound:
                self._written.pop(key)  # expired (TTL) or deleted: start a new one
        namespace = event["metadata"]["namespace"]
        created = await self.client.create(EVENTS, event, namespace=namespace)
        m = created.get("metadata") or {}
        self._written.put(key, _Written(m.get("namespace", namespace), m.get("name", ""), 1))
