"""The pod garbage collector: surplus terminated pods, pods of gone nodes, stuck deletions."""

from __future__ import annotations

import logging

import trio

from k8slite.api.meta import now as now_text
from k8slite.client import NODE_NAME_INDEX, ApiError, NotFound, run_workers
from k8slite.client.resource import NODES, PODS
from k8slite.component.objects import Obj, get_condition, is_deleting, meta
from k8slite.controllers.base import Controller, ControllerContext

log = logging.getLogger(__name__)

# Upstream's gcCheckPeriod and quarantineTime: how often to look, and how long a node must
# be missing before its pods go (a node may be re-registering).
GC_PERIOD = 20.0
QUARANTINE = 40.0


def is_terminated(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def terminated_to_delete(pods: list[Obj], threshold: int) -> list[Obj]:
    """The oldest terminated pods beyond threshold (threshold <= 0 turns this off)."""
    if threshold <= 0:
        return []
    terminated = [p for p in pods if is_terminated(p) and not is_deleting(p)]
    excess = len(terminated) - threshold
    if excess <= 0:
        return []
    terminated.sort(key=lambda p: (meta(p).get("creationTimestamp") or "", meta(p).get("name")))
    return terminated[:excess]


def unscheduled_terminating(pods: list[Obj]) -> list[Obj]:
    """Pods being deleted that no node will ever finish off."""
    return [p for p in pods if is_deleting(p) and not (p.get("spec") or {}).get("nodeName")]


def failed_status_patch(pod: Obj, message: str) -> Obj | None:
    """A status patch making a non-terminal pod Failed with upstream's DisruptionTarget."""
    if is_terminated(pod):
        return None
    stamp = now_text()
    conditions = [
        c
        for c in (pod.get("status") or {}).get("conditions") or ()
        if c.get("type") != "DisruptionTarget"
    ]
    conditions.append(
        {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "DeletionByPodGC",
            "message": message,
            "lastTransitionTime": stamp,
        }
    )
    return {"status": {"phase": "Failed", "conditions": conditions}}


class PodGCController(Controller):
    """Periodic sweeps; the queue holds node names waiting out their quarantine."""

    name = "pod-garbage-collector"
    queue_name = "orphaned_pods_nodes"

    def __init__(self, ctx: ControllerContext, workers: int = 1) -> None:
        super().__init__(ctx, workers)
        self.threshold = ctx.options.terminated_pod_gc_threshold
        self.period = ctx.options.pod_gc_period
        self.quarantine = ctx.options.pod_gc_quarantine
        self.pod_informer = ctx.informers.informer(PODS)
        self.node_informer = ctx.informers.informer(NODES)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(run_workers, self.queue, self._reconcile, self.workers)
            nursery.start_soon(self._sweep_forever)
            task_status.started()

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except ApiError as e:
                self._errors.inc()
                log.warning("pod garbage collection: %s", e)
            await trio.sleep(self.period)

    async def sweep(self) -> None:
        pods = self.pod_informer.list()
        for pod in terminated_to_delete(pods, self.threshold):
            await self._delete(pod, None)
        for pod in unscheduled_terminating(pods):
            await self._delete(pod, None)
        # Pods of nodes we do not know: their nodes go into quarantine first.
        known = {meta(n).get("name") for n in self.node_informer.list()}
        missing = {
            node
            for p in pods
            if (node := (p.get("spec") or {}).get("nodeName")) and node not in known
        }
        for node in missing:
            self.queue.add_after(node, self.quarantine)

    async def sync(self, key: str) -> float | None:
        """A node missing since its quarantine began: if it is truly gone, so are its pods."""
        if self.node_informer.get(key) is not None:
            return None
        try:
            await self.client.get(NODES, key)
            return None
        except NotFound:
            pass
        for pod in self.pod_informer.indexer.by_index(NODE_NAME_INDEX, key):
            await self._delete(pod, "PodGC: node no longer exists")
        return None

    async def _delete(self, pod: Obj, message: str | None) -> None:
        """Force-delete, first marking a running pod Failed (upstream's markFailedAndDeletePod)."""
        m = meta(pod)
        name, namespace = m["name"], m.get("namespace")
        patch = failed_status_patch(pod, message) if message else None
        try:
            if patch is not None and get_condition(pod.get("status"), "DisruptionTarget") is None:
                await self.client.patch(
                    PODS, name, patch, namespace=namespace, subresource="status"
                )
            log.info("pod garbage collector: force deleting pod %s/%s", namespace, name)
            await self.client.delete(
                PODS,
                name,
                namespace=namespace,
                grace_period_seconds=0,
                preconditions={"uid": str(m.get("uid"))},
            )
        except NotFound:
            pass
