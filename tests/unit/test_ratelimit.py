"""Token bucket and workqueue rate limiter behaviour."""

from __future__ import annotations

import pytest
import trio

from k8slite.client.ratelimit import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    TokenBucket,
    default_controller_rate_limiter,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_starts_full_and_empties() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=5, burst=3, clock=clock)
    assert [bucket.try_accept() for _ in range(4)] == [True, True, True, False]


def test_bucket_refills_at_qps_up_to_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=10, burst=2, clock=clock)
    assert bucket.try_accept() and bucket.try_accept()
    assert not bucket.try_accept()
    clock.now += 0.1
    assert bucket.try_accept()
    assert not bucket.try_accept()
    clock.now += 60  # a long idle time refills only to burst
    assert bucket.tokens == pytest.approx(2)


def test_reservations_queue_at_qps() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=4, burst=1, clock=clock)
    delays = [bucket.reserve() for _ in range(4)]
    assert delays == pytest.approx([0.0, 0.25, 0.5, 0.75])
    # A failed try_accept does not take a token from the queued reservations.
    assert not bucket.try_accept()
    clock.now += 1.0
    assert bucket.tokens == pytest.approx(1.0)


def test_clock_going_backwards_is_ignored() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=1, burst=1, clock=clock)
    assert bucket.try_accept()
    clock.now -= 5
    assert not bucket.try_accept()
    clock.now += 6
    assert bucket.try_accept()


def test_invalid_bucket() -> None:
    with pytest.raises(ValueError):
        TokenBucket(qps=0, burst=1)
    with pytest.raises(ValueError):
        TokenBucket(qps=1, burst=0)


async def test_wait_spaces_callers(autojump_clock: trio.abc.Clock) -> None:
    bucket = TokenBucket(qps=10, burst=2)
    times: list[float] = []
    start = trio.current_time()
    for _ in range(5):
        await bucket.wait()
        times.append(trio.current_time() - start)
    assert times == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3])


def test_item_exponential_backoff() -> None:
    limiter = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    delays = [limiter.when("a") for _ in range(5)]
    assert delays == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08])
    assert limiter.num_requeues("a") == 5
    assert limiter.when("b") == pytest.approx(0.005)  # per item
    for _ in range(100):
        last = limiter.when("a")
    assert last == 1000.0
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == pytest.approx(0.005)


def test_max_of_and_bucket_limiter() -> None:
    clock = FakeClock()
    limiter = MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(0.001, 10.0),
        BucketRateLimiter(TokenBucket(1.0, 2, clock)),
    )
    # Burst of two with no wait beyond the per-item backoff, then the bucket dominates.
    assert limiter.when("x") == pytest.approx(0.001)
    assert limiter.when("y") == pytest.approx(0.001)
    assert limiter.when("z") == pytest.approx(1.0)
    assert limiter.num_requeues("x") == 1
    limiter.forget("x")
    assert limiter.num_requeues("x") == 0
    with pytest.raises(ValueError):
        MaxOfRateLimiter()


def test_default_controller_rate_limiter() -> None:
    clock = FakeClock()
    limiter = default_controller_rate_limiter(clock)
    # 100 distinct items fit the overall burst: each waits only its own 5 ms.
    assert {round(limiter.when(i), 6) for i in range(100)} == {0.005}
    # The 101st waits for the 10 qps bucket.
    assert limiter.when(100) == pytest.approx(0.1)
