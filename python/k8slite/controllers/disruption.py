"""The disruption controller: keep each PodDisruptionBudget's status (healthy pods, allowed
disruptions, the DisruptionAllowed condition) current for the eviction API to act on."""

from __future__ import annotations

import copy
import datetime as dt
import logging
import math
from dataclasses import dataclass
from typing import Any

from k8slite._native import LabelSelector, SelectorError
from k8slite.api.meta import format_time, parse_time
from k8slite.client import ApiError, DeletedFinalStateUnknown, NotFound
from k8slite.client.resource import (
    DEPLOYMENTS,
    PODDISRUPTIONBUDGETS,
    PODS,
    REPLICASETS,
    REPLICATIONCONTROLLERS,
    STATEFULSETS,
    Resource,
)
from k8slite.component.events import NORMAL, WARNING
from k8slite.component.objects import (
    Obj,
    controller_ref,
    generation_of,
    get_condition,
    is_deleting,
    labels_of,
    name_of,
    namespace_of,
    resource_version_of,
    set_condition,
    uid_of,
)
from k8slite.controllers.base import Controller, ControllerContext
from k8slite.controllers.discovery import server_resources
from k8slite.controllers.podutil import is_pod_ready, utcnow
from k8slite.controllers.replicaset import replicas_of

log = logging.getLogger(__name__)

# A pod the eviction API recorded in disruptedPods is expected gone within this long; after
# it, it counts again (upstream's DeletionTimeout).
DELETION_TIMEOUT = dt.timedelta(minutes=2)
# A DisruptionTarget condition on a pod still not terminating this long after it was set
# is reset to False: the eviction that set it never deleted the pod (upstream's
# stalePodDisruptionTimeout).
STALE_DISRUPTION_TIMEOUT = dt.timedelta(minutes=2)
# Queue keys of pods whose DisruptionTarget condition may go stale (budgets' keys are
# "<namespace>/<name>", and a namespace has no ":").
_STALE_POD = "pod:"
# After a failed sync (status then says SyncFailed), look again after this long.
SYNC_FAILED_RETRY = 15.0
DISRUPTION_ALLOWED = "DisruptionAllowed"
SUFFICIENT_PODS = "SufficientPods"
INSUFFICIENT_PODS = "InsufficientPods"
SYNC_FAILED = "SyncFailed"


class BudgetError(ValueError):
    """The budget cannot be computed (a bad percentage, a pod's controller not found)."""


# ----------------------------------------------------------- budget arithmetic


def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """upstream's intstr.GetScaledValueFromIntOrPercent."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        scaled = int(value[:-1]) * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    raise BudgetError(f"invalid value for IntOrString: invalid value {value!r}")


def needs_scale(spec: Obj) -> bool:
    """Whether the budget's numbers depend on the pods' controllers' scale."""
    if spec.get("maxUnavailable") is not None:
        return True
    return isinstance(spec.get("minAvailable"), str)


def expected_and_desired(spec: Obj, pod_count: int, scale: int | None) -> tuple[int, int]:
    """(expectedPods, desiredHealthy) of a budget; scale is the sum of the controllers'
    replicas, needed when needs_scale(spec)."""
    max_unavailable, min_available = spec.get("maxUnavailable"), spec.get("minAvailable")
    if max_unavailable is not None:
        expected = scale or 0
        return expected, max(expected - scaled_value(max_unavailable, expected, True), 0)
    if isinstance(min_available, str):
        expected = scale or 0
        return expected, scaled_value(min_available, expected, True)
    if min_available is not None:
        return pod_count, scaled_value(min_available, pod_count, True)
    return 0, 0


def disrupted_pod_map(
    pods: list[Obj], recorded: dict[str, str], now: dt.datetime
) -> tuple[dict[str, str], dt.datetime | None, list[Obj]]:
    """The disruptedPods still expected to go, the earliest time one expires, and the pods
    whose deletion is overdue (upstream's buildDisruptedPodMap)."""
    kept: dict[str, str] = {}
    recheck: dt.datetime | None = None
    overdue: list[Obj] = []
    for pod in pods:
        when = recorded.get(name_of(pod))
        if when is None or is_deleting(pod):
            continue
        expected_deletion = parse_time(when) + DELETION_TIMEOUT
        if expected_deletion < now:
            overdue.append(pod)
            continue
        kept[name_of(pod)] = when
        if recheck is None or expected_deletion < recheck:
            recheck = expected_deletion
    return kept, recheck, overdue


