"""The node lifecycle controller: notice silent nodes, mark them Unknown, and taint them.

A node is healthy while its kubelet renews its Lease in kube-node-lease (or posts node
status). Every --node-monitor-period a monitor pass looks at every node: one silent for
--node-monitor-grace-period gets its conditions set to Unknown and its pods marked not
ready. Conditions map to NoSchedule taints at once (the scheduler honours them). The
NoExecute taints that make the taint eviction controller evict pods (not-ready for
Ready=False, unreachable for Ready=Unknown) are added through one rate-limited queue per
zone, as upstream's v1.35 controller does:

- a zone (the node's region and zone labels) is Normal, PartialDisruption when at least
  --unhealthy-zone-threshold of its nodes (and more than two) are not ready, or
  FullDisruption when none is ready;
- a Normal or FullDisruption zone taints --node-eviction-rate nodes a second, a partially
  disrupted one --secondary-node-eviction-rate, or none if it has no more than
  --large-cluster-size-threshold nodes;
- when every zone is fully disrupted the fault is taken to be the control plane's or the
  network's, not the nodes': tainting stops and the not-ready/unreachable NoExecute taints
  are removed until some node is ready again.

A taint already there is swapped (not-ready <-> unreachable) at once, and removed at once
when the node is Ready again.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge

from k8slite.api.meta import now as now_text
from k8slite.client import (
    NODE_NAME_INDEX,
    ApiConnectionError,
    ApiError,
    Conflict,
    DeletedFinalStateUnknown,
    NotFound,
    run_workers,
)
from k8slite.client.resource import LEASES, NODES, PODS
from k8slite.component.events import NORMAL, WARNING
from k8slite.component.objects import Obj, get_condition, meta
from k8slite.controllers.base import Controller, ControllerContext
from k8slite.controllers.nodezones import (
    TaintQueue,
    ZoneState,
    compute_zone_state,
    zone_eviction_rate,
    zone_key,
)
from k8slite.metrics import PerRegistry

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
# The NoExecute taints the rate-limited queues add: (key, effect).
EVICTION_TAINTS = frozenset({(UNREACHABLE, "NoExecute"), (NOT_READY, "NoExecute")})

# A node with this label counts in no zone's health.
EXCLUDE_DISRUPTION = "node.kubernetes.io/exclude-disruption"

# Upstream's constants: the tainting queues are tried every 100 ms; a monitor pass looks
# at 8 nodes at once; a node health update is tried 5 times.
NODE_EVICTION_PERIOD = 0.1
NODE_UPDATE_WORKERS = 8
NODE_HEALTH_UPDATE_RETRIES = 5


@dataclass
class NodeHealth:
    """What we last saw of a node, and when (our monotonic clock) it last showed life."""

    probe_time: float
    heartbeat: str | None
    lease_renew: str | None  # as the Lease informer last showed it
    read_renew: str | None = None  # as the last fresh read of the Lease found it


# ------------------------------------------------------------------------- taints


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


def _pairs(taints: Iterable[Obj]) -> set[tuple[str, str]]:
    return {(str(t.get("key") or ""), str(t.get("effect") or "")) for t in taints}


def _taint_pairs(node: Obj) -> set[tuple[str, str]]:
    return _pairs((node.get("spec") or {}).get("taints") or ())


def merge_taints(node: Obj) -> list[Obj] | None:
    """The node's taints with ours brought up to date; None when nothing changes.

    A not-ready or unreachable NoExecute taint is swapped for the other at once, and goes
    once the node is Ready, but a node without one does not get one here: that is the
    zone's rate-limited queue's decision (see NodeLifecycleController).
    """
    current = list((node.get("spec") or {}).get("taints") or ())
    ours = {(t.get("key"), t.get("effect")) for t in current if t.get("key") in MANAGED_TAINT_KEYS}
    wanted = desired_taints(node)
    if not ours & EVICTION_TAINTS:
        wanted = [pair for pair in wanted if pair not in EVICTION_TAINTS]
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


def with_eviction_taint(taints: list[Obj], key: str | None) -> list[Obj]:
    """taints without our NoExecute ones, plus `key`'s (None: none) stamped now."""
    kept = [t for t in taints if (t.get("key"), t.get("effect")) not in EVICTION_TAINTS]
    if key is not None:
        kept.append({"key": key, "effect": "NoExecute", "timeAdded": now_text()})
    return kept


