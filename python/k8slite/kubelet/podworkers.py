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
from typing import Any

import trio

from k8slite.api import meta
from k8slite.client import ApiConnectionError, ApiError, Conflict, NotFound
from k8slite.client.resource import PODS
from k8slite.component.events import NORMAL, WARNING
from k8slite.component.objects import Obj
from k8slite.kubelet import dns, emptydir, lifecycle, status
from k8slite.kubelet.containers import RETRY_SECONDS, ContainerOps, WorkerEnv
from k8slite.kubelet.podstate import PodState
from k8slite.kubelet.runtime.base import (
    ContainerInfo,
    ContainerRuntimeError,
    ContainerState,
    NotFoundError,
    Sandbox,
    SandboxState,
)
from k8slite.kubelet.status import TERMINAL, PodView
from k8slite.kubelet.volumes import ClaimPending, VolumeError

log = logging.getLogger(__name__)

_API_ERRORS = (ApiError, ApiConnectionError)
# A pod waiting for its claims to bind looks again this soon, doubling up to RETRY_SECONDS:
# binding takes a moment after scheduling, and pod start-up should not wait much longer.
CLAIM_RETRY_SECONDS = 0.1
# Tries at the final status and DELETE while the API server is unreachable (0.2 s doubling,
# so about 50 s), after the client's own retries of each request.
FINISH_ATTEMPTS = 8
# Answers to the final status write and DELETE that are worth another attempt.
TRANSIENT_CODES = frozenset({408, 429, 500, 503, 504})


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
        return (old.get("status") or {}).get("conditions") != (new.get("status") or {}).get(
            "conditions"
        )
    return False


