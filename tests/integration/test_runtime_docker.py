"""The Docker runtime against the real engine: sandboxes, containers, images, logs, adoption."""

from __future__ import annotations

import ipaddress
import itertools
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest
import trio

from k8slite.freeport import free_port
from k8slite.kubelet.probes import run_probe
from k8slite.kubelet.runtime import (
    ContainerConfig,
    ContainerRuntimeError,
    ContainerState,
    ContainerStatus,
    ImageNeverPullError,
    ImagePullError,
    InvalidImageNameError,
    Mount,
    NamespaceMode,
    NotFoundError,
    Sandbox,
    SandboxState,
    StartContainerError,
)
from k8slite.kubelet.runtime.base import LABEL_MANAGED, LABEL_NODE, LABEL_RESTART_COUNT
from k8slite.kubelet.runtime.docker import DockerRuntime

BUSYBOX = "busybox:1.35"
PAUSE = "k8slite/pause:1.0"
# Node names of this session: each test gets its own, so cleanup never touches anyone else's.
PREFIX = f"rt-test-{os.urandom(3).hex()}"
_nodes = itertools.count()


def _docker_problem() -> str | None:
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as e:  # noqa: BLE001 - whatever the failure, there is no usable engine
        return f"the Docker engine does not answer: {e}"
    try:
        missing = []
        for image in (BUSYBOX, PAUSE):
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                missing.append(image)
    finally:
        client.close()
    return f"images {', '.join(missing)} are missing: run hack/build-images" if missing else None


_PROBLEM = _docker_problem()
pytestmark = pytest.mark.skipif(_PROBLEM is not None, reason=_PROBLEM or "")


@pytest.fixture(scope="module")
def pod_network() -> Iterator[str]:
    """A pod network of this module's own, removed with everything on it afterwards."""
    name = f"k8slite-{PREFIX}"
    yield name
    client = docker.APIClient(timeout=60)
    try:
        for row in client.containers(all=True, filters={"label": f"{LABEL_MANAGED}=true"}):
            if (row.get("Labels") or {}).get(LABEL_NODE, "").startswith(PREFIX):
                client.remove_container(row["Id"], force=True)
        for net in client.networks(names=[name]):
            client.remove_network(net["Id"])
    finally:
        client.close()


@pytest.fixture
async def runtime(pod_network: str) -> AsyncIterator[DockerRuntime]:
    rt = DockerRuntime(f"{PREFIX}-{next(_nodes)}", network=pod_network, max_threads=4)
    try:
        yield rt
    finally:
        for sandbox in await rt.list_sandboxes():
            await rt.remove_sandbox(sandbox.id)
        for c in await rt.list_containers():
            await rt.remove_container(c.id)
        await rt.aclose()


def make_pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
        "spec": {"containers": [], **spec},
    }


async def start(
    rt: DockerRuntime, sandbox: Sandbox, name: str, *command: str, **config: Any
) -> str:
    cid = await rt.create_container(
        sandbox, ContainerConfig(name, BUSYBOX, command=list(command), **config)
    )
    await rt.start_container(cid)
    return cid


async def wait_exited(rt: DockerRuntime, cid: str) -> ContainerStatus:
    with trio.fail_after(60):
        while True:
            status = await rt.container_status(cid)
            if status.state is ContainerState.EXITED:
                return status
            await trio.sleep(0.05)


async def http_get(url: str) -> httpx.Response:
    """GET, retried while the server in the container is still starting."""
    async with httpx.AsyncClient(trust_env=False) as client:
        with trio.fail_after(30):
            while True:
                try:
                    return await client.get(url, timeout=5)
                except httpx.TransportError:
                    await trio.sleep(0.05)


async def read_logs(rt: DockerRuntime, cid: str, **kw: Any) -> bytes:
    out = b""
    async with aclosing(rt.logs(cid, **kw)) as chunks:
        async for chunk in chunks:
            out += chunk
    return out


HTTPD = 'mkdir -p /www && echo "hello from $POD" > /www/index.html && exec httpd -f -p 8080 -h /www'