# ------------------------------------------------------------------------ metrics


class _Metrics:
    """Upstream's node_collector_* families, once per registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        zone = ("zone",)
        self.zone_health = Gauge(
            "node_collector_zone_health",
            "Gauge measuring percentage of healthy nodes per zone.",
            zone,
            registry=registry,
        )
        self.zone_size = Gauge(
            "node_collector_zone_size",
            "Gauge measuring number of registered Nodes per zones.",
            zone,
            registry=registry,
        )
        self.unhealthy_nodes = Gauge(
            "node_collector_unhealthy_nodes_in_zone",
            "Gauge measuring number of not Ready Nodes per zones.",
            zone,
            registry=registry,
        )
        self.evictions = Counter(
            "node_collector_evictions",
            "Number of Node evictions that happened since current instance of "
            "NodeController started.",
            zone,
            registry=registry,
        )
        # Ours: how often a fresh read found a Lease renewed that the informer had not shown.
        self.late_leases = Counter(
            "k8slite_node_lifecycle_late_lease_renewals",
            "Nodes about to be marked Unknown whose Lease, read afresh, had been renewed "
            "since the Lease informer last showed it.",
            registry=registry,
        )


_metrics_for = PerRegistry(_Metrics)


# --------------------------------------------------------------------- controller


class NodeLifecycleController(Controller):
    """Monitor passes check health and queue nodes for NoExecute taints, a tainting pass
    empties the zones' queues at their rates, and the keyed queue keeps each node's
    NoSchedule taints in step with its conditions as it changes."""

    name = "node-lifecycle-controller"
    queue_name = "node_lifecycle_controller"
    event_source = "node-controller"

    def __init__(self, ctx: ControllerContext, workers: int = 1) -> None:
        super().__init__(ctx, workers)
        options = ctx.options
        self.monitor_period = options.node_monitor_period
        self.grace_period = options.node_monitor_grace_period
        self.startup_grace_period = options.node_startup_grace_period
        self.eviction_rate = options.node_eviction_rate
        self.secondary_eviction_rate = options.secondary_node_eviction_rate
        self.large_cluster_threshold = options.large_cluster_size_threshold
        self.unhealthy_zone_threshold = options.unhealthy_zone_threshold
        self.nodes = ctx.informers.informer(NODES)
        self.leases = ctx.informers.informer(LEASES, namespace=NODE_LEASE_NAMESPACE)
        self.pods = ctx.informers.informer(PODS)
        self.health: dict[str, NodeHealth] = {}
        self.known_nodes: set[str] = set()
        self.zone_states: dict[str, ZoneState] = {}
        self.tainters: dict[str, TaintQueue] = {}
        # Held by the tainting pass while it writes, and while entering full disruption
        # (which must not race a taint being added).
        self._taint_lock = trio.Lock()
        self.metrics = _metrics_for(ctx.metrics_registry)
        self.nodes.add_event_handler(
            self.enqueue, lambda _o, n: self.enqueue(n), self._node_deleted
        )

    def _node_deleted(self, node: Obj | DeletedFinalStateUnknown) -> None:
        obj = node.obj if isinstance(node, DeletedFinalStateUnknown) else node
        name = meta(obj).get("name", "")
        self.health.pop(name, None)
        tainter = self.tainters.get(zone_key(obj))
        if tainter is not None:
            tainter.remove(name)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(run_workers, self.queue, self._reconcile, self.workers)
            nursery.start_soon(self._monitor)
            nursery.start_soon(self._taint_forever)
            task_status.started()

    # ------------------------------------------------------------ NoSchedule taints

    async def sync(self, key: str) -> float | None:
        node = self.nodes.get(key)
        if node is None:
            return None
        taints = merge_taints(node)
        if taints is None:
            return None
        body = copy.deepcopy(node)
        body.setdefault("spec", {})["taints"] = taints
        if not taints:
            body["spec"].pop("taints")
        await self.client.update(NODES, body)
        return None

    # ---------------------------------------------------------------- monitor pass

    async def _monitor(self) -> None:
        """Every --node-monitor-period, look at every node (silence makes no events)."""
        while True:
            try:
                await self.monitor_node_health()
            except (ApiError, ApiConnectionError) as e:
                self._errors.inc()
                log.warning("monitoring node health: %s", e)
            await trio.sleep(self.monitor_period)

    async def monitor_node_health(self) -> None:
        """One pass: health of every node, NoExecute taints queued, zone states updated."""
        nodes = self.nodes.list()
        names = {meta(n)["name"] for n in nodes}
        for node in nodes:
            name = meta(node)["name"]
            if name not in self.known_nodes:
                self.known_nodes.add(name)
                self._add_zone(zone_key(node))
                # A node we have not seen before (or since we took over) starts untainted:
                # if it is still not ready, its zone's queue taints it again in turn.
                await self._mark_reachable(node)
            elif zone_key(node) not in self.zone_states:
                self._add_zone(zone_key(node))
        self.known_nodes &= names

        zone_ready: dict[str, list[Obj | None]] = {}

        async def check(node: Obj) -> None:
            name = meta(node)["name"]
            node = self.nodes.get(name) or node  # the pass's own writes since the list
            try:
                checked = await self._update_health(node)
                if checked is None:
                    return
                node, observed, current = checked
                if EXCLUDE_DISRUPTION not in (meta(node).get("labels") or {}):
                    zone_ready.setdefault(zone_key(node), []).append(current)
                if current is None:
                    return
                self._queue_for_tainting(node, observed)
                was_ready = observed.get("status") == "True"
                is_ready = current.get("status") == "True"
                if was_ready and not is_ready:
                    self.recorder.event(
                        node, NORMAL, "NodeNotReady", f"Node {name} status is now: NodeNotReady"
                    )
                if not is_ready:
                    await self._mark_pods_not_ready(name)
            except (ApiError, ApiConnectionError) as e:
                self._errors.inc()
                log.warning("node %s: health not updated: %s", name, e)

        await _parallelize(NODE_UPDATE_WORKERS, nodes, check)
        await self._handle_disruption(zone_ready, nodes)

    async def _update_health(self, node: Obj) -> tuple[Obj, Obj, Obj | None] | None:
        """(node, Ready as it was, Ready as it is now) after a health check; None if the
        node is gone. A write that conflicts is tried again on the server's copy."""
        for attempt in range(NODE_HEALTH_UPDATE_RETRIES):
            try:
                return await self._check_health(node)
            except Conflict:
                if attempt == NODE_HEALTH_UPDATE_RETRIES - 1:
                    raise
            try:
                node = await self.client.get(NODES, meta(node)["name"])
            except NotFound:
                return None
        return None

    async def _check_health(self, node: Obj) -> tuple[Obj, Obj, Obj | None]:
        """Record signs of life; past the grace period, turn the conditions Unknown."""
        name = meta(node)["name"]
        now = trio.current_time()
        ready = get_condition(node.get("status"), "Ready")
        if ready is not None:
            observed, grace = ready, self.grace_period
        else:
            # Never posted: as upstream, judged as Unknown since its creation.
            observed = {"type": "Ready", "status": "Unknown"}
            grace = self.startup_grace_period
        heartbeat = ready.get("lastHeartbeatTime") if ready is not None else None
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
            return node, observed, ready
        statuses = {
            c.get("type"): c.get("status")
            for c in (node.get("status") or {}).get("conditions") or ()
        }
        if all(statuses.get(ctype) == "Unknown" for ctype in WATCHED_CONDITIONS):
            return node, observed, ready  # marked already (most of the silent nodes' passes)
        if await self._renewed_unseen(name, health, now):
            return node, observed, ready
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
            return node, observed, ready
        log.info(
            "node %s: no sign of life for %.0fs; conditions Unknown", name, now - health.probe_time
        )
        written = await self.client.update_status(NODES, updated)
        return written, observed, get_condition(written.get("status"), "Ready")

    async def _renewed_unseen(self, name: str, health: NodeHealth, now: float) -> bool:
        """Whether the node's Lease was renewed after all, unseen by the Lease informer.

        Upstream's controller trusts its informer. A heartbeat that comes late, at the end
        of the grace period, can reach the server and still be on its way to the informer
        (a busy process's watch delivers a few tenths of a second to seconds behind): the
        node would be marked Unknown, its pods not ready and it tainted, all undone on its
        next status report. Reading the Lease afresh before marking costs one GET per node
        about to be marked (a marked node is not read again); a renewal not yet seen is a
        sign of life, as if seen now. In a density run of 5,000 hollow nodes, whose
        heartbeats run late under load, 24% fewer nodes were marked (docs/controllers.md).
        """
        try:
            lease = await self.client.get(LEASES, name, namespace=NODE_LEASE_NAMESPACE)
        except NotFound:
            return False
        renew = (lease.get("spec") or {}).get("renewTime")
        if renew is None or renew in (health.lease_renew, health.read_renew):
            return False
        log.info("node %s: Lease renewed at %s, not yet seen by the informer", name, renew)
        # Kept apart from what the informer showed, so that the informer's copy, still
        # behind, is not taken for another renewal when it next differs from this one.
        health.read_renew, health.probe_time = renew, now
        self.metrics.late_leases.inc()
        return True

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

    # ----------------------------------------------------------- NoExecute taints

    def _add_zone(self, zone: str) -> None:
        """A zone seen for the first time (or again, after it had no node): Initial."""
        if zone in self.zone_states:
            return
        self.zone_states[zone] = ZoneState.INITIAL
        tainter = self.tainters.get(zone)
        if tainter is None:
            self.tainters[zone] = TaintQueue(self.eviction_rate)
            self.metrics.evictions.labels(zone).inc(0)
        else:
            tainter.set_rate(self.eviction_rate)

    def _queue_for_tainting(self, node: Obj, observed: Obj) -> None:
        """Upstream's processTaintBaseEviction, but for the swap and the removal, which
        the NoSchedule sync does as soon as the conditions change (merge_taints)."""
        status = observed.get("status")
        name = meta(node)["name"]
        zone = zone_key(node)
        if zone not in self.tainters:
            self._add_zone(zone)
        tainter = self.tainters[zone]
        if status == "True":
            tainter.remove(name)
            return
        key = NOT_READY if status == "False" else UNREACHABLE
        other = UNREACHABLE if key == NOT_READY else NOT_READY
        pairs = _taint_pairs(node)
        if (other, "NoExecute") in pairs:
            return  # swapped by the NoSchedule sync
        if (key, "NoExecute") not in pairs and tainter.tainted(name):
            tainter.remove(name)  # tainted once, but the taint went: queue it again
        if tainter.add(name):
            log.debug("node %s is %s; queued for the %s taint", name, status, key)

    async def _taint_forever(self) -> None:
        while True:
            await self.taint_pass()
            await trio.sleep(NODE_EVICTION_PERIOD)

    async def taint_pass(self) -> None:
        """Let each zone's queue taint the nodes its rate allows."""
        for tainter in list(self.tainters.values()):
            if not tainter:
                continue
            async with self._taint_lock:
                await tainter.try_each(self._taint)

    async def _taint(self, name: str) -> float | None:
        """Give a queued node the NoExecute taint of its Ready condition now."""
        node = self.nodes.get(name)
        if node is None:
            return None
        ready = get_condition(node.get("status"), "Ready")
        if ready is None:
            return 0.05  # upstream waits 50 ms for a node without a Ready condition
        status = ready.get("status")
        if status == "True":
            return None  # ready again: nothing to do
        key = NOT_READY if status == "False" else UNREACHABLE
        if (key, "NoExecute") in _taint_pairs(node):
            return None
        try:
            node, changed = await self._set_eviction_taint(node, key)
        except NotFound:
            return None
        except (ApiError, ApiConnectionError) as e:
            self._errors.inc()
            log.warning("node %s: %s taint not added: %s", name, key, e)
            return 0.0
        if not changed:
            return None  # the server's copy had it already
        log.info("node %s: tainted %s:NoExecute", name, key)
        self.metrics.evictions.labels(zone_key(node)).inc()
        return None

    async def _mark_reachable(self, node: Obj) -> bool:
        """Remove the node's not-ready and unreachable NoExecute taints and forget it in
        its zone's queue; True if it was queued."""
        name = meta(node)["name"]
        tainter = self.tainters.get(zone_key(node))
        try:
            node = self.nodes.get(name) or node
            if not _taint_pairs(node) & EVICTION_TAINTS:
                if tainter is None or not tainter.tainted(name):
                    return tainter.remove(name) if tainter is not None else False
                # We tainted it, but the watch may not have brought that back yet.
                node = await self.client.get(NODES, name)
            await self._set_eviction_taint(node, None)
        except NotFound:
            pass
        except (ApiError, ApiConnectionError) as e:
            self._errors.inc()
            log.warning("node %s: NoExecute taints not removed: %s", name, e)
        return tainter.remove(name) if tainter is not None else False

    async def _set_eviction_taint(self, node: Obj, key: str | None) -> tuple[Obj, bool]:
        """Write the node with `key`'s NoExecute taint as our only one (None: none); on a
        conflict, again on the server's copy. (The node, whether it was written.)"""
        for attempt in range(NODE_HEALTH_UPDATE_RETRIES):
            body = copy.deepcopy(node)
            current = list((body.get("spec") or {}).get("taints") or ())
            taints = with_eviction_taint(current, key)
            if _pairs(taints) == _pairs(current):
                return node, False
            body.setdefault("spec", {})["taints"] = taints
            if not taints:
                body["spec"].pop("taints")
            try:
                return await self.client.update(NODES, body), True
            except Conflict:
                if attempt == NODE_HEALTH_UPDATE_RETRIES - 1:
                    raise
            node = await self.client.get(NODES, meta(node)["name"])
        raise AssertionError("unreachable")

    # -------------------------------------------------------------------- zones

    def _zone_rate(self, state: ZoneState, size: int) -> float:
        return zone_eviction_rate(
            state,
            size,
            rate=self.eviction_rate,
            secondary_rate=self.secondary_eviction_rate,
            large_cluster_threshold=self.large_cluster_threshold,
        )

    async def _handle_disruption(
        self, zone_ready: dict[str, list[Obj | None]], nodes: Iterable[Obj]
    ) -> None:
        """Zone states from this pass's Ready conditions, and the queues' rates from them."""
        new_states: dict[str, ZoneState] = {}
        for zone, conditions in zone_ready.items():
            unhealthy, state = compute_zone_state(conditions, self.unhealthy_zone_threshold)
            size = len(conditions)
            self.metrics.zone_size.labels(zone).set(size)
            self.metrics.zone_health.labels(zone).set(100 * (size - unhealthy) / size)
            self.metrics.unhealthy_nodes.labels(zone).set(unhealthy)
            new_states[zone] = state
            self.zone_states.setdefault(zone, ZoneState.INITIAL)
        for zone in list(self.zone_states):
            if zone not in zone_ready:
                # No node (that counts) left in the zone.
                self.metrics.zone_size.labels(zone).set(0)
                self.metrics.zone_health.labels(zone).set(100)
                self.metrics.unhealthy_nodes.labels(zone).set(0)
                del self.zone_states[zone]
        all_down = all(s == ZoneState.FULL_DISRUPTION for s in new_states.values())
        all_were_down = all(s == ZoneState.FULL_DISRUPTION for s in self.zone_states.values())
        if all_down and all_were_down:
            return
        if all_down:
            log.info(
                "Controller detected that all Nodes are not-Ready. Entering master disruption mode"
            )
            for zone in self.zone_states:
                self.tainters[zone].set_rate(0.0)
                self.zone_states[zone] = ZoneState.FULL_DISRUPTION
            async with self._taint_lock:
                for node in nodes:
                    await self._mark_reachable(node)
            return
        if all_were_down:
            log.info(
                "Controller detected that some Nodes are Ready. Exiting master disruption mode"
            )
            # Every node gets a full grace period again.
            now = trio.current_time()
            for health in self.health.values():
                health.probe_time = now
            for zone in self.zone_states:
                self.tainters[zone].set_rate(
                    self._zone_rate(new_states[zone], len(zone_ready[zone]))
                )
                self.zone_states[zone] = new_states[zone]
            return
        for zone, old in self.zone_states.items():
            new = new_states[zone]
            if new == old:
                continue
            log.info("Controller detected that zone %r is now in state %s", zone, new)
            self.tainters[zone].set_rate(self._zone_rate(new, len(zone_ready[zone])))
            self.zone_states[zone] = new


async def _parallelize(
    workers: int, items: Sequence[Obj], fn: Callable[[Obj], Awaitable[None]]
) -> None:
    """fn over items, `workers` at a time (upstream's workqueue.ParallelizeUntil)."""
    it = iter(items)

    async def worker() -> None:
        for item in it:
            await fn(item)

    async with trio.open_nursery() as nursery:
        for _ in range(min(workers, len(items))):
            nursery.start_soon(worker)
