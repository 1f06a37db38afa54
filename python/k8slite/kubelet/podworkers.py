"""Pod workers: one task per pod that syncs what should run against what runs, and reports it.

A worker wakes when its pod changes, when the runtime relister sees one of its containers
change, when a probe's verdict changes or when a timer it set (a back-off) expires; then it
syncs: sandbox, volumes, init containers in order, then the others, and writes the pod's
status if it changed. A pod being deleted is stopped gracefully (preStop, SIGTERM, the grace
period, SIGKILL) and then deleted for good with gracePeriodSeconds=0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import trio

from k8slite.api import meta
from k8slite.client import ApiClient, ApiConnectionError, ApiError, Conflict, NotFound
from k8slite.client.resource import PODS
from k8slite.kubelet import lifecycle, status
from k8slite.kubelet.config import KubeletConfig
from k8slite.kubelet.envvars import ConfigError, container_env
from k8slite.kubelet.events import NORMAL, WARNING, EventRecorder
from k8slite.kubelet.metrics import KubeletMetrics
from k8slite.kubelet.objects import ObjectFetcher
from k8slite.kubelet.probes import Prober, run_probe
from k8slite.kubelet.runtime.base import (
    REASON_STATUS_UNKNOWN,
    ContainerConfig,
    ContainerInfo,
    ContainerRuntimeError,
    ContainerState,
    ContainerStatus,
    ImagePullError,
    NotFoundError,
    Runtime,
    Sandbox,
    SandboxState,
)
from k8slite.kubelet.status import TERMINAL, ContainerRecord, PodView
from k8slite.kubelet.volumes import VolumeError, VolumeManager

log = logging.getLogger(__name__)

Obj = dict[str, Any]
# Retry delay after a failed sandbox, volume or config step (upstream requeues similarly).
RETRY_SECONDS = 2.0
# How long an image found present is taken to stay so (images are removed by hand only).
IMAGE_SEEN_SECONDS = 60.0
_API_ERRORS = (ApiError, ApiConnectionError)


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


@dataclass
class Adopted:
    """What the runtime had for a pod when the kubelet started."""

    sandboxes: list[Sandbox] = field(default_factory=list)
    containers: list[ContainerInfo] = field(default_factory=list)


def _rv(obj: Obj) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def _matters(old: Obj, new: Obj) -> bool:
    """Whether a pod update calls for a sync: not when only its status or version moved.

    Upstream's pod config likewise drops status-only updates, except that readiness gates
    read conditions others write.
    """
    if old.get("spec") != new.get("spec"):
        return True
    om, nm = old.get("metadata") or {}, new.get("metadata") or {}
    for key in ("labels", "annotations", "deletionTimestamp", "deletionGracePeriodSeconds"):
        if om.get(key) != nm.get(key):
            return True
    if (new.get("spec") or {}).get("readinessGates"):
        return (old.get("status") or {}).get("conditions") != \
            (new.get("status") or {}).get("conditions")
    return False


def _vanished(cs: ContainerStatus) -> ContainerStatus:
    """A container the runtime lost: reported as upstream reports it."""
    cs.state = ContainerState.EXITED
    cs.exit_code = 137
    cs.reason = REASON_STATUS_UNKNOWN
    cs.message = "The container could not be located when the pod was terminated"
    cs.finished_at = cs.finished_at or time.time()
    return cs


class PodWorker:
    """Owns one pod (by uid) from admission to its final DELETE."""

    def __init__(self, env: WorkerEnv, pod: Obj, *, adopted: Adopted | None = None,
                 rejected: tuple[str, str] | None = None) -> None:
        self.env = env
        self.pod = pod
        m = pod["metadata"]
        self.uid: str = m["uid"]
        self.namespace: str = m.get("namespace") or "default"
        self.name: str = m["name"]
        spec = pod.get("spec") or {}
        self.records: dict[str, ContainerRecord] = {}
        for c in spec.get("initContainers") or ():
            self.records[c["name"]] = ContainerRecord(
                c["name"], init=True, sidecar=c.get("restartPolicy") == "Always")
        for c in spec.get("containers") or ():
            self.records[c["name"]] = ContainerRecord(c["name"])
        self.sandbox: Sandbox | None = None
        self.attempt = 0
        self.view = PodView(env.runtime.name, env.config.node_ip, [], False,
                            (pod.get("status") or {}).get("startTime"))
        if rejected is not None:
            self.view.phase = status.FAILED
            self.view.reason, self.view.message = rejected
        self.adopted = adopted
        self.removed = False  # gone from the API (deleted for good, or force-deleted)
        self.done = False
        self.first_seen = time.monotonic()
        self.running_seen = False
        self.sandbox_stopped = False
        self.volume_paths: dict[str, str] | None = None
        self.volumes_at = 0.0
        self.image_backoff: dict[str, tuple[float, float]] = {}  # image -> (delay, until)
        self.written: tuple[Obj, int] | None = None  # (status, resourceVersion) we wrote
        self.reported: Obj = pod.get("status") or {}
        self._event = trio.Event()
        self._timers: list[float] = []
        self._last_sync = 0.0
        self._sync_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._updated = True

    # ------------------------------------------------------------ outside events

    def set_pod(self, pod: Obj) -> None:
        old, self.pod = self.pod, pod
        if not _matters(old, pod):
            return  # our own status write coming back, say: nothing to do
        self._updated = True
        if self.terminating and self._sync_scope is not None:
            # A pod being deleted must not wait for a slow pull or start to finish.
            self._sync_scope.cancel()
        self.wake()

    def mark_removed(self, last: Obj | None = None) -> None:
        if last is not None:
            self.pod = last
        self.removed = True
        if self._sync_scope is not None:
            self._sync_scope.cancel()
        self.wake()

    def wake(self) -> None:
        self._event.set()

    def wake_at(self, when: float) -> None:
        """Sync again at trio time `when` at the latest."""
        self._timers.append(when)
        if len(self._timers) > 16:
            self._timers = sorted(self._timers)[:8]

    @property
    def terminating(self) -> bool:
        return self.removed or bool(self.pod["metadata"].get("deletionTimestamp"))

    @property
    def active(self) -> bool:
        """Counts against max-pods: not finished and not being torn down."""
        return not self.done and self.view.phase not in TERMINAL

    # ------------------------------------------------------------------- the loop

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await self._loop()
            finally:
                nursery.cancel_scope.cancel()

    async def _loop(self) -> None:
        first = True
        while not self.done:
            if self.terminating:
                await self._timed("terminate", self.terminate)
                return
            operation = "create" if first else ("update" if self._updated else "sync")
            self._updated = first = False
            with trio.CancelScope() as scope:
                self._sync_scope = scope
                try:
                    await self._timed(operation, self.sync)
                except (*_API_ERRORS, ContainerRuntimeError) as e:
                    log.warning("pod %s/%s: sync failed: %s", self.namespace, self.name, e)
                    self.wake_at(trio.current_time() + RETRY_SECONDS)
                except Exception:
                    # A bug must not orphan the pod's containers: keep the worker, retry.
                    log.exception("pod %s/%s: sync failed", self.namespace, self.name)
                    self.wake_at(trio.current_time() + RETRY_SECONDS)
            self._sync_scope = None
            self._last_sync = trio.current_time()
            await self._wait()

    async def _timed(self, operation: str, fn: Callable[[], Any]) -> None:
        start = time.perf_counter()
        try:
            await fn()
        finally:
            if self.env.metrics is not None:
                self.env.metrics.pod_worker.labels(operation).observe(time.perf_counter() - start)

    async def _wait(self) -> None:
        now = trio.current_time()
        self._timers = [t for t in self._timers if t > now]
        deadline = min(self._timers, default=float("inf"))
        if self.env.config.sync_frequency > 0 and self.view.phase not in TERMINAL:
            deadline = min(deadline, self._last_sync + self.env.config.sync_frequency)
        with trio.move_on_at(deadline):
            await self._event.wait()
        self._event = trio.Event()

    # ------------------------------------------------------------------------ sync

    async def sync(self) -> None:
        if self.adopted is not None:
            await self._adopt(self.adopted)
            self.adopted = None
        if self.view.start_time is None:
            self.view.start_time = meta.now()
        if self.view.phase in TERMINAL:
            await self._refresh()
            await self._stop_after_terminal()
            await self._report()
            return
        await self._refresh()
        if self.sandbox is None and not self.running_seen:
            async with self.env.start_slots:
                await self._sync_runtime()
        else:
            await self._sync_runtime()
        phase = status.phase(self.pod.get("spec") or {}, self.records)
        if phase in TERMINAL:
            self.view.phase = phase
            await self._stop_after_terminal()
        elif phase == status.RUNNING and not self.running_seen:
            self.running_seen = True
            if self.env.metrics is not None:
                self.env.metrics.pod_start.observe(time.monotonic() - self.first_seen)
        await self._report()

    async def _sync_runtime(self) -> None:
        if not await self._deadline_exceeded() and await self._ensure_sandbox() \
                and await self._ensure_volumes():
            await self._sync_containers()

    def _spec(self, name: str) -> Obj:
        spec = self.pod.get("spec") or {}
        for group in ("initContainers", "containers"):
            for c in spec.get(group) or ():
                if c["name"] == name:
                    return c  # type: ignore[no-any-return]
        raise KeyError(name)

    def _event_for(self, type_: str, reason: str, message: str,
                   rec: ContainerRecord | None = None) -> None:
        if self.env.events is not None:
            self.env.events.pod_event(self.pod, type_, reason, message,
                                      rec.name if rec else None, rec.init if rec else False)

    async def _refresh(self) -> None:
        """Fresh runtime states of the current containers; probes follow running ones."""
        rt = self.env.runtime
        for rec in self.records.values():
            if rec.current is not None and rec.current.state is not ContainerState.EXITED:
                try:
                    rec.current = await rt.container_status(rec.current.id)
                except NotFoundError:
                    rec.current = _vanished(rec.current)
            if rec.running and rec.probes is None:
                self._start_probes(rec)
            elif not rec.running and rec.probes is not None:
                rec.probes.cancel()
                rec.probes = None
                rec.ready = rec.started = False

    async def _deadline_exceeded(self) -> bool:
        deadline = (self.pod.get("spec") or {}).get("activeDeadlineSeconds")
        if deadline is None or not self.view.start_time:
            return False
        started = meta.parse_time(self.view.start_time).timestamp()
        if time.time() - started < float(deadline):
            self.wake_at(trio.current_time() + float(deadline) - (time.time() - started))
            return False
        self.view.phase = status.FAILED
        self.view.reason = "DeadlineExceeded"
        self.view.message = "Pod was active on the node longer than the specified deadline"
        self._event_for(NORMAL, "DeadlineExceeded", self.view.message)
        await self._kill_all(lifecycle.grace_period(self.pod))
        return True

    # --------------------------------------------------------------------- sandbox

    async def _ensure_sandbox(self) -> bool:
        rt = self.env.runtime
        old = self.sandbox
        if old is not None:
            try:
                old = await rt.sandbox_status(old.id)
            except NotFoundError:
                old = None
            if old is not None and old.state is SandboxState.READY:
                self.sandbox = old
                self._set_ips(old)
                return True
        if self.sandbox is not None:
            # The sandbox died (or vanished): its containers lost their namespaces.
            self._event_for(NORMAL, "SandboxChanged",
                            "Pod sandbox changed, it will be killed and re-created.")
            await self._kill_all(0)
            await rt.remove_sandbox(self.sandbox.id)
            self.attempt = self.sandbox.attempt + 1
            self.sandbox = None
            self.view.sandbox_ready = False
            for rec in self.records.values():
                if rec.init and rec.current is not None:
                    # Init containers run again in a new sandbox.
                    rec.previous, rec.current = rec.current, None
            if not self._anything_to_run():
                return False
        try:
            sandbox = await rt.run_sandbox(self.pod, attempt=self.attempt,
                                           dns=lifecycle.dns_config(self.pod, self.env.config))
        except ContainerRuntimeError as e:
            self._event_for(WARNING, "FailedCreatePodSandBox",
                            f"Failed to create pod sandbox: {e.message}")
            self.wake_at(trio.current_time() + RETRY_SECONDS)
            return False
        self.sandbox = sandbox
        self._set_ips(sandbox)
        return True

    def _set_ips(self, sandbox: Sandbox) -> None:
        self.view.sandbox_ready = True
        self.view.pod_ips = [sandbox.ip] if sandbox.ip else []

    def _anything_to_run(self) -> bool:
        policy = (self.pod.get("spec") or {}).get("restartPolicy") or "Always"
        for rec in self.records.values():
            if rec.current is None or (rec.state is ContainerState.EXITED and (
                    rec.init and not rec.exited_ok() or
                    lifecycle.should_restart(policy, rec.current.exit_code, rec.sidecar))):
                return True
        return False

    async def _ensure_volumes(self) -> bool:
        manager = self.env.volumes
        if manager is None:
            return True
        refresh = self.env.config.sync_frequency or 60.0
        if self.volume_paths is not None and time.monotonic() - self.volumes_at < refresh:
            return True
        try:
            self.volume_paths = await manager.setup(
                self.pod, pod_ips=self.view.pod_ips, host_ip=self.env.config.node_ip,
                allocatable=self.env.allocatable)
            self.volumes_at = time.monotonic()
            return True
        except VolumeError as e:
            self._event_for(WARNING, "FailedMount", str(e))
            self.wake_at(trio.current_time() + RETRY_SECONDS)
            return self.volume_paths is not None

    # ------------------------------------------------------------------ containers

    async def _sync_containers(self) -> None:
        spec = self.pod.get("spec") or {}
        policy = spec.get("restartPolicy") or "Always"
        for c in [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]:
            rec = self.records[c["name"]]
            if rec.kill is not None and rec.running:
                kind, _ = rec.kill
                self._event_for(NORMAL, "Killing",
                                f"Container {rec.name} failed {kind} probe, will be restarted", rec)
                await self._kill(rec, c, self._probe_grace(c, kind))
            elif rec.running and rec.current is not None and rec.current.image != c.get("image"):
                self._event_for(NORMAL, "Killing",
                                f"Container {rec.name} definition changed, will be restarted", rec)
                await self._kill(rec, c, lifecycle.grace_period(self.pod))
                rec.backoff = 0.0
            rec.kill = None
        for c in spec.get("initContainers") or ():
            rec = self.records[c["name"]]
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
            rec = self.records[c["name"]]
            exit_code = rec.current.exit_code if rec.current is not None else None
            if rec.state in (None, ContainerState.CREATED) or (
                    rec.state is ContainerState.EXITED and
                    lifecycle.should_restart(policy, exit_code)):
                await self._start(rec, c)

    def _probe_grace(self, c: Obj, kind: str) -> float:
        probe = c.get(f"{kind}Probe") or {}
        if probe.get("terminationGracePeriodSeconds") is not None:
            return float(probe["terminationGracePeriodSeconds"])
        return lifecycle.grace_period(self.pod)

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
                rec.waiting = ("CrashLoopBackOff",
                               (f"back-off {rec.backoff:g}s restarting failed container="
                                f"{rec.name} pod={self.name}_{self.namespace}({self.uid})"))
                self._event_for(WARNING, "BackOff",
                                f"Back-off restarting failed container {rec.name} in pod "
                                f"{self.name}_{self.namespace}({self.uid})", rec)
                self.wake_at(trio.current_time() + until - now)
                return
        if not await self._pull(rec, c):
            return
        try:
            config = await self._container_config(rec, c)
        except (ConfigError, VolumeError) as e:
            rec.waiting = ("CreateContainerConfigError", str(e))
            self._event_for(WARNING, "Failed", f"Error: {e}", rec)
            self.wake_at(trio.current_time() + RETRY_SECONDS)
            return
        assert self.sandbox is not None
        rt = self.env.runtime
        try:
            cid = await rt.create_container(self.sandbox, config)
        except ContainerRuntimeError as e:
            rec.waiting = ("CreateContainerError", e.message)
            self._event_for(WARNING, "Failed", f"Error: {e.message}", rec)
            self.wake_at(trio.current_time() + RETRY_SECONDS)
            return
        self._event_for(NORMAL, "Created", f"Created container: {rec.name}", rec)
        start_error = None
        try:
            await rt.start_container(cid)
        except ContainerRuntimeError as e:
            start_error = e.message
            self._event_for(WARNING, "Failed", f"Error: {e.message}", rec)
        await self._replace_instance(rec, await rt.container_status(cid))
        if restarting:
            rec.backoff = min(max(rec.backoff * 2, cfg.backoff_initial), cfg.backoff_max)
        if start_error is None:
            self._event_for(NORMAL, "Started", f"Started container {rec.name}", rec)
            await self._post_start(rec, c)
        if rec.running:
            self._start_probes(rec)

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
        if rec.probes is not None:
            rec.probes.cancel()
            rec.probes = None
        if stale is not None and stale.id != new.id:
            await self.env.runtime.remove_container(stale.id)

    async def _pull(self, rec: ContainerRecord, c: Obj) -> bool:
        image = c.get("image") or ""
        now = trio.current_time()
        delay, until = self.image_backoff.get(image, (0.0, 0.0))
        if now < until:
            rec.waiting = ("ImagePullBackOff", f'Back-off pulling image "{image}"')
            self._event_for(NORMAL, "BackOff", f'Back-off pulling image "{image}"', rec)
            self.wake_at(until)
            return False
        policy = c.get("imagePullPolicy") or "IfNotPresent"
        started = time.monotonic()
        seen = self.env.images_seen.get(image)
        if policy != "Always" and seen is not None and started - seen < IMAGE_SEEN_SECONDS:
            self._event_for(NORMAL, "Pulled",
                            f'Container image "{image}" already present on machine', rec)
            return True
        try:
            await self.env.runtime.ensure_image(image, policy)
        except ContainerRuntimeError as e:
            rec.waiting = (e.reason, e.message)
            self._event_for(WARNING, "Failed", e.message, rec)
            self._event_for(WARNING, "Failed", f"Error: {e.reason}", rec)
            cfg = self.env.config
            delay = min(max(delay * 2, cfg.backoff_initial), cfg.backoff_max)
            self.image_backoff[image] = (delay, now + delay)
            if isinstance(e, ImagePullError):
                # Show ImagePullBackOff while waiting, then try again when it ends.
                self.wake_at(now + min(delay / 2, 2.0))
            self.wake_at(now + delay)
            return False
        self.image_backoff.pop(image, None)
        self.env.images_seen[image] = time.monotonic()
        took = time.monotonic() - started
        if took > 1.0:
            self._event_for(NORMAL, "Pulled",
                            f'Successfully pulled image "{image}" in {took:.3f}s', rec)
        elif self.env.events is not None:
            self._event_for(NORMAL, "Pulled",
                            f'Container image "{image}" already present on machine', rec)
        return True

    async def _container_config(self, rec: ContainerRecord, c: Obj) -> ContainerConfig:
        restart_count = rec.restart_count
        if rec.state is ContainerState.EXITED:
            restart_count += 1
        if self.env.simulated:
            return ContainerConfig.from_spec(c, pod=self.pod, restart_count=restart_count)
        assert self.env.objects is not None and self.env.volumes is not None
        env = await container_env(self.pod, c, get=self.env.objects.get,
                                  services=self.env.services(), pod_ips=self.view.pod_ips,
                                  host_ip=self.env.config.node_ip,
                                  allocatable=self.env.allocatable)
        mounts = self.env.volumes.mounts(c, self.volume_paths or {}, self.pod)
        return ContainerConfig.from_spec(c, pod=self.pod, restart_count=restart_count, env=env,
                                         mounts=mounts)

    async def _post_start(self, rec: ContainerRecord, c: Obj) -> None:
        hook = (c.get("lifecycle") or {}).get("postStart")
        if not hook or rec.current is None:
            return
        try:
            await lifecycle.run_hook(hook, runtime=self.env.runtime, container_id=rec.current.id,
                                     container=c, pod_ip=self._pod_ip(),
                                     timeout=lifecycle.grace_period(self.pod))
        except lifecycle.HookError as e:
            self._event_for(WARNING, "FailedPostStartHook", str(e), rec)
            await self._kill(rec, c, lifecycle.grace_period(self.pod))

    def _pod_ip(self) -> str:
        return self.view.pod_ips[0] if self.view.pod_ips else self.env.config.node_ip

    async def _kill(self, rec: ContainerRecord, c: Obj, grace: float) -> None:
        """preStop, then the stop signal, then SIGKILL when the grace period is over."""
        if rec.probes is not None:
            rec.probes.cancel()
            rec.probes = None
        cur = rec.current
        if cur is None or cur.state is not ContainerState.RUNNING:
            return
        rt = self.env.runtime
        begun = trio.current_time()
        hook = (c.get("lifecycle") or {}).get("preStop")
        if hook and grace > 0:
            with trio.move_on_after(grace):
                try:
                    await lifecycle.run_hook(hook, runtime=rt, container_id=cur.id, container=c,
                                             pod_ip=self._pod_ip(), timeout=grace)
                except lifecycle.HookError as e:
                    self._event_for(WARNING, "FailedPreStopHook", str(e), rec)
        left = 0.0
        if grace > 0:
            left = max(grace - (trio.current_time() - begun), lifecycle.MIN_GRACE_AFTER_HOOK
                       if hook else 0.0)
        await rt.stop_container(cur.id, left)
        try:
            rec.current = await rt.container_status(cur.id)
        except NotFoundError:
            rec.current = _vanished(cur)
        rec.ready = rec.started = False

    async def _kill_all(self, grace: float) -> None:
        """Stop the regular containers together, then the sidecars in reverse order."""
        spec = self.pod.get("spec") or {}
        regular = [(self.records[c["name"]], c) for c in spec.get("containers") or ()]
        init = [(self.records[c["name"]], c) for c in spec.get("initContainers") or ()]
        deadline = trio.current_time() + grace
        async with trio.open_nursery() as nursery:
            for rec, c in regular + [(r, c) for r, c in init if not r.sidecar]:
                if rec.running:
                    self._event_for(NORMAL, "Killing", f"Stopping container {rec.name}", rec)
                    nursery.start_soon(self._kill, rec, c, grace)
        for rec, c in reversed([(r, c) for r, c in init if r.sidecar]):
            if rec.running:
                self._event_for(NORMAL, "Killing", f"Stopping container {rec.name}", rec)
                await self._kill(rec, c, max(deadline - trio.current_time(), 0.0))

    async def _stop_after_terminal(self) -> None:
        """A pod that finished keeps its containers (for logs) but not its sandbox."""
        if self.sandbox_stopped:
            return
        await self._kill_all(lifecycle.grace_period(self.pod))
        if self.sandbox is not None:
            await self.env.runtime.stop_sandbox(self.sandbox.id)
        self.sandbox_stopped = True
        self.view.sandbox_ready = False

    # ---------------------------------------------------------------------- probes

    def _start_probes(self, rec: ContainerRecord) -> None:
        c = self._spec(rec.name)
        if self.env.simulated or self._nursery is None or rec.current is None:
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
        self._nursery.start_soon(self._probe, rec, c, rec.current, scope)

    async def _probe(self, rec: ContainerRecord, c: Obj, cs: ContainerStatus,
                     scope: trio.CancelScope) -> None:
        check = partial(run_probe, pod_ip=self._pod_ip(), runtime=self.env.runtime,
                        container_id=cs.id, container=c, http_client=self.env.probe_http)

        def mine() -> bool:
            return rec.current is not None and rec.current.id == cs.id

        with scope:
            if c.get("startupProbe") and not rec.started:
                startup = Prober("startup", c["startupProbe"], partial(check, c["startupProbe"]),
                                 started_at=cs.started_at)
                await startup.run(lambda p: None)
                if not mine():
                    return
                if startup.failed:
                    message = startup.last.message if startup.last else ""
                    self._event_for(WARNING, "Unhealthy", f"Startup probe failed: {message}", rec)
                    rec.kill = ("startup", message)
                    self.wake()
                    return
                rec.started = True
                if not c.get("readinessProbe"):
                    rec.ready = True
                self.wake()
            async with trio.open_nursery() as nursery:
                for kind in ("liveness", "readiness"):
                    probe = c.get(f"{kind}Probe")
                    if probe:
                        prober = Prober(kind, probe, partial(check, probe),
                                        started_at=cs.started_at)
                        if kind == "readiness" and rec.ready:
                            prober.healthy = True  # adopted as ready: keep it unless it fails
                        nursery.start_soon(prober.run, partial(self._probe_changed, rec, mine))

    def _probe_changed(self, rec: ContainerRecord, mine: Callable[[], bool],
                       prober: Prober) -> None:
        if not mine():
            return
        message = prober.last.message if prober.last else ""
        if prober.kind == "readiness":
            rec.ready = prober.healthy
            if not prober.healthy:
                self._event_for(WARNING, "Unhealthy", f"Readiness probe failed: {message}", rec)
        elif not prober.healthy:
            self._event_for(WARNING, "Unhealthy", f"Liveness probe failed: {message}", rec)
            rec.kill = ("liveness", message)
        self.wake()

    # -------------------------------------------------------------------- adoption

    async def _adopt(self, adopted: Adopted) -> None:
        """Take over what a previous kubelet left running, without restarting anything."""
        rt = self.env.runtime
        sandboxes = sorted(adopted.sandboxes, key=lambda s: (s.attempt, s.created_at))
        for extra in sandboxes[:-1]:
            await rt.remove_sandbox(extra.id)
        if sandboxes:
            self.sandbox = sandboxes[-1]
            self.attempt = self.sandbox.attempt
        by_name: dict[str, list[ContainerInfo]] = {}
        for info in adopted.containers:
            by_name.setdefault(info.name, []).append(info)
        reported = {s["name"]: s for group in ("initContainerStatuses", "containerStatuses")
                    for s in (self.pod.get("status") or {}).get(group) or ()}
        for name, infos in by_name.items():
            infos.sort(key=lambda i: (i.restart_count, i.created_at), reverse=True)
            rec = self.records.get(name)
            if rec is None:
                for info in infos:
                    await rt.remove_container(info.id)
                continue
            for info in infos[2:]:
                await rt.remove_container(info.id)
            try:
                rec.current = await rt.container_status(infos[0].id)
                if len(infos) > 1:
                    rec.previous = await rt.container_status(infos[1].id)
            except NotFoundError:
                continue
            seen = reported.get(name) or {}
            if seen.get("containerID", "").endswith(rec.current.id) and rec.running:
                rec.started = bool(seen.get("started"))
                rec.ready = bool(seen.get("ready"))
        log.info("pod %s/%s: adopted %d containers", self.namespace, self.name,
                 len(adopted.containers))

    # ----------------------------------------------------------------- termination

    async def terminate(self) -> None:
        """Stop everything gracefully, report the final status, DELETE the pod, clean up."""
        for rec in self.records.values():
            if rec.probes is not None:
                rec.probes.cancel()
                rec.probes = None
        if self.adopted is not None:
            await self._adopt(self.adopted)
            self.adopted = None
        await self._refresh_quietly()
        await self._kill_all(lifecycle.grace_period(self.pod))
        rt = self.env.runtime
        if self.sandbox is not None:
            await rt.stop_sandbox(self.sandbox.id)
        self.view.sandbox_ready = False
        if not self.removed:
            if self.view.phase not in TERMINAL:
                self.view.phase = status.SUCCEEDED if all(
                    r.exited_ok() for r in self.records.values() if not r.init) \
                    else status.FAILED
            try:
                await self._report()
                if self.pod["metadata"].get("deletionTimestamp"):
                    await self._delete()
            except _API_ERRORS as e:
                log.warning("pod %s/%s: final status or delete failed: %s", self.namespace,
                            self.name, e)
        await self._remove_everything()
        self.done = True

    async def _refresh_quietly(self) -> None:
        rt = self.env.runtime
        for rec in self.records.values():
            if rec.current is not None and rec.current.state is not ContainerState.EXITED:
                try:
                    rec.current = await rt.container_status(rec.current.id)
                except NotFoundError:
                    rec.current = _vanished(rec.current)

    async def _delete(self) -> None:
        delay = 0.2
        for _ in range(8):
            try:
                await self.env.client.delete(PODS, self.name, namespace=self.namespace,
                                             grace_period_seconds=0,
                                             preconditions={"uid": self.uid})
                return
            except (NotFound, Conflict):
                return  # gone already, or a new pod of the same name: not ours
            except ApiConnectionError:
                await trio.sleep(delay)
                delay *= 2

    async def _remove_everything(self) -> None:
        rt = self.env.runtime
        if self.sandbox is not None:
            await rt.remove_sandbox(self.sandbox.id)
        for rec in self.records.values():
            for cs in (rec.current, rec.previous):
                if cs is not None:
                    await rt.remove_container(cs.id)
        if self.env.volumes is not None:
            self.env.volumes.cleanup(self.uid)

    # ---------------------------------------------------------------------- status

    def status(self) -> Obj:
        """The status as the kubelet sees it now (also what /pods serves)."""
        previous = self.reported.get("conditions") or []
        if self.written is not None and self.written[1] >= _rv(self.pod):
            previous = self.written[0].get("conditions") or []
        else:
            previous = (self.pod.get("status") or {}).get("conditions") or previous
        return status.pod_status(self.pod, self.records, self.view, previous)

    async def _report(self) -> None:
        new = self.status()
        current_rv = _rv(self.pod)
        if self.written is not None and self.written[1] >= current_rv and \
                self.written[0] == new:
            return  # the informer has not caught up with what we wrote
        baseline = self.pod.get("status") or {}
        if self.written is not None and self.written[1] >= current_rv:
            baseline = self.written[0]
        patch = status.status_patch(baseline, new)
        if patch is None:
            return
        try:
            answer = await self.env.client.patch(PODS, self.name, {"status": patch},
                                                 namespace=self.namespace, subresource="status")
        except NotFound:
            self.removed = True
            return
        if answer["metadata"].get("uid") != self.uid:
            return
        self.written = (new, _rv(answer))
        self.reported = new


class PodWorkers:
    """The pod workers of one kubelet (or of many hollow ones sharing a nursery)."""

    def __init__(self, env: WorkerEnv) -> None:
        self.env = env
        self.workers: dict[str, PodWorker] = {}
        self.adopted: dict[str, Adopted] = {}
        self._nursery: trio.Nursery | None = None
        self._pending: list[PodWorker] = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for worker in self._pending:
                nursery.start_soon(self._run_worker, worker)
            self._pending.clear()
            task_status.started()
            await trio.sleep_forever()

    def update(self, pod: Obj) -> None:
        """A pod of this node was added or changed."""
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is not None:
            worker.set_pod(pod)
            return
        phase = (pod.get("status") or {}).get("phase")
        rejected = None
        if phase not in TERMINAL and self.active_count() >= self.env.config.max_pods:
            rejected = ("OutOfpods", ("Pod was rejected: Node didn't have enough resource: "
                                      f"pods, requested: 1, used: {self.active_count()}, "
                                      f"capacity: {self.env.config.max_pods}"))
        worker = PodWorker(self.env, pod, adopted=self.adopted.pop(uid, None), rejected=rejected)
        if phase in TERMINAL and rejected is None:
            worker.view.phase = phase
        self.workers[uid] = worker
        if self._nursery is None:
            self._pending.append(worker)
        else:
            self._nursery.start_soon(self._run_worker, worker)

    def remove(self, pod: Obj) -> None:
        """A pod of this node is gone from the API."""
        worker = self.workers.get(pod["metadata"].get("uid", ""))
        if worker is not None:
            worker.mark_removed(pod)

    def wake(self, uid: str) -> None:
        worker = self.workers.get(uid)
        if worker is not None:
            worker.wake()

    async def _run_worker(self, worker: PodWorker) -> None:
        try:
            await worker.run()
        except Exception:
            log.exception("pod %s/%s: worker failed", worker.namespace, worker.name)
        finally:
            if self.workers.get(worker.uid) is worker:
                del self.workers[worker.uid]

    def active_count(self) -> int:
        return sum(1 for w in self.workers.values() if w.active)

    def running_pods(self) -> int:
        return sum(1 for w in self.workers.values() if w.view.sandbox_ready and not w.done)

    def find(self, namespace: str, name: str) -> PodWorker | None:
        for worker in self.workers.values():
            if worker.namespace == namespace and worker.name == name and not worker.done:
                return worker
        return None
