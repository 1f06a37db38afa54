"""The process runtime (host processes under shims) and the fake runtime of hollow nodes."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
import trio

from k8slite.kubelet.runtime import (
    ContainerConfig,
    ContainerState,
    ContainerStatus,
    CreateContainerError,
    ExecTimeoutError,
    InvalidImageNameError,
    NotFoundError,
    SandboxState,
    StartContainerError,
    make_runtime,
)
from k8slite.kubelet.runtime.fake import FakeRuntime
from k8slite.kubelet.runtime.process import ProcessRuntime


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[ProcessRuntime]:
    rt = ProcessRuntime("proc-node", tmp_path / "state", images={"busybox:1.35": ["sh", "-c"]})
    try:
        yield rt
    finally:
        # Containers outlive a runtime instance by design; a test's must not outlive it.
        for sandbox in await rt.list_sandboxes():
            await rt.remove_sandbox(sandbox.id)
        for c in await rt.list_containers():
            await rt.remove_container(c.id)
        await rt.aclose()


def make_pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
        "spec": spec,
    }


async def start(rt: ProcessRuntime, name: str, *command: str, **config: Any) -> str:
    sandbox = await rt.run_sandbox(make_pod(f"pod-{name}"))
    cid = await rt.create_container(
        sandbox, ContainerConfig(name, "busybox:1.35", command=list(command), **config)
    )
    await rt.start_container(cid)
    return cid


async def wait_exited(rt: ProcessRuntime, cid: str) -> ContainerStatus:
    with trio.fail_after(30):
        while True:
            status = await rt.container_status(cid)
            if status.state is ContainerState.EXITED:
                return status
            await trio.sleep(0.02)


async def read_logs(rt: ProcessRuntime, cid: str, **kw: Any) -> bytes:
    out = b""
    async with aclosing(rt.logs(cid, **kw)) as chunks:
        async for chunk in chunks:
            out += chunk
    return out


async def test_lifecycle_env_workdir_and_exec(runtime: ProcessRuntime, tmp_path: Path) -> None:
    pod = make_pod("web")
    sandbox = await runtime.run_sandbox(pod)
    assert sandbox.ip == "127.0.0.1" and sandbox.state is SandboxState.READY
    assert (await runtime.run_sandbox(pod)).id == sandbox.id
    assert await runtime.version() == "process://0.1.0"
    # args without a command: the image map's entrypoint runs them.
    config = ContainerConfig(
        "app",
        "busybox:1.35",
        args=["echo $GREETING in $PWD; sleep 60"],
        env=[("GREETING", "hello")],
        working_dir=str(tmp_path),
    )
    cid = await runtime.create_container(sandbox, config)
    status = await runtime.container_status(cid)
    assert status.state is ContainerState.CREATED and status.name == "app"
    await runtime.start_container(cid)
    status = await runtime.container_status(cid)
    assert status.state is ContainerState.RUNNING and status.started_at
    with pytest.raises(StartContainerError):
        await runtime.start_container(cid)

    result = await runtime.exec(cid, ["sh", "-c", "echo $GREETING $HOSTNAME; pwd; exit 4"], 10)
    assert (result.exit_code, result.output) == (4, f"hello web\n{tmp_path}\n".encode())
    with pytest.raises(ExecTimeoutError):
        await runtime.exec(cid, ["sh", "-c", "trap '' TERM; sleep 30"], 0.3)
    result = await runtime.exec(cid, ["/no/such/binary"], 5)
    assert result.exit_code == 127

    with trio.fail_after(10):
        while b"hello" not in await read_logs(runtime, cid):
            await trio.sleep(0.02)
    assert await read_logs(runtime, cid) == f"hello in {tmp_path}\n".encode()
    [info] = await runtime.list_containers()
    assert (info.id, info.sandbox_id, info.pod_uid, info.name, info.state) == (
        cid,
        sandbox.id,
        sandbox.pod_uid,
        "app",
        ContainerState.RUNNING,
    )

    await runtime.stop_sandbox(sandbox.id)
    assert (await runtime.sandbox_status(sandbox.id)).state is SandboxState.NOTREADY
    status = await runtime.container_status(cid)
    assert (status.state, status.exit_code) == (ContainerState.EXITED, 137)
    await runtime.remove_sandbox(sandbox.id)
    assert await runtime.list_containers() == [] and await runtime.list_sandboxes() == []
    await runtime.stop_sandbox(sandbox.id)  # gone already: fine
    await runtime.remove_sandbox(sandbox.id)
    with pytest.raises(NotFoundError):
        await runtime.container_status(cid)
    assert not any((tmp_path / "state" / "containers").iterdir())


async def test_exit_codes_and_start_errors(runtime: ProcessRuntime) -> None:
    ids = {
        "ok": await start(runtime, "ok", "true"),
        "fails": await start(runtime, "fails", "sh", "-c", "exit 3"),
        "killed": await start(runtime, "killed", "sh", "-c", "kill -TERM $$"),
    }
    results = {name: await wait_exited(runtime, cid) for name, cid in ids.items()}
    assert (results["ok"].exit_code, results["ok"].reason) == (0, "Completed")
    assert (results["fails"].exit_code, results["fails"].reason) == (3, "Error")
    assert (results["killed"].exit_code, results["killed"].reason) == (143, "Error")
    assert results["ok"].finished_at and results["ok"].started_at

    sandbox = await runtime.run_sandbox(make_pod("bad"))
    cid = await runtime.create_container(
        sandbox, ContainerConfig("bad", "x", command=["/no/such/binary"])
    )
    with pytest.raises(StartContainerError) as err:
        await runtime.start_container(cid)
    assert "/no/such/binary" in err.value.message
    status = await runtime.container_status(cid)
    assert (status.state, status.reason, status.exit_code) == (
        ContainerState.EXITED,
        "StartError",
        128,
    )
    with pytest.raises(CreateContainerError):
        await runtime.create_container(sandbox, ContainerConfig("none", "unmapped:1.0"))


async def test_stop_honours_the_grace_period(runtime: ProcessRuntime) -> None:
    polite = await start(
        runtime,
        "polite",
        "sh",
        "-c",
        "trap 'echo bye; exit 0' TERM; echo up; while true; do sleep 0.05; done",
    )
    stubborn = await start(
        runtime, "stubborn", "sh", "-c", "trap '' TERM; echo up; while true; do sleep 0.05; done"
    )
    for cid in (polite, stubborn):
        with trio.fail_after(10):
            while b"up" not in await read_logs(runtime, cid):
                await trio.sleep(0.02)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runtime.stop_container, polite, 30)
        nursery.start_soon(runtime.stop_container, stubborn, 0.5)
    status = await runtime.container_status(polite)
    assert (status.exit_code, status.reason) == (0, "Completed")
    assert (await read_logs(runtime, polite)).endswith(b"bye\n")
    assert (await runtime.container_status(stubborn)).exit_code == 137
    await runtime.stop_container(polite, 30)  # stopped already: fine
    await runtime.stop_container("no-such-container", 30)


async def test_logs_tail_timestamps_since_follow_and_partial_lines(runtime: ProcessRuntime) -> None:
    cid = await start(
        runtime,
        "logger",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line $i; done; echo oops >&2; "
        "sleep 0.5; printf 'late'; sleep 0.2; echo ' and done'; printf tail",
    )
    followed = await read_logs(runtime, cid, follow=True)
    assert sorted(followed.split(b"\n")) == sorted(
        [b"line 1", b"line 2", b"line 3", b"line 4", b"line 5", b"oops", b"late and done", b"tail"]
    )
    assert await read_logs(runtime, cid, tail_lines=2) == b"late and done\ntail"
    assert await read_logs(runtime, cid, tail_lines=0) == b""
    assert (await read_logs(runtime, cid, tail_lines=100)) == followed
    stamped = (await read_logs(runtime, cid, timestamps=True)).decode().split("\n")
    assert stamped[0].endswith("Z line 1") and stamped[0][:4].isdigit()
    late = next(line for line in stamped if line.endswith(" late and done"))
    late_ns = _parse_ns(late.split(" ", 1)[0])
    since = time.time() - late_ns / 1e9 + 0.2
    assert await read_logs(runtime, cid, since_seconds=since) == b"late and done\ntail"


def _parse_ns(stamp: str) -> int:
    seconds = time.mktime(time.strptime(stamp[:19] + "UTC", "%Y-%m-%dT%H:%M:%S%Z"))
    return int(seconds - time.timezone) * 10**9 + int(stamp[20:29])


async def test_adoption_after_restart(runtime: ProcessRuntime, tmp_path: Path) -> None:
    running = await start(runtime, "running", "sleep", "60")
    finished = await start(runtime, "finished", "sh", "-c", "sleep 0.3; exit 7")
    lost = await start(runtime, "lost", "sleep", "60")
    # The kubelet goes away; meanwhile one container ends and one vanishes with its shim.
    await runtime.aclose()
    state = json.loads((tmp_path / "state" / "containers" / lost / "state.json").read_text())
    os.kill(state["shim_pid"], signal.SIGKILL)
    os.killpg(state["pid"], signal.SIGKILL)

    again = ProcessRuntime("proc-node", tmp_path / "state")
    assert {c.id for c in await again.list_containers()} == {running, finished, lost}
    assert (await again.container_status(running)).state is ContainerState.RUNNING
    status = await wait_exited(again, finished)
    assert (status.exit_code, status.reason) == (7, "Error")
    with trio.fail_after(10):
        while (status := await again.container_status(lost)).state is not ContainerState.EXITED:
            await trio.sleep(0.02)
    assert (status.exit_code, status.reason) == (137, "ContainerStatusUnknown")
    await again.stop_container(running, 5)
    assert (await again.container_status(running)).exit_code == 143
    # Another node's runtime on the same directory sees nothing of this node's.
    assert await ProcessRuntime("other-node", tmp_path / "state").list_containers() == []


async def test_make_runtime_and_images(tmp_path: Path) -> None:
    rt = make_runtime("process", node_name="n", root_dir=tmp_path)
    assert isinstance(rt, ProcessRuntime)
    assert (await rt.ensure_image("anything:1.0", "Always")).image == "anything:1.0"
    with pytest.raises(InvalidImageNameError):
        await rt.ensure_image("Busybox:1.35", "IfNotPresent")
    with pytest.raises(ValueError, match="unknown container runtime"):
        make_runtime("rkt", node_name="n", root_dir=tmp_path)


async def test_fake_runtime_is_instant_and_allocates_ips() -> None:
    rt = FakeRuntime("hollow-1", pod_cidr="10.200.0.0/29")
    pods = [make_pod(f"p{i}") for i in range(5)]
    sandboxes = [await rt.run_sandbox(p) for p in pods]
    assert [s.ip for s in sandboxes] == [f"10.200.0.{i}" for i in range(2, 7)]
    with pytest.raises(Exception, match="no free pod IP"):
        await rt.run_sandbox(make_pod("one-too-many"))
    host = await rt.run_sandbox(make_pod("h", hostNetwork=True))
    assert host.ip == "127.0.0.1"
    await rt.remove_sandbox(sandboxes[1].id)
    assert (await rt.run_sandbox(make_pod("reuse"))).ip == "10.200.0.3"

    cid = await rt.create_container(sandboxes[0], ContainerConfig("c", "busybox:1.35"))
    assert (await rt.container_status(cid)).state is ContainerState.CREATED
    await rt.start_container(cid)
    assert (await rt.container_status(cid)).state is ContainerState.RUNNING
    assert (await rt.exec(cid, ["true"], 1)).exit_code == 0
    [info] = await rt.list_containers()
    assert (info.pod_name, info.name, info.state) == ("p0", "c", ContainerState.RUNNING)
    async with aclosing(rt.logs(cid)) as chunks:
        assert [c async for c in chunks] == []
    await rt.stop_container(cid, 30)
    status = await rt.container_status(cid)
    assert (status.state, status.exit_code, status.reason) == (
        ContainerState.EXITED,
        0,
        "Completed",
    )
    await rt.remove_sandbox(sandboxes[0].id)
    with pytest.raises(NotFoundError):
        await rt.container_status(cid)
    await rt.stop_container(cid, 30)  # gone: fine
