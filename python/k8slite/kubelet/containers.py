"""Starting, probing and stopping a pod's containers: the container half of a pod worker."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

import httpx
import trio

from k8slite.client import ApiClient
from k8slite.component.events import NORMAL, WARNING, EventRecorder
from k8slite.component.objects import Obj
from k8slite.kubelet import dns, lifecycle
from k8slite.kubelet.config import KubeletConfig
from k8slite.kubelet.envvars import ConfigError, container_env
from k8slite.kubelet.metrics import KubeletMetrics
from k8slite.kubelet.objects import ObjectFetcher
from k8slite.kubelet.podstate import PodState
from k8slite.kubelet.probes import Prober, run_probe
from k8slite.kubelet.runtime.base import (
    REASON_STATUS_UNKNOWN,
    ContainerConfig,
    ContainerRuntimeError,
    ContainerState,
    ContainerStatus,
    ImagePullError,
    Mount,
    NotFoundError,
    Runtime,
)
from k8slite.kubelet.status import ContainerRecord
from k8slite.kubelet.volumes import VolumeError, VolumeManager

log = logging.getLogger(__name__)

# Retry delay after a failed sandbox, volume or config step (upstream requeues similarly).
RETRY_SECONDS = 2.0
# How long an image found present is taken to stay so (images are removed by hand only).
IMAGE_SEEN_SECONDS = 60.0


@dataclass
class WorkerEnv:
    """What every pod worker of a kubelet shares."""

    config: KubeletConfig
    client: ApiClient
    runtime: Runtime
    # None for the fake runtime: hollow pods have no volumes, env or probes.
    volumes: VolumeManager | None = None
    objects: ObjectFetcher | None = None
    services: Callable[[], list[Obj]] = list
    events: EventRecorder | None = None
    metrics: KubeletMetrics | None = None
    allocatable: dict[str, str] = field(default_factory=dict)
    probe_http: httpx.AsyncClient | None = None
    # Images known present (image -> when), so IfNotPresent does not ask for each pod.
    images_seen: dict[str, float] = field(default_factory=dict)
    # Pods being started for the first time at once: a burst then finishes pods in order
    # instead of every pod waiting for every other pod's runtime calls.
    start_slots: trio.Semaphore = field(default_factory=lambda: trio.Semaphore(4))

    @property
    def simulated(self) -> bool:
        return self.volumes is None


def _cancel_probes(rec: ContainerRecord) -> None:
    if rec.probes is not None:
        rec.probes.cancel()
        rec.probes = None


def vanished(cs: ContainerStatus) -> ContainerStatus:
    """A container the runtime lost: reported as upstream reports it."""
    cs.state = ContainerState.EXITED
    cs.exit_code = 137
    cs.reason = REASON_STATUS_UNKNOWN
    cs.message = "The container could not be located when the pod was terminated"
    cs.finished_at = cs.finished_at or time.time()
    return cs


class ContainerOps:
    """A pod worker's container steps, acting on its PodState."""

    def __init__(self, env: WorkerEnv, state: PodState) -> None:
        self.env = env
        self.state = state
        # Where probes run: the worker's nursery, once it runs (no probes before).
        self.nursery: trio.Nursery | None = None
        # Posts the pod's status at once (set by the pod worker).
        self.report: Callable[[], Awaitable[None]] | None = None

    def event(
        self, type_: str, reason: str, message: str, rec: ContainerRecord | None = None
    ) -> None:
        if self.env.events is not None:
            group = (
                "ephemeralContainers"
                if rec and rec.ephemeral
                else "initContainers"
                if rec and rec.init
                else "containers"
            )
            field_path = f"spec.{group}{{{rec.name}}}" if rec else ""
            self.env.events.event(self.state.pod, type_, reason, message, field_path=field_path)

    async def refresh(self) -> None:
        """Fresh runtime states of the containers that were not known to have exited."""
        rt = self.env.runtime
        for rec in self.state.records.values():
            if rec.current is not None and rec.current.state is not ContainerState.EXITED:
                try:
                    rec.current = await rt.container_status(rec.current.id)
                except NotFoundError:
                    rec.current = vanished(rec.current)

    def follow_probes(self) -> None:
        """Probes for the running containers, none for the others."""
        for rec in self.state.records.values():
            if rec.ephemeral:
                continue  # no probes, never ready
            if rec.running and rec.probes is None:
                self.start_probes(rec)
            elif not rec.running and rec.probes is not None:
                _cancel_probes(rec)
                rec.ready = rec.started = False

    def stop_probes(self) -> None:
        for rec in self.state.records.values():
            _cancel_probes(rec)

    # ------------------------------------------------------------------ containers

    async def sync(self) -> None:
        """Kill, start and restart containers as the spec, probes and back-offs call for."""
        spec = self.state.pod.get("spec") or {}
        policy = spec.get("restartPolicy") or "Always"
        for c in [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]:
            rec = self.state.records[c["name"]]
            if rec.kill is not None and rec.running:
                kind, _ = rec.kill
                self.event(
                    NORMAL,
                    "Killing",
                    f"Container {rec.name} failed {kind} probe, will be restarted",
                    rec,
                )
                await self._kill(rec, c, self._probe_grace(c, kind))
            elif rec.running and rec.current is not None and rec.current.image != c.get("image"):
                self.event(
                    NORMAL,
                    "Killing",
                    f"Container {rec.name} definition changed, will be restarted",
                    rec,
                )
                await self._kill(rec, c, lifecycle.grace_period(self.state.pod))
                rec.backoff = 0.0
            rec.kill = None
        # Before the init containers, as upstream: a debugger can start while they fail.
        await self._start_ephemeral()
        for c in spec.get("initContainers") or ():
            rec = self.state.records[c["name"]]
            if rec.sidecar:
                if not rec.running:
                    await self._start(rec, c)
                if not (rec.running and rec.started):
                    return
                continue
            if rec.exited_ok():
                continue
            if rec.state is ContainerState.EXITED:
                if policy != "Never":
                    await self._start(rec, c)
                return
            if rec.current is None or rec.state is ContainerState.CREATED:
                await self._start(rec, c)
            return  # running (or just started): the next one waits for it
        for c in spec.get("containers") or ():
            rec = self.state.records[c["name"]]
            exit_code = rec.current.exit_code if rec.current is not None else None
            if rec.state in (None, ContainerState.CREATED) or (
                rec.state is ContainerState.EXITED and lifecycle.should_restart(policy, exit_code)
            ):
                await self._start(rec, c)

    async def _start_ephemeral(self) -> None:
        """Each ephemeral container is started once; one that exited stays exited."""
        self.state.add_ephemeral()
        for c in self.state.pod["spec"].get("ephemeralContainers") or ():
            rec = self.state.records[c["name"]]
            if rec.current is None:
                await self._start(rec, c)

    def _probe_grace(self, c: Obj, kind: str) -> float:
        probe = c.get(f"{kind}Probe") or {}
        if probe.get("terminationGracePeriodSeconds") is not None:
            return float(probe["terminationGracePeriodSeconds"])
        return lifecycle.grace_period(self.state.pod)

    async def _start(self, rec: ContainerRecord, c: Obj) -> None:
        """Start (or restart) one container, unless a back-off or an error holds it back."""
        cfg = self.env.config
        now = time.time()
        restarting = rec.current is not None and rec.state is ContainerState.EXITED
        if restarting:
            assert rec.current is not None
            ran = (rec.current.finished_at or now) - (rec.current.started_at or now)
            if ran >= cfg.backoff_reset_after:
                rec.backoff = 0.0
            until = (rec.current.finished_at or now) + rec.backoff
            if now < until:
                rec.waiting = (
                    "CrashLoopBackOff",
                    (
                        f"back-off {rec.backoff:g}s restarting failed container="
                        f"{rec.name} pod={self.state.name}_{self.state.namespace}({self.state.uid})"
                    ),
                )
                self.event(
                    WARNING,
                    "BackOff",
                    f"Back-off restarting failed container {rec.name} in pod "
                    f"{self.state.name}_{self.state.namespace}({self.state.uid})",
                    rec,
                )
                self.state.wake_at(trio.current_time() + until - now)
                return
        if not await self._pull(rec, c):
            return
        try:
            config = await self._container_config(rec, c)
        except (ConfigError, VolumeError) as e:
            rec.waiting = ("CreateContainerConfigError", str(e))
            self.event(WARNING, "Failed", f"Error: {e}", rec)
            self.state.wake_at(trio.current_time() + RETRY_SECONDS)
            return
        assert self.state.sandbox is not None
        rt = self.env.runtime
        target = self.state.records.get(c.get("targetContainerName") or "")
        if rec.ephemeral and target is not None and target.running:
            assert target.current is not None
            config.pid_target = target.current.id  # kubectl debug --target: its processes
        try:
            cid = await rt.create_container(self.state.sandbox, config)
        except ContainerRuntimeError as e:
            rec.waiting = ("CreateContainerError", e.message)
            self.event(WARNING, "Failed", f"Error: {e.message}", rec)
            self.state.wake_at(trio.current_time() + RETRY_SECONDS)
            return
        self.event(NORMAL, "Created", f"Created container: {rec.name}", rec)
        start_error = None
        try:
            await rt.start_container(cid)
        except ContainerRuntimeError as e:
            start_error = e.message
            self.event(WARNING, "Failed", f"Error: {e.message}", rec)
        await self._replace_instance(rec, await rt.container_status(cid))
        if restarting:
            rec.backoff = min(max(rec.backoff * 2, cfg.backoff_initial), cfg.backoff_max)
        if start_error is None:
            self.event(NORMAL, "Started", f"Started container {rec.name}", rec)
            await self._report_it_ran(rec, c)
            await self._post_start(rec, c)
        if rec.running:
            self.start_probes(rec)

    async def _report_it_ran(self, rec: ContainerRecord, c: Obj) -> None:
        """A container that had exited by the time we first looked did run: report it
        running (and ready, as nothing probes it) once before its exit, as a kubelet that
        looked a moment sooner would have. A client waiting for it to run (`kubectl run -it`
        of a quick command, which waits for Ready) then sees it run instead of timing out."""
        exited = rec.current
        if (
            self.report is None
            or exited is None
            or exited.state is not ContainerState.EXITED
            or rec.init
            or rec.ephemeral
            or c.get("readinessProbe")
            or c.get("startupProbe")
        ):
            return
        rec.current = dataclasses.replace(
            exited, state=ContainerState.RUNNING, finished_at=None, exit_code=None, reason=""
        )
        rec.started = rec.ready = True
        try:
            await self.report()
        finally:
            rec.current = exited
            rec.started = rec.ready = False

    async def _replace_instance(self, rec: ContainerRecord, new: ContainerStatus) -> None:
        """new becomes current; the old current becomes previous; older ones are removed."""
        stale = rec.previous
        if rec.current is not None and rec.current.state is ContainerState.CREATED:
            stale = rec.current  # a leftover that never ran is nobody's last state
        elif rec.current is not None:
            rec.previous = rec.current
        rec.current = new
        rec.waiting = None
        rec.started = rec.ready = False
        _cancel_probes(rec)
        if stale is not None and stale.id != new.id:
            await self.env.runtime.remove_container(stale.id)

    async def _pull(self, rec: ContainerRecord, c: Obj) -> bool:
        image = c.get("image") or ""
        now = trio.current_time()
        delay, until = self.state.image_backoff.get(image, (0.0, 0.0))
        if now < until:
            rec.waiting = ("ImagePullBackOff", f'Back-off pulling image "{image}"')
            self.event(NORMAL, "BackOff", f'Back-off pulling image "{image}"', rec)
            self.state.wake_at(until)
            return False
        policy = c.get("imagePullPolicy") or "IfNotPresent"
        started = time.monotonic()
        seen = self.env.images_seen.get(image)
        if policy != "Always" and seen is not None and started - seen < IMAGE_SEEN_SECONDS:
            self.event(
                NORMAL, "Pulled", f'Container image "{image}" already present on machine', rec
            )
            return True
        try:
            await self.env.runtime.ensure_image(image, policy)
        except ContainerRuntimeError as e:
            rec.waiting = (e.reason, e.message)
            self.event(WARNING, "Failed", e.message, rec)
            self.event(WARNING, "Failed", f"Error: {e.reason}", rec)
            cfg = self.env.config
            delay = min(max(delay * 2, cfg.backoff_initial), cfg.backoff_max)
            self.state.image_backoff[image] = (delay, now + delay)
            if isinstance(e, ImagePullError):
                # Show ImagePullBackOff while waiting, then try again when it ends.
                self.state.wake_at(now + min(delay / 2, 2.0))
            self.state.wake_at(now + delay)
            return False
        self.state.image_backoff.pop(image, None)
        self.env.images_seen[image] = time.monotonic()
        took = time.monotonic() - started
        if took > 1.0:
            self.event(NORMAL, "Pulled", f'Successfully pulled image "{image}" in {took:.3f}s', rec)
        elif self.env.events is not None:
            self.event(
                NORMAL, "Pulled", f'Container image "{image}" already present on machine', rec
            )
        return True

    async def _container_config(self, rec: ContainerRecord, c: Obj) -> ContainerConfig:
        restart_count = rec.restart_count
        if rec.state is ContainerState.EXITED:
            restart_count += 1
        if self.env.simulated:
            return ContainerConfig.from_spec(c, pod=self.state.pod, restart_count=restart_count)
        assert self.env.objects is not None and self.env.volumes is not None
        env = await container_env(
            self.state.pod,
            c,
            get=self.env.objects.get,
            services=self.env.services(),
            pod_ips=self.state.view.pod_ips,
            host_ip=self.env.config.node_ip,
            allocatable=self.env.allocatable,
        )
        mounts = self.env.volumes.mounts(c, self.state.volume_paths or {}, self.state.pod)
        # The kubelet's /etc/hosts and /etc/resolv.conf, unless the container mounts its own.
        pod_dir = self.env.volumes.pod_dir(self.state.uid)
        taken = {m.container_path for m in mounts}
        mounts += [
            Mount(str(pod_dir / name), path)
            for name, path in dns.POD_FILES.items()
            if path not in taken and (pod_dir / name).is_file()
        ]
        return ContainerConfig.from_spec(
            c, pod=self.state.pod, restart_count=restart_count, env=env, mounts=mounts
        )

    async def _post_start(self, rec: ContainerRecord, c: Obj) -> None:
        hook = (c.get("lifecycle") or {}).get("postStart")
        if not hook or rec.current is None:
            return
        try:
            await lifecycle.run_hook(
                hook,
                runtime=self.env.runtime,
                container_id=rec.current.id,
                container=c,
                pod_ip=self._pod_ip(),
                timeout=lifecycle.grace_period(self.state.pod),
            )
        except lifecycle.HookError as e:
            self.event(WARNING, "FailedPostStartHook", str(e), rec)
            await self._kill(rec, c, lifecycle.grace_period(self.state.pod))

    def _pod_ip(self) -> str:
        return self.state.view.pod_ips[0] if self.state.view.pod_ips else self.env.config.node_ip

    async def _kill(self, rec: ContainerRecord, c: Obj, grace: float) -> None:
        """preStop, then the stop signal, then SIGKILL when the grace period is over."""
        _cancel_probes(rec)
        cur = rec.current
        if cur is None or cur.state is not ContainerState.RUNNING:
            return
        rt = self.env.runtime
        begun = trio.current_time()
        hook = (c.get("lifecycle") or {}).get("preStop")
        if hook and grace > 0:
            with trio.move_on_after(grace):
                try:
                    await lifecycle.run_hook(
                        hook,
                        runtime=rt,
                        container_id=cur.id,
                        container=c,
                        pod_ip=self._pod_ip(),
                        timeout=grace,
                    )
                except lifecycle.HookError as e:
                    self.event(WARNING, "FailedPreStopHook", str(e), rec)
        left = 0.0
        if grace > 0:
            left = max(
                grace - (trio.current_time() - begun),
                lifecycle.MIN_GRACE_AFTER_HOOK if hook else 0.0,
            )
        await rt.stop_container(cur.id, left)
        try:
            rec.current = await rt.container_status(cur.id)
        except NotFoundError:
            rec.current = vanished(cur)
        rec.ready = rec.started = False

    async def kill_all(self, grace: float) -> None:
        """Stop the regular containers together, then the sidecars in reverse order."""
        spec = self.state.pod.get("spec") or {}
        regular = [(self.state.records[c["name"]], c) for c in spec.get("containers") or ()]
        init = [(self.state.records[c["name"]], c) for c in spec.get("initContainers") or ()]
        ephemeral = [
            (self.state.records[c["name"]], c)
            for c in spec.get("ephemeralContainers") or ()
            if c["name"] in self.state.records
        ]
        deadline = trio.current_time() + grace
        async with trio.open_nursery() as nursery:
            for rec, c in regular + ephemeral + [(r, c) for r, c in init if not r.sidecar]:
                if rec.running:
                    self.event(NORMAL, "Killing", f"Stopping container {rec.name}", rec)
                    nursery.start_soon(self._kill, rec, c, grace)
        for rec, c in reversed([(r, c) for r, c in init if r.sidecar]):
            if rec.running:
                self.event(NORMAL, "Killing", f"Stopping container {rec.name}", rec)
                await self._kill(rec, c, max(deadline - trio.current_time(), 0.0))

    # ---------------------------------------------------------------------- probes

    def start_probes(self, rec: ContainerRecord) -> None:
        if rec.ephemeral:
            return  # no probes, never ready
        c = self.state.container_spec(rec.name)
        if self.env.simulated or self.nursery is None or rec.current is None:
            rec.started = rec.ready = True
            return
        kinds = [k for k in ("startup", "liveness", "readiness") if c.get(f"{k}Probe")]
        rec.started = rec.started or "startup" not in kinds
        if "readiness" not in kinds:
            rec.ready = rec.started
        if not kinds:
            return
        scope = trio.CancelScope()
        rec.probes = scope
        self.nursery.start_soon(self._probe, rec, c, rec.current, scope)

    async def _probe(
        self, rec: ContainerRecord, c: Obj, cs: ContainerStatus, scope: trio.CancelScope
    ) -> None:
        check = partial(
            run_probe,
            pod_ip=self._pod_ip(),
            runtime=self.env.runtime,
            container_id=cs.id,
            container=c,
            http_client=self.env.probe_http,
        )

        def mine() -> bool:
            return rec.current is not None and rec.current.id == cs.id

        with scope:
            if c.get("startupProbe") and not rec.started:
                startup = Prober(
                    "startup",
                    c["startupProbe"],
                    partial(check, c["startupProbe"]),
                    started_at=cs.started_at,
                )
                await startup.run(lambda p: None)
                if not mine():
                    return
                if startup.failed:
                    message = startup.last.message if startup.last else ""
                    self.event(WARNING, "Unhealthy", f"Startup probe failed: {message}", rec)
                    rec.kill = ("startup", message)
                    self.state.wake()
                    return
                rec.started = True
                if not c.get("readinessProbe"):
                    rec.ready = True
                self.state.wake()
            async with trio.open_nursery() as nursery:
                for kind in ("liveness", "readiness"):
                    probe = c.get(f"{kind}Probe")
                    if probe:
                        prober = Prober(
                            kind, probe, partial(check, probe), started_at=cs.started_at
                        )
                        if kind == "readiness" and rec.ready:
                            prober.healthy = True  # adopted as ready: keep it unless it fails
                        nursery.start_soon(prober.run, partial(self._probe_changed, rec, mine))

    def _probe_changed(
        self, rec: ContainerRecord, mine: Callable[[], bool], prober: Prober
    ) -> None:
        if not mine():
            return
        message = prober.last.message if prober.last else ""
        if prober.kind == "readiness":
            rec.ready = prober.healthy
            if not prober.healthy:
                self.event(WARNING, "Unhealthy", f"Readiness probe failed: {message}", rec)
        elif not prober.healthy:
            self.event(WARNING, "Unhealthy", f"Liveness probe failed: {message}", rec)
            rec.kill = ("liveness", message)
        self.state.wake()
