"""The scheduling queue: priority order, backoff, the unschedulable set, gates, flushes."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from k8slite.scheduler.queue import (
    MAX_UNSCHEDULABLE_DURATION,
    SchedulingQueue,
    backoff_duration,
)


def pod(name: str, priority: int = 0, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"priority": priority, **spec}}


def test_backoff_doubles_from_one_to_ten_seconds() -> None:
    assert [backoff_duration(a) for a in range(1, 7)] == [1, 2, 4, 8, 10, 10]


async def test_pops_by_priority_then_arrival() -> None:
    q = SchedulingQueue()
    q.add(pod("low"))
    await trio.sleep(0.001)
    q.add(pod("high", 10))
    q.add(pod("low2"))
    order = [(await q.pop()).key for _ in range(3)]
    assert order == ["ns/high", "ns/low", "ns/low2"]
    assert q.pending() == {"active": 0, "backoff": 0, "unschedulable": 0, "gated": 0}


async def test_pop_waits_for_a_pod() -> None:
    q = SchedulingQueue()
    got: list[str] = []

    async def consumer() -> None:
        got.append((await q.pop()).key)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        q.add(pod("a"))
    assert got == ["ns/a"]


async def test_unschedulable_waits_for_an_event_then_the_backoff(
    mock_clock: trio.testing.MockClock,
) -> None:
    q = SchedulingQueue()
    q.add(pod("a"))
    qp = await q.pop()
    q.requeue_unschedulable(qp, ["NodeResourcesFit"])
    assert q.pending()["unschedulable"] == 1
    # An event that cannot help (taints) leaves it be.
    assert q.move_all("test", ["TaintToleration"]) == 0
    assert q.move_all("AssignedPodDelete", ["NodeResourcesFit"]) == 1
    assert q.pending()["backoff"] == 1  # still within its 1 s backoff
    mock_clock.jump(1.01)
    q.flush_backoff()
    assert q.pending()["active"] == 1
    qp = await q.pop()
    assert qp.attempts == 2
    q.requeue_unschedulable(qp, ["NodeResourcesFit"])
    mock_clock.jump(5)  # past the 2 s backoff: an event moves it straight to activeQ
    q.move_all("NodeAdd")
    assert q.pending()["active"] == 1


async def test_updates_and_deletes(mock_clock: trio.testing.MockClock) -> None:
    q = SchedulingQueue()
    q.add(pod("a"))
    qp = await q.pop()
    q.requeue_unschedulable(qp, ["NodeAffinity"])
    mock_clock.jump(2)
    # A status-only change does not help; a spec change does.
    changed_status = {**qp.pod, "status": {"phase": "Pending"}}
    q.update(qp.pod, changed_status)
    assert q.pending()["unschedulable"] == 1
    q.update(changed_status, pod("a", nodeSelector={"x": "y"}))
    assert q.pending()["active"] == 1
    q.delete("ns/a")
    assert len(q) == 0 and "ns/a" not in q


async def test_gated_pods_wait_for_their_gates() -> None:
    q = SchedulingQueue()
    gated = pod("g", schedulingGates=[{"name": "example.com/wait"}])
    q.add(gated)
    assert q.pending()["gated"] == 1
    q.update(gated, pod("g"))
    assert q.pending() == {"active": 1, "backoff": 0, "unschedulable": 0, "gated": 0}


async def test_leftover_unschedulable_pods_go_back(mock_clock: trio.testing.MockClock) -> None:
    q = SchedulingQueue()
    q.add(pod("a"))
    q.requeue_unschedulable(await q.pop(), ["NodeAffinity"])
    q.flush_unschedulable_leftover()
    assert q.pending()["unschedulable"] == 1
    mock_clock.jump(MAX_UNSCHEDULABLE_DURATION + 1)
    q.flush_unschedulable_leftover()
    assert q.pending()["active"] == 1


async def test_deleted_while_in_flight_is_not_requeued() -> None:
    q = SchedulingQueue()
    q.add(pod("a"))
    qp = await q.pop()
    q.delete("ns/a")
    q.requeue_unschedulable(qp, ["NodeAffinity"])
    assert len(q) == 0
