"""The taint eviction controller: delete pods from nodes with NoExecute taints they don't
tolerate, at once, or when their tolerationSeconds run out."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import logging

from k8slite.api.meta import now as now_text
from k8slite.api.meta import parse_time
from k8slite.client import NODE_NAME_INDEX, Conflict, DeletedFinalStateUnknown, NotFound
from k8slite.client.resource import NODES, PODS
from k8slite.component.events import NORMAL
from k8slite.component.objects import Obj, get_condition, is_deleting, meta
from k8slite.controllers.base import Controller, ControllerContext
from k8slite.controllers.podutil import utcnow

log = logging.getLogger(__name__)


def no_execute_taints(node: Obj | None) -> list[Obj]:
    if node is None:
        return []
    return [
        t for t in (node.get("spec") or {}).get("taints") or () if t.get("effect") == "NoExecute"
    ]


def tolerates(toleration: Obj, taint: Obj) -> bool:
    """Upstream's ToleratesTaint: effect and key match if set; Exists, or Equal values."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def toleration_seconds(pod: Obj, taints: list[Obj]) -> float | None:
    """How long the pod may stay: 0 if a taint is not tolerated, None for ever.

    Each taint uses the first toleration that matches it; the shortest
    tolerationSeconds among those wins, and tolerations without one last for ever.
    """
    tolerations = (pod.get("spec") or {}).get("tolerations") or ()
    shortest: float | None = None
    for taint in taints:
        match = next((t for t in tolerations if tolerates(t, taint)), None)
        if match is None:
            return 0.0
        seconds = match.get("tolerationSeconds")
        if seconds is not None:
            value = max(0.0, float(seconds))
            shortest = value if shortest is None else min(shortest, value)
    return shortest


class TaintEvictionController(Controller):
    name = "taint-eviction-controller"
    queue_name = "taint_eviction"

    def __init__(self, ctx: ControllerContext, workers: int = 4) -> None:
        super().__init__(ctx, workers)
        self.pods = ctx.informers.informer(PODS)
        self.nodes = ctx.informers.informer(NODES)
        # When we first saw a NoExecute taint without a timeAdded, per node.
        self._first_seen: dict[str, dt.datetime] = {}
        self.pods.add_event_handler(self._pod_added, self._pod_updated)
        self.nodes.add_event_handler(self._node_added, self._node_updated, self._node_deleted)

    # ---------------------------------------------------------------- handlers

    def _pod_added(self, pod: Obj) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and no_execute_taints(self.nodes.get(node)):
            self.enqueue(pod)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
        if old_spec.get("nodeName") != new_spec.get("nodeName") or old_spec.get(
            "tolerations"
        ) != new_spec.get("tolerations"):
            self._pod_added(new)

    def _node_added(self, node: Obj) -> None:
        if no_execute_taints(node):
            self._node_pods(node)

    def _node_updated(self, old: Obj, new: Obj) -> None:
        if no_execute_taints(old) != no_execute_taints(new):
            if not no_execute_taints(new):
                self._first_seen.pop(meta(new)["name"], None)
            self._node_pods(new)

    def _node_deleted(self, node: Obj | DeletedFinalStateUnknown) -> None:
        obj = node.obj if isinstance(node, DeletedFinalStateUnknown) else node
        self._first_seen.pop(meta(obj).get("name", ""), None)

    def _node_pods(self, node: Obj) -> None:
        for pod in self.pods.indexer.by_index(NODE_NAME_INDEX, meta(node)["name"]):
            self.enqueue(pod)

    # -------------------------------------------------------------------- sync

    def _tainted_since(self, node_name: str, taints: list[Obj]) -> dt.datetime:
        """The earliest timeAdded of the NoExecute taints (or when we first saw them)."""
        stamps = [parse_time(t["timeAdded"]) for t in taints if t.get("timeAdded")]
        if stamps:
            return min(stamps)
        return self._first_seen.setdefault(node_name, utcnow())

    async def sync(self, key: str) -> float | None:
        namespace, name = key.split("/", 1)
        pod = self.pods.get(name, namespace)
        if pod is None or is_deleting(pod):
            return None
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            return None
        taints = no_execute_taints(self.nodes.get(node_name))
        if not taints:
            return None
        seconds = toleration_seconds(pod, taints)
        if seconds is None:
            return None
        deadline = self._tainted_since(node_name, taints) + dt.timedelta(seconds=seconds)
        left = (deadline - utcnow()).total_seconds()
        if left > 0:
            return left
        await self._evict(pod)
        return None

    async def _evict(self, pod: Obj) -> None:
        m = meta(pod)
        log.info(
            "evicting pod %s/%s from tainted node %s",
            m.get("namespace"),
            m.get("name"),
            (pod.get("spec") or {}).get("nodeName"),
        )
        self.recorder.event(
            pod,
            NORMAL,
            "TaintManagerEviction",
            f"Marking for deletion Pod {m.get('namespace')}/{m.get('name')}",
        )
        if get_condition(pod.get("status"), "DisruptionTarget") is None:
            body = copy.deepcopy(pod)
            body.setdefault("status", {}).setdefault("conditions", []).append(
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "lastTransitionTime": now_text(),
                    "reason": "DeletionByTaintManager",
                    "message": "Taint manager: deleting due to NoExecute taint",
                }
            )
            try:
                await self.client.update_status(PODS, body)
            except (Conflict, NotFound):
                pass  # the condition is a courtesy; the deletion is what matters
        with contextlib.suppress(NotFound, Conflict):
            await self.client.delete(
                PODS,
                m["name"],
                namespace=m.get("namespace"),
                preconditions={"uid": str(m.get("uid"))},
            )
