"""Rate limiters: a token bucket (client QPS/burst) and the workqueue's per-item backoff."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Protocol

import trio

Clock = Callable[[], float]


class TokenBucket:
    """A token bucket like golang.org/x/time/rate, which client-go's flowcontrol wraps.

    It starts full (`burst` tokens) and refills at `qps` tokens a second. A reservation may
    drive the count negative: callers then queue up in reservation order, each waiting until
    its own token has been refilled, so a burst of waiters is spread out at exactly `qps`.
    """

    def __init__(self, qps: float, burst: int, clock: Clock = trio.current_time) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError(f"token bucket needs qps > 0 and burst >= 1, got {qps}, {burst}")
        self.qps = float(qps)
        self.burst = int(burst)
        self._clock = clock
        self._tokens = float(burst)
        # The clock is read lazily, so a bucket can be made before trio.run() starts.
        self._last: float | None = None

    def _refill(self) -> float:
        now = self._clock()
        if self._last is not None and now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
        if self._last is None or now > self._last:
            self._last = now
        return now

    @property
    def tokens(self) -> float:
        """Tokens available now (negative when reservations are queued)."""
        self._refill()
        return self._tokens

    def try_accept(self) -> bool:
        """Take a token if one is available now, without waiting."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def reserve(self) -> float:
        """Take a token, returning how many seconds to wait before using it."""
        self._refill()
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    async def wait(self) -> None:
        """Block until a token is ours (always checkpoints, even when none is needed)."""
        delay = self.reserve()
        if delay > 0:
            await trio.sleep(delay)
        else:
            await trio.lowlevel.checkpoint()


class RateLimiter(Protocol):
    """How long an item should wait before it is retried (client-go's workqueue interface)."""

    def when(self, item: Hashable) -> float: ...

    def forget(self, item: Hashable) -> None: ...

    def num_requeues(self, item: Hashable) -> int: ...


class ItemExponentialFailureRateLimiter:
    """base * 2**failures per item, capped at max_delay; forget() resets an item."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        exp = self._failures.get(item, 0)
        self._failures[item] = exp + 1
        # Past 2**64 the product only overflows towards the cap anyway.
        if exp > 64:
            return self.max_delay
        return min(self.base_delay * float(1 << exp), self.max_delay)

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter:
    """An overall token bucket shared by all items: bounds the total retry rate."""

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket

    def when(self, item: Hashable) -> float:
        return self.bucket.reserve()

    def forget(self, item: Hashable) -> None:
        pass

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The longest delay any of its limiters asks for."""

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self.limiters = limiters

    def when(self, item: Hashable) -> float:
        # Every limiter must see the item, so no short-circuiting max over a generator.
        delays = [limiter.when(item) for limiter in self.limiters]
        return max(delays)

    def forget(self, item: Hashable) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)


def default_controller_rate_limiter(clock: Clock = trio.current_time) -> MaxOfRateLimiter:
    """client-go's DefaultControllerRateLimiter: 5ms..1000s per item, 10 qps / 100 overall."""
    return MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(0.005, 1000.0),
        BucketRateLimiter(TokenBucket(10.0, 100, clock)),
    )
