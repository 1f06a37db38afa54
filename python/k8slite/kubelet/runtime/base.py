"""The kubelet's container runtime interface (CRI-like): records, errors, Runtime protocol."""

from __future__ import annotations

import enum
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from k8slite.api.quantity import int_value, milli_value
from k8slite.component.objects import meta

# Labels on every sandbox and container, as upstream's dockershim wrote them, so that
# `docker ps --filter label=io.kubernetes.pod.name=web` works and a restarted kubelet can
# adopt what it finds.
LABEL_POD_UID = "io.kubernetes.pod.uid"
LABEL_POD_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_POD_NAME = "io.kubernetes.pod.name"
LABEL_CONTAINER_NAME = "io.kubernetes.container.name"
LABEL_RESTART_COUNT = "io.kubernetes.container.restartCount"
LABEL_SANDBOX_ID = "io.kubernetes.sandbox.id"
LABEL_TYPE = "io.kubernetes.docker.type"  # "podsandbox" or "container"
LABEL_ATTEMPT = "io.kubernetes.sandbox.attempt"
# Ours: what a runtime may touch. Several kubelets (node names) can share one Docker engine.
LABEL_MANAGED = "k8slite.managed"
LABEL_NODE = "k8slite.node"
LABEL_NAMESPACES = "k8slite.namespaces"

TYPE_SANDBOX = "podsandbox"
TYPE_CONTAINER = "container"


class ContainerState(enum.StrEnum):
    """A container's state, as CRI's ContainerState."""

    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


class SandboxState(enum.StrEnum):
    """A sandbox's state, as CRI's PodSandboxState."""

    READY = "ready"
    NOTREADY = "notready"


class NamespaceMode(enum.StrEnum):
    """Which namespace a pod's containers get, as CRI's NamespaceMode."""

    POD = "pod"  # shared by the pod's containers (the sandbox's)
    CONTAINER = "container"  # one per container
    NODE = "node"  # the host's


# Terminated reasons the kubelet reports in containerStatuses[].state.terminated.reason.
REASON_COMPLETED = "Completed"
REASON_ERROR = "Error"
REASON_OOM_KILLED = "OOMKilled"
REASON_START_ERROR = "StartError"
REASON_STATUS_UNKNOWN = "ContainerStatusUnknown"


@dataclass(frozen=True, slots=True)
class NamespaceOptions:
    """The pod-level namespace choices: hostNetwork, shareProcessNamespace/hostPID, hostIPC."""

    network: NamespaceMode = NamespaceMode.POD
    pid: NamespaceMode = NamespaceMode.CONTAINER
    ipc: NamespaceMode = NamespaceMode.POD

    @classmethod
    def from_pod(cls, pod: Mapping[str, Any]) -> NamespaceOptions:
        spec = pod.get("spec") or {}
        pid = NamespaceMode.CONTAINER
        if spec.get("hostPID"):
            pid = NamespaceMode.NODE
        elif spec.get("shareProcessNamespace"):
            pid = NamespaceMode.POD
        return cls(
            network=NamespaceMode.NODE if spec.get("hostNetwork") else NamespaceMode.POD,
            pid=pid,
            ipc=NamespaceMode.NODE if spec.get("hostIPC") else NamespaceMode.POD,
        )

    def label(self) -> str:
        """The compact form kept in a sandbox label: "network=pod,pid=container,ipc=pod"."""
        return f"network={self.network},pid={self.pid},ipc={self.ipc}"

    @classmethod
    def from_label(cls, value: str) -> NamespaceOptions:
        parts = dict(p.split("=", 1) for p in value.split(",") if "=" in p)
        default = cls()
        return cls(
            network=NamespaceMode(parts.get("network", default.network)),
            pid=NamespaceMode(parts.get("pid", default.pid)),
            ipc=NamespaceMode(parts.get("ipc", default.ipc)),
        )


