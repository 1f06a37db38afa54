"""The Docker runtime: pods as a pause sandbox plus app containers sharing its namespaces."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from functools import partial
from typing import Any, TypeVar

import docker
import docker.errors
import docker.types
import httpx
import requests
import trio

from k8slite.kubelet.runtime import kernellog
from k8slite.kubelet.runtime.base import (
    LABEL_CONTAINER_NAME,
    LABEL_MANAGED,
    LABEL_NODE,
    LABEL_SANDBOX_ID,
    LABEL_TYPE,
    TYPE_CONTAINER,
    TYPE_SANDBOX,
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
    InvalidImageNameError,
    NamespaceMode,
    NamespaceOptions,
    NotFoundError,
    Sandbox,
    SandboxState,
    StartContainerError,
    connect_pod_port,
    container_info,
    container_labels,
    never_pull_error,
    pull_error,
    sandbox_from_labels,
    sandbox_labels,
    validate_image,
)
from k8slite.kubelet.runtime.docker_documents import (
    STATES,
    container_spec,
    container_stats_of,
    container_status_of,
    parse_time,
    sandbox_spec,
    sigkilled_under_a_memory_limit,
)
from k8slite.kubelet.runtime.docker_network import ensure_network
from k8slite.kubelet.runtime.docker_stream import DockerSession, hijack

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_NETWORK = "k8slite-pods"
DEFAULT_SANDBOX_IMAGE = "k8slite/pause:1.0"

# Verdicts of the kernel's log kept, by container ID (a bound, not a cache to tune).
_KERNEL_OOM_REMEMBERED = 1024
_STREAM_HEADER = 8
# How long an exec's exit code may lag behind the end of its output.
EXEC_EXIT_WAIT = 10.0
# How often an attach checks that the container still runs (see attach's ended()).
ATTACH_POLL = 1.0


class DockerRuntime:
    """Runtime over a Docker engine, through the docker SDK in worker threads.

    Pods get IPs on one user-defined bridge network shared by every kubelet on the engine,
    so pods of different (simulated) nodes reach each other directly. With `per_node` (a
    pod network across hosts) the network is this node's alone, on the node's pod CIDR once
    the kubelet learns it, and Docker does not masquerade it: the node network agent routes
    the other nodes' pod CIDRs and masquerades only what leaves the pod network.
    """

    name = "docker"

    def __init__(
        self,
        node_name: str,
        *,
        base_url: str | None = None,
        network: str = DEFAULT_NETWORK,
        pod_cidr: str | None = None,
        node_ip: str = "127.0.0.1",
        sandbox_image: str = DEFAULT_SANDBOX_IMAGE,
        max_threads: int = 8,
        per_node: bool = False,
    ) -> None:
        self.node_name = node_name
        self.network = network
        self.pod_cidr = pod_cidr
        self.per_node = per_node
        self.node_ip = node_ip
        self.sandbox_image = sandbox_image
        self._base_url = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        # A burst of pods must not spawn a thread each; the SDK's pool matches the limit.
        self._limiter = trio.CapacityLimiter(max_threads)
        self._max_threads = max_threads
        self._api: docker.APIClient | None = None
        self._api_lock = trio.Lock()
        self._network_lock = trio.Lock()
        self._network_ready = False
        self._kernel_oom: dict[str, bool] = {}  # container ID -> OOM kill in the kernel's log
        self._http: httpx.AsyncClient | None = None

    # -- plumbing ---------------------------------------------------------------------------

    async def _client(self) -> docker.APIClient:
        # version="auto" asks the engine, a blocking call, so the client is made in a thread.
        async with self._api_lock:
            if self._api is None:
                self._api = await trio.to_thread.run_sync(
                    partial(
                        docker.APIClient,
                        base_url=self._base_url,
                        version="auto",
                        timeout=60,
                        max_pool_size=self._max_threads,
                    ),
                    limiter=self._limiter,
                )
            return self._api

    async def _call(
        self, fn: Callable[..., T], *args: Any, abandon: bool = False, **kwargs: Any
    ) -> T:
        """fn(api, *args, **kwargs) in a worker thread, Docker errors made runtime errors."""
        with _translated():
            api = await self._client()
            return await trio.to_thread.run_sync(
                partial(fn, api, *args, **kwargs), limiter=self._limiter, abandon_on_cancel=abandon
            )

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._api is not None:
            self._api.close()
            self._api = None

    async def version(self) -> str:
        info = await self._call(docker.APIClient.version)
        return f"docker://{info['Version']}"

    def _filters(self, kind: str, **extra: str) -> dict[str, list[str]]:
        labels = [
            f"{LABEL_MANAGED}=true",
            f"{LABEL_NODE}={self.node_name}",
            f"{LABEL_TYPE}={kind}",
            *(f"{k}={v}" for k, v in extra.items()),
        ]
        return {"label": labels}

    # -- network ----------------------------------------------------------------------------

    async def _ensure_network(self) -> None:
        if self._network_ready:
            return
        async with self._network_lock:
            if not self._network_ready:
                if self.per_node and not self.pod_cidr:
                    raise CreateSandboxError("network is not ready: the node has no pod CIDR yet")
                await self._call(
                    ensure_network, self.network, self.pod_cidr, masquerade=not self.per_node
                )
                self._network_ready = True

    def update_pod_cidr(self, pod_cidr: str) -> None:
        """The node's pod CIDR, as the kubelet learns it (CRI's UpdateRuntimeConfig): the
        subnet of a per-node network made from now on."""
        if self.per_node:
            self.pod_cidr = pod_cidr

    # -- sandboxes --------------------------------------------------------------------------

    async def run_sandbox(self, pod: Mapping[str, Any], *, attempt: int = 0) -> Sandbox:
        namespaces = NamespaceOptions.from_pod(pod)
        if namespaces.network is NamespaceMode.POD:
            await self._ensure_network()
        labels = sandbox_labels(self.node_name, pod, attempt, namespaces)
        spec = sandbox_spec(pod, attempt, namespaces, labels, self.sandbox_image, self.network)
        try:
            attrs = await self._call(_run_sandbox, spec)
        except CreateSandboxError as e:
            if namespaces.network is not NamespaceMode.POD or "not found" not in e.message:
                raise
            # Someone removed the pod network since we made it: make it again, once.
            self._network_ready = False
            await self._ensure_network()
            attrs = await self._call(_run_sandbox, spec)
        return self._sandbox(attrs)

    def _sandbox(self, attrs: Mapping[str, Any]) -> Sandbox:
        labels = attrs["Config"]["Labels"] or {}
        sandbox = sandbox_from_labels(
            attrs["Id"],
            labels,
            "",
            SandboxState.READY if attrs["State"]["Running"] else SandboxState.NOTREADY,
            parse_time(attrs["Created"]) or 0.0,
        )
        sandbox.ip = self._sandbox_ip(sandbox.namespaces, attrs["NetworkSettings"])
        return sandbox

    def _sandbox_ip(self, namespaces: NamespaceOptions, settings: Mapping[str, Any]) -> str:
        if namespaces.network is NamespaceMode.NODE:
            return self.node_ip
        net = (settings.get("Networks") or {}).get(self.network) or {}
        return str(net.get("IPAddress") or "")

    async def stop_sandbox(self, sandbox_id: str) -> None:
        for info in await self._pod_containers(sandbox_id):
            if info.state is ContainerState.RUNNING:
                await self.stop_container(info.id, 0)
        await self.stop_container(sandbox_id, 10)  # pause exits at once on SIGTERM

    async def remove_sandbox(self, sandbox_id: str) -> None:
        for info in await self._pod_containers(sandbox_id):
            await self.remove_container(info.id)
        await self.remove_container(sandbox_id)

    async def _pod_containers(self, sandbox_id: str) -> list[ContainerInfo]:
        rows = await self._call(
            docker.APIClient.containers,
            all=True,
            filters=self._filters(TYPE_CONTAINER, **{LABEL_SANDBOX_ID: sandbox_id}),
        )
        return [self._container_row(row) for row in rows]

    async def sandbox_status(self, sandbox_id: str) -> Sandbox:
        return self._sandbox(await self._call(docker.APIClient.inspect_container, sandbox_id))

    async def list_sandboxes(self) -> list[Sandbox]:
        rows = await self._call(
            docker.APIClient.containers, all=True, filters=self._filters(TYPE_SANDBOX)
        )
        out = []
        for row in rows:
            labels = row.get("Labels") or {}
            sandbox = sandbox_from_labels(
                row["Id"],
                labels,
                "",
                SandboxState.READY if row.get("State") == "running" else SandboxState.NOTREADY,
                float(row.get("Created") or 0),
            )
            sandbox.ip = self._sandbox_ip(sandbox.namespaces, row.get("NetworkSettings") or {})
            out.append(sandbox)
        return out

    # -- images -----------------------------------------------------------------------------

    async def ensure_image(self, image: str, pull_policy: str) -> ImageRef:
        validate_image(image)
        present = await self._call(_inspect_image, image)
        if present is not None and pull_policy != "Always":
            return ImageRef(image, present["Id"])
        if pull_policy == "Never":
            raise never_pull_error(image)
        # Abandoned if the kubelet gives up: a pull cannot be interrupted through the SDK.
        attrs = await self._call(_pull, image, abandon=True)
        return ImageRef(image, attrs["Id"])

    async def list_images(self) -> list[ImageInfo]:
        rows = await self._call(docker.APIClient.images)
        out = []
        for row in rows:
            names = [
                n
                for n in (row.get("RepoTags") or []) + (row.get("RepoDigests") or [])
                if not n.startswith("<none>")
            ]
            out.append(ImageInfo(row["Id"], tuple(names), int(row.get("Size") or 0)))
        return out

    # -- containers -------------------------------------------------------------------------

    async def create_container(self, sandbox: Sandbox, config: ContainerConfig) -> str:
        labels = container_labels(self.node_name, sandbox, config)
        return await self._call(_create_container, container_spec(sandbox, config, labels))

    async def start_container(self, container_id: str) -> None:
        try:
            await self._call(docker.APIClient.start, container_id)
        except NotFoundError:
            raise
        except ContainerRuntimeError as e:
            raise StartContainerError(e.message) from None

    async def stop_container(self, container_id: str, grace_seconds: float) -> None:
        try:
            attrs = await self._call(docker.APIClient.inspect_container, container_id)
        except NotFoundError:
            return
        if not attrs["State"]["Running"]:
            return
        stop_signal = (
            (attrs["Config"].get("StopSignal") or "SIGTERM") if grace_seconds > 0 else "SIGKILL"
        )
        if not await self._kill(container_id, stop_signal):
            return
        if stop_signal != "SIGKILL" and not await self._wait_stopped(container_id, grace_seconds):
            log.info(
                "container %s outlived its %ss grace period; killing it",
                container_id[:12],
                grace_seconds,
            )
            await self._kill(container_id, "SIGKILL")
        # SIGKILL is not instant: the exit (and cgroup teardown) is reported a moment later.
        await self._wait_stopped(container_id, 30)

    async def _kill(self, container_id: str, sig: str) -> bool:
        """Signal the container's main process; False when it was not running."""
        try:
            await self._call(docker.APIClient.kill, container_id, sig)
        except NotFoundError:
            return False
        except ContainerRuntimeError as e:
            if "is not running" in e.message:
                return False
            raise
        return True

    async def _wait_stopped(self, container_id: str, timeout: float) -> bool:
        # Polling with backoff keeps a long grace period from holding a worker thread.
        delay = 0.02
        with trio.move_on_after(timeout):
            while True:
                try:
                    attrs = await self._call(docker.APIClient.inspect_container, container_id)
                except NotFoundError:
                    return True
                if not attrs["State"]["Running"]:
                    return True
                await trio.sleep(delay)
                delay = min(delay * 2, 0.5)
        return False

    async def remove_container(self, container_id: str) -> None:
        try:
            await self._call(docker.APIClient.remove_container, container_id, force=True)
        except NotFoundError:
            pass
        except ContainerRuntimeError as e:
            if "already in progress" not in e.message:
                raise

    async def container_status(self, container_id: str) -> ContainerStatus:
        attrs = await self._call(docker.APIClient.inspect_container, container_id)
        if sigkilled_under_a_memory_limit(attrs) and await self._oom_in_kernel_log(attrs["Id"]):
            attrs["State"]["OOMKilled"] = True  # Docker missed it (see kernellog)
        return container_status_of(attrs)

    async def _oom_in_kernel_log(self, container_id: str) -> bool:
        """Once per container: the kernel's log is read only for a limited container that
        Docker says was SIGKILLed but not OOM-killed, and its answer does not change."""
        verdict = self._kernel_oom.get(container_id)
        if verdict is None:
            verdict = await trio.to_thread.run_sync(
                lambda: kernellog.oom_kill_logged(container_id, kernellog.kmsg_records())
            )
            if len(self._kernel_oom) >= _KERNEL_OOM_REMEMBERED:
                self._kernel_oom.clear()
            self._kernel_oom[container_id] = verdict
        return verdict

    async def list_containers(self) -> list[ContainerInfo]:
        rows = await self._call(
            docker.APIClient.containers, all=True, filters=self._filters(TYPE_CONTAINER)
        )
        return [self._container_row(row) for row in rows]

    async def container_stats(self, container_id: str) -> ContainerStats:
        # one_shot: the engine answers from one cgroup read, not after a second's sampling.
        raw = await self._call(docker.APIClient.stats, container_id, stream=False, one_shot=True)
        return container_stats_of(raw)

    def _container_row(self, row: Mapping[str, Any]) -> ContainerInfo:
        return container_info(
            row["Id"],
            row.get("Labels") or {},
            STATES.get(row.get("State", ""), ContainerState.UNKNOWN),
            row.get("Image", ""),
            float(row.get("Created") or 0),
        )

    # -- exec and logs ----------------------------------------------------------------------

    async def exec(self, container_id: str, argv: list[str], timeout: float) -> ExecResult:
        exec_id = (
            await self._call(
                docker.APIClient.exec_create, container_id, argv, stdout=True, stderr=True
            )
        )["Id"]
        api = await self._client()  # made by the _call above
        output = b""
        with trio.move_on_after(timeout) as scope, _translated():
            # Abandoned on timeout: the thread ends when the killed command's stream closes.
            output = await trio.to_thread.run_sync(
                partial(api.exec_start, exec_id), limiter=self._limiter, abandon_on_cancel=True
            )
        info = await self._call(docker.APIClient.exec_inspect, exec_id)
        if scope.cancelled_caught:
            self._kill_exec(info)
            raise ExecTimeoutError(f"command {argv!r} timed out after {timeout}s")
        return ExecResult(int(info.get("ExitCode") or 0), output)

    async def exec_stream(
        self, container_id: str, argv: list[str], *, stdin: bool, tty: bool
    ) -> DockerSession:
        created = await self._call(
            docker.APIClient.exec_create,
            container_id,
            argv,
            stdout=True,
            stderr=True,
            stdin=stdin,
            tty=tty,
        )
        exec_id = created["Id"]
        api = await self._client()
        with _translated():
            stream, first = await hijack(
                self._base_url,
                api.api_version,
                f"/exec/{exec_id}/start",
                {"Detach": False, "Tty": tty},
            )

        async def resize(width: int, height: int) -> None:
            await self._call(docker.APIClient.exec_resize, exec_id, height=height, width=width)

        async def exit_code() -> int | None:
            # The output ends as the process does; the engine may note the exit just after.
            with trio.move_on_after(EXEC_EXIT_WAIT):
                while True:
                    info = await self._call(docker.APIClient.exec_inspect, exec_id)
                    if not info.get("Running"):
                        return int(info.get("ExitCode") or 0)
                    await trio.sleep(0.02)
            return None

        return DockerSession(stream, first, tty, resize, exit_code)

    async def attach(self, container_id: str, *, stdin: bool, tty: bool) -> DockerSession:
        attrs = await self._call(docker.APIClient.inspect_container, container_id)
        config = attrs.get("Config") or {}
        if stdin and not config.get("OpenStdin"):
            raise ContainerRuntimeError(
                "Unable to attach: the container was not started with stdin: true"
            )
        # The engine's attach to a container that is not running waits for output that never
        # comes: refuse it, as a CRI runtime does (kubectl run -it then shows the logs).
        started = _running_since(attrs)
        api = await self._client()
        query = f"stream=1&stdout=1&stderr=1&stdin={1 if stdin else 0}"
        with _translated():
            stream, first = await hijack(
                self._base_url, api.api_version, f"/containers/{container_id}/attach?{query}", None
            )
        try:
            # It may have exited (or restarted) while the connection was being set up.
            now = await self._call(docker.APIClient.inspect_container, container_id)
            if _running_since(now) != started:
                raise ContainerRuntimeError(_not_running(now))
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise

        async def resize(width: int, height: int) -> None:
            await self._call(docker.APIClient.resize, container_id, height=height, width=width)

        async def no_exit_code() -> int | None:
            return None

        async def ended() -> None:
            # The engine ends an attach as the process exits, except when the exit falls
            # between its upgrade and hooking up the streams: then this ends it.
            while True:
                await trio.sleep(ATTACH_POLL)
                with suppress(ContainerRuntimeError):
                    now = await self._call(docker.APIClient.inspect_container, container_id)
                    if _running_since(now) != started:
                        return

        return DockerSession(
            stream, first, bool(config.get("Tty")), resize, no_exit_code, ended=ended
        )

    async def port_forward(self, sandbox: Sandbox, port: int) -> trio.SocketStream:
        # The pod's address on the bridge network (the node's own for hostNetwork pods).
        return await connect_pod_port(sandbox, sandbox.ip or self.node_ip, port)

    def _kill_exec(self, info: Mapping[str, Any]) -> None:
        # The engine has no API to kill an exec; its Pid is a host PID, valid only when the
        # engine runs on this machine (a unix socket).
        pid = int(info.get("Pid") or 0)
        if info.get("Running") and pid > 0 and self._base_url.startswith("unix://"):
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    async def logs(
        self,
        container_id: str,
        *,
        follow: bool = False,
        tail_lines: int | None = None,
        since_seconds: float | None = None,
        timestamps: bool = False,
    ) -> AsyncGenerator[bytes, None]:
        """Stream logs over the engine's HTTP API with httpx, so a follower holds no thread."""
        params = {
            "stdout": "1",
            "stderr": "1",
            "follow": "1" if follow else "0",
            "timestamps": "1" if timestamps else "0",
            "tail": "all" if tail_lines is None else str(max(tail_lines, 0)),
        }
        if since_seconds is not None:
            params["since"] = f"{time.time() - since_seconds:.9f}"
        # A TTY container's log is its terminal's bytes as they are, with no frames.
        attrs = await self._call(docker.APIClient.inspect_container, container_id)
        raw = bool((attrs.get("Config") or {}).get("Tty"))
        client = await self._http_client()
        async with client.stream(
            "GET", f"/containers/{container_id}/logs", params=params
        ) as response:
            if response.status_code == 404:
                raise NotFoundError(f"container {container_id} not found")
            if response.status_code >= 400:
                body = (await response.aread()).decode(errors="replace")
                raise ContainerRuntimeError(f"logs of {container_id}: {body.strip()}")
            if raw:
                async for chunk in response.aiter_raw():
                    if chunk:
                        yield chunk
                return
            buf = bytearray()
            async for chunk in response.aiter_raw():
                buf += chunk
                # Frames of a non-TTY container: stream byte, 3 zero bytes, big-endian size.
                while len(buf) >= _STREAM_HEADER:
                    size = int.from_bytes(buf[4:_STREAM_HEADER], "big")
                    if len(buf) < _STREAM_HEADER + size:
                        break
                    yield bytes(buf[_STREAM_HEADER : _STREAM_HEADER + size])
                    del buf[: _STREAM_HEADER + size]

    async def _http_client(self) -> httpx.AsyncClient:
        if self._http is None:
            api = await self._client()
            version = api.api_version
            if self._base_url.startswith("unix://"):
                transport = httpx.AsyncHTTPTransport(uds=self._base_url.removeprefix("unix://"))
                base = f"http://docker/v{version}"
            elif self._base_url.startswith(("tcp://", "http://")):
                transport = httpx.AsyncHTTPTransport()
                host = self._base_url.split("://", 1)[1]
                base = f"http://{host}/v{version}"
            else:
                raise ContainerRuntimeError(
                    f"container logs need a unix:// or tcp:// Docker host, not {self._base_url}"
                )
            self._http = httpx.AsyncClient(
                transport=transport, base_url=base, timeout=httpx.Timeout(30.0, read=None)
            )
        return self._http


