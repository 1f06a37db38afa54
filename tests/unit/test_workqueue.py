"""The rate-limited work queue: dedupe, exclusivity, delays, backoff, shutdown, metrics."""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from k8slite.client.ratelimit import ItemExponentialFailureRateLimiter
from k8slite.client.workqueue import ShutDown, WorkQueue, run_workers


def make(name: str = "test", **kw: object) -> tuple[WorkQueue[str], CollectorRegistry]:
    registry = CollectorRegistry()
    return WorkQueue(name, metrics_registry=registry, **kw), registry  # type: ignore[arg-type]


async def test_add_deduplicates() -> None:
    q, _ = make()
    for key in ["a", "b", "a", "a", "c", "b"]:
        q.add(key)
    assert len(q) == 3
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]


async def test_key_added_while_processing_waits_for_done() -> None:
    q, _ = make()
    q.add("a")
    item = await q.get()
    q.add("a")  # dirty, but not handed out while being processed
    q.add("a")
    assert len(q) == 0
    with trio.move_on_after(0.05) as scope:
        await q.get()
    assert scope.cancelled_caught
    q.done(item)
    assert len(q) == 1
    assert await q.get() == "a"
    q.done("a")
    assert len(q) == 0


async def test_never_two_workers_on_one_key() -> None:
    q, _ = make()
    active: set[str] = set()
    overlaps: list[str] = []
    processed: list[str] = []

    async def reconcile(key: str) -> None:
        if key in active:
            overlaps.append(key)
        active.add(key)
        await trio.sleep(0.001)
        # Keys keep being re-added while they are processed, as a busy informer does.
        if len(processed) < 200:
            q.add(key)
        active.discard(key)
        processed.append(key)

    async with trio.open_nursery() as nursery:
        await nursery.start(run_workers, q, reconcile, 8)
        for key in "abc":
            q.add(key)
        while len(processed) < 200:
            await trio.sleep(0.01)
        await q.shutdown_with_drain()
    assert not overlaps
    assert set(processed) == {"a", "b", "c"}


async def test_add_after_orders_by_ready_time(autojump_clock: trio.abc.Clock) -> None:
    q, _ = make()
    start = trio.current_time()
    q.add_after("late", 3)
    q.add_after("early", 1)
    q.add_after("middle", 2)
    q.add_after("now", 0)
    got = []
    for _ in range(4):
        got.append((await q.get(), round(trio.current_time() - start, 3)))
    assert got == [("now", 0), ("early", 1), ("middle", 2), ("late", 3)]


async def test_add_after_earliest_wins(autojump_clock: trio.abc.Clock) -> None:
    q, _ = make()
    start = trio.current_time()
    q.add_after("a", 10)
    q.add_after("a", 2)
    q.add_after("a", 5)  # later than pending: ignored
    assert await q.get() == "a"
    assert trio.current_time() - start == pytest.approx(2)
    q.done("a")
    with trio.move_on_after(20):
        await q.get()
        pytest.fail("the superseded delayed add came back")


async def test_getter_wakes_for_new_earlier_delay(autojump_clock: trio.abc.Clock) -> None:
    q, _ = make()
    q.add_after("slow", 100)
    got: list[tuple[str, float]] = []
    start = trio.current_time()

    async def getter() -> None:
        item = await q.get()
        got.append((item, trio.current_time() - start))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(getter)
        await trio.sleep(1)
        q.add_after("fast", 1)
    assert got == [("fast", pytest.approx(2))]


async def test_rate_limited_backoff_grows(autojump_clock: trio.abc.Clock) -> None:
    q, registry = make(rate_limiter=ItemExponentialFailureRateLimiter(0.5, 4.0))
    waits = []
    for _ in range(5):
        before = trio.current_time()
        q.add_rate_limited("k")
        item = await q.get()
        waits.append(trio.current_time() - before)
        q.done(item)
    assert waits == pytest.approx([0.5, 1.0, 2.0, 4.0, 4.0])
    assert q.num_requeues("k") == 5
    q.forget("k")
    assert q.num_requeues("k") == 0
    assert registry.get_sample_value("workqueue_retries_total", {"name": "test"}) == 5


