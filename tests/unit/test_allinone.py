"""k8slite all-in-one: its command line, and how one component's failure is contained."""

from __future__ import annotations

import argparse

import pytest
import trio
import trio.testing

from k8slite.cmd import allinone
from k8slite.cmd.allinone import Task, keep_running, split_argv


def test_split_argv_gives_each_component_its_flags() -> None:
    argv = ["--", "apiserver", "--secure-port", "1", "--", "kubelet", "--port", "2", "-v", "4"]
    assert split_argv(argv) == [
        ("apiserver", ["--secure-port", "1"]),
        ("kubelet", ["--port", "2", "-v", "4"]),
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "expected `-- COMPONENT ARGS...`"),
        (["apiserver"], "expected `-- COMPONENT ARGS...`"),
        (["--", "etcd"], "unknown component 'etcd'"),
        (["--", "apiserver", "--"], "without a component name"),
        (["--", "dns", "--", "dns"], "named twice"),
    ],
)
def test_split_argv_refuses_what_it_cannot_run(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_argv(argv)


def test_bad_command_line_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert allinone.main(["--", "nope"]) == 2
    assert "k8slite all-in-one: error: unknown component 'nope'" in capsys.readouterr().err


async def test_a_component_that_fails_after_serving_is_restarted_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []

    async def flaky(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        starts.append(trio.current_time())
        task_status.started()
        await trio.sleep(1)
        raise RuntimeError("lost its lease")

    with trio.move_on_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(keep_running, Task("scheduler", flaky, argparse.Namespace()))
    # Back-off 1, 2, 4, 8 s between the runs (each lasting 1 s).
    gaps = [round(b - a) for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps[:4] == [2, 3, 5, 9], gaps


async def test_a_component_that_never_serves_fails_the_process() -> None:
    async def broken(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        raise OSError("address in use")

    with pytest.raises(OSError, match="address in use"):
        await keep_running(Task("apiserver", broken, argparse.Namespace()))
