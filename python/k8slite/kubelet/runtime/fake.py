"""The fake runtime of hollow nodes: everything succeeds at once and containers run forever,
except those of run-to-completion pods (restartPolicy Never or OnFailure) when a run time
is given: they exit 0 that long after they start, so Jobs finish on hollow nodes."""

from __future__ import annotations

import ipaddress
import itertools
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from k8slite import __version__
from k8slite.api.quantity import int_value, milli_value
from k8slite.component.objects import meta
from k8slite.kubelet.config import parse_key_values
from k8slite.kubelet.runtime.base import (
    LABEL_CONTAINER_NAME,
    LABEL_MANAGED,
    LABEL_NODE,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    LABEL_RESTART_COUNT,
    LABEL_SANDBOX_ID,
    LABEL_TYPE,
    REASON_COMPLETED,
    TYPE_CONTAINER,
    ContainerConfig,
    ContainerInfo,
    ContainerRuntimeError,
    ContainerState,
    ContainerStats,
    ContainerStatus,
    CreateSandboxError,
    ExecResult,
    ImageInfo,
    ImageRef,
    NamespaceMode,
    NamespaceOptions,
    NotFoundError,
    Sandbox,
    SandboxState,
    StreamSession,
    pod_identity,
    validate_image,
)

# A pod's annotation that overrides the node's synthetic usage for each of its containers
# (e.g. "cpu=500m,memory=64Mi"), read when its sandbox starts: how a scale test loads pods.
SYNTHETIC_USAGE_ANNOTATION = "k8slite.io/synthetic-usage"
# Simulated containers run nothing a stream could connect to.
_NO_PROCESSES = "the fake runtime's containers run no processes to exec, attach or forward to"
# Ids unique across every FakeRuntime of the process (hollow nodes share one process).
_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class SyntheticUsage:
    """What each running fake container reports: CPU in millicores, memory in bytes."""

    cpu_millicores: int = 0
    memory_bytes: int = 0

    @classmethod
    def parse(cls, values: Mapping[str, str], base: SyntheticUsage | None = None) -> SyntheticUsage:
        """{"cpu": "250m", "memory": "64Mi"}, each missing key as in base."""
        base = base or cls()
        unknown = sorted(set(values) - {"cpu", "memory"})
        if unknown:
            raise ValueError(f"synthetic usage: unknown resource(s) {', '.join(unknown)}")
        cpu, memory = values.get("cpu"), values.get("memory")
        return cls(
            milli_value(cpu) if cpu else base.cpu_millicores,
            int_value(memory) if memory else base.memory_bytes,
        )


@dataclass(slots=True)
class _Container:
    """As little as a fake container needs; labels and statuses are built when asked for."""

    id: str
    sandbox: Sandbox
    name: str
    restart_count: int
    image: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    run_for: float | None = None  # exits 0 this long after it starts; None: runs forever