# -- blocking helpers, run in worker threads ----------------------------------------------------


def _running_since(attrs: Mapping[str, Any]) -> str:
    """When the container's current run started; raises if it is not running."""
    state = attrs.get("State") or {}
    if not state.get("Running") or state.get("Restarting"):
        raise ContainerRuntimeError(_not_running(attrs))
    return str(state.get("StartedAt") or "")


def _not_running(attrs: Mapping[str, Any]) -> str:
    state = attrs.get("State") or {}
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    name = str(labels.get(LABEL_CONTAINER_NAME) or "")
    what = f"container {name}" if name else "the container"
    if state.get("Running") and not state.get("Restarting"):
        return f"cannot attach to {what}: it restarted while attaching"
    return f"cannot attach to {what}: it is not running (exit code {state.get('ExitCode', 0)})"


@contextmanager
def _translated() -> Iterator[None]:
    """Docker SDK errors as runtime errors, with the engine's own words."""
    try:
        yield
    except docker.errors.NotFound as e:
        raise NotFoundError(_explain(e)) from None
    except docker.errors.DockerException as e:
        raise ContainerRuntimeError(_explain(e)) from None
    except requests.RequestException as e:
        # The SDK lets transport errors through: the engine is down or hung.
        raise ContainerRuntimeError(f"the Docker engine does not answer: {e}") from None