async def test_pod_network_httpd_shared_namespaces_and_probes(runtime: DockerRuntime) -> None:
    host_port = free_port()
    pod = make_pod(
        "web",
        containers=[
            {
                "name": "httpd",
                "ports": [
                    {
                        "name": "http",
                        "containerPort": 8080,
                        "hostPort": host_port,
                        "hostIP": "127.0.0.1",
                    }
                ],
            }
        ],
    )
    sandbox = await runtime.run_sandbox(pod)
    assert sandbox.state is SandboxState.READY and sandbox.name == "web"
    with docker.APIClient() as client:
        net = client.inspect_network(runtime.network)
    subnet = ipaddress.ip_network(net["IPAM"]["Config"][0]["Subnet"])
    assert ipaddress.ip_address(sandbox.ip) in subnet
    # Idempotent: the same attempt of the same pod is the same sandbox.
    assert (await runtime.run_sandbox(pod)).id == sandbox.id

    httpd = await start(runtime, sandbox, "httpd", "sh", "-c", HTTPD, env=[("POD", "web")])
    response = await http_get(f"http://{sandbox.ip}:8080/")
    assert response.status_code == 200 and response.text == "hello from web\n"
    # The hostPort is published on the loopback address asked for.
    assert (await http_get(f"http://127.0.0.1:{host_port}/")).text == "hello from web\n"

    # A second container shares the sandbox's network namespace: localhost is the pod.
    sidecar = await start(runtime, sandbox, "sidecar", "sleep", "3600")
    result = await runtime.exec(sidecar, ["wget", "-qO-", "http://127.0.0.1:8080/"], 10)
    assert (result.exit_code, result.output) == (0, b"hello from web\n")
    result = await runtime.exec(sidecar, ["hostname"], 10)
    assert result.output.strip() == b"web"

    container = pod["spec"]["containers"][0]
    probe = await run_probe(
        {"httpGet": {"port": "http", "path": "/"}},
        pod_ip=sandbox.ip,
        runtime=runtime,
        container_id=httpd,
        container=container,
    )
    assert probe.success, probe.message
    probe = await run_probe(
        {"exec": {"command": ["test", "-f", "/www/index.html"]}},
        pod_ip=sandbox.ip,
        runtime=runtime,
        container_id=httpd,
    )
    assert probe.success, probe.message
    probe = await run_probe(
        {"exec": {"command": ["test", "-f", "/nope"]}},
        pod_ip=sandbox.ip,
        runtime=runtime,
        container_id=httpd,
    )
    assert not probe.success


async def test_env_mounts_workdir_user_and_etc_files(
    runtime: DockerRuntime, tmp_path: Path
) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "greeting").write_text("hi from the host\n")
    (tmp_path / "data").mkdir(mode=0o777)
    (tmp_path / "data").chmod(0o777)
    # The kubelet's /etc/hosts and /etc/resolv.conf are single files mounted over Docker's.
    (tmp_path / "etc-hosts").write_text("127.0.0.1\tlocalhost\n10.1.2.3\tdb.example\n")
    (tmp_path / "resolv.conf").write_text("nameserver 10.96.0.10\noptions ndots:5\n")
    sandbox = await runtime.run_sandbox(make_pod("envpod"))
    spec = {
        "name": "app",
        "image": BUSYBOX,
        "command": ["echo"],
        "args": ["$(GREETING) from $(NAME)", "$$(NAME)", "$(MISSING)"],
        "workingDir": "/data",
        "securityContext": {"runAsUser": 1234, "runAsGroup": 5678},
        "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
    }
    config = ContainerConfig.from_spec(
        spec,
        env=[("GREETING", "hello"), ("NAME", "k8slite")],
        mounts=[
            Mount(str(tmp_path / "config"), "/etc/config", read_only=True),
            Mount(str(tmp_path / "data"), "/data"),
            Mount(str(tmp_path / "etc-hosts"), "/etc/hosts"),
            Mount(str(tmp_path / "resolv.conf"), "/etc/resolv.conf"),
        ],
    )
    assert config.args == ["hello from k8slite", "$(NAME)", "$(MISSING)"]
    cid = await runtime.create_container(sandbox, config)
    await runtime.start_container(cid)
    status = await wait_exited(runtime, cid)
    assert (status.exit_code, status.reason) == (0, "Completed")
    assert await read_logs(runtime, cid) == b"hello from k8slite $(NAME) $(MISSING)\n"

    shell = await start(
        runtime,
        sandbox,
        "shell",
        "sleep",
        "3600",
        env=[("GREETING", "hello")],
        mounts=config.mounts,
        working_dir="/data",
        run_as_user=1234,
    )
    script = (
        "cat /etc/config/greeting; env | grep GREETING; pwd; id -u; "
        "touch /data/written && echo wrote; touch /etc/config/x 2>/dev/null || echo ro; "
        "grep db.example /etc/hosts; cat /etc/resolv.conf"
    )
    result = await runtime.exec(shell, ["sh", "-c", script], 10)
    assert result.output.decode().split("\n") == [
        "hi from the host",
        "GREETING=hello",
        "/data",
        "1234",
        "wrote",
        "ro",
        "10.1.2.3\tdb.example",
        "nameserver 10.96.0.10",
        "options ndots:5",
        "",
    ]
    assert (tmp_path / "data" / "written").exists()


