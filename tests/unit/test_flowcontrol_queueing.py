"""Fair queuing within a priority level: hands of queues, turns, rejections."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from k8slite.apiserver.flowcontrol.queueing import QUEUE_FULL, TIME_OUT, Level, Rejected, deal


def test_a_hand_is_distinct_queues_and_stable() -> None:
    for key in ("alice", "bob", "system:node:node1", ""):
        hand = deal(key, 128, 6)
        assert len(set(hand)) == 6
        assert all(0 <= i < 128 for i in hand)
        assert deal(key, 128, 6) == hand
    assert sorted(deal("x", 4, 4)) == [0, 1, 2, 3]


def test_a_flow_with_few_requests_is_not_starved_by_a_flood() -> None:
    """One seat; a flooder queues 20 requests, then a second user one: it runs second."""
    level = Level("workload", "uid", seats=1, queues=8, hand_size=1, queue_length_limit=50)
    flooder, other = deal("flooder", 8, 1), deal("other", 8, 1)
    assert flooder != other
    order: list[str] = []

    async def request(who: str, hand: tuple[int, ...]) -> None:
        if not level.try_seat():
            await level.wait_seat(hand, 60)
        order.append(who)
        await trio.sleep(0.01)
        level.release()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(request, "flooder", flooder)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(request, "other", other)

    trio.run(main)
    assert len(order) == 21
    assert order.index("other") <= 2
    assert level.executing == 0 and level.waiting == 0


def test_full_queues_and_long_waits_are_rejected() -> None:
    level = Level("low", "uid", seats=1, queues=1, hand_size=1, queue_length_limit=1)
    reasons: list[str] = []

    async def waiter() -> None:
        try:
            await level.wait_seat((0,), 0.05)
        except Rejected as e:
            reasons.append(e.reason)

    async def main() -> None:
        assert level.try_seat()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(Rejected) as full:
                await level.wait_seat((0,), 1)
            assert full.value.reason == QUEUE_FULL

    trio.run(main)
    assert reasons == [TIME_OUT]
    assert level.waiting == 0 and level.executing == 1


def test_exempt_and_reject_levels() -> None:
    exempt = Level("exempt", "uid", seats=None)
    assert all(exempt.try_seat() for _ in range(1000))
    reject = Level("catch-all", "uid", seats=1)
    assert reject.try_seat()
    assert not reject.try_seat()
    with pytest.raises(Rejected):
        trio.run(reject.wait_seat, reject.hand("anyone"), 1.0)