def _explain(e: Exception) -> str:
    return str(getattr(e, "explanation", None) or e)


def _run_sandbox(api: docker.APIClient, spec: dict[str, Any]) -> dict[str, Any]:
    networking = None
    if spec["network"]:
        networking = api.create_networking_config({spec["network"]: api.create_endpoint_config()})
    # Creating first spares a lookup per pod; a name conflict means this attempt's sandbox
    # exists already: reuse it if it runs, else replace it.
    for retry in range(2):
        try:
            created = api.create_container(
                image=spec["image"],
                name=spec["name"],
                hostname=spec["hostname"],
                labels=spec["labels"],
                ports=spec["ports"],
                networking_config=networking,
                host_config=api.create_host_config(**spec["host_config"]),
                use_config_proxy=False,
            )
            break
        except docker.errors.ImageNotFound:
            raise CreateSandboxError(
                f"the sandbox image {spec['image']} is missing on this "
                "node; build it with hack/build-images"
            ) from None
        except docker.errors.APIError as e:
            existing = _inspect(api, spec["name"]) if e.status_code == 409 and not retry else None
            if existing is None:
                raise CreateSandboxError(_explain(e)) from None
            if existing["State"]["Running"]:
                return existing
            api.remove_container(existing["Id"], force=True)
    try:
        api.start(created["Id"])
    except docker.errors.APIError as e:
        api.remove_container(created["Id"], force=True)
        raise CreateSandboxError(_explain(e)) from None
    return api.inspect_container(created["Id"])