async def test_shutdown_wakes_getters_and_drains() -> None:
    q, _ = make()
    outcomes: list[str] = []

    async def getter() -> None:
        try:
            outcomes.append(await q.get())
        except ShutDown:
            outcomes.append("shutdown")

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(getter)
        await trio.testing.wait_all_tasks_blocked()
        q.add("x")
        await trio.testing.wait_all_tasks_blocked()
        q.shutdown()
    assert sorted(outcomes) == ["shutdown", "shutdown", "x"]
    q.add("y")  # ignored after shutdown
    q.add_after("z", 0.01)
    assert len(q) == 0
    with pytest.raises(ShutDown):
        await q.get()


async def test_items_queued_before_shutdown_are_still_handed_out() -> None:
    q, _ = make()
    q.add("a")
    q.add_after("delayed", 60)
    q.shutdown()
    assert await q.get() == "a"
    with pytest.raises(ShutDown):
        await q.get()


async def test_shutdown_with_drain_waits_for_done() -> None:
    q, _ = make()
    q.add("a")
    item = await q.get()
    drained = False

    async def drain() -> None:
        nonlocal drained
        await q.shutdown_with_drain()
        drained = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        await trio.testing.wait_all_tasks_blocked()
        assert not drained
        q.done(item)
    assert drained


async def test_metrics() -> None:
    q, registry = make("metrics-q")
    labels = {"name": "metrics-q"}
    q.add("a")
    q.add("b")
    q.add("a")
    assert registry.get_sample_value("workqueue_depth", labels) == 2
    assert registry.get_sample_value("workqueue_adds_total", labels) == 2
    item = await q.get()
    assert registry.get_sample_value("workqueue_depth", labels) == 1
    assert registry.get_sample_value("workqueue_queue_duration_seconds_count", labels) == 1
    longest = registry.get_sample_value("workqueue_longest_running_processor_seconds", labels)
    assert longest is not None and longest >= 0
    q.done(item)
    assert registry.get_sample_value("workqueue_work_duration_seconds_count", labels) == 1
    assert registry.get_sample_value("workqueue_unfinished_work_seconds", labels) == 0
    # A second queue in the same registry gets its own label, not a clash.
    other = WorkQueue[str]("other", metrics_registry=registry)
    other.add("z")
    assert registry.get_sample_value("workqueue_depth", {"name": "other"}) == 1


async def test_run_workers_retries_failures_and_requeues(
    autojump_clock: trio.abc.Clock,
) -> None:
    q, _ = make(rate_limiter=ItemExponentialFailureRateLimiter(1.0, 60.0))
    calls: list[tuple[str, float]] = []
    start = trio.current_time()

    async def reconcile(key: str) -> float | None:
        calls.append((key, trio.current_time() - start))
        if key == "flaky" and len([c for c in calls if c[0] == "flaky"]) < 3:
            raise RuntimeError("not yet")
        if key == "periodic" and len([c for c in calls if c[0] == "periodic"]) < 2:
            return 5.0
        return None

    async with trio.open_nursery() as nursery:
        await nursery.start(run_workers, q, reconcile, 2)
        q.add("flaky")
        q.add("periodic")
        await trio.sleep(30)
        q.shutdown()
    flaky = [t for k, t in calls if k == "flaky"]
    periodic = [t for k, t in calls if k == "periodic"]
    assert flaky == pytest.approx([0, 1, 3])  # backoff 1s then 2s
    assert periodic == pytest.approx([0, 5])
    assert q.num_requeues("flaky") == 0  # forgotten after success


async def test_run_workers_drops_after_max_retries(autojump_clock: trio.abc.Clock) -> None:
    q, _ = make(rate_limiter=ItemExponentialFailureRateLimiter(1.0, 60.0))
    attempts = 0

    async def reconcile(key: str) -> None:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("always")

    async with trio.open_nursery() as nursery:
        await nursery.start(partial(run_workers, q, reconcile, 1, max_retries=3))
        q.add("bad")
        await trio.sleep(600)
        q.shutdown()
    assert attempts == 4
