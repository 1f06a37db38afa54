"""Event recording: core/v1 Events for `kubectl describe`, written by one background task.

Controllers call recorder.event(...) without waiting: the event is queued and a single task
writes it. A repeat of an event already written (same object, type, reason, message and
source) bumps that Event's count and lastTimestamp instead of making a new one, which is
the part of upstream's event correlator people notice.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import trio

from k8slite.api.meta import now as now_text
from k8slite.client import ApiClient, ApiConnectionError, ApiError, NotFound
from k8slite.client.resource import EVENTS

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NORMAL = "Normal"
WARNING = "Warning"
# Events waiting to be written; past this, new ones are dropped rather than block a controller.
QUEUE_CAPACITY = 1000
# Written events remembered for aggregation (upstream's LRU holds 4096).
SEEN_CAPACITY = 4096

_Key = tuple[str, str, str, str, str, str, str, str]


@dataclass
class _Pending:
    key: _Key
    event: Obj


@dataclass
class _Seen:
    namespace: str
    name: str
    count: int


def involved_object(obj: Obj) -> Obj:
    """An ObjectReference to obj, as events carry it."""
    m = obj.get("metadata") or {}
    ref: Obj = {
        "kind": obj.get("kind", ""),
        "namespace": m.get("namespace", ""),
        "name": m.get("name", ""),
        "uid": m.get("uid", ""),
        "apiVersion": obj.get("apiVersion", ""),
        "resourceVersion": m.get("resourceVersion", ""),
    }
    return {k: v for k, v in ref.items() if v}


class EventRecorder:
    """What a controller holds: emits events attributed to its component."""

    def __init__(self, broadcaster: EventBroadcaster, component: str) -> None:
        self._broadcaster = broadcaster
        self.component = component

    def event(self, obj: Obj, event_type: str, reason: str, message: str) -> None:
        self._broadcaster.submit(self.component, obj, event_type, reason, message)


class EventBroadcaster:
    """Queues events from every recorder of the process and writes them to the API server."""

    def __init__(self, client: ApiClient, host: str | None = None) -> None:
        self.client = client
        self.host = host or socket.gethostname()
        self._send, self._receive = trio.open_memory_channel[_Pending](QUEUE_CAPACITY)
        self._seen: OrderedDict[_Key, _Seen] = OrderedDict()

    def recorder(self, component: str) -> EventRecorder:
        return EventRecorder(self, component)

    def submit(self, component: str, obj: Obj, event_type: str, reason: str, message: str) -> None:
        ref = involved_object(obj)
        key: _Key = (
            component,
            ref.get("kind", ""),
            ref.get("namespace", ""),
            ref.get("name", ""),
            ref.get("uid", ""),
            event_type,
            reason,
            message,
        )
        stamp = now_text()
        namespace = ref.get("namespace") or "default"
        event: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{ref.get('name', 'unknown')}.{time.time_ns():x}",
                "namespace": namespace,
            },
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "source": {"component": component},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "type": event_type,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": self.host,
        }
        try:
            self._send.send_nowait(_Pending(key, event))
        except trio.WouldBlock:
            log.warning("event queue full; dropping %s %s: %s", reason, ref.get("name"), message)

    async def run(self) -> None:
        """Write queued events until cancelled."""
        async for pending in self._receive:
            try:
                await self._write(pending)
            except (ApiError, ApiConnectionError) as e:
                log.warning(
                    "could not write event %s for %s: %s",
                    pending.event["reason"],
                    pending.event["involvedObject"].get("name"),
                    e,
                )

    async def _write(self, pending: _Pending) -> None:
        seen = self._seen.get(pending.key)
        if seen is not None:
            self._seen.move_to_end(pending.key)
            patch = {"count": seen.count + 1, "lastTimestamp": pending.event["lastTimestamp"]}
            try:
                await self.client.patch(EVENTS, seen.name, patch, namespace=seen.namespace)
                seen.count += 1
                return
            except NotFound:
                pass  # expired or deleted: start a new one
        created = await self.client.create(EVENTS, pending.event)
        m = created.get("metadata") or {}
        self._seen[pending.key] = _Seen(m.get("namespace", ""), m.get("name", ""), 1)
        if len(self._seen) > SEEN_CAPACITY:
            self._seen.popitem(last=False)