async def test_exit_codes_oom_and_start_errors(runtime: DockerRuntime) -> None:
    sandbox = await runtime.run_sandbox(make_pod("exits"))
    ids: dict[str, str] = {}

    async def run(name: str, *command: str, **config: Any) -> None:
        ids[name] = await start(runtime, sandbox, name, *command, **config)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "ok", "true")
        nursery.start_soon(run, "fails", "sh", "-c", "exit 3")
        # dd allocates its 64 MiB block at once: with a 16 MiB limit and no swap, an OOM kill.
        nursery.start_soon(
            partial(
                run,
                "oom",
                "dd",
                "if=/dev/zero",
                "of=/dev/null",
                "bs=64M",
                "count=1",
                memory_limit_bytes=16 * 2**20,
            )
        )
    results = {name: await wait_exited(runtime, cid) for name, cid in ids.items()}
    assert (results["ok"].exit_code, results["ok"].reason) == (0, "Completed")
    assert (results["fails"].exit_code, results["fails"].reason) == (3, "Error")
    assert (results["oom"].exit_code, results["oom"].reason) == (137, "OOMKilled")
    assert results["ok"].started_at and results["ok"].finished_at

    cid = await runtime.create_container(
        sandbox, ContainerConfig("missing", BUSYBOX, command=["/no/such/binary"])
    )
    with pytest.raises(StartContainerError) as err:
        await runtime.start_container(cid)
    assert "/no/such/binary" in err.value.message
    status = await runtime.container_status(cid)
    assert status.state is ContainerState.EXITED and status.reason == "StartError"
    assert "/no/such/binary" in status.message and status.exit_code


async def test_stop_honours_the_grace_period(runtime: DockerRuntime) -> None:
    sandbox = await runtime.run_sandbox(make_pod("stopper"))
    polite = await start(
        runtime,
        sandbox,
        "polite",
        "sh",
        "-c",
        "trap 'echo bye; exit 0' TERM; echo up; while true; do sleep 0.1; done",
    )
    stubborn = await start(
        runtime,
        sandbox,
        "stubborn",
        "sh",
        "-c",
        "trap '' TERM; echo up; while true; do sleep 0.1; done",
    )
    for cid in (polite, stubborn):  # the traps are set once "up" is printed
        with trio.fail_after(30):
            while b"up" not in await read_logs(runtime, cid):
                await trio.sleep(0.05)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runtime.stop_container, polite, 30)
        nursery.start_soon(runtime.stop_container, stubborn, 1)
    status = await runtime.container_status(polite)
    assert (status.state, status.exit_code, status.reason) == (
        ContainerState.EXITED,
        0,
        "Completed",
    )
    assert (await read_logs(runtime, polite)).endswith(b"bye\n")
    status = await runtime.container_status(stubborn)
    assert (status.exit_code, status.reason) == (137, "Error")
    # Stopping what has stopped, or is gone, is fine.
    await runtime.stop_container(polite, 30)
    await runtime.stop_container("no-such-container", 30)

    await runtime.stop_sandbox(sandbox.id)
    assert (await runtime.sandbox_status(sandbox.id)).state is SandboxState.NOTREADY


async def test_images(runtime: DockerRuntime) -> None:
    ref = await runtime.ensure_image(BUSYBOX, "IfNotPresent")
    assert ref.image == BUSYBOX and ref.image_id.startswith("sha256:")
    assert (await runtime.ensure_image(BUSYBOX, "Never")).image_id == ref.image_id
    # The registry is on loopback, so the failed pull never leaves the machine.
    missing = "127.0.0.1:1/k8slite/missing:1.0"
    with pytest.raises(ImageNeverPullError) as never:
        await runtime.ensure_image(missing, "Never")
    assert never.value.reason == "ErrImageNeverPull"
    assert "not present with pull policy of Never" in never.value.message
    with pytest.raises(ImagePullError) as pull:
        await runtime.ensure_image(missing, "IfNotPresent")
    assert pull.value.reason == "ErrImagePull"
    for hint in (
        missing,
        "no image registry answers",
        "busybox:1.35",
        "hack/build-images",
        "IfNotPresent",
        "Never",
    ):
        assert hint in pull.value.message
    with pytest.raises(InvalidImageNameError):
        await runtime.ensure_image("Not A/valid:image", "IfNotPresent")
    images = {name: info for info in await runtime.list_images() for name in info.names}
    assert images[BUSYBOX].size_bytes > 0 and images[PAUSE].id


