"""The reflector: list a resource, then watch it from there, keeping a sink in step."""

from __future__ import annotations

import logging
import random
from typing import Protocol

import trio

from k8slite.client.backoff import Backoff
from k8slite.client.errors import (
    ApiConnectionError,
    ApiError,
    Gone,
    ServerError,
    TooManyRequests,
    error_for,
)
from k8slite.client.resource import Resource
from k8slite.client.rest import ApiClient, Selector
from k8slite.component.objects import Obj, resource_version_of

log = logging.getLogger(__name__)

# client-go picks each watch's server-side timeout at random in [5, 10) minutes so that the
# watches of many clients do not all expire and re-establish at the same moment.
MIN_WATCH_TIMEOUT = 300


class ReflectorSink(Protocol):
    """What a reflector feeds: a full replacement after each list, then single events."""

    def replace(self, items: list[Obj], resource_version: str) -> None: ...

    def apply(self, event_type: str, obj: Obj) -> None: ...


class _Relist(Exception):
    """The watch cannot continue from the last resourceVersion: list again."""


def _rv(obj: Obj) -> str:
    return resource_version_of(obj)


class Reflector:
    """client-go's Reflector, as one Trio task.

    It lists (paginated, consistent), hands the result to the sink, and watches from the
    list's resourceVersion. A watch that ends or drops is resumed from the last
    resourceVersion seen (events and BOOKMARKs advance it). A 410 Gone, at watch start or as
    an ERROR frame, means that version is no longer served: it relists at once. Other
    failures back off exponentially with jitter.
    """

    def __init__(
        self,
        client: ApiClient,
        res: Resource,
        sink: ReflectorSink,
        *,
        namespace: str | None = None,
        label_selector: Selector = None,
        field_selector: str | None = None,
        page_size: int = 500,
        backoff: Backoff | None = None,
    ) -> None:
        self.client = client
        self.res = res
        self.sink = sink
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.page_size = page_size
        self.backoff = backoff or Backoff(initial=0.8, cap=30.0)
        self.last_sync_resource_version = ""

    def __repr__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"<Reflector {self.res}{where}>"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """List and watch until cancelled."""
        task_status.started()
        while True:
            try:
                await self._list()
            except (ApiError, ApiConnectionError) as e:
                log.warning("%r: list failed: %s", self, e)
                await self.backoff.sleep()
                continue
            try:
                await self._watch_until_relist()
            except _Relist as e:
                log.info("%r: relisting: %s", self, e)

    async def _list(self) -> None:
        result = await self.client.list_all(
            self.res,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            page_size=self.page_size,
        )
        rv = resource_version_of(result)
        self.sink.replace(list(result.get("items") or []), rv)
        self.last_sync_resource_version = rv

    async def _watch_until_relist(self) -> None:
        while True:
            started = trio.current_time()
            try:
                count = await self._watch_once()
            except Gone as e:
                raise _Relist(f"watch from {self.last_sync_resource_version}: {e}") from e
            except (ApiConnectionError, TooManyRequests, ServerError) as e:
                # The server is away or busy, but what we hold is still good: resume later.
                log.warning("%r: watch failed: %s", self, e)
                await self.backoff.sleep()
                continue
            except ApiError as e:
                await self.backoff.sleep()
                raise _Relist(f"watch failed: {e}") from e
            # A watch that closes at once with nothing in it would spin; upstream calls it
            # "very short" and backs off too.
            if count == 0 and trio.current_time() - started < 1.0:
                await self.backoff.sleep()
            else:
                self.backoff.reset()

    async def _watch_once(self) -> int:
        """One watch request; returns how many events it carried."""
        timeout = random.randint(MIN_WATCH_TIMEOUT, 2 * MIN_WATCH_TIMEOUT - 1)
        count = 0
        async with self.client.watch(
            self.res,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            resource_version=self.last_sync_resource_version or None,
            timeout_seconds=timeout,
            allow_watch_bookmarks=True,
        ) as events:
            async for event_type, obj in events:
                count += 1
                if event_type == "ERROR":
                    code = int(obj.get("code") or 0)
                    if code == 410:
                        raise _Relist(f"watch expired: {obj.get('message', '')}")
                    raise error_for(code, obj)
                if event_type in ("ADDED", "MODIFIED", "DELETED"):
                    self.sink.apply(event_type, obj)
                elif event_type != "BOOKMARK":
                    log.warning("%r: ignoring watch event of type %r", self, event_type)
                    continue
                rv = _rv(obj)
                if rv:
                    self.last_sync_resource_version = rv
        return count
