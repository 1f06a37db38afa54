"""The node lifecycle controller: notice silent nodes, mark them Unknown, and taint them.

A node is healthy while its kubelet renews its Lease in kube-node-lease (or posts node
status). When neither has happened for --node-monitor-grace-period, its conditions become
Unknown and its pods not ready. Ready=False or Unknown earns the not-ready or unreachable
NoExecute taint, which the taint eviction controller acts on; the taint goes when the
node is Ready again. Conditions also map to the NoSchedule taints the scheduler honours.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import trio

from k8slite.api.meta import now as now_text
from k8slite.client import (
    NODE_NAME_INDEX,
    Conflict,
    DeletedFinalStateUnknown,
    NotFound,
    run_workers,
)
from k8slite.client.resource import LEASES, NODES, PODS
from k8slite.component.events import NORMAL, WARNING
from k8slite.component.objects import Obj, get_condition, meta
from k8slite.controllers.base import Controller, ControllerContext

log = logging.getLogger(__name__)

NODE_LEASE_NAMESPACE = "kube-node-lease"
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
# Node conditions the controller turns Unknown when the kubelet goes quiet.
WATCHED_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
# Condition type -> taint key, when the condition is True (TaintNodesByCondition).
PRESSURE_TAINTS = {
    "MemoryPressure": "node.kubernetes.io/memory-pressure",
    "DiskPressure": "node.kubernetes.io/disk-pressure",
    "PIDPressure": "node.kubernetes.io/pid-pressure",
    "NetworkUnavailable": "node.kubernetes.io/network-unavailable",
}
# Taints this controller owns; any other taint on a node is left as it is.
MANAGED_TAINT_KEYS = frozenset({UNREACHABLE, NOT_READY, UNSCHEDULABLE, *PRESSURE_TAINTS.values()})


@dataclass
class NodeHealth:
    """What we last saw of a node, and when (our monotonic clock) it last showed life."""

    probe_time: float
    heartbeat: str | None
    lease_renew: str | None


def desired_taints(node: Obj) -> list[tuple[str, str]]:
    """(key, effect) of the taints the node's conditions call for."""
    ready = get_condition(node.get("status"), "Ready")
    # No Ready condition yet: a new node within its startup grace period, not a lost one.
    status = ready.get("status") if ready is not None else "True"
    out: list[tuple[str, str]] = []
    if status == "False":
        out += [(NOT_READY, "NoExecute"), (NOT_READY, "NoSchedule")]
    elif status != "True":
        out += [(UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")]
    for ctype, key in PRESSURE_TAINTS.items():
        cond = get_condition(node.get("status"), ctype)
        if cond is not None and cond.get("status") == "True":
            out.append((key, "NoSchedule"))
    if (node.get("spec") or {}).get("unschedulable"):
        out.append((UNSCHEDULABLE, "NoSchedule"))
    return out


def merge_taints(node: Obj) -> list[Obj] | None:
    """The node's taints with ours brought up to date; None when nothing changes."""
    current = list((node.get("spec") or {}).get("taints") or ())
    wanted = desired_taints(node)
    ours = {(t.get("key"), t.get("effect")) for t in current if t.get("key") in MANAGED_TAINT_KEYS}
    if ours == set(wanted):
        return None
    kept = [
        t
        for t in current
        if t.get("key") not in MANAGED_TAINT_KEYS or (t.get("key"), t.get("effect")) in wanted
    ]
    have = {(t.get("key"), t.get("effect")) for t in kept}
    stamp = now_text()
    for key, effect in wanted:
        if (key, effect) not in have:
            taint: Obj = {"key": key, "effect": effect}
            if effect == "NoExecute":
                taint["timeAdded"] = stamp  # eviction deadlines count from here
            kept.append(taint)
    return kept


class NodeLifecycleController(Controller):
    name = "node-lifecycle-controller"
    queue_name = "node_lifecycle_controller"
    event_source = "node-controller"

    def __init__(self, ctx: ControllerContext, workers: int = 1) -> None:
        super().__init__(ctx, workers)
        options = ctx.options
        self.monitor_period = options.node_monitor_period
        self.grace_period = options.node_monitor_grace_period
        self.startup_grace_period = options.node_startup_grace_period
        self.nodes = ctx.informers.informer(NODES)
        self.leases = ctx.informers.informer(LEASES, namespace=NODE_LEASE_NAMESPACE)
        self.pods = ctx.informers.informer(PODS)
        self.health: dict[str, NodeHealth] = {}
        self.nodes.add_event_handler(
            self.enqueue, lambda _o, n: self.enqueue(n), self._node_deleted
        )

    def _node_deleted(self, node: Obj | DeletedFinalStateUnknown) -> None:
        obj = node.obj if isinstance(node, DeletedFinalStateUnknown) else node
        self.health.pop(meta(obj).get("name", ""), None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(run_workers, self.queue, self._reconcile, self.workers)
            nursery.start_soon(self._monitor)
            task_status.started()

    async def _monitor(self) -> None:
        """Every --node-monitor-period, look at every node (silence makes no events)."""
        while True:
            for node in self.nodes.list():
                self.queue.add(meta(node)["name"])
            await trio.sleep(self.monitor_period)

    async def sync(self, key: str) -> float | None:
        node = self.nodes.get(key)
        if node is None:
            self.health.pop(key, None)
            return None
        before = get_condition(node.get("status"), "Ready")
        node = await self._check_health(node)
        after = get_condition(node.get("status"), "Ready")
        was_ready = before is not None and before.get("status") == "True"
        is_ready = after is not None and after.get("status") == "True"
        if was_ready and not is_ready:
            self.recorder.event(
                node, NORMAL, "NodeNotReady", f"Node {key} status is now: NodeNotReady"
            )
        if not is_ready:
            await self._mark_pods_not_ready(key)
        await self._update_taints(node)
        return None

    async def _check_health(self, node: Obj) -> Obj:
        """Record signs of life; past the grace period, turn the conditions Unknown."""
        name = meta(node)["name"]
        now = trio.current_time()
        ready = get_condition(node.get("status"), "Ready")
        heartbeat = ready.get("lastHeartbeatTime") if ready is not None else None
        grace = self.grace_period if ready is not None else self.startup_grace_period
        lease = self.leases.get(name, NODE_LEASE_NAMESPACE)
        renew = (lease.get("spec") or {}).get("renewTime") if lease is not None else None
        health = self.health.get(name)
        if health is None:
            # A controller that starts (or takes over) gives every node a full grace period.
            health = self.health[name] = NodeHealth(now, heartbeat, renew)
        if heartbeat != health.heartbeat:
            health.heartbeat, health.probe_time = heartbeat, now
        if renew is not None and renew != health.lease_renew:
            health.lease_renew, health.probe_time = renew, now
        if now <= health.probe_time + grace:
            return node
        updated = copy.deepcopy(node)
        conditions = updated.setdefault("status", {}).setdefault("conditions", [])
        stamp = now_text()
        for ctype in WATCHED_CONDITIONS:
            cond = next((c for c in conditions if c.get("type") == ctype), None)
            if cond is None:
                conditions.append(
                    {
                        "type": ctype,
                        "status": "Unknown",
                        "reason": "NodeStatusNeverUpdated",
                        "message": "Kubelet never posted node status.",
                        "lastHeartbeatTime": meta(node).get("creationTimestamp"),
                        "lastTransitionTime": stamp,
                    }
                )
            elif cond.get("status") != "Unknown":
                cond.update(
                    status="Unknown",
                    reason="NodeStatusUnknown",
                    message="Kubelet stopped posting node status.",
                    lastTransitionTime=stamp,
                )
        if updated == node:
            return node
        log.info(
            "node %s: no sign of life for %.0fs; conditions Unknown", name, now - health.probe_time
        )
        return await self.client.update_status(NODES, updated)

    async def _mark_pods_not_ready(self, node_name: str) -> None:
        for pod in self.pods.indexer.by_index(NODE_NAME_INDEX, node_name):
            status = pod.get("status") or {}
            conditions = status.get("conditions") or []
            ready = next((c for c in conditions if c.get("type") == "Ready"), None)
            if ready is None or ready.get("status") == "False":
                continue
            body = copy.deepcopy(pod)
            for cond in body["status"]["conditions"]:
                if cond.get("type") == "Ready":
                    cond.update(status="False", lastTransitionTime=now_text())
            try:
                await self.client.update_status(PODS, body)
            except (NotFound, Conflict):
                continue  # gone, or changed: the next pass looks again
            self.recorder.event(pod, WARNING, "NodeNotReady", "Node is not ready")

    async def _update_taints(self, node: Obj) -> None:
        taints = merge_taints(node)
        if taints is None:
            return
        body = copy.deepcopy(node)
        body.setdefault("spec", {})["taints"] = taints
        if not taints:
            body["spec"].pop("taints")
        await self.client.update(NODES, body)
