"""A rate-limited, deduplicating work queue of keys, like client-go's workqueue."""

from __future__ import annotations

import heapq
import itertools
import logging
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import trio
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from k8slite.client.ratelimit import RateLimiter, default_controller_rate_limiter
from k8slite.metrics import PerRegistry

log = logging.getLogger(__name__)

T = TypeVar("T", bound=Hashable)

# Upstream's buckets: 10ns .. 10s by decades.
_BUCKETS = tuple(10.0**e for e in range(-8, 2))


class ShutDown(Exception):
    """get() on a queue that is shut down and has nothing left to hand out."""


class _Families:
    """The workqueue metric families of one registry (registered once, labelled per queue)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("name",)
        self.depth = Gauge(
            "workqueue_depth", "Current depth of workqueue", labels, registry=registry
        )
        self.adds = Counter(
            "workqueue_adds_total",
            "Total number of adds handled by workqueue",
            labels,
            registry=registry,
        )
        self.latency = Histogram(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested.",
            labels,
            registry=registry,
            buckets=_BUCKETS,
        )
        self.work_duration = Histogram(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes.",
            labels,
            registry=registry,
            buckets=_BUCKETS,
        )
        self.retries = Counter(
            "workqueue_retries_total",
            "Total number of retries handled by workqueue",
            labels,
            registry=registry,
        )
        self.unfinished = Gauge(
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has been done that is in progress and hasn't been "
            "observed by work_duration.",
            labels,
            registry=registry,
        )
        self.longest = Gauge(
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running.",
            labels,
            registry=registry,
        )


_families_for = PerRegistry(_Families)


class WorkQueue(Generic[T]):
    """Keys to reconcile, handed to workers so that no key is worked on twice at once.

    add() of a key already waiting is a no-op; add() of a key being processed marks it
    dirty, and done() puts it back. Delayed adds (add_after, add_rate_limited) need no
    background task: get() promotes due items itself and sleeps only until the next one.
    Metrics go to `metrics_registry` (the process-wide default unless given; None: nowhere).
    """

    def __init__(
        self,
        name: str = "",
        *,
        rate_limiter: RateLimiter | None = None,
        metrics_registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.name = name
        self.rate_limiter: RateLimiter = rate_limiter or default_controller_rate_limiter()
        self._queue: deque[T] = deque()
        self._dirty: set[T] = set()
        self._processing: dict[T, float] = {}  # item -> perf_counter when handed out
        self._enqueued_at: dict[T, float] = {}
        self._waiting: dict[T, tuple[float, int]] = {}  # item -> (ready time, heap entry id)
        self._heap: list[tuple[float, int, T]] = []
        self._ids = itertools.count()
        self._lot = trio.lowlevel.ParkingLot()
        self._drained = trio.Event()
        self._shutting_down = False
        families = _families_for(metrics_registry or CollectorRegistry())
        self._depth = families.depth.labels(name)
        self._adds = families.adds.labels(name)
        self._latency = families.latency.labels(name)
        self._work_duration = families.work_duration.labels(name)
        self._retries = families.retries.labels(name)
        # Scraped on demand; a weak reference so the registry does not keep the queue alive.
        ref = weakref.ref(self)
        families.unfinished.labels(name).set_function(
            lambda: q._unfinished_seconds() if (q := ref()) is not None else 0.0
        )
        families.longest.labels(name).set_function(
            lambda: q._longest_seconds() if (q := ref()) is not None else 0.0
        )

    def __len__(self) -> int:
        """Items ready to be handed out (not counting delayed ones)."""
        return len(self._queue)

    # ----------------------------------------------------------------- adding

    def add(self, item: T) -> None:
        """Queue `item` unless it is already waiting; if it is being processed, queue it
        again once done() is called for it."""
        if self._shutting_down or item in self._dirty:
            return
        self._adds.inc()
        self._dirty.add(item)
        if item not in self._processing:
            self._push(item)

    def _push(self, item: T) -> None:
        self._queue.append(item)
        self._enqueued_at[item] = time.perf_counter()
        self._depth.inc()
        self._lot.unpark()

    def add_after(self, item: T, delay: float) -> None:
        """Queue `item` after `delay` seconds; an earlier pending time for it wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        ready = trio.current_time() + delay
        pending = self._waiting.get(item)
        if pending is not None and pending[0] <= ready:
            return
        entry = next(self._ids)
        self._waiting[item] = (ready, entry)
        heapq.heappush(self._heap, (ready, entry, item))
        if self._heap[0][1] == entry:
            # A new earliest deadline: sleeping getters must recompute how long to sleep.
            self._lot.unpark_all()

    def add_rate_limited(self, item: T) -> None:
        """Queue `item` after the rate limiter's delay (its backoff grows with each call)."""
        self._retries.inc()
        self.add_after(item, self.rate_limiter.when(item))

    def forget(self, item: T) -> None:
        """Stop tracking `item`'s failures (call after it was processed successfully)."""
        self.rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self.rate_limiter.num_requeues(item)

    def _promote_due(self) -> None:
        now = trio.current_time()
        while self._heap and self._heap[0][0] <= now:
            _, entry, item = heapq.heappop(self._heap)
            pending = self._waiting.get(item)
            if pending is None or pending[1] != entry:
                continue  # superseded by an earlier add_after of the same item
            del self._waiting[item]
            self.add(item)

    # ---------------------------------------------------------------- working

    async def get(self) -> T:
        """The next item; call done(item) when finished with it. Raises ShutDown once the
        queue is shut down and empty."""
        await trio.lowlevel.checkpoint()
        while True:
            self._promote_due()
            if self._queue:
                break
            if self._shutting_down:
                raise ShutDown(self.name)
            deadline = self._heap[0][0] if self._heap else float("inf")
            with trio.move_on_at(deadline):
                await self._lot.park()
        item = self._queue.popleft()
        now = time.perf_counter()
        self._depth.dec()
        self._latency.observe(now - self._enqueued_at.pop(item, now))
        self._processing[item] = now
        self._dirty.discard(item)
        return item

    def done(self, item: T) -> None:
        """Mark `item` finished; if it was added meanwhile, it is queued again now."""
        started = self._processing.pop(item, None)
        if started is not None:
            self._work_duration.observe(time.perf_counter() - started)
        if item in self._dirty:
            self._push(item)
        elif self._shutting_down and not self._processing:
            self._drained.set()

    def shutdown(self) -> None:
        """Stop accepting items; getters drain what is queued, then get ShutDown."""
        self._shutting_down = True
        self._waiting.clear()
        self._heap.clear()
        if not self._processing:
            self._drained.set()
        self._lot.unpark_all()

    async def shutdown_with_drain(self) -> None:
        """shutdown(), then wait until every item handed out has been marked done."""
        self.shutdown()
        await self._drained.wait()

    def _unfinished_seconds(self) -> float:
        now = time.perf_counter()
        return sum(now - t for t in self._processing.values())

    def _longest_seconds(self) -> float:
        now = time.perf_counter()
        return max((now - t for t in self._processing.values()), default=0.0)


Reconcile = Callable[[T], Awaitable[float | None]]


async def run_workers(
    queue: WorkQueue[T],
    reconcile: Reconcile[T],
    workers: int = 1,
    *,
    max_retries: int | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run `workers` tasks feeding keys to `reconcile` until the queue shuts down.

    The controller pattern: success forgets the key's failures; a returned number requeues
    the key after that many seconds; an exception requeues it with backoff (dropping it
    after `max_retries` failures, if given).
    """

    async def worker() -> None:
        while True:
            try:
                item = await queue.get()
            except ShutDown:
                return
            try:
                requeue_after = await reconcile(item)
            except Exception:
                if max_retries is not None and queue.num_requeues(item) >= max_retries:
                    log.exception("%s: dropping %r after %d retries", queue.name, item, max_retries)
                    queue.forget(item)
                else:
                    log.exception("%s: reconciling %r failed; requeued", queue.name, item)
                    queue.add_rate_limited(item)
            else:
                queue.forget(item)
                if requeue_after is not None:
                    queue.add_after(item, requeue_after)
            finally:
                queue.done(item)

    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker)
        task_status.started()