@dataclass(slots=True)
class Sandbox:
    """A pod sandbox: holds the pod's network (and IPC, maybe PID) namespace and its IP."""

    id: str
    pod_uid: str
    namespace: str
    name: str
    attempt: int
    ip: str
    state: SandboxState
    namespaces: NamespaceOptions
    created_at: float  # seconds since the epoch
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImageRef:
    """An image present on the node: the reference asked for and the runtime's id for it."""

    image: str
    image_id: str


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """One image for node status (status.images): its names and size."""

    id: str
    names: tuple[str, ...]
    size_bytes: int


@dataclass(frozen=True, slots=True)
class Mount:
    """A host path the kubelet prepared (emptyDir, configMap, secret, hostPath, subPath)."""

    host_path: str
    container_path: str
    read_only: bool = False
    # The container's mountPropagation: None, HostToContainer or Bidirectional.
    propagation: str = "None"


@dataclass(slots=True)
class ContainerConfig:
    """Everything a runtime needs to create one container; the kubelet resolves it first."""

    name: str
    image: str
    restart_count: int = 0
    command: list[str] = field(default_factory=list)  # empty: the image's entrypoint
    args: list[str] = field(default_factory=list)  # empty (and no command): the image's cmd
    env: list[tuple[str, str]] = field(default_factory=list)  # in order, values resolved
    mounts: list[Mount] = field(default_factory=list)
    working_dir: str = ""
    cpu_request_milli: int | None = None
    cpu_limit_milli: int | None = None
    memory_limit_bytes: int | None = None
    run_as_user: int | None = None
    run_as_group: int | None = None
    privileged: bool = False
    labels: dict[str, str] = field(default_factory=dict)  # extra labels, e.g. a spec hash
    # spec.stdin and tty: what `kubectl attach -i` and `kubectl run -it` use.
    stdin: bool = False
    tty: bool = False
    # An ephemeral container's target (kubectl debug --target): the id of the container
    # whose process namespace it joins; runtimes without namespaces ignore it.
    pid_target: str = ""

    @classmethod
    def from_spec(
        cls,
        container: Mapping[str, Any],
        *,
        pod: Mapping[str, Any] | None = None,
        restart_count: int = 0,
        env: Iterable[tuple[str, str]] = (),
        mounts: Iterable[Mount] = (),
    ) -> ContainerConfig:
        """The config of a pod's container, given the env and mounts the kubelet resolved.

        $(VAR) references in command and args are expanded from env, as upstream does.
        """
        env = list(env)
        values = dict(env)
        resources = container.get("resources") or {}
        limits = resources.get("limits") or {}
        requests = resources.get("requests") or {}
        pod_sc = ((pod or {}).get("spec") or {}).get("securityContext") or {}
        sc = container.get("securityContext") or {}
        user = sc.get("runAsUser", pod_sc.get("runAsUser"))
        group = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
        return cls(
            name=container["name"],
            image=container.get("image", ""),
            restart_count=restart_count,
            command=[expand_vars(s, values) for s in container.get("command") or ()],
            args=[expand_vars(s, values) for s in container.get("args") or ()],
            env=env,
            mounts=list(mounts),
            working_dir=container.get("workingDir") or "",
            cpu_request_milli=milli_value(requests["cpu"]) if "cpu" in requests else None,
            cpu_limit_milli=milli_value(limits["cpu"]) if "cpu" in limits else None,
            memory_limit_bytes=int_value(limits["memory"]) if "memory" in limits else None,
            run_as_user=None if user is None else int(user),
            run_as_group=None if group is None else int(group),
            privileged=bool(sc.get("privileged", False)),
            stdin=bool(container.get("stdin")),
            tty=bool(container.get("tty")),
        )