class PodWorker:
    """Owns one pod (by uid) from admission to its final DELETE."""

    def __init__(
        self,
        env: WorkerEnv,
        pod: Obj,
        *,
        adopted: Adopted | None = None,
        rejected: tuple[str, str] | None = None,
    ) -> None:
        self.env = env
        view = PodView(
            env.runtime.name,
            env.config.node_ip,
            [],
            False,
            (pod.get("status") or {}).get("startTime"),
        )
        if rejected is not None:
            view.phase = status.FAILED
            view.reason, view.message = rejected
        self.state = PodState.of(pod, view)
        self.containers = ContainerOps(env, self.state)
        self.containers.report = self._report
        self.rejected = rejected is not None
        self.adopted = adopted
        self.removed = False  # gone from the API (deleted for good, or force-deleted)
        self.done = False
        self.first_seen = time.monotonic()
        self.running_seen = False
        self.sandbox_stopped = False
        self.volumes_at = 0.0
        self.claim_retry = CLAIM_RETRY_SECONDS
        self.mount_event_at = 0.0  # when FailedMount may be said again
        self.eviction: str | None = None  # housekeeping's verdict, applied at the next sync
        self.written: tuple[Obj, int] | None = None  # (status, resourceVersion) we wrote
        self.reported: Obj = pod.get("status") or {}
        self._last_sync = 0.0
        self._sync_scope: trio.CancelScope | None = None
        self._updated = True

    @property
    def pod(self) -> Obj:
        return self.state.pod

    @property
    def uid(self) -> str:
        return self.state.uid

    @property
    def namespace(self) -> str:
        return self.state.namespace

    @property
    def name(self) -> str:
        return self.state.name

    @property
    def view(self) -> PodView:
        return self.state.view

    # ------------------------------------------------------------ outside events

    def set_pod(self, pod: Obj) -> None:
        old, self.state.pod = self.pod, pod
        if not _matters(old, pod):
            return  # our own status write coming back, say: nothing to do
        self._updated = True
        if self.terminating and self._sync_scope is not None:
            # A pod being deleted must not wait for a slow pull or start to finish.
            self._sync_scope.cancel()
        self.state.wake()

    def mark_removed(self, last: Obj | None = None) -> None:
        if last is not None:
            self.state.pod = last
        self.removed = True
        if self._sync_scope is not None:
            self._sync_scope.cancel()
        self.state.wake()

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
            self.containers.nursery = nursery
            try:
                await self._loop()
            finally:
                nursery.cancel_scope.cancel()

    async def _loop(self) -> None:
        first = True
        while not self.done:
            if self.terminating:
                await self._terminate_until_done()
                return
            operation = "create" if first else ("update" if self._updated else "sync")
            self._updated = first = False
            with trio.CancelScope() as scope:
                self._sync_scope = scope
                try:
                    await self._timed(operation, self.sync)
                except (*_API_ERRORS, ContainerRuntimeError) as e:
                    log.warning("pod %s/%s: sync failed: %s", self.namespace, self.name, e)
                    self.state.wake_at(trio.current_time() + RETRY_SECONDS)
                except Exception:
                    # A bug must not orphan the pod's containers: keep the worker, retry.
                    log.exception("pod %s/%s: sync failed", self.namespace, self.name)
                    self.state.wake_at(trio.current_time() + RETRY_SECONDS)
            self._sync_scope = None
            self._last_sync = trio.current_time()
            await self._wait()

    async def _terminate_until_done(self) -> None:
        # Giving up would leave the pod's containers running with nobody to stop them.
        while True:
            try:
                await self._timed("terminate", self.terminate)
                return
            except (*_API_ERRORS, ContainerRuntimeError) as e:
                log.warning(
                    "pod %s/%s: stopping failed: %s; retrying", self.namespace, self.name, e
                )
            await trio.sleep(RETRY_SECONDS)

    async def _timed(self, operation: str, fn: Callable[[], Any]) -> None:
        start = time.perf_counter()
        try:
            await fn()
        finally:
            if self.env.metrics is not None:
                self.env.metrics.pod_worker.labels(operation).observe(time.perf_counter() - start)

    async def _wait(self) -> None:
        deadline = float("inf")
        if self.env.config.sync_frequency > 0 and self.view.phase not in TERMINAL:
            deadline = self._last_sync + self.env.config.sync_frequency
        await self.state.wait(deadline)

    # ------------------------------------------------------------------------ sync

    async def sync(self) -> None:
        if self.adopted is not None:
            await self._adopt(self.adopted)
            self.adopted = None
        if self.view.start_time is None:
            self.view.start_time = meta.now()
        await self.containers.refresh()
        self.containers.follow_probes()
        if self.view.phase in TERMINAL:
            await self._stop_after_terminal()
            await self._report()
            return
        if self.state.sandbox is None and not self.running_seen:
            async with self.env.start_slots:
                await self._sync_runtime()
        else:
            await self._sync_runtime()
        phase = status.phase(self.pod.get("spec") or {}, self.state.records)
        if self.view.phase in TERMINAL:
            # Evicted, or past its deadline, during this sync.
            await self._stop_after_terminal()
        elif phase in TERMINAL:
            self.view.phase = phase
            await self._stop_after_terminal()
        elif phase == status.RUNNING and not self.running_seen:
            self.running_seen = True
            if self.env.metrics is not None:
                self.env.metrics.pod_start.observe(time.monotonic() - self.first_seen)
        await self._report()

    def evict(self, message: str) -> None:
        """Have the next sync evict the pod (housekeeping found it over a limit)."""
        if self.eviction is None and self.view.phase not in TERMINAL:
            self.eviction = message
            self.state.wake()

    async def _evicted(self) -> bool:
        """upstream's eviction manager: the pod fails with reason Evicted and a
        DisruptionTarget condition, its containers killed at once (local storage limits
        allow no grace period)."""
        if self.eviction is None:
            return False
        self.view.phase = status.FAILED
        self.view.reason = emptydir.EVICTED
        self.view.message = self.eviction
        self.view.extra_conditions = [
            {
                "type": "DisruptionTarget",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": meta.now(),
                "reason": "TerminationByKubelet",
                "message": self.eviction,
            }
        ]
        self.containers.event(WARNING, emptydir.EVICTED, self.eviction)
        await self.containers.kill_all(0)
        return True

    async def _sync_runtime(self) -> None:
        if (
            not await self._evicted()
            and not await self._deadline_exceeded()
            and await self._ensure_sandbox()
            and await self._ensure_volumes()
        ):
            await self.containers.sync()

    async def _deadline_exceeded(self) -> bool:
        deadline = (self.pod.get("spec") or {}).get("activeDeadlineSeconds")
        if deadline is None or not self.view.start_time:
            return False
        started = meta.parse_time(self.view.start_time).timestamp()
        if time.time() - started < float(deadline):
            self.state.wake_at(trio.current_time() + float(deadline) - (time.time() - started))
            return False
        self.view.phase = status.FAILED
        self.view.reason = "DeadlineExceeded"
        self.view.message = "Pod was active on the node longer than the specified deadline"
        self.containers.event(NORMAL, "DeadlineExceeded", self.view.message)
        await self.containers.kill_all(lifecycle.grace_period(self.pod))
        return True

    # --------------------------------------------------------------------- sandbox

    async def _ensure_sandbox(self) -> bool:
        rt = self.env.runtime
        old = self.state.sandbox
        if old is not None:
            try:
                old = await rt.sandbox_status(old.id)
            except NotFoundError:
                old = None
            if old is not None and old.state is SandboxState.READY:
                self.state.sandbox = old
                self._set_ips(old)
                # Kept as written for this sandbox (a kubelet restart must not change them).
                self._write_pod_files(old, missing_only=True)
                return True
        if self.state.sandbox is not None:
            # The sandbox died (or vanished): its containers lost their namespaces.
            self.containers.event(
                NORMAL, "SandboxChanged", "Pod sandbox changed, it will be killed and re-created."
            )
            await self.containers.kill_all(0)
            await rt.remove_sandbox(self.state.sandbox.id)
            self.state.attempt = self.state.sandbox.attempt + 1
            self.state.sandbox = None
            self.view.sandbox_ready = False
            for rec in self.state.records.values():
                if rec.init and rec.current is not None:
                    # Init containers run again in a new sandbox.
                    rec.previous, rec.current = rec.current, None
            if not self._anything_to_run():
                return False
        try:
            sandbox = await rt.run_sandbox(self.pod, attempt=self.state.attempt)
        except ContainerRuntimeError as e:
            self.containers.event(
                WARNING, "FailedCreatePodSandBox", f"Failed to create pod sandbox: {e.message}"
            )
            self.state.wake_at(trio.current_time() + RETRY_SECONDS)
            return False
        self.state.sandbox = sandbox
        self._set_ips(sandbox)
        self._write_pod_files(sandbox, missing_only=False)
        return True

    def _write_pod_files(self, sandbox: Sandbox, missing_only: bool) -> None:
        """The pod's resolv.conf and /etc/hosts, which its containers mount."""
        if self.env.volumes is None:
            return
        pod_dir = self.env.volumes.pod_dir(self.uid)
        if missing_only and all((pod_dir / name).exists() for name in dns.POD_FILES):
            return
        cfg = self.env.config
        warnings = dns.write_pod_files(
            pod_dir,
            self.pod,
            [sandbox.ip] if sandbox.ip else [],
            cluster_dns=cfg.cluster_dns,
            cluster_domain=cfg.cluster_domain,
            resolv_conf=cfg.resolv_conf,
        )
        for reason, message in warnings:
            self.containers.event(WARNING, reason, message)

    def _set_ips(self, sandbox: Sandbox) -> None:
        self.view.sandbox_ready = True
        self.view.pod_ips = [sandbox.ip] if sandbox.ip else []

    def _anything_to_run(self) -> bool:
        policy = (self.pod.get("spec") or {}).get("restartPolicy") or "Always"
        for rec in self.state.records.values():
            if rec.ephemeral:
                continue  # not restarted, not a reason for a new sandbox
            if rec.current is None or (
                rec.state is ContainerState.EXITED
                and (
                    rec.init
                    and not rec.exited_ok()
                    or lifecycle.should_restart(policy, rec.current.exit_code, rec.sidecar)
                )
            ):
                return True
        return False

    async def _ensure_volumes(self) -> bool:
        manager = self.env.volumes
        if manager is None:
            return True
        refresh = self.env.config.sync_frequency or 60.0
        renewal = manager.next_renewal(self.uid)
        if (
            self.state.volume_paths is not None
            and time.monotonic() - self.volumes_at < refresh
            and (renewal is None or time.time() < renewal)
        ):
            return True
        try:
            self.state.volume_paths = await manager.setup(
                self.pod,
                pod_ips=self.view.pod_ips,
                host_ip=self.env.config.node_ip,
                allocatable=self.env.allocatable,
            )
            self.volumes_at = time.monotonic()
            renewal = manager.next_renewal(self.uid)
            if renewal is not None:
                # Sync when a token is due, so the container gets the new one in time.
                self.state.wake_at(trio.current_time() + max(renewal - time.time(), 0.0))
            return True
        except VolumeError as e:
            now = trio.current_time()
            if now >= self.mount_event_at:
                self.containers.event(WARNING, "FailedMount", str(e))
                self.mount_event_at = now + RETRY_SECONDS
            delay = RETRY_SECONDS
            if isinstance(e, ClaimPending):
                delay, self.claim_retry = self.claim_retry, min(2 * self.claim_retry, RETRY_SECONDS)
            self.state.wake_at(now + delay)
            return self.state.volume_paths is not None

    async def _stop_after_terminal(self) -> None:
        """A pod that finished keeps its containers (for logs) but not its sandbox."""
        if self.sandbox_stopped:
            return
        await self.containers.kill_all(lifecycle.grace_period(self.pod))
        if self.state.sandbox is not None:
            await self.env.runtime.stop_sandbox(self.state.sandbox.id)
        self.sandbox_stopped = True
        self.view.sandbox_ready = False

    # -------------------------------------------------------------------- adoption

    async def _adopt(self, adopted: Adopted) -> None:
        """Take over what a previous kubelet left running, without restarting anything."""
        rt = self.env.runtime
        sandboxes = sorted(adopted.sandboxes, key=lambda s: (s.attempt, s.created_at))
        for extra in sandboxes[:-1]:
            await rt.remove_sandbox(extra.id)
        if sandboxes:
            self.state.sandbox = sandboxes[-1]
            self.state.attempt = self.state.sandbox.attempt
        by_name: dict[str, list[ContainerInfo]] = {}
        for info in adopted.containers:
            by_name.setdefault(info.name, []).append(info)
        reported = {
            s["name"]: s
            for group in (
                "initContainerStatuses",
                "containerStatuses",
                "ephemeralContainerStatuses",
            )
            for s in (self.pod.get("status") or {}).get(group) or ()
        }
        for name, infos in by_name.items():
            infos.sort(key=lambda i: (i.restart_count, i.created_at), reverse=True)
            rec = self.state.records.get(name)
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
        log.info(
            "pod %s/%s: adopted %d containers", self.namespace, self.name, len(adopted.containers)
        )

    # ----------------------------------------------------------------- termination

    async def terminate(self) -> None:
        """Stop everything gracefully, report the final status, DELETE the pod, clean up."""
        self.containers.stop_probes()
        if self.adopted is not None:
            await self._adopt(self.adopted)
            self.adopted = None
        await self.containers.refresh()
        await self.containers.kill_all(lifecycle.grace_period(self.pod))
        rt = self.env.runtime
        if self.state.sandbox is not None:
            await rt.stop_sandbox(self.state.sandbox.id)
        self.view.sandbox_ready = False
        if not self.removed:
            if self.view.phase not in TERMINAL:
                self.view.phase = (
                    status.SUCCEEDED
                    if all(
                        r.exited_ok()
                        for r in self.state.records.values()
                        if not (r.init or r.ephemeral)
                    )
                    else status.FAILED
                )
            await self._finish_in_api()
        await self._remove_everything()
        self.done = True

    async def _finish_in_api(self) -> None:
        """Report the final status and DELETE the pod, retrying while the API server is away.

        Giving up is said (log line and event): the pod then stays in the API, Terminating,
        until it changes or the kubelet restarts, when a new worker tries once more.
        """
        delay = 0.2
        for attempt in range(1, FINISH_ATTEMPTS + 1):
            try:
                await self._report()
                if self.pod["metadata"].get("deletionTimestamp"):
                    await self._delete()
                return
            except ApiConnectionError as e:
                if attempt == FINISH_ATTEMPTS:
                    self._gave_up(f"the API server did not answer {attempt} attempts: {e}")
                    return
            except ApiError as e:
                # A busy server's answers (408 body timeout, 429, 5xx) say "not now", not
                # "no": the density bench left 46 pods Terminating for good when a
                # starved API server answered their final DELETE 408 once.
                if e.code not in TRANSIENT_CODES:
                    self._gave_up(str(e))
                    return
                if attempt == FINISH_ATTEMPTS:
                    self._gave_up(f"the API server was busy for {attempt} attempts: {e}")
                    return
            await trio.sleep(delay)
            delay *= 2

    def _gave_up(self, why: str) -> None:
        message = (
            f"Gave up deleting pod {self.namespace}/{self.name} ({self.uid}) after stopping "
            f"its containers: {why}; it stays Terminating until it changes or the kubelet restarts"
        )
        log.warning("%s", message)
        self.containers.event(WARNING, "FailedDelete", message)

    async def _delete(self) -> None:
        try:
            await self.env.client.delete(
                PODS,
                self.name,
                namespace=self.namespace,
                grace_period_seconds=0,
                preconditions={"uid": self.uid},
            )
        except (NotFound, Conflict):
            pass  # gone already, or a new pod of the same name: not ours

    async def _remove_everything(self) -> None:
        rt = self.env.runtime
        if self.state.sandbox is not None:
            await rt.remove_sandbox(self.state.sandbox.id)
        for rec in self.state.records.values():
            for cs in (rec.current, rec.previous):
                if cs is not None:
                    await rt.remove_container(cs.id)
        if self.env.volumes is not None:
            self.env.volumes.cleanup(self.uid)

    # ---------------------------------------------------------------------- status

    def status(self) -> Obj:
        """The status as the kubelet sees it now (also what /pods serves)."""
        if self.rejected:
            # Upstream's rejection: phase, reason and message; the rest stays as it was.
            return {
                **(self.pod.get("status") or {}),
                "phase": self.view.phase,
                "reason": self.view.reason,
                "message": self.view.message,
            }
        previous = self.reported.get("conditions") or []
        if self.written is not None and self.written[1] >= _rv(self.pod):
            previous = self.written[0].get("conditions") or []
        else:
            previous = (self.pod.get("status") or {}).get("conditions") or previous
        return status.pod_status(self.pod, self.state.records, self.view, previous)

    async def _report(self) -> None:
        new = self.status()
        current_rv = _rv(self.pod)
        if self.written is not None and self.written[1] >= current_rv and self.written[0] == new:
            return  # the informer has not caught up with what we wrote
        baseline = self.pod.get("status") or {}
        if self.written is not None and self.written[1] >= current_rv:
            baseline = self.written[0]
        patch = status.status_patch(baseline, new)
        if patch is None:
            return
        try:
            answer = await self.env.client.patch(
                PODS, self.name, {"status": patch}, namespace=self.namespace, subresource="status"
            )
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
            rejected = (
                "OutOfpods",
                (
                    "Pod was rejected: Node didn't have enough resource: "
                    f"pods, requested: 1, used: {self.active_count()}, "
                    f"capacity: {self.env.config.max_pods}"
                ),
            )
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
            worker.state.wake()

    def wake_after(self, uid: str, seconds: float) -> None:
        """Have the pod's worker sync again in `seconds` (a container is due to change)."""
        worker = self.workers.get(uid)
        if worker is not None:
            worker.state.wake_at(trio.current_time() + seconds)

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
