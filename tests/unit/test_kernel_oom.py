"""Docker can miss an OOM kill (exit 137, OOMKilled false, no `oom` event); the kernel's
log has it, and the Docker runtime reads it then, once per container."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import pytest

from k8slite.kubelet.runtime import docker as docker_runtime
from k8slite.kubelet.runtime import kernellog
from k8slite.kubelet.runtime.docker import DockerRuntime

ID = "3e76d41b2cc22d4f23649e7c089195432dc6de6d1f66eee593f5f311bb340108"
OTHER = "b7e6ddf52ee3c16d6fd0dc773f4d34a9b5dbb7285e9f0036362c38c654cb1996"


def oom_record(container_id: str, memcg: str = "/docker/{}") -> bytes:
    """An oom-kill record as /dev/kmsg gives it (this machine's kernel's format)."""
    cg = memcg.format(container_id)
    return (
        f"4,1203,484458107,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),"
        f"cpuset={container_id},mems_allowed=0,oom_memcg={cg},task_memcg={cg},"
        f"task=dd,pid=12241,uid=0\n"
    ).encode()


def test_the_oom_kill_of_the_containers_task_is_found() -> None:
    noise = [b"6,1,1,-;eth0: link up\n", b"3,2,2,-;Memory cgroup out of memory: Killed\n"]
    assert kernellog.oom_kill_logged(ID, [*noise, oom_record(ID)])
    systemd = "/system.slice/docker-{}.scope"
    assert kernellog.oom_kill_logged(ID, [oom_record(ID, systemd)])
    assert not kernellog.oom_kill_logged(ID, [*noise, oom_record(OTHER)])
    assert not kernellog.oom_kill_logged(ID, noise)
    # The ID in another field only (the cpuset) is not the killed task's cgroup.
    elsewhere = oom_record(OTHER).replace(f"cpuset={OTHER}".encode(), f"cpuset={ID}".encode())
    assert not kernellog.oom_kill_logged(ID, [elsewhere])
    assert not kernellog.oom_kill_logged("", [oom_record(ID)])


def test_kmsg_records_reads_the_log_to_its_end_or_gives_nothing() -> None:
    records = list(kernellog.kmsg_records())
    if os.access(kernellog.KMSG, os.R_OK):  # as root, as here and in CI: the whole buffer
        assert records and all(b";" in r for r in records)
    else:  # the runtime then reports what Docker says, nothing more
        assert records == []
    assert list(kernellog.kmsg_records("/nonexistent/kmsg")) == []


def _attrs(exit_code: int, oom: bool, memory: int) -> dict[str, Any]:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "Id": ID,
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


@pytest.mark.parametrize(
    ("attrs", "log", "reason", "reads"),
    [
        (_attrs(137, False, 16 << 20), [oom_record(ID)], "OOMKilled", 1),  # Docker missed it
        (_attrs(137, False, 16 << 20), [oom_record(OTHER)], "Error", 1),  # a plain SIGKILL
        (_attrs(137, True, 16 << 20), [], "OOMKilled", 0),  # Docker saw it
        (_attrs(137, False, 0), [oom_record(ID)], "Error", 0),  # no limit: not the cgroup's
        (_attrs(1, False, 16 << 20), [oom_record(ID)], "Error", 0),
        (_attrs(0, False, 16 << 20), [], "Completed", 0),
    ],
)
async def test_container_status_reads_the_kernel_log_once_when_docker_may_have_missed(
    monkeypatch: pytest.MonkeyPatch,
    attrs: dict[str, Any],
    log: list[bytes],
    reason: str,
    reads: int,
) -> None:
    runtime = DockerRuntime("node-a")
    read: list[int] = []

    async def inspect(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {**attrs, "State": dict(attrs["State"])}

    def records(path: str = kernellog.KMSG) -> list[bytes]:
        read.append(1)
        return log

    monkeypatch.setattr(runtime, "_call", inspect)
    monkeypatch.setattr(docker_runtime.kernellog, "kmsg_records", records)
    for _ in range(3):  # the kubelet asks again; the log is read at most once
        status = await runtime.container_status(ID)
        assert (status.exit_code, status.reason) == (attrs["State"]["ExitCode"], reason)
    assert len(read) == reads
