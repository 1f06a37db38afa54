"""The process runtime: containers as plain host processes, for development without Docker.

There is no isolation at all: every pod shares the host's filesystem and users, and its
network (its IP is the node's) unless a pod network is configured: then each pod without
hostNetwork gets a network namespace of its own on the node's bridge, with an address from
the node's pod CIDR (network/cni.py), and sees the kubelet's resolv.conf and /etc/hosts (the
only mounts applied, through `ip netns exec`). Other mounts are recorded but not applied,
so a command must use volume data at the host paths the kubelet prepared; images are not
pulled, only looked up in an optional map of image -> entrypoint. Each container runs under a
small shim process (see shim.py) that timestamps its output and records its exit, so a
restarted kubelet adopts running containers and still learns how the others ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from k8slite import __version__
from k8slite.kubelet.runtime.base import (
    LABEL_NODE,
    LABEL_SANDBOX_ID,
    REASON_STATUS_UNKNOWN,
    ContainerConfig,
    ContainerInfo,
    ContainerRuntimeError,
    ContainerState,
    ContainerStats,
    ContainerStatus,
    CreateContainerError,
    CreateSandboxError,
    ExecResult,
    ExecTimeoutError,
    ImageInfo,
    ImageRef,
    NamespaceMode,
    NamespaceOptions,
    NotFoundError,
    Sandbox,
    SandboxState,
    StartContainerError,
    connect_pod_port,
    container_info,
    container_labels,
    pod_identity,
    sandbox_from_labels,
    sandbox_labels,
    terminated_reason,
    validate_image,
)
from k8slite.kubelet.runtime.process_stream import ProcessSession
from k8slite.kubelet.runtime.shim import proc_start, rfc3339_ns
from k8slite.network.cni import (
    POD_ETC_FILES,
    BridgeNetwork,
    NoPodCidrError,
    install_pod_file,
    netns_etc,
    netns_name,
    netns_path,
)
from k8slite.network.ipcmd import NetworkError

SHIM = Path(__file__).with_name("shim.py")
# Upstream reports a container that vanished without an exit status as killed.
UNKNOWN_EXIT_CODE = 137
_READ_CHUNK = 64 * 1024


@dataclass(slots=True)
class _Container:
    """A container's record as kept in its directory's config.json."""

    id: str
    dir: Path
    labels: dict[str, str]
    image: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    created_at: float

    def info(self, state: ContainerState) -> ContainerInfo:
        return container_info(self.id, self.labels, state, self.image, self.created_at)


class ProcessRuntime:
    """Runtime of host processes with their state under state_dir (one per node)."""

    name = "process"

    def __init__(
        self,
        node_name: str,
        state_dir: str | os.PathLike[str],
        *,
        node_ip: str = "127.0.0.1",
        images: Mapping[str, Sequence[str]] | None = None,
        pod_network: BridgeNetwork | None = None,
    ) -> None:
        self.node_name = node_name
        self.node_ip = node_ip
        self.pod_network = pod_network
        # image -> the entrypoint used when a container gives args but no command.
        self.images = {k: list(v) for k, v in (images or {}).items()}
        self._root = Path(state_dir)
        self._sandbox_dir = self._root / "sandboxes"
        self._container_dir = self._root / "containers"
        self._sandbox_dir.mkdir(parents=True, exist_ok=True)
        self._container_dir.mkdir(parents=True, exist_ok=True)
        self._containers = {c.id: c for c in self._load_containers()}
        # Shims started by this instance: kept only to reap them (no zombies) once they exit.
        self._shims: dict[str, trio.Process] = {}

    def _load_containers(self) -> list[_Container]:
        out = []
        for path in self._container_dir.glob("*/config.json"):
            data = _read_json(path)
            if data and data["labels"].get(LABEL_NODE) == self.node_name:
                out.append(_Container(dir=path.parent, **data))
        return out

    async def version(self) -> str:
        return f"process://{__version__}"

    async def aclose(self) -> None:
        self._reap()

    def _reap(self) -> None:
        for cid, proc in list(self._shims.items()):
            if proc.poll() is not None:
                del self._shims[cid]

    # -- sandboxes --------------------------------------------------------------------------

    async def run_sandbox(self, pod: Mapping[str, Any], *, attempt: int = 0) -> Sandbox:
        uid = pod_identity(pod)[0]
        for sandbox in await self.list_sandboxes():
            if sandbox.pod_uid == uid and sandbox.attempt == attempt:
                if sandbox.state is SandboxState.READY:
                    return sandbox
                await self.remove_sandbox(sandbox.id)
        namespaces = NamespaceOptions.from_pod(pod)
        labels = sandbox_labels(self.node_name, pod, attempt, namespaces)
        sandbox_id = secrets.token_hex(16)
        ip = self.node_ip
        if self.pod_network is not None and namespaces.network is not NamespaceMode.NODE:
            try:
                ip = await self.pod_network.setup(sandbox_id)
            except (NoPodCidrError, NetworkError) as e:
                raise CreateSandboxError(f"setting up the pod network: {e}") from e
        sandbox = sandbox_from_labels(sandbox_id, labels, ip, SandboxState.READY, time.time())
        self._save_sandbox(sandbox)
        return sandbox

    def update_pod_cidr(self, pod_cidr: str) -> None:
        """The node's pod CIDR, as the kubelet learns it (CRI's UpdateRuntimeConfig)."""
        if self.pod_network is not None:
            self.pod_network.pod_cidr = pod_cidr

    async def _teardown_network(self, sandbox_id: str) -> None:
        if self.pod_network is not None:
            try:
                await self.pod_network.teardown(sandbox_id)
            except NetworkError as e:
                raise ContainerRuntimeError(f"removing the pod network: {e}") from e

    def _save_sandbox(self, sandbox: Sandbox) -> None:
        _write_json(
            self._sandbox_dir / f"{sandbox.id}.json",
            {
                "id": sandbox.id,
                "labels": sandbox.labels,
                "ip": sandbox.ip,
                "state": str(sandbox.state),
                "created_at": sandbox.created_at,
            },
        )

    async def stop_sandbox(self, sandbox_id: str) -> None:
        try:
            sandbox = await self.sandbox_status(sandbox_id)
        except NotFoundError:
            return
        for c in self._pod_containers(sandbox_id):
            await self.stop_container(c.id, 0)
        # As CRI's StopPodSandbox: the network goes with the last container.
        await self._teardown_network(sandbox_id)
        sandbox.state = SandboxState.NOTREADY
        self._save_sandbox(sandbox)

    async def remove_sandbox(self, sandbox_id: str) -> None:
        for c in self._pod_containers(sandbox_id):
            await self.remove_container(c.id)
        await self._teardown_network(sandbox_id)
        (self._sandbox_dir / f"{sandbox_id}.json").unlink(missing_ok=True)

    def _pod_containers(self, sandbox_id: str) -> list[_Container]:
        return [
            c for c in self._containers.values() if c.labels.get(LABEL_SANDBOX_ID) == sandbox_id
        ]

    async def sandbox_status(self, sandbox_id: str) -> Sandbox:
        data = _read_json(self._sandbox_dir / f"{sandbox_id}.json")
        if data is None:
            raise NotFoundError(f"sandbox {sandbox_id} not found")
        return _sandbox(data)

    async def list_sandboxes(self) -> list[Sandbox]:
        out = []
        for path in self._sandbox_dir.glob("*.json"):
            data = _read_json(path)
            if data and data["labels"].get(LABEL_NODE) == self.node_name:
                out.append(_sandbox(data))
        return out

    # -- images -----------------------------------------------------------------------------

    async def ensure_image(self, image: str, pull_policy: str) -> ImageRef:
        # Nothing to pull: a command runs from the host, whatever the policy says.
        validate_image(image)
        return ImageRef(image, image)

    async def list_images(self) -> list[ImageInfo]:
        return [ImageInfo(name, (name,), 0) for name in self.images]

    # -- containers -------------------------------------------------------------------------

    async def create_container(self, sandbox: Sandbox, config: ContainerConfig) -> str:
        argv = config.command or [*self.images.get(config.image, []), *config.args]
        if not argv:
            raise CreateContainerError(
                f"the process runtime needs a command: container {config.name!r} has none and "
                f"image {config.image!r} has no entrypoint in the runtime's image map"
            )
        labels = container_labels(self.node_name, sandbox, config)
        for old in self._containers.values():
            if old.labels == labels:
                # As Docker's name conflict: replace a leftover that never ran.
                state = self._status(old).state
                if state is not ContainerState.CREATED:
                    raise CreateContainerError(
                        f"container {config.name} #{config.restart_count} of pod "
                        f"{sandbox.namespace}/{sandbox.name} exists already"
                    )
                await self.remove_container(old.id)
                break
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOSTNAME": sandbox.name,
            **dict(config.env),
        }
        if "HOME" in os.environ:
            env.setdefault("HOME", os.environ["HOME"])
        if self.pod_network is not None and netns_path(sandbox.id).exists():
            # A pod of its own network namespace resolves with the kubelet's resolv.conf
            # (cluster DNS), as a container does: see _enter.
            for m in config.mounts:
                if m.container_path in POD_ETC_FILES:
                    try:
                        install_pod_file(sandbox.id, m.host_path, m.container_path)
                    except OSError as e:
                        raise CreateContainerError(f"pod file {m.container_path}: {e}") from e
        cid = secrets.token_hex(16)
        container = _Container(
            id=cid,
            dir=self._container_dir / cid,
            labels=labels,
            image=config.image,
            argv=argv,
            env=env,
            cwd=config.working_dir,
            created_at=time.time(),
        )
        container.dir.mkdir()
        _write_json(
            container.dir / "config.json",
            {
                "id": cid,
                "labels": labels,
                "image": config.image,
                "argv": argv,
                "env": env,
                "cwd": config.working_dir,
                "created_at": container.created_at,
            },
        )
        self._containers[cid] = container
        return cid

    async def start_container(self, container_id: str) -> None:
        container = self._get(container_id)
        if self._status(container).state is not ContainerState.CREATED:
            raise StartContainerError(f"container {container_id} was started before")
        # The shim's own complaints (a traceback, say) go to a file next to its state.
        err = os.open(container.dir / "shim.err", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            proc = await trio.lowlevel.open_process(
                [*self._enter(container), sys.executable, "-I", "-S", str(SHIM), container.dir],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        finally:
            os.close(err)
        self._shims[container_id] = proc
        assert proc.stdout is not None
        answer = b""
        with trio.move_on_after(30):
            while not answer.endswith(b"\n"):
                chunk = await proc.stdout.receive_some()
                if not chunk:
                    break
                answer += chunk
        await proc.stdout.aclose()
        word, _, message = answer.decode(errors="replace").strip().partition(" ")
        if word != "ok":
            detail = message or (container.dir / "shim.err").read_text(errors="replace")[-2000:]
            raise StartContainerError(detail.strip() or "the container's shim did not start")

    async def stop_container(self, container_id: str, grace_seconds: float) -> None:
        container = self._containers.get(container_id)
        if container is None:
            return
        state = _read_json(container.dir / "state.json")
        if state is None or self._status(container).state is not ContainerState.RUNNING:
            return
        if grace_seconds > 0:
            _killpg(state, signal.SIGTERM)
            if await self._wait_exit(container, grace_seconds):
                return
        _killpg(state, signal.SIGKILL)
        await self._wait_exit(container, 10)

    async def _wait_exit(self, container: _Container, timeout: float) -> bool:
        delay = 0.01
        with trio.move_on_after(timeout):
            while self._status(container).state is ContainerState.RUNNING:
                await trio.sleep(delay)
                delay = min(delay * 2, 0.25)
            return True
        return False

    async def remove_container(self, container_id: str) -> None:
        container = self._containers.get(container_id)
        if container is None:
            return
        await self.stop_container(container_id, 0)
        del self._containers[container_id]
        shutil.rmtree(container.dir, ignore_errors=True)
        self._reap()

    async def container_status(self, container_id: str) -> ContainerStatus:
        self._reap()
        return self._status(self._get(container_id))

    def _get(self, container_id: str) -> _Container:
        try:
            return self._containers[container_id]
        except KeyError:
            raise NotFoundError(f"container {container_id} not found") from None

    def _status(self, c: _Container) -> ContainerStatus:
        info = c.info(ContainerState.CREATED)
        status = ContainerStatus(
            id=c.id,
            name=info.name,
            restart_count=info.restart_count,
            state=ContainerState.CREATED,
            image=c.image,
            image_ref=c.image,
            created_at=c.created_at,
            labels=c.labels,
        )
        state = _read_json(c.dir / "state.json")
        ended = _read_json(c.dir / "exit.json")
        if ended is None and state is not None:
            if _alive(state["shim_pid"], state["shim_start"]) or _alive(
                state["pid"], state["pid_start"]
            ):
                status.state, status.started_at = ContainerState.RUNNING, state["started_at"]
                return status
            # The shim may have finished between the two reads.
            ended = _read_json(c.dir / "exit.json") or {
                "exit_code": UNKNOWN_EXIT_CODE,
                "finished_at": time.time(),
                "reason": REASON_STATUS_UNKNOWN,
                "message": "The container could not be located when the pod was terminated",
            }
        if ended is not None:
            status.state = ContainerState.EXITED
            status.exit_code = int(ended["exit_code"])
            status.finished_at = float(ended["finished_at"])
            status.started_at = state["started_at"] if state else status.finished_at
            status.reason = ended.get("reason") or terminated_reason(status.exit_code)
            status.message = ended.get("message") or ""
        return status

    async def container_stats(self, container_id: str) -> ContainerStats:
        c = self._get(container_id)
        state = _read_json(c.dir / "state.json")
        if state is None or not _alive(state["pid"], state["pid_start"]):
            raise NotFoundError(f"container {container_id} is not running")
        return await trio.to_thread.run_sync(group_stats, int(state["pid"]))

    async def list_containers(self) -> list[ContainerInfo]:
        self._reap()
        return [c.info(self._status(c).state) for c in self._containers.values()]

    # -- exec and logs ----------------------------------------------------------------------

    async def exec(self, container_id: str, argv: list[str], timeout: float) -> ExecResult:
        container = self._get(container_id)
        if self._status(container).state is not ContainerState.RUNNING:
            raise ContainerRuntimeError(f"container {container_id} is not running")

        async def kill_group(proc: trio.Process) -> None:
            _killpg({"pid": proc.pid, "pid_start": ""}, signal.SIGKILL)

        with trio.move_on_after(timeout):
            try:
                done = await trio.run_process(
                    [*self._enter(container), *argv],
                    env=container.env,
                    cwd=container.cwd or None,
                    check=False,
                    capture_stdout=True,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    deliver_cancel=kill_group,
                )
            except OSError as e:
                return ExecResult(
                    126 if isinstance(e, PermissionError) else 127,
                    f"exec: {argv[0]!r}: {e.strerror}\n".encode(),
                )
            code = done.returncode
            return ExecResult(128 - code if code < 0 else code, done.stdout)
        raise ExecTimeoutError(f"command {argv!r} timed out after {timeout}s")

    async def exec_stream(
        self, container_id: str, argv: list[str], *, stdin: bool, tty: bool
    ) -> ProcessSession:
        container = self._get(container_id)
        if self._status(container).state is not ContainerState.RUNNING:
            raise ContainerRuntimeError(f"container {container_id} is not running")
        return await ProcessSession.start(
            [*self._enter(container), *argv],
            container.env,
            container.cwd or None,
            stdin=stdin,
            tty=tty,
        )

    async def attach(self, container_id: str, *, stdin: bool, tty: bool) -> ProcessSession:
        # The main process writes to its log file and reads nothing: there is nothing
        # to attach to (kubectl logs -f shows the same output).
        self._get(container_id)
        raise ContainerRuntimeError(
            "the process runtime keeps no streams of a container's main process to attach "
            "to; use kubectl logs -f"
        )

    async def port_forward(self, sandbox: Sandbox, port: int) -> trio.SocketStream:
        # A pod of its own network namespace is reached at its address on the bridge; one
        # sharing the node's has the port on loopback.
        host = sandbox.ip if netns_path(sandbox.id).exists() else "127.0.0.1"
        return await connect_pod_port(sandbox, host, port)

    async def logs(
        self,
        container_id: str,
        *,
        follow: bool = False,
        tail_lines: int | None = None,
        since_seconds: float | None = None,
        timestamps: bool = False,
    ) -> AsyncGenerator[bytes, None]:
        container = self._get(container_id)
        since = None
        if since_seconds is not None:
            since = rfc3339_ns(time.time_ns() - int(since_seconds * 1e9)).encode()
        path = container.dir / "log"
        delay = 0.02
        # Follow until the container has ended and everything it wrote has been read.
        while follow and not path.exists() and self._live(container):
            await trio.sleep(delay)
        if not path.exists():
            return
        with path.open("rb") as f:
            if tail_lines is not None:
                f.seek(_tail_offset(f, tail_lines))
            pending = b""
            while True:
                ended = not follow or not self._live(container)
                data = f.read(_READ_CHUNK)
                if data:
                    lines = (pending + data).split(b"\n")
                    pending = lines.pop()
                    out = b"".join(_format(line, since, timestamps) for line in lines)
                    if out:
                        yield out
                    delay = 0.02
                elif ended:
                    return
                else:
                    await trio.sleep(delay)
                    delay = min(delay * 2, 0.25)

    def _enter(self, container: _Container) -> list[str]:
        """The command prefix that runs a process in the container's pod network namespace
        (nsenter execs, so the PID the shim records is the process's own); none without."""
        sandbox_id = container.labels.get(LABEL_SANDBOX_ID, "")
        path = netns_path(sandbox_id)
        if self.pod_network is None or not path.exists():
            return []
        if netns_etc(sandbox_id).is_dir():
            # With the pod's resolv.conf and /etc/hosts over the host's (it execs too).
            return ["ip", "netns", "exec", netns_name(sandbox_id)]
        return ["nsenter", f"--net={path}", "--"]

    def _live(self, container: _Container) -> bool:
        return self._status(container).state in (ContainerState.CREATED, ContainerState.RUNNING)


def _format(line: bytes, since: bytes | None, timestamps: bool) -> bytes:
    """A CRI log line as kubectl shows it: the text, newline unless partial, maybe the time."""
    parts = line.split(b" ", 3)
    if len(parts) < 4:
        return b""
    stamp, _, tag, text = parts
    if since is not None and stamp < since:
        return b""
    text = text + b"\n" if tag == b"F" else text
    return stamp + b" " + text if timestamps else text


def _tail_offset(f: Any, lines: int) -> int:
    """The offset of the last `lines` lines of a file that ends in a newline."""
    end = f.seek(0, os.SEEK_END)
    if lines <= 0:
        return end
    pos, seen = end, 0
    while pos > 0:
        step = min(_READ_CHUNK, pos)
        pos -= step
        f.seek(pos)
        block = f.read(step)
        # The file's final newline ends the last line; it does not start one.
        idx = len(block) - (1 if pos + step == end else 0)
        while True:
            idx = block.rfind(b"\n", 0, idx)
            if idx < 0:
                break
            seen += 1
            if seen == lines:
                return pos + idx + 1
    return 0


def _sandbox(data: Mapping[str, Any]) -> Sandbox:
    return sandbox_from_labels(
        data["id"], data["labels"], data["ip"], SandboxState(data["state"]), data["created_at"]
    )


def group_stats(pgid: int) -> ContainerStats:
    """The usage of every process in the container's process group (the shim made the
    container's process a group leader), children that exited included, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    cpu_ticks = rss_pages = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # exited while we looked
        # Fields after the command (which may hold spaces) in parentheses; pgrp is the 5th
        # field, utime/stime/cutime/cstime the 14th to 17th, rss the 24th.
        fields = stat.rpartition(")")[2].split()
        if int(fields[2]) != pgid:
            continue
        cpu_ticks += sum(int(v) for v in fields[11:15])
        rss_pages += int(fields[21])
    rss = rss_pages * page
    return ContainerStats(
        timestamp=time.time(),
        cpu_usage_ns=cpu_ticks * 1_000_000_000 // ticks,
        memory_usage=rss,
        memory_working_set=rss,
        memory_rss=rss,
    )


def _alive(pid: int, start: str) -> bool:
    """Whether pid still runs and is the same process (its start time matches)."""
    return bool(pid) and proc_start(pid) == start != ""


def _killpg(state: Mapping[str, Any], sig: signal.Signals) -> None:
    """Signal the container's process group, unless its leader is a reused PID."""
    pid = int(state["pid"])
    if state["pid_start"] and proc_start(pid) not in ("", state["pid_start"]):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_bytes())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
