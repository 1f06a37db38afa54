"""A priority level's seats and queues: shuffle-sharded fair queuing of flows, as upstream.

Each flow is dealt a hand of queues (a hash of FlowSchema and distinguisher) and a request
joins the shortest queue of its hand. A freed seat goes to the head of the next non-empty
queue in turn, so a flow with many requests waiting cannot starve one with few: upstream
orders queues by virtual finish time, which is this round-robin when requests cost one
seat and are not told apart by their running time.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field

import trio

# Why a request was refused, as upstream's rejected_requests_total labels it.
QUEUE_FULL = "queue-full"
CONCURRENCY_LIMIT = "concurrency-limit"
TIME_OUT = "time-out"


class Rejected(Exception):
    """No seat for the request: answer 429."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False, slots=True)
class _Waiter:
    event: trio.Event = field(default_factory=trio.Event)
    granted: bool = False


def deal(key: str, queues: int, hand_size: int) -> tuple[int, ...]:
    """The flow's hand: `hand_size` distinct queue indices drawn from a hash of `key`."""
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:16], "big")
    picks: list[int] = []
    for i in range(min(hand_size, queues)):
        h, j = divmod(h, queues - i)
        for taken in sorted(picks):  # the j-th index not dealt yet
            if taken <= j:
                j += 1
        picks.append(j)
    return tuple(picks)


class Level:
    """One priority level: `seats` requests execute at once; the rest wait in its queues.

    `seats` None: exempt (never waits). No queues: requests beyond the seats are rejected.
    Trio runs one task at a time, so the counts need no lock.
    """

    def __init__(
        self,
        name: str,
        uid: str,
        seats: int | None,
        queues: int = 0,
        hand_size: int = 0,
        queue_length_limit: int = 0,
    ) -> None:
        self.name = name
        self.uid = uid
        self.seats = seats
        self.hand_size = hand_size
        self.queue_length_limit = queue_length_limit
        self.queues: list[deque[_Waiter]] = [deque() for _ in range(queues)]
        self.executing = 0
        self.waiting = 0
        self._next = 0  # the queue whose turn is next

    def hand(self, flow: str) -> tuple[int, ...]:
        return deal(flow, len(self.queues), self.hand_size) if self.queues else ()

    def try_seat(self) -> bool:
        """Take a seat at once if one is free and nobody waits for it."""
        if self.seats is None or (self.executing < self.seats and not self.waiting):
            self.executing += 1
            return True
        return False

    async def wait_seat(self, hand: tuple[int, ...], limit: float) -> None:
        """Queue for a seat for at most `limit` seconds; Rejected when none comes."""
        if not hand:
            raise Rejected(CONCURRENCY_LIMIT)
        queue = min((self.queues[i] for i in hand), key=len)
        if len(queue) >= self.queue_length_limit:
            raise Rejected(QUEUE_FULL)
        waiter = _Waiter()
        queue.append(waiter)
        self.waiting += 1
        try:
            with trio.move_on_after(limit):
                await waiter.event.wait()
        except BaseException:
            # Cancelled (the client left, the deadline passed): give back what we hold.
            if waiter.granted:
                self.release()
            else:
                queue.remove(waiter)
                self.waiting -= 1
            raise
        if not waiter.granted:
            queue.remove(waiter)
            self.waiting -= 1
            raise Rejected(TIME_OUT)

    def release(self) -> None:
        """Free a seat and hand it to the next waiting request, queue after queue."""
        self.executing -= 1
        if not self.waiting or self.seats is None:
            return
        n = len(self.queues)
        while self.waiting and self.executing < self.seats:
            for k in range(n):
                i = (self._next + k) % n
                if self.queues[i]:
                    break
            self._next = (i + 1) % n
            waiter = self.queues[i].popleft()
            self.waiting -= 1
            self.executing += 1
            waiter.granted = True
            waiter.event.set()
