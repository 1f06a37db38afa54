"""Events about pods (Pulling, Created, Started, Killing, BackOff, Unhealthy, ...), sent aside.

Recording never blocks a pod worker: events go through a bounded channel to one sender
task, and are dropped (with a log line) when the API server cannot keep up. A repeat of
the same event for the same object bumps its count, as upstream's event correlator does.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

import trio

from k8slite.api import meta
from k8slite.client import ApiClient, ApiConnectionError, ApiError, NotFound
from k8slite.client.resource import EVENTS

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NORMAL, WARNING = "Normal", "Warning"
_QUEUE = 1000
_REMEMBERED = 4096


class EventRecorder:
    """Records events of one component on one host (a kubelet: component kubelet, the node)."""

    def __init__(self, client: ApiClient, component: str, host: str) -> None:
        self.client = client
        self.component = component
        self.host = host
        self._send, self._receive = trio.open_memory_channel[Obj](_QUEUE)
        # (uid, fieldPath, reason, message) -> (namespace, event name, count)
        self._seen: OrderedDict[tuple[str, str, str, str], tuple[str, str, int]] = OrderedDict()

    def pod_event(
        self,
        pod: Obj,
        type_: str,
        reason: str,
        message: str,
        container: str | None = None,
        init: bool = False,
    ) -> None:
        m = pod.get("metadata") or {}
        involved = {
            "kind": "Pod",
            "namespace": m.get("namespace"),
            "name": m.get("name"),
            "uid": m.get("uid"),
            "apiVersion": "v1",
            "resourceVersion": m.get("resourceVersion"),
        }
        if container:
            group = "initContainers" if init else "containers"
            involved["fieldPath"] = f"spec.{group}{{{container}}}"
        try:
            self._send.send_nowait(
                {"type": type_, "reason": reason, "message": message, "involvedObject": involved}
            )
        except trio.WouldBlock:
            log.info(
                "event queue full; dropped %s %s for %s/%s",
                type_,
                reason,
                m.get("namespace"),
                m.get("name"),
            )

    async def run(self) -> None:
        async with self._receive:
            async for item in self._receive:
                try:
                    await self._write(item)
                except (ApiError, ApiConnectionError) as e:
                    log.debug("event %s not recorded: %s", item["reason"], e)

    async def _write(self, item: Obj) -> None:
        involved = item["involvedObject"]
        key = (
            involved.get("uid") or "",
            involved.get("fieldPath") or "",
            item["reason"],
            item["message"],
        )
        now = meta.now()
        seen = self._seen.get(key)
        if seen is not None:
            namespace, name, count = seen
            try:
                await self.client.patch(
                    EVENTS, name, {"count": count + 1, "lastTimestamp": now}, namespace=namespace
                )
                self._seen[key] = (namespace, name, count + 1)
                self._seen.move_to_end(key)
                return
            except NotFound:
                del self._seen[key]
        namespace = involved.get("namespace") or "default"
        name = f"{involved.get('name')}.{time.time_ns():x}"
        await self.client.create(
            EVENTS,
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": involved,
                "reason": item["reason"],
                "message": item["message"],
                "source": {"component": self.component, "host": self.host},
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
                "type": item["type"],
                "eventTime": None,
                "reportingComponent": self.component,
                "reportingInstance": self.host,
            },
            namespace=namespace,
        )
        self._seen[key] = (namespace, name, 1)
        if len(self._seen) > _REMEMBERED:
            self._seen.popitem(last=False)
