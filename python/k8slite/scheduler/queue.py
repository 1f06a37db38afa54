"""The scheduling queue: activeQ by priority, backoffQ, the unschedulable set and gated pods."""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import trio

from k8slite.component.objects import Obj, meta, name_of, namespace_of

log = logging.getLogger(__name__)


INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
# Upstream's flush periods: backoffQ every second; pods left unschedulable for 5 minutes go
# back (checked every 30 s) in case an event that would have helped them was missed.
BACKOFF_FLUSH_PERIOD = 1.0
LEFTOVER_FLUSH_PERIOD = 30.0
MAX_UNSCHEDULABLE_DURATION = 300.0

ACTIVE, BACKOFF, UNSCHEDULABLE, GATED = "active", "backoff", "unschedulable", "gated"


@dataclass(eq=False)
class QueuedPod:
    """A pending pod and its history in the queue."""

    key: str
    pod: Obj
    # When it (re-)entered the queue: orders pods of equal priority (upstream's PrioritySort).
    timestamp: float
    # When it first entered the queue: the start of its scheduling SLI.
    initial: float
    attempts: int = 0
    backoff_until: float = 0.0
    unschedulable_since: float = 0.0
    # Filter plugins that rejected it last time: which cluster events may help it.
    rejected_by: frozenset[str] = frozenset()
    where: str = ACTIVE
    seq: int = 0
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def priority(self) -> int:
        value = (self.pod.get("spec") or {}).get("priority")
        return value if isinstance(value, int) else 0


def pod_key(pod: Obj) -> str:
    return f"{namespace_of(pod)}/{name_of(pod)}"


def is_gated(pod: Obj) -> bool:
    return bool((pod.get("spec") or {}).get("schedulingGates"))


def backoff_duration(attempts: int) -> float:
    """1 s after the first failed attempt, doubling, at most 10 s."""
    return min(MAX_BACKOFF, INITIAL_BACKOFF * 2 ** max(0, attempts - 1))


