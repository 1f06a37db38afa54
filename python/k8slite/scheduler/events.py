"""Scheduled and FailedScheduling events, written in the background without slowing binds.

Like client-go's event broadcaster, events go through a bounded queue written by one task,
and are dropped (and counted) when the queue is full: under a burst the bindings matter, the
events are a courtesy. A repeat of the same event for the same pod bumps its count instead
of creating a new Event.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from k8slite.api.meta import now as now_text
from k8slite.client import ApiConnectionError, ApiError, NotFound
from k8slite.scheduler.http import WritePool, events_path

log = logging.getLogger(__name__)

Obj = dict[str, Any]
QUEUE_CAPACITY = 1000
# Events remembered for counting repeats (client-go's correlator keeps 4096).
REMEMBERED = 4096


@dataclass
class _Event:
    key: tuple[str, ...]
    body: Obj


class EventRecorder:
    """Events about pods, attributed to one scheduler profile."""

    def __init__(
        self,
        writes: WritePool,
        component: str,
        *,
        host: str | None = None,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self.writes = writes
        self.component = component
        self.instance = f"{component}-{host or socket.gethostname()}"
        self.on_drop = on_drop
        self._send, self._receive = trio.open_memory_channel[_Event](QUEUE_CAPACITY)
        self._written: OrderedDict[tuple[str, ...], tuple[str, str, int]] = OrderedDict()
        self._dropped_since_log = 0

    def record(self, pod: Obj, event_type: str, reason: str, action: str, message: str) -> None:
        """Queue an event about `pod`; never waits."""
        meta = pod.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        stamp = now_text()
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name', 'pod')}.{time.time_ns():x}",
                "namespace": namespace,
            },
            "involvedObject": {
                "kind": "Pod",
                "apiVersion": "v1",
                "namespace": namespace,
                "name": meta.get("name", ""),
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message,
            "type": event_type,
            "action": action,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        key = (namespace, str(meta.get("uid", "")), event_type, reason, message)
        try:
            self._send.send_nowait(_Event(key, body))
        except trio.WouldBlock:
            self._dropped_since_log += 1
            if self.on_drop is not None:
                self.on_drop()

    async def run(self) -> None:
        """Write queued events until cancelled."""
        async for event in self._receive:
            if self._dropped_since_log:
                log.warning("event queue full: dropped %d events", self._dropped_since_log)
                self._dropped_since_log = 0
            try:
                await self._write(event)
            except (ApiError, ApiConnectionError) as e:
                log.info(
                    "event %s for %s not written: %s",
                    event.body["reason"],
                    event.body["involvedObject"]["name"],
                    e,
                )

    async def _write(self, event: _Event) -> None:
        seen = self._written.get(event.key)
        if seen is not None:
            namespace, name, count = seen
            patch = {"count": count + 1, "lastTimestamp": event.body["lastTimestamp"]}
            try:
                await self.writes.request(
                    "PATCH", events_path(namespace, name), patch, "application/merge-patch+json"
                )
            except NotFound:
                del self._written[event.key]
            else:
                self._written[event.key] = (namespace, name, count + 1)
                self._written.move_to_end(event.key)
                return
        namespace = event.body["metadata"]["namespace"]
        created = await self.writes.request("POST", events_path(namespace), event.body)
        meta = created.get("metadata") or {}
        self._written[event.key] = (meta.get("namespace", ""), meta.get("name", ""), 1)
        if len(self._written) > REMEMBERED:
            self._written.popitem(last=False)
