"""Docker's OOMKilled flag can trail the exit: a limited container just killed by SIGKILL is
looked at again before it is reported as Error (the kubelet writes a reason only once)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from k8slite.kubelet.runtime import docker as docker_runtime
from k8slite.kubelet.runtime.docker import DockerRuntime


def _attrs(exit_code: int, oom: bool, memory: int, finished: float) -> dict[str, Any]:
    stamp = datetime.fromtimestamp(finished, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "Id": "c1",
        "Created": stamp,
        "Image": "sha256:abc",
        "Config": {"Labels": {}, "Image": "busybox"},
        "HostConfig": {"Memory": memory},
        "State": {
            "Status": "exited",
            "ExitCode": exit_code,
            "OOMKilled": oom,
            "StartedAt": stamp,
            "FinishedAt": stamp,
        },
    }


def _runtime(answers: list[dict[str, Any]], monkeypatch: Any) -> tuple[DockerRuntime, list[int]]:
    runtime = DockerRuntime("node-a")
    calls: list[int] = []

    async def call(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(1)
        return answers[min(len(calls), len(answers)) - 1]

    monkeypatch.setattr(runtime, "_call", call)
    monkeypatch.setattr(docker_runtime, "_OOM_SETTLE_STEP", 0.01)
    return runtime, calls


async def test_a_late_oom_flag_is_waited_for(monkeypatch: Any) -> None:
    now = time.time()
    runtime, calls = _runtime(
        [_attrs(137, False, 16 << 20, now)] * 3 + [_attrs(137, True, 16 << 20, now)],
        monkeypatch,
    )
    status = await runtime.container_status("c1")
    assert (status.exit_code, status.reason, len(calls)) == (137, "OOMKilled", 4)


async def test_a_kill_that_is_no_oom_is_reported_after_a_bounded_wait(monkeypatch: Any) -> None:
    runtime, calls = _runtime([_attrs(137, False, 16 << 20, time.time())], monkeypatch)
    status = await runtime.container_status("c1")
    assert status.reason == "Error"
    assert len(calls) == 1 + docker_runtime._OOM_SETTLE_TRIES


async def test_no_second_look_without_limit_old_exit_or_other_code(monkeypatch: Any) -> None:
    now = time.time()
    for attrs, reason in (
        (_attrs(137, False, 0, now), "Error"),  # no memory limit
        (_attrs(137, False, 16 << 20, now - 60), "Error"),  # long exited
        (_attrs(1, False, 16 << 20, now), "Error"),
        (_attrs(0, False, 16 << 20, now), "Completed"),
        (_attrs(137, True, 16 << 20, now), "OOMKilled"),
    ):
        runtime, calls = _runtime([attrs], monkeypatch)
        status = await runtime.container_status("c1")
        assert (status.reason, len(calls)) == (reason, 1)