def _inspect(api: docker.APIClient, name: str) -> dict[str, Any] | None:
    try:
        return api.inspect_container(name)
    except docker.errors.NotFound:
        return None


def _create_container(api: docker.APIClient, spec: dict[str, Any]) -> str:
    host_config = api.create_host_config(**spec.pop("host_config"))
    for attempt in range(2):
        try:
            return str(
                api.create_container(**spec, host_config=host_config, use_config_proxy=False)["Id"]
            )
        except docker.errors.ImageNotFound:
            raise CreateContainerError(
                f'image "{spec["image"]}" is not present on this node'
            ) from None
        except docker.errors.APIError as e:
            if e.status_code != 409 or attempt:
                raise CreateContainerError(_explain(e)) from None
            # A leftover of a kubelet that died between create and start: replace it,
            # unless it runs (then the kubelet's bookkeeping is wrong and it must look).
            old = _inspect(api, spec["name"])
            if old is not None and old["State"]["Running"]:
                raise CreateContainerError(
                    f"container name {spec['name']} is in use by a running container"
                ) from None
            if old is not None:
                api.remove_container(old["Id"], force=True)
    raise AssertionError("unreachable")


def _inspect_image(api: docker.APIClient, image: str) -> dict[str, Any] | None:
    try:
        return api.inspect_image(image)
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as e:
        if e.status_code == 400:
            raise InvalidImageNameError(
                f'couldn\'t parse image reference "{image}": {_explain(e)}'
            ) from None
        raise


def _pull(api: docker.APIClient, image: str) -> dict[str, Any]:
    repo, tag = docker.utils.parse_repository_tag(image)
    error = ""
    try:
        # Errors after the pull started come inside the stream, not as an HTTP status.
        for event in api.pull(repo, tag=tag or "latest", stream=True, decode=True):
            if isinstance(event, dict) and event.get("error"):
                error = str(event["error"])
    except docker.errors.APIError as e:
        error = _explain(e)
    attrs = _inspect_image(api, image)
    if attrs is None:
        raise pull_error(image, error or "the pull did not produce the image")
    return attrs