class FakeRuntime:
    """A runtime that keeps a few hundred bytes per pod, for thousands of pods per process.

    Each pod gets its own IP from pod_cidr (host-network pods the node's); exec succeeds
    with no output and logs are empty.
    """

    name = "fake"

    def __init__(
        self,
        node_name: str,
        *,
        pod_cidr: str = "10.244.0.0/16",
        node_ip: str = "127.0.0.1",
        completion_seconds: float | None = None,
        on_exit_due: Callable[[str, float], None] | None = None,
        usage: SyntheticUsage | None = None,
    ) -> None:
        """completion_seconds: how long containers of run-to-completion pods run;
        on_exit_due(pod uid, seconds) is told when one will exit, to look at it then."""
        self.node_name = node_name
        self.completion_seconds = completion_seconds
        self._on_exit_due = on_exit_due
        # Sandboxes of run-to-completion pods (their containers exit on their own).
        self._completing: set[str] = set()
        self.usage = usage or SyntheticUsage()
        # Sandboxes whose pod's annotation overrides self.usage.
        self._usage: dict[str, SyntheticUsage] = {}
        self.node_ip = node_ip
        self._network = ipaddress.ip_network(pod_cidr)
        # Offsets into pod_cidr: fresh ones in order, then those of removed sandboxes.
        self._next_ip = 2  # .0 is the network, .1 the would-be gateway
        self._free_ips: list[int] = []
        self._sandboxes: dict[str, Sandbox] = {}
        self._containers: dict[str, _Container] = {}
        # Indexes, so that no call is linear in the node's pods: (pod uid, attempt) -> sandbox
        # id, and sandbox id -> its containers' ids.
        self._by_pod: dict[tuple[str, int], str] = {}
        self._by_sandbox: dict[str, set[str]] = {}
        self._images: set[str] = set()

    async def version(self) -> str:
        return f"fake://{__version__}"

    async def aclose(self) -> None:
        pass

    # -- sandboxes --------------------------------------------------------------------------

    async def run_sandbox(self, pod: Mapping[str, Any], *, attempt: int = 0) -> Sandbox:
        uid, namespace, name = pod_identity(pod)
        existing = self._sandboxes.get(self._by_pod.get((uid, attempt), ""))
        if existing is not None:
            if existing.state is SandboxState.READY:
                return existing
            await self.remove_sandbox(existing.id)
        namespaces = NamespaceOptions.from_pod(pod)
        ip = self.node_ip if namespaces.network is NamespaceMode.NODE else self._allocate_ip()
        sandbox = Sandbox(
            f"fake-{next(_ids):x}",
            uid,
            namespace,
            name,
            attempt,
            ip,
            SandboxState.READY,
            namespaces,
            time.time(),
        )
        self._sandboxes[sandbox.id] = sandbox
        if (pod.get("spec") or {}).get("restartPolicy", "Always") != "Always":
            self._completing.add(sandbox.id)
        annotation = (meta(pod).get("annotations") or {}).get(SYNTHETIC_USAGE_ANNOTATION)
        if annotation:
            try:
                self._usage[sandbox.id] = SyntheticUsage.parse(
                    parse_key_values(annotation), self.usage
                )
            except ValueError as e:
                raise CreateSandboxError(f"annotation {SYNTHETIC_USAGE_ANNOTATION}: {e}") from e
        self._by_pod[uid, attempt] = sandbox.id
        self._by_sandbox[sandbox.id] = set()
        return sandbox

    def _allocate_ip(self) -> str:
        if self._free_ips:
            offset = self._free_ips.pop()
        elif self._next_ip < self._network.num_addresses - 1:
            offset = self._next_ip
            self._next_ip += 1
        else:
            raise CreateSandboxError(f"no free pod IP left in {self._network}")
        return str(self._network.network_address + offset)

    async def stop_sandbox(self, sandbox_id: str) -> None:
        sandbox = self._sandboxes.get(sandbox_id)
        if sandbox is None:
            return
        for c in self._of(sandbox_id):
            _stop(c)
        sandbox.state = SandboxState.NOTREADY

    async def remove_sandbox(self, sandbox_id: str) -> None:
        sandbox = self._sandboxes.pop(sandbox_id, None)
        if sandbox is None:
            return
        self._completing.discard(sandbox_id)
        del self._by_pod[sandbox.pod_uid, sandbox.attempt]
        self._usage.pop(sandbox_id, None)
        for cid in self._by_sandbox.pop(sandbox_id):
            del self._containers[cid]
        if sandbox.namespaces.network is NamespaceMode.POD:
            self._free_ips.append(
                int(ipaddress.ip_address(sandbox.ip)) - int(self._network.network_address)
            )

    def _of(self, sandbox_id: str) -> list[_Container]:
        return [self._containers[cid] for cid in self._by_sandbox.get(sandbox_id, ())]

    async def sandbox_status(self, sandbox_id: str) -> Sandbox:
        try:
            return self._sandboxes[sandbox_id]
        except KeyError:
            raise NotFoundError(f"sandbox {sandbox_id} not found") from None

    async def list_sandboxes(self) -> list[Sandbox]:
        return list(self._sandboxes.values())

    # -- images -----------------------------------------------------------------------------

    async def ensure_image(self, image: str, pull_policy: str) -> ImageRef:
        validate_image(image)
        self._images.add(image)
        return ImageRef(image, f"fake:{image}")

    async def list_images(self) -> list[ImageInfo]:
        return [ImageInfo(f"fake:{name}", (name,), 0) for name in sorted(self._images)]

    # -- containers -------------------------------------------------------------------------

    async def create_container(self, sandbox: Sandbox, config: ContainerConfig) -> str:
        if sandbox.id not in self._sandboxes:
            raise NotFoundError(f"sandbox {sandbox.id} not found")
        c = _Container(
            f"fake-{next(_ids):x}",
            sandbox,
            config.name,
            config.restart_count,
            config.image,
            time.time(),
        )
        if sandbox.id in self._completing and self.completion_seconds is not None:
            c.run_for = self.completion_seconds
        self._containers[c.id] = c
        self._by_sandbox[sandbox.id].add(c.id)
        return c.id

    async def start_container(self, container_id: str) -> None:
        c = self._get(container_id)
        c.started_at = time.time()
        if c.run_for is not None and self._on_exit_due is not None:
            self._on_exit_due(c.sandbox.pod_uid, c.run_for)

    async def stop_container(self, container_id: str, grace_seconds: float) -> None:
        c = self._containers.get(container_id)
        if c is not None:
            _stop(c)

    async def remove_container(self, container_id: str) -> None:
        c = self._containers.pop(container_id, None)
        if c is not None:
            self._by_sandbox[c.sandbox.id].discard(container_id)

    async def container_status(self, container_id: str) -> ContainerStatus:
        c = self._get(container_id)
        state = _state(c)
        status = ContainerStatus(
            c.id,
            c.name,
            c.restart_count,
            state,
            c.image,
            f"fake:{c.image}",
            c.created_at,
            c.started_at,
            c.finished_at,
            labels=self._labels(c),
        )
        if state is ContainerState.EXITED:
            status.exit_code, status.reason = 0, REASON_COMPLETED
        return status

    async def container_stats(self, container_id: str) -> ContainerStats:
        c = self._get(container_id)
        if c.started_at is None or c.finished_at is not None:
            raise NotFoundError(f"container {container_id} is not running")
        usage = self._usage.get(c.sandbox.id, self.usage)
        # To the millisecond, as /metrics/resource stamps samples: a rate over a short
        # window (from the container's start) then comes out as configured.
        now = round(time.time(), 3)
        memory = usage.memory_bytes
        return ContainerStats(
            timestamp=now,
            # millicores for (now - started) seconds: 1m is a million core-nanoseconds a second.
            cpu_usage_ns=int(usage.cpu_millicores * 1_000_000 * (now - c.started_at)),
            memory_usage=memory,
            memory_working_set=memory,
            memory_rss=memory,
        )

    async def list_containers(self) -> list[ContainerInfo]:
        return [
            ContainerInfo(
                c.id,
                c.sandbox.id,
                c.sandbox.pod_uid,
                c.sandbox.namespace,
                c.sandbox.name,
                c.name,
                c.restart_count,
                _state(c),
                c.image,
                c.created_at,
                self._labels(c),
            )
            for c in self._containers.values()
        ]

    def _labels(self, c: _Container) -> dict[str, str]:
        return {
            LABEL_MANAGED: "true",
            LABEL_NODE: self.node_name,
            LABEL_TYPE: TYPE_CONTAINER,
            LABEL_POD_UID: c.sandbox.pod_uid,
            LABEL_POD_NAMESPACE: c.sandbox.namespace,
            LABEL_POD_NAME: c.sandbox.name,
            LABEL_SANDBOX_ID: c.sandbox.id,
            LABEL_CONTAINER_NAME: c.name,
            LABEL_RESTART_COUNT: str(c.restart_count),
        }

    def _get(self, container_id: str) -> _Container:
        try:
            return self._containers[container_id]
        except KeyError:
            raise NotFoundError(f"container {container_id} not found") from None

    async def exec(self, container_id: str, argv: list[str], timeout: float) -> ExecResult:
        if _state(self._get(container_id)) is not ContainerState.RUNNING:
            raise ContainerRuntimeError(f"container {container_id} is not running")
        return ExecResult(0, b"")

    async def exec_stream(
        self, container_id: str, argv: list[str], *, stdin: bool, tty: bool
    ) -> StreamSession:
        raise ContainerRuntimeError(_NO_PROCESSES)

    async def attach(self, container_id: str, *, stdin: bool, tty: bool) -> StreamSession:
        raise ContainerRuntimeError(_NO_PROCESSES)

    async def port_forward(self, sandbox: Sandbox, port: int) -> Any:
        raise ContainerRuntimeError(_NO_PROCESSES)

    async def logs(
        self,
        container_id: str,
        *,
        follow: bool = False,
        tail_lines: int | None = None,
        since_seconds: float | None = None,
        timestamps: bool = False,
    ) -> AsyncGenerator[bytes, None]:
        self._get(container_id)
        return
        yield b""  # an async generator that yields nothing


def _state(c: _Container) -> ContainerState:
    if (
        c.finished_at is None
        and c.run_for is not None
        and c.started_at is not None
        and time.time() >= c.started_at + c.run_for
    ):
        c.finished_at = c.started_at + c.run_for
    if c.finished_at is not None:
        return ContainerState.EXITED
    return ContainerState.CREATED if c.started_at is None else ContainerState.RUNNING


def _stop(c: _Container) -> None:
    if c.started_at is not None and c.finished_at is None:
        c.finished_at = time.time()