@dataclass(slots=True)
class ContainerInfo:
    """One container in list_containers: who it belongs to and its coarse state."""

    id: str
    sandbox_id: str
    pod_uid: str
    namespace: str
    pod_name: str
    name: str
    restart_count: int
    state: ContainerState
    image: str
    created_at: float
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ContainerStatus:
    """A container's detailed status, enough for a pod's containerStatuses[]."""

    id: str
    name: str
    restart_count: int
    state: ContainerState
    image: str
    image_ref: str  # the image id (status.imageID)
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    reason: str = ""  # Completed, Error, OOMKilled, StartError, ContainerStatusUnknown
    message: str = ""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ContainerStats:
    """A running container's resource usage at one moment (cAdvisor's figures)."""

    timestamp: float  # seconds since the epoch
    cpu_usage_ns: int  # cumulative CPU time, core-nanoseconds
    memory_usage: int  # bytes, page cache included
    memory_working_set: int  # usage less inactive file pages: what the OOM killer weighs
    memory_rss: int = 0


@dataclass(frozen=True, slots=True)
class ExecResult:
    """The outcome of a command run to completion in a container (stdout and stderr merged)."""

    exit_code: int
    output: bytes


STDOUT = 1
STDERR = 2


class StreamSession(Protocol):
    """A running exec or attach: its stdin, its output as (STDOUT or STDERR, bytes), its TTY."""

    async def write_stdin(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    async def resize(self, width: int, height: int) -> None: ...

    async def copy_output(self, write: Callable[[int, bytes], Awaitable[None]]) -> None:
        """write(STDOUT or STDERR, bytes) until the output ends (a TTY's is all STDOUT)."""
        ...

    async def wait(self) -> int | None:
        """The exit code once the output ended; None when there is none (attach)."""
        ...

    async def aclose(self) -> None: ...


class ContainerRuntimeError(Exception):
    """A runtime operation failed; reason is the CamelCase word the kubelet reports."""

    reason = "RuntimeError"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class ImagePullError(ContainerRuntimeError):
    reason = "ErrImagePull"


class ImageNeverPullError(ContainerRuntimeError):
    reason = "ErrImageNeverPull"


class InvalidImageNameError(ContainerRuntimeError):
    reason = "InvalidImageName"


class CreateSandboxError(ContainerRuntimeError):
    reason = "CreatePodSandboxError"


class CreateContainerError(ContainerRuntimeError):
    reason = "CreateContainerError"


class StartContainerError(ContainerRuntimeError):
    reason = "RunContainerError"


class NotFoundError(ContainerRuntimeError):
    """The sandbox or container does not exist (any more)."""

    reason = "NotFound"


class ExecTimeoutError(ContainerRuntimeError):
    """An exec did not finish within its timeout; the command was killed where possible."""

    reason = "ExecTimeout"


PULL_HELP = (
    "no image registry answers from this cluster. Build the image on the node instead "
    "(hack/build-images builds busybox:1.35 and k8slite/pause:1.0), or use an image already "
    "present such as busybox:1.35, with imagePullPolicy: IfNotPresent or Never (an untagged "
    'or ":latest" image defaults to Always, which pulls every time)'
)


def pull_error(image: str, detail: str) -> ImagePullError:
    """The ErrImagePull of a failed pull, saying why and how to avoid pulling."""
    return ImagePullError(f'Failed to pull image "{image}": {detail.strip()}; {PULL_HELP}')


def never_pull_error(image: str) -> ImageNeverPullError:
    # Upstream's words.
    return ImageNeverPullError(
        f'Container image "{image}" is not present with pull policy of Never'
    )


# The image reference grammar of distribution/reference: [domain[:port]/]path[:tag][@digest].
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_RE = re.compile(
    rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)


def validate_image(image: str) -> None:
    """InvalidImageNameError unless image is a well-formed reference."""
    if not _IMAGE_RE.fullmatch(image):
        raise InvalidImageNameError(
            f'Failed to apply default image tag "{image}": couldn\'t parse image name '
            f'"{image}": invalid reference format'
        )


def expand_vars(value: str, env: Mapping[str, str]) -> str:
    """Upstream's $(VAR) expansion: known names are replaced, $$ escapes, the rest stays."""
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c == "$" and i + 1 < n:
            nxt = value[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = value.find(")", i + 2)
                if end != -1:
                    name = value[i + 2 : end]
                    out.append(env[name] if name in env else value[i : end + 1])
                    i = end + 1
                    continue
        out.append(c)
        i += 1
    return "".join(out)


def pod_identity(pod: Mapping[str, Any]) -> tuple[str, str, str]:
    """(uid, namespace, name) of a pod object."""
    m = meta(pod)
    return m.get("uid", ""), m.get("namespace", "default"), m.get("name", "")


def sandbox_labels(
    node_name: str, pod: Mapping[str, Any], attempt: int, namespaces: NamespaceOptions
) -> dict[str, str]:
    uid, namespace, name = pod_identity(pod)
    return {
        LABEL_MANAGED: "true",
        LABEL_NODE: node_name,
        LABEL_TYPE: TYPE_SANDBOX,
        LABEL_POD_UID: uid,
        LABEL_POD_NAMESPACE: namespace,
        LABEL_POD_NAME: name,
        LABEL_ATTEMPT: str(attempt),
        LABEL_NAMESPACES: namespaces.label(),
    }


def container_labels(node_name: str, sandbox: Sandbox, config: ContainerConfig) -> dict[str, str]:
    return {
        **config.labels,
        LABEL_MANAGED: "true",
        LABEL_NODE: node_name,
        LABEL_TYPE: TYPE_CONTAINER,
        LABEL_POD_UID: sandbox.pod_uid,
        LABEL_POD_NAMESPACE: sandbox.namespace,
        LABEL_POD_NAME: sandbox.name,
        LABEL_SANDBOX_ID: sandbox.id,
        LABEL_CONTAINER_NAME: config.name,
        LABEL_RESTART_COUNT: str(config.restart_count),
    }


def container_info(
    id: str, labels: dict[str, str], state: ContainerState, image: str, created_at: float
) -> ContainerInfo:
    """A ContainerInfo from the labels container_labels wrote."""
    return ContainerInfo(
        id=id,
        sandbox_id=labels.get(LABEL_SANDBOX_ID, ""),
        pod_uid=labels.get(LABEL_POD_UID, ""),
        namespace=labels.get(LABEL_POD_NAMESPACE, ""),
        pod_name=labels.get(LABEL_POD_NAME, ""),
        name=labels.get(LABEL_CONTAINER_NAME, ""),
        restart_count=int(labels.get(LABEL_RESTART_COUNT, "0") or 0),
        state=state,
        image=image,
        created_at=created_at,
        labels=labels,
    )


def sandbox_from_labels(
    id: str, labels: dict[str, str], ip: str, state: SandboxState, created_at: float
) -> Sandbox:
    """A Sandbox from the labels sandbox_labels wrote."""
    return Sandbox(
        id=id,
        pod_uid=labels.get(LABEL_POD_UID, ""),
        namespace=labels.get(LABEL_POD_NAMESPACE, ""),
        name=labels.get(LABEL_POD_NAME, ""),
        attempt=int(labels.get(LABEL_ATTEMPT, "0") or 0),
        ip=ip,
        state=state,
        namespaces=NamespaceOptions.from_label(labels.get(LABEL_NAMESPACES, "")),
        created_at=created_at,
        labels=labels,
    )


async def connect_pod_port(sandbox: Sandbox, host: str, port: int) -> trio.SocketStream:
    """A TCP connection to a pod's port for port-forward, failing with CRI's message."""
    try:
        return await trio.open_tcp_stream(host, port)
    except OSError as e:
        raise ContainerRuntimeError(
            f"failed to connect to localhost:{port} inside namespace of pod "
            f"{sandbox.namespace}/{sandbox.name}: {e.strerror or e}"
        ) from None


def terminated_reason(exit_code: int, oom_killed: bool = False) -> str:
    if oom_killed:
        return REASON_OOM_KILLED
    return REASON_COMPLETED if exit_code == 0 else REASON_ERROR


class Runtime(Protocol):
    """What the kubelet needs from a container runtime; every call is idempotent where CRI's is.

    Sandboxes and containers are scoped to one node name: a runtime lists and touches only
    its own, so several kubelets can share one Docker engine.
    """

    name: str  # "docker", "process" or "fake"

    async def version(self) -> str:
        """status.nodeInfo.containerRuntimeVersion, e.g. "docker://20.10.24"."""
        ...

    async def run_sandbox(self, pod: Mapping[str, Any], *, attempt: int = 0) -> Sandbox:
        """Create and start the pod's sandbox (or return the running one of this attempt).

        Its /etc/hosts and /etc/resolv.conf are the kubelet's: files it mounts into every
        container."""
        ...

    async def stop_sandbox(self, sandbox_id: str) -> None:
        """Kill what still runs in the sandbox and stop it; missing is fine.

        Stop the containers gracefully (stop_container) first: this kills at once.
        """
        ...

    async def remove_sandbox(self, sandbox_id: str) -> None:
        """Remove the sandbox and all its containers; missing is fine."""
        ...

    async def sandbox_status(self, sandbox_id: str) -> Sandbox:
        """The sandbox now; NotFoundError when it is gone."""
        ...

    async def list_sandboxes(self) -> list[Sandbox]: ...

    async def ensure_image(self, image: str, pull_policy: str) -> ImageRef:
        """Make the image present per imagePullPolicy (Always, IfNotPresent, Never).

        Raises ImagePullError, ImageNeverPullError or InvalidImageNameError.
        """
        ...

    async def list_images(self) -> list[ImageInfo]: ...

    async def create_container(self, sandbox: Sandbox, config: ContainerConfig) -> str:
        """Create (not start) a container in the sandbox; returns its id."""
        ...

    async def start_container(self, container_id: str) -> None:
        """Start it; StartContainerError when its command cannot run."""
        ...

    async def stop_container(self, container_id: str, grace_seconds: float) -> None:
        """SIGTERM (or the image's stop signal), wait up to grace_seconds, then SIGKILL.

        Returns once it has exited; stopped or missing is fine.
        """
        ...

    async def remove_container(self, container_id: str) -> None:
        """Remove it, killing it first if it runs; missing is fine."""
        ...

    async def container_status(self, container_id: str) -> ContainerStatus:
        """NotFoundError when it is gone."""
        ...

    async def list_containers(self) -> list[ContainerInfo]:
        """All of this node's containers, running or exited, for adoption and cleanup."""
        ...

    async def container_stats(self, container_id: str) -> ContainerStats:
        """The running container's CPU and memory usage; NotFoundError when it is gone."""
        ...

    async def exec(self, container_id: str, argv: list[str], timeout: float) -> ExecResult:
        """Run argv in the running container; ExecTimeoutError after timeout seconds."""
        ...

    async def exec_stream(
        self, container_id: str, argv: list[str], *, stdin: bool, tty: bool
    ) -> StreamSession:
        """Start argv in the running container, its streams connected (kubectl exec)."""
        ...

    async def attach(self, container_id: str, *, stdin: bool, tty: bool) -> StreamSession:
        """Connect to the streams of the container's main process (kubectl attach)."""
        ...

    async def port_forward(self, sandbox: Sandbox, port: int) -> Any:
        """A trio.abc.HalfCloseableStream to the port inside the pod's network namespace."""
        ...

    def logs(
        self,
        container_id: str,
        *,
        follow: bool = False,
        tail_lines: int | None = None,
        since_seconds: float | None = None,
        timestamps: bool = False,
    ) -> AsyncGenerator[bytes, None]:
        """The container's stdout and stderr, also once it exited (kubectl logs --previous).

        With timestamps, each line starts with its RFC 3339 time (nanoseconds) and a space.
        Following ends when the container exits.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; containers keep running (a new instance adopts them)."""
        ...