async def test_logs_tail_timestamps_since_and_follow(runtime: DockerRuntime) -> None:
    sandbox = await runtime.run_sandbox(make_pod("logger"))
    cid = await start(
        runtime,
        sandbox,
        "logger",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line $i; done; sleep 0.2; echo oops >&2; sleep 1; echo late",
    )
    # Following returns what comes later and ends when the container does.
    followed = await read_logs(runtime, cid, follow=True)
    assert followed == b"line 1\nline 2\nline 3\nline 4\nline 5\noops\nlate\n"
    assert await read_logs(runtime, cid, tail_lines=2) == b"oops\nlate\n"
    assert await read_logs(runtime, cid, tail_lines=0) == b""
    stamped = (await read_logs(runtime, cid, timestamps=True)).decode().splitlines()
    assert [line.split(" ", 1)[1] for line in stamped][-2:] == ["oops", "late"]
    late = stamped[-1].split(" ", 1)[0]
    late_at = datetime.fromisoformat(late[:26] + "+00:00").timestamp()
    # since_seconds reaching back to just before "late" (a second after the rest).
    since = time.time() - late_at + 0.5
    assert await read_logs(runtime, cid, since_seconds=since) == b"late\n"
    with pytest.raises(NotFoundError):
        await read_logs(runtime, "no-such-container")


async def test_tty_logs_and_attach_to_an_exited_container(runtime: DockerRuntime) -> None:
    """What `kubectl run -it` meets when its command ends at once: the attach is refused in
    words (the engine's own attach would wait forever) and the logs, a terminal's bytes
    with no frames, are read whole."""
    sandbox = await runtime.run_sandbox(make_pod("quick"))
    cid = await start(
        runtime, sandbox, "quick", "sh", "-c", "echo one; echo two", stdin=True, tty=True
    )
    await wait_exited(runtime, cid)
    assert await read_logs(runtime, cid) == b"one\r\ntwo\r\n"
    with trio.fail_after(30), pytest.raises(ContainerRuntimeError) as refused:
        await runtime.attach(cid, stdin=True, tty=True)
    assert "cannot attach to container quick: it is not running (exit code 0)" in str(refused.value)


async def test_adoption_by_labels_and_removal(runtime: DockerRuntime, pod_network: str) -> None:
    pod = make_pod("adoptee", shareProcessNamespace=True)
    sandbox = await runtime.run_sandbox(pod)
    cid = await runtime.create_container(
        sandbox,
        ContainerConfig(
            "main", BUSYBOX, restart_count=2, command=["sleep", "3600"], labels={"hash": "abc"}
        ),
    )
    await runtime.start_container(cid)
    # One PID namespace for the pod: the sandbox's pause is PID 1.
    assert b"1 65535    /pause" in (await runtime.exec(cid, ["ps"], 10)).output
    host = await runtime.run_sandbox(make_pod("hostnet", hostNetwork=True))
    assert host.ip == runtime.node_ip and host.namespaces.network is NamespaceMode.NODE

    # A restarted kubelet: a new instance finds both by labels.
    again = DockerRuntime(runtime.node_name, network=pod_network)
    other = DockerRuntime(f"{runtime.node_name}-other", network=pod_network)
    try:
        sandboxes = {s.id: s for s in await again.list_sandboxes()}
        assert set(sandboxes) == {sandbox.id, host.id}
        found = sandboxes[sandbox.id]
        assert (found.pod_uid, found.namespace, found.name, found.ip, found.state) == (
            sandbox.pod_uid,
            "default",
            "adoptee",
            sandbox.ip,
            SandboxState.READY,
        )
        assert found.namespaces.pid is NamespaceMode.POD
        assert sandboxes[host.id].namespaces.network is NamespaceMode.NODE
        [container] = await again.list_containers()
        assert (
            container.id,
            container.sandbox_id,
            container.pod_uid,
            container.name,
            container.restart_count,
            container.state,
        ) == (cid, sandbox.id, sandbox.pod_uid, "main", 2, ContainerState.RUNNING)
        assert container.labels["hash"] == "abc" and container.labels[LABEL_RESTART_COUNT] == "2"
        # Another node's kubelet on the same engine sees none of it.
        assert await other.list_sandboxes() == [] and await other.list_containers() == []
        await again.remove_sandbox(sandbox.id)
    finally:
        await again.aclose()
        await other.aclose()
    assert [s.id for s in await runtime.list_sandboxes()] == [host.id]
    assert await runtime.list_containers() == []
    with pytest.raises(NotFoundError):
        await runtime.container_status(cid)
    await runtime.remove_sandbox(sandbox.id)  # gone already: fine
    await runtime.stop_sandbox(sandbox.id)