def count_healthy(pods: list[Obj], disrupted: dict[str, str], now: dt.datetime) -> int:
    """Ready pods that are neither terminating nor about to be (evicted recently)."""
    healthy = 0
    for pod in pods:
        if is_deleting(pod):
            continue
        when = disrupted.get(name_of(pod))
        if when is not None and parse_time(when) + DELETION_TIMEOUT > now:
            continue
        if is_pod_ready(pod):
            healthy += 1
    return healthy


def disruption_condition(allowed: int, observed_generation: int, now: str) -> Obj:
    return {
        "type": DISRUPTION_ALLOWED,
        "status": "True" if allowed > 0 else "False",
        "observedGeneration": observed_generation,
        "lastTransitionTime": now,
        "reason": SUFFICIENT_PODS if allowed > 0 else INSUFFICIENT_PODS,
        "message": "",
    }


@dataclass(frozen=True)
class Budget:
    """What a sync measured; status() turns it into the budget's new status."""

    current_healthy: int
    desired_healthy: int
    expected_pods: int
    disrupted_pods: dict[str, str]

    @property
    def disruptions_allowed(self) -> int:
        # A budget that expects no pods allows nothing: its first pods may appear before
        # this controller has counted them.
        allowed = self.current_healthy - self.desired_healthy
        return 0 if self.expected_pods <= 0 or allowed <= 0 else allowed

    def up_to_date(self, pdb: Obj) -> bool:
        status = pdb.get("status") or {}
        cond = get_condition(status, DISRUPTION_ALLOWED)
        return (
            int(status.get("currentHealthy") or 0) == self.current_healthy
            and int(status.get("desiredHealthy") or 0) == self.desired_healthy
            and int(status.get("expectedPods") or 0) == self.expected_pods
            and int(status.get("disruptionsAllowed") or 0) == self.disruptions_allowed
            and (status.get("disruptedPods") or {}) == self.disrupted_pods
            and int(status.get("observedGeneration") or 0) == generation_of(pdb)
            and cond is not None
            and int(cond.get("observedGeneration") or 0) == generation_of(pdb)
            and cond.get("status") == ("True" if self.disruptions_allowed > 0 else "False")
            and cond.get("reason") != SYNC_FAILED
        )

    def status(self, pdb: Obj, now: str) -> Obj:
        status: Obj = {
            "observedGeneration": generation_of(pdb),
            "disruptionsAllowed": self.disruptions_allowed,
            "currentHealthy": self.current_healthy,
            "desiredHealthy": self.desired_healthy,
            "expectedPods": self.expected_pods,
        }
        if self.disrupted_pods:
            status["disruptedPods"] = dict(self.disrupted_pods)
        status["conditions"] = copy.deepcopy((pdb.get("status") or {}).get("conditions") or [])
        set_condition(
            status, disruption_condition(self.disruptions_allowed, generation_of(pdb), now)
        )
        return status


def stale_disruption_wait(pod: Obj, now: dt.datetime) -> float | None:
    """Seconds until the pod's DisruptionTarget condition is stale (0: it is), or None when
    it has none to reset: not True, set by the kubelet, or the pod is terminating or done."""
    cond = get_condition(pod.get("status"), "DisruptionTarget")
    phase = (pod.get("status") or {}).get("phase")
    if (
        cond is None
        or cond.get("status") != "True"
        or cond.get("reason") == "TerminationByKubelet"
        or is_deleting(pod)
        or phase in ("Succeeded", "Failed")
    ):
        return None
    since = cond.get("lastTransitionTime")
    set_at = parse_time(since) if since else now
    return max((set_at + STALE_DISRUPTION_TIMEOUT - now).total_seconds(), 0.0)


def pdb_selector(pdb: Obj) -> LabelSelector:
    """The pods a budget covers: a null selector none, an empty one all of its namespace."""
    return LabelSelector.from_dict((pdb.get("spec") or {}).get("selector"))


def _group_of(api_version: str) -> str:
    return api_version.split("/", 1)[0] if "/" in api_version else ""


# ------------------------------------------------------------------ controller


