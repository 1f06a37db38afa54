"""The scheduling loop: pop a pod, filter and score every node natively, assume, bind."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

import trio
from prometheus_client import CollectorRegistry

from k8slite._native import NodeTable, ScheduleResult
from k8slite.api.meta import now as now_text
from k8slite.api.storage_v1 import SELECTED_NODE
from k8slite.client import ApiClient, ApiConnectionError, ApiError, Conflict, NotFound
from k8slite.client.informer import SharedInformerFactory, strip_managed_fields
from k8slite.client.resource import (
    NAMESPACES,
    NODES,
    PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES,
    PODS,
    STORAGECLASSES,
)
from k8slite.client.store import DeletedFinalStateUnknown
from k8slite.component.events import NORMAL, WARNING, EventBroadcaster
from k8slite.component.objects import Obj, get_condition, is_deleting, meta, name_of, namespace_of
from k8slite.scheduler.cache import SchedulerCache
from k8slite.scheduler.http import WritePool, pod_path
from k8slite.scheduler.metrics import ERROR, SCHEDULED, UNSCHEDULABLE, SchedulerMetrics
from k8slite.scheduler.plugins import FILTER_PLUGINS, Profile, pod_spec
from k8slite.scheduler.queue import QueuedPod, SchedulingQueue, pod_key
from k8slite.scheduler.volumes import FILTER_NAME as VOLUME_BINDING
from k8slite.scheduler.volumes import VolumeBinding

log = logging.getLogger(__name__)

# Pods that ended no longer hold resources; the scheduler does not watch them.
ACTIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"
NO_NODES = "no nodes available to schedule pods"
# Bindings in flight at once: enough to keep the API server busy over a connection pool,
# few enough that a slow server pushes back on the scheduling loop.
DEFAULT_BIND_CONCURRENCY = 32
STATUS_CONCURRENCY = 8

# Which filters a cluster event can change the verdict of (upstream's queueing hints, coarse).
ASSIGNED_POD_DELETE = ("NodeResourcesFit", "NodePorts", "InterPodAffinity")
ASSIGNED_POD_CHANGE = ("InterPodAffinity",)


def _assigned(pod: Obj) -> bool:
    return bool((pod.get("spec") or {}).get("nodeName"))


def fit_error_message(result: ScheduleResult, pod: Obj) -> str:
    """Upstream's FitError text, with its PostFilter part as a scheduler without preemption
    victims reports it: "0/3 nodes are available: 1 node(s) had untolerated taint(s),
    2 Insufficient cpu. no new claims to deallocate, preemption: 0/3 nodes are available:
    1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming
    pod." Histogram entries are "<count> <reason>", sorted as strings, as upstream sorts them.
    """
    n = result.nodes
    if n == 0:
        return NO_NODES
    message = f"0/{n} nodes are available:"
    if result.prefilter:
        message += f" {result.prefilter}."
    elif result.reasons:
        message += " " + ", ".join(sorted(f"{c} {r}" for r, c in result.reasons)) + "."
    return f"{message} no new claims to deallocate, preemption: {_preemption(result, pod)}"


def _preemption(result: ScheduleResult, pod: Obj) -> str:
    if (pod.get("spec") or {}).get("preemptionPolicy") == "Never":
        return "not eligible due to preemptionPolicy=Never."
    unresolvable = result.unresolvable
    resolvable = result.nodes - result.feasible - unresolvable
    parts = []
    if unresolvable:
        parts.append(f"{unresolvable} Preemption is not helpful for scheduling")
    if resolvable:
        parts.append(f"{resolvable} No preemption victims found for incoming pod")
    return f"0/{result.nodes} nodes are available: {', '.join(sorted(parts))}."


class Scheduler:
    """One scheduling profile's informers, cache, queue and loop, against one API server."""

    def __init__(
        self,
        client: ApiClient,
        profile: Profile | None = None,
        *,
        registry: CollectorRegistry | None = None,
        bind_concurrency: int = DEFAULT_BIND_CONCURRENCY,
        host: str | None = None,
    ) -> None:
        self.client = client
        self.profile = profile or Profile()
        self.name = self.profile.scheduler_name
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = SchedulerMetrics(self.registry, self.name)
        self.queue = SchedulingQueue()
        self.metrics.watch_queue(self.queue.pending)
        self.factory = SharedInformerFactory(client, transform=strip_managed_fields)
        self.nodes = self.factory.informer(NODES)
        self.pods = self.factory.informer(PODS, field_selector=ACTIVE_PODS)
        self.namespaces = self.factory.informer(NAMESPACES)
        self.cache = SchedulerCache(self.profile.node_table(), self.namespaces.list)
        self.volume_binding = VolumeBinding(
            self.factory.informer(PERSISTENTVOLUMECLAIMS),
            self.factory.informer(PERSISTENTVOLUMES),
            self.factory.informer(STORAGECLASSES),
            self.pods,
        )
        for informer in (
            self.volume_binding.claims,
            self.volume_binding.volumes,
            self.volume_binding.classes,
        ):
            informer.add_event_handler(
                lambda _: self._volumes_changed(),
                lambda _old, _new: self._volumes_changed(),
                lambda _: self._volumes_changed(),
            )
        # Bindings and conditions go over a lean pool of their own; the informers' lists and
        # watches, and the one event writer, stay on the general client.
        self.writes = WritePool(client.config)
        self.broadcaster = EventBroadcaster(client, host=host, registry=self.registry)
        self.events = self.broadcaster.recorder(
            self.name, instance=f"{self.name}-{self.broadcaster.host}"
        )
        self._binds = trio.CapacityLimiter(bind_concurrency)
        self._status_writes = trio.CapacityLimiter(STATUS_CONCURRENCY)
        self._synced = False
        self._nursery: trio.Nursery | None = None
        self.nodes.add_event_handler(self._on_node_add, self._on_node_update, self._on_node_delete)
        self.pods.add_event_handler(self._on_pod_add, self._on_pod_update, self._on_pod_delete)

    @property
    def table(self) -> NodeTable:
        return self.cache.table

    def ready(self) -> bool:
        return self._synced

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sync the informers, then schedule until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self.factory.start(nursery)
                await self.factory.wait_for_cache_sync()
                self._synced = True
                log.info(
                    "scheduler %s: caches synced (%d nodes, %d pending pods)",
                    self.name,
                    len(self.table),
                    len(self.queue),
                )
                nursery.start_soon(self.queue.run)
                nursery.start_soon(self.broadcaster.run)
                task_status.started()
                while True:
                    qp = await self.queue.pop()
                    await self._schedule_one(qp)
        finally:
            with trio.CancelScope(shield=True):
                await self.writes.aclose()

    # ----------------------------------------------------------------- informers

    def _ours(self, pod: Obj) -> bool:
        return (pod.get("spec") or {}).get("schedulerName", "default-scheduler") == self.name

    def _volumes_changed(self) -> None:
        if self._synced:
            self.queue.move_all("PersistentVolumeChange", (VOLUME_BINDING, "NodeAffinity"))

    def _on_node_add(self, node: Obj) -> None:
        self.cache.add_node(node)
        self.queue.move_all("NodeAdd")

    def _on_node_update(self, old: Obj, new: Obj) -> None:
        if self.cache.update_node(old, new):
            self.queue.move_all("NodeUpdate")

    def _on_node_delete(self, node: Obj | DeletedFinalStateUnknown) -> None:
        self.cache.remove_node(node.obj if isinstance(node, DeletedFinalStateUnknown) else node)

    def _on_pod_add(self, pod: Obj) -> None:
        if _assigned(pod):
            self.cache.add_pod(pod)
            self.queue.move_all("AssignedPodAdd", ASSIGNED_POD_CHANGE)
        elif self._ours(pod) and not is_deleting(pod) and not self.cache.is_assumed(pod_key(pod)):
            self.queue.add(pod)

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        if _assigned(new):
            if not _assigned(old):
                self.queue.delete(pod_key(new))
            self.cache.update_pod(old, new)
            if meta(old).get("labels") != meta(new).get("labels"):
                self.queue.move_all("AssignedPodUpdate", ASSIGNED_POD_CHANGE)
        elif self._ours(new) and not is_deleting(new):
            # An assumed pod is being bound: a change now (a condition we wrote earlier
            # landing late, say) must not queue it a second time.
            if not self.cache.is_assumed(pod_key(new)):
                self.queue.update(old, new)
        else:
            self.queue.delete(pod_key(new))

    def _on_pod_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        pod = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        key = pod_key(pod)
        self.queue.delete(key)
        if _assigned(pod) or self.cache.is_assumed(key):
            self.cache.remove_pod(pod)
            self.queue.move_all("AssignedPodDelete", ASSIGNED_POD_DELETE)

    # ------------------------------------------------------------------- one pod

    async def _schedule_one(self, qp: QueuedPod) -> None:
        start = time.perf_counter()
        pod = qp.pod
        if is_deleting(pod) or _assigned(pod):
            self.queue.done(qp.key)
            await trio.lowlevel.checkpoint()
            return
        volumes = self.volume_binding.check(pod)
        if volumes.error is not None:
            self._volume_unschedulable(qp, volumes.error, start)
            await trio.lowlevel.checkpoint()
            return
        qp.cache["select"] = volumes.select
        # Volume constraints follow claims and volumes, not the pod: never cached.
        spec = pod_spec(pod, self.namespaces.list, volumes.terms) if volumes.terms else None
        if spec is None:
            spec = qp.cache.get("spec")
        if spec is None:
            try:
                spec = qp.cache["spec"] = self.cache.spec_of(pod)
            except (ValueError, TypeError, OverflowError) as e:
                # A pod the API server let through with fields we cannot read: an error for
                # this pod (retried with backoff), never for the scheduler.
                log.warning("pod %s cannot be scheduled: %s", qp.key, e)
                self.metrics.attempt(ERROR, time.perf_counter() - start)
                self.queue.requeue_backoff(qp)
                await trio.lowlevel.checkpoint()
                return
        result = self.table.schedule(spec)
        if result.node is None:
            self._unschedulable(qp, result, start)
            await trio.lowlevel.checkpoint()
            return
        self.cache.assume(qp.pod, result.node, spec)
        self.queue.done(qp.key)
        # Backpressure: wait here, not in an ever-growing pile of binding tasks.
        await self._binds.acquire_on_behalf_of(qp)
        assert self._nursery is not None
        self._nursery.start_soon(self._bind, qp, result.node, start)

    def _unschedulable(self, qp: QueuedPod, result: ScheduleResult, start: float) -> None:
        message = fit_error_message(result, qp.pod)
        rejected: Collection[str] = result.rejected_by or FILTER_PLUGINS
        self.queue.requeue_unschedulable(qp, rejected)
        self.metrics.attempt(UNSCHEDULABLE, time.perf_counter() - start)
        log.debug("pod %s unschedulable: %s", qp.key, message)
        self.events.event(qp.pod, WARNING, "FailedScheduling", message, action="Scheduling")
        self._set_condition(qp.pod, "Unschedulable", message)

    def _volume_unschedulable(self, qp: QueuedPod, reason: str, start: float) -> None:
        """A pod its claims keep off every node (upstream's VolumeBinding PreFilter)."""
        n = len(self.table)
        message = (
            f"0/{n} nodes are available: {reason}. no new claims to deallocate, preemption: "
            f"0/{n} nodes are available: {n} Preemption is not helpful for scheduling."
            if n
            else NO_NODES
        )
        self.queue.requeue_unschedulable(qp, (VOLUME_BINDING,))
        self.metrics.attempt(UNSCHEDULABLE, time.perf_counter() - start)
        self.events.event(qp.pod, WARNING, "FailedScheduling", message, action="Scheduling")
        self._set_condition(qp.pod, "Unschedulable", message)

    async def _select_node(self, qp: QueuedPod, node: str) -> None:
        """Name the chosen node on the pod's unbound delayed-binding claims (PreBind)."""
        for claim in qp.cache.get("select") or ():
            path = (
                f"/api/v1/namespaces/{namespace_of(claim)}/persistentvolumeclaims/{name_of(claim)}"
            )
            patch = {"metadata": {"annotations": {SELECTED_NODE: node}}}
            await self.writes.request("PATCH", path, patch, "application/merge-patch+json")

    def _set_condition(self, pod: Obj, reason: str, message: str) -> None:
        """PodScheduled=False with the reason and message, unless the pod already says so."""
        c = get_condition(pod.get("status"), "PodScheduled")
        if (
            c is not None
            and c.get("status") == "False"
            and c.get("reason") == reason
            and c.get("message") == message
        ):
            return
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": reason,
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": now_text(),
        }
        assert self._nursery is not None
        self._nursery.start_soon(self._patch_status, name_of(pod), namespace_of(pod), condition)

    async def _patch_status(self, name: str, namespace: str, condition: Obj) -> None:
        async with self._status_writes:
            try:
                await self.writes.request(
                    "PATCH",
                    pod_path(namespace, name, "status"),
                    {"status": {"conditions": [condition]}},
                    "application/strategic-merge-patch+json",
                )
            except (ApiError, ApiConnectionError) as e:
                log.info("pod %s/%s: condition not written: %s", namespace, name, e)

    async def _bind(self, qp: QueuedPod, node: str, start: float) -> None:
        namespace, name = namespace_of(qp.pod), name_of(qp.pod)
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace, "uid": meta(qp.pod).get("uid")},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        try:
            await self._select_node(qp, node)
            await self.writes.request("POST", pod_path(namespace, name, "binding"), binding)
        except (NotFound, Conflict) as e:
            # Gone, being deleted, or bound by someone else: the watch says what happened.
            log.info("pod %s: binding to %s refused: %s", qp.key, node, e)
            self.cache.forget(qp.key)
            self.metrics.attempt(ERROR, time.perf_counter() - start)
        except (ApiError, ApiConnectionError) as e:
            log.warning("pod %s: binding to %s failed: %s", qp.key, node, e)
            self.cache.forget(qp.key)
            self.metrics.attempt(ERROR, time.perf_counter() - start)
            current = self.pods.get(name, namespace)
            if current is not None and not _assigned(current):
                if current is not qp.pod:  # changed while we were binding it
                    qp.pod = current
                    qp.cache.clear()
                self.queue.requeue_backoff(qp)
                message = f"Binding rejected: {e}"
                self.events.event(qp.pod, WARNING, "FailedScheduling", message, action="Scheduling")
        else:
            self.metrics.attempt(SCHEDULED, time.perf_counter() - start)
            self.metrics.scheduled(qp.attempts, trio.current_time() - qp.initial)
            self.events.event(
                qp.pod,
                NORMAL,
                "Scheduled",
                f"Successfully assigned {namespace}/{name} to {node}",
                action="Binding",
            )
        finally:
            self._binds.release_on_behalf_of(qp)