class SchedulingQueue:
    """Pending pods of one scheduler, each in exactly one place (or being scheduled).

    activeQ pops by priority (higher first), then by when the pod entered the queue. A pod
    that failed waits in the unschedulable set until a cluster event might help it, and then
    in backoffQ until its per-pod exponential backoff ends. Pods with scheduling gates wait,
    gated, until the gates are gone.
    """

    def __init__(self) -> None:
        self._pods: dict[str, QueuedPod] = {}
        self._active: list[tuple[int, float, int, str]] = []
        self._backoff: list[tuple[float, int, str]] = []
        self._counts = {ACTIVE: 0, BACKOFF: 0, UNSCHEDULABLE: 0, GATED: 0}
        # Kept apart so that cluster events scan only the pods they may help.
        self._unschedulable: dict[str, QueuedPod] = {}
        self._in_flight: dict[str, QueuedPod] = {}
        self._seq = itertools.count()
        self._lot = trio.lowlevel.ParkingLot()

    # ------------------------------------------------------------------- state

    def __len__(self) -> int:
        return len(self._pods)

    def __contains__(self, key: str) -> bool:
        return key in self._pods or key in self._in_flight

    def pending(self) -> dict[str, int]:
        """Pods per sub-queue (for scheduler_pending_pods)."""
        return dict(self._counts)

    def get(self, key: str) -> QueuedPod | None:
        return self._pods.get(key) or self._in_flight.get(key)

    # -------------------------------------------------------------- placement

    def _place(self, qp: QueuedPod, where: str) -> None:
        now = trio.current_time()
        old = self._pods.get(qp.key)
        if old is not None:
            self._counts[old.where] -= 1
            self._unschedulable.pop(qp.key, None)
        qp.where = where
        qp.seq = next(self._seq)
        self._pods[qp.key] = qp
        self._counts[where] += 1
        if where == ACTIVE:
            heapq.heappush(self._active, (-qp.priority, qp.timestamp, qp.seq, qp.key))
            self._lot.unpark_all()
        elif where == BACKOFF:
            heapq.heappush(self._backoff, (qp.backoff_until, qp.seq, qp.key))
        elif where == UNSCHEDULABLE:
            qp.unschedulable_since = now
            self._unschedulable[qp.key] = qp

    def _remove(self, key: str) -> QueuedPod | None:
        qp = self._pods.pop(key, None)
        if qp is not None:
            self._counts[qp.where] -= 1
            self._unschedulable.pop(key, None)
            qp.seq = -1  # its heap entries are stale from now on
        return qp

    def _active_or_backoff(self, qp: QueuedPod) -> None:
        self._place(qp, BACKOFF if qp.backoff_until > trio.current_time() else ACTIVE)

    # ----------------------------------------------------------- informer side

    def add(self, pod: Obj) -> None:
        """A new pending pod of ours."""
        key = pod_key(pod)
        existing = self.get(key)
        if existing is not None:
            self.update(existing.pod, pod)
            return
        now = trio.current_time()
        qp = QueuedPod(key, pod, timestamp=now, initial=now)
        self._place(qp, GATED if is_gated(pod) else ACTIVE)

    def update(self, old: Obj, new: Obj) -> None:
        """A pending pod changed; an unschedulable or gated one may be worth another try."""
        key = pod_key(new)
        qp = self._pods.get(key)
        if qp is None:
            flying = self._in_flight.get(key)
            if flying is not None:
                flying.pod = new
                flying.cache.clear()
                return
            self.add(new)
            return
        changed = _scheduling_relevant(old) != _scheduling_relevant(new)
        qp.pod = new
        if changed:
            qp.cache.clear()
        if qp.where == GATED:
            if not is_gated(new):
                self._place(qp, ACTIVE)
        elif qp.where == UNSCHEDULABLE:
            if changed:
                self._active_or_backoff(qp)
        elif qp.where == ACTIVE and changed:
            self._place(qp, ACTIVE)  # its priority may have changed

    def delete(self, key: str) -> None:
        """The pod is gone, or no longer ours to schedule (bound by someone)."""
        self._remove(key)
        self._in_flight.pop(key, None)

    # ---------------------------------------------------------- scheduler side

    def _pop_active(self) -> QueuedPod | None:
        while self._active:
            _, _, seq, key = heapq.heappop(self._active)
            qp = self._pods.get(key)
            if qp is not None and qp.seq == seq and qp.where == ACTIVE:
                self._remove(key)
                qp.attempts += 1
                self._in_flight[key] = qp
                return qp
        return None

    async def pop(self) -> QueuedPod:
        """The next pod to schedule, waiting for one if activeQ is empty."""
        while True:
            qp = self._pop_active()
            if qp is not None:
                return qp
            await self._lot.park()

    def done(self, key: str) -> None:
        """The pod left the scheduling cycle for good (assumed, or gone)."""
        self._in_flight.pop(key, None)

    def requeue_unschedulable(self, qp: QueuedPod, rejected_by: Collection[str]) -> None:
        """After a failed attempt: wait for a cluster event (then for the backoff)."""
        if self._in_flight.pop(qp.key, None) is None:
            return  # deleted while being scheduled
        now = trio.current_time()
        qp.timestamp = now
        qp.backoff_until = now + backoff_duration(qp.attempts)
        qp.rejected_by = frozenset(rejected_by)
        self._place(qp, UNSCHEDULABLE)

    def requeue_backoff(self, qp: QueuedPod) -> None:
        """After an error (a failed binding): try again once the backoff is over."""
        self._in_flight.pop(qp.key, None)
        if qp.key in self._pods:
            return
        now = trio.current_time()
        qp.timestamp = now
        qp.backoff_until = now + backoff_duration(qp.attempts)
        self._place(qp, BACKOFF)

    def move_all(self, event: str, plugins: Iterable[str] | None = None) -> int:
        """A cluster event: unschedulable pods it may help go to backoffQ or activeQ.

        `plugins` names the filters whose verdict the event can change (None: any).
        """
        if not self._unschedulable:
            return 0
        wanted = None if plugins is None else frozenset(plugins)
        moved = 0
        for qp in list(self._unschedulable.values()):
            if wanted is None or not qp.rejected_by or qp.rejected_by & wanted:
                self._active_or_backoff(qp)
                moved += 1
        if moved:
            log.debug("%s moved %d unschedulable pods", event, moved)
        return moved

    def flush_backoff(self) -> None:
        """Pods whose backoff is over move to activeQ."""
        now = trio.current_time()
        while self._backoff and self._backoff[0][0] <= now:
            _, seq, key = heapq.heappop(self._backoff)
            qp = self._pods.get(key)
            if qp is not None and qp.seq == seq and qp.where == BACKOFF:
                self._place(qp, ACTIVE)

    def flush_unschedulable_leftover(self) -> None:
        """Pods unschedulable for longer than 5 minutes get another chance regardless."""
        now = trio.current_time()
        for qp in list(self._unschedulable.values()):
            if now - qp.unschedulable_since > MAX_UNSCHEDULABLE_DURATION:
                self._active_or_backoff(qp)

    async def run(self) -> None:
        """The periodic flushes, until cancelled."""
        next_leftover = trio.current_time() + LEFTOVER_FLUSH_PERIOD
        while True:
            await trio.sleep(BACKOFF_FLUSH_PERIOD)
            self.flush_backoff()
            if trio.current_time() >= next_leftover:
                self.flush_unschedulable_leftover()
                next_leftover = trio.current_time() + LEFTOVER_FLUSH_PERIOD


def _scheduling_relevant(pod: Obj) -> tuple[Any, Any]:
    """What of a pod can change where it fits: its spec and its labels (not its status)."""
    return pod.get("spec"), meta(pod).get("labels")