class DisruptionController(Controller):
    name = "disruption-controller"
    queue_name = "disruption"
    event_source = "controllermanager"

    def __init__(self, ctx: ControllerContext, workers: int = 1) -> None:
        super().__init__(ctx, workers)
        self.pdb_informer = ctx.informers.informer(PODDISRUPTIONBUDGETS)
        self.pod_informer = ctx.informers.informer(PODS)
        self.rs_informer = ctx.informers.informer(REPLICASETS)
        self.deployment_informer = ctx.informers.informer(DEPLOYMENTS)
        self.rc_informer = ctx.informers.informer(REPLICATIONCONTROLLERS)
        self.pdb_informer.add_event_handler(
            self.enqueue, lambda old, new: self.enqueue(new), self.enqueue
        )
        self.pod_informer.add_event_handler(self._pod_changed, self._pod_updated, self._pod_gone)
        # Other kinds with a scale subresource, found through discovery when first needed.
        self._scalable: dict[tuple[str, str], Resource] | None = None

    # ---------------------------------------------------------------- handlers

    def _budgets_for(self, pod: Obj) -> list[Obj]:
        labels = labels_of(pod)
        return [pdb for pdb in self.pdb_informer.list(namespace_of(pod)) if _matches(pdb, labels)]

    def _pod_changed(self, pod: Obj) -> None:
        for pdb in self._budgets_for(pod):
            self.enqueue(pdb)
        wait = stale_disruption_wait(pod, utcnow())
        if wait is not None:
            self.queue.add_after(_STALE_POD + f"{namespace_of(pod)}/{name_of(pod)}", wait)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if resource_version_of(old) == resource_version_of(new):
            return
        self._pod_changed(new)
        if labels_of(old) != labels_of(new):
            self._pod_changed(old)

    def _pod_gone(self, pod: Obj | DeletedFinalStateUnknown) -> None:
        self._pod_changed(pod.obj if isinstance(pod, DeletedFinalStateUnknown) else pod)

    # -------------------------------------------------------------------- sync

    async def sync(self, key: str) -> float | None:
        if key.startswith(_STALE_POD):
            return await self._reset_stale_disruption(key[len(_STALE_POD) :])
        namespace, name = key.split("/", 1)
        pdb = self.pdb_informer.get(name, namespace)
        if pdb is None:
            return None
        try:
            return await self._try_sync(pdb)
        except (BudgetError, SelectorError) as e:
            error: Exception = e
        except ApiError as e:
            if e.code == 409:
                raise  # a stale copy of ours: retried soon, with no SyncFailed
            error = e
        log.error("Failed to sync PDB %s: %s", key, error)
        await self._fail_safe(pdb, str(error))
        return SYNC_FAILED_RETRY

    async def _try_sync(self, pdb: Obj) -> float | None:
        selector = pdb_selector(pdb)
        pods = [
            p for p in self.pod_informer.list(namespace_of(pdb)) if selector.matches(labels_of(p))
        ]
        if not pods:
            self.recorder.event(pdb, NORMAL, "NoPods", "No matching pods found")
        spec = pdb.get("spec") or {}
        scale: int | None = None
        if needs_scale(spec):
            scale, unmanaged = await self._expected_scale(pdb, pods)
            if unmanaged:
                self.recorder.event(
                    pdb,
                    WARNING,
                    "UnmanagedPods",
                    "Pods selected by this PodDisruptionBudget (selector: "
                    f"{selector}) were found to be unmanaged. As a result, the status of the "
                    "PDB cannot be calculated correctly, which may result in undefined "
                    'behavior. To account for these pods please set ".spec.minAvailable" '
                    "field of the PDB to an integer value.",
                )
        try:
            expected, desired = expected_and_desired(spec, len(pods), scale)
        except BudgetError as e:
            self.recorder.event(
                pdb,
                WARNING,
                "CalculateExpectedPodCountFailed",
                f"Failed to calculate the number of expected pods: {e}",
            )
            raise
        now = utcnow()
        recorded = (pdb.get("status") or {}).get("disruptedPods") or {}
        disrupted, recheck, overdue = disrupted_pod_map(pods, recorded, now)
        for pod in overdue:
            self.recorder.event(
                pod,
                WARNING,
                "NotDeleted",
                f"Pod was expected by PDB {namespace_of(pdb)}/{name_of(pdb)} to be "
                "deleted but it wasn't",
            )
        budget = Budget(count_healthy(pods, disrupted, now), desired, expected, disrupted)
        if not budget.up_to_date(pdb):
            body = copy.deepcopy(pdb)
            body["status"] = budget.status(pdb, format_time(now))
            try:
                await self.client.update_status(PODDISRUPTIONBUDGETS, body)
            except NotFound:
                return None
        if recheck is not None:
            return max((recheck - now).total_seconds(), 0.0) + 0.5
        return None

    async def _expected_scale(self, pdb: Obj, pods: list[Obj]) -> tuple[int, list[str]]:
        """The sum of the replicas of the pods' controllers (each counted once), and the
        pods without a controller (upstream's getExpectedScale)."""
        scales: dict[str, int] = {}
        unmanaged: list[str] = []
        for pod in pods:
            ref = controller_ref(pod)
            if ref is None:
                unmanaged.append(name_of(pod))
                continue
            if ref.get("uid") in scales:
                continue
            found = await self._controller_scale(ref, namespace_of(pod))
            if found is None:
                message = f'found no controllers for pod "{name_of(pod)}"'
                self.recorder.event(pdb, WARNING, "NoControllers", message)
                raise BudgetError(message)
            scales[found[0]] = found[1]
        return sum(scales.values()), unmanaged

    async def _controller_scale(self, ref: Obj, namespace: str) -> tuple[str, int] | None:
        """(uid, desired replicas) of the workload a pod's controller ref names; a
        Deployment's ReplicaSet answers for the Deployment."""
        kind, name, uid = ref.get("kind"), str(ref.get("name") or ""), ref.get("uid")
        group = _group_of(str(ref.get("apiVersion") or ""))
        if (group, kind) == ("apps", "ReplicaSet"):
            rs = self.rs_informer.get(name, namespace)
            if rs is None or uid_of(rs) != uid:
                return None
            owner = controller_ref(rs)
            if owner is not None and owner.get("kind") == "Deployment":
                d = self.deployment_informer.get(str(owner.get("name") or ""), namespace)
                if d is not None and uid_of(d) == owner.get("uid"):
                    return uid_of(d), replicas_of(d)
            return uid_of(rs), replicas_of(rs)
        if (group, kind) == ("", "ReplicationController"):
            rc = self.rc_informer.get(name, namespace)
            if rc is None or uid_of(rc) != uid:
                return None
            return uid_of(rc), replicas_of(rc)
        if (group, kind) == ("apps", "StatefulSet"):
            return await self._live_replicas(STATEFULSETS, name, namespace, uid, None)
        res = await self._scale_resource(group, str(kind))
        if res is None:
            return None
        return await self._live_replicas(res, name, namespace, uid, "scale")

    async def _live_replicas(
        self, res: Resource, name: str, namespace: str, uid: Any, subresource: str | None
    ) -> tuple[str, int] | None:
        try:
            obj = await self.client.request("GET", res.path(namespace, name, subresource))
        except NotFound:
            return None
        if not isinstance(obj, dict) or uid_of(obj) != uid:
            return None
        return uid_of(obj), int((obj.get("spec") or {}).get("replicas") or 0)

    async def _scale_resource(self, group: str, kind: str) -> Resource | None:
        """The resource of a kind with a scale subresource (custom workloads)."""
        if self._scalable is None or (group, kind) not in self._scalable:
            found: dict[tuple[str, str], Resource] = {}
            for api in await server_resources(self.client):
                found.setdefault((api.group, api.kind), api.resource)
            self._scalable = found
        return self._scalable.get((group, kind))

    async def _reset_stale_disruption(self, key: str) -> float | None:
        """DisruptionTarget back to False on a pod an eviction marked but never deleted."""
        namespace, name = key.split("/", 1)
        pod = self.pod_informer.get(name, namespace)
        if pod is None:
            return None
        wait = stale_disruption_wait(pod, utcnow())
        if wait is None:
            return None
        if wait > 0:
            return wait
        patch = {
            "metadata": {"resourceVersion": resource_version_of(pod)},
            "status": {
                "conditions": [
                    {
                        "type": "DisruptionTarget",
                        "status": "False",
                        "lastTransitionTime": format_time(utcnow()),
                    }
                ]
            },
        }
        try:
            await self.client.patch(
                PODS, name, patch, namespace=namespace, patch_type="strategic", subresource="status"
            )
        except NotFound:
            return None
        log.info("Reset stale DisruptionTarget condition to False: pod %s", key)
        return None

    async def _fail_safe(self, pdb: Obj, message: str) -> None:
        """No disruptions while the budget cannot be computed (upstream's failSafe)."""
        body = copy.deepcopy(pdb)
        status = body.setdefault("status", {})
        status["disruptionsAllowed"] = 0
        set_condition(
            status,
            {
                "type": DISRUPTION_ALLOWED,
                "status": "False",
                "observedGeneration": int(status.get("observedGeneration") or 0),
                "lastTransitionTime": format_time(utcnow()),
                "reason": SYNC_FAILED,
                "message": message,
            },
        )
        if status == (pdb.get("status") or {}):
            return
        try:
            await self.client.update_status(PODDISRUPTIONBUDGETS, body)
        except NotFound:
            return


def _matches(pdb: Obj, labels: dict[str, str]) -> bool:
    try:
        return pdb_selector(pdb).matches(labels)
    except SelectorError:
        return False
