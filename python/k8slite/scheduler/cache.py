"""The scheduler's view of the cluster: nodes and the pods bound or assumed to them.

The state itself lives in the native NodeTable (columnar, per node); this module feeds it
from the node and pod informers and keeps the assume/confirm/forget protocol: a pod is
accounted to its node the moment the scheduler picks it (assumed), so the next pod already
sees the node fuller, long before the binding shows up in the watch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from k8slite._native import NodeTable, PodSpec
from k8slite.component.objects import Obj, meta, name_of
from k8slite.scheduler.plugins import node_args, pod_spec
from k8slite.scheduler.queue import pod_key

log = logging.getLogger(__name__)

NamespaceLister = Callable[[], Iterable[Obj]]


def _pod_accounting(pod: Obj) -> tuple[Any, ...]:
    """What of a bound pod the table accounts: a status-only update changes none of it."""
    m = meta(pod)
    return pod.get("spec"), m.get("labels"), m.get("ownerReferences")


def _same_but_binding(pending: Obj, bound: Obj) -> bool:
    """Whether `bound` is `pending` with nothing changed but what a binding sets."""
    spec = bound.get("spec") or {}
    pending_spec = pending.get("spec") or {}
    if len(spec) != len(pending_spec) + ("nodeName" not in pending_spec):
        return False
    if any(v != pending_spec.get(k) for k, v in spec.items() if k != "nodeName"):
        return False
    a, b = meta(pending), meta(bound)
    return a.get("labels") == b.get("labels") and a.get("ownerReferences") == b.get(
        "ownerReferences"
    )


def _node_accounting(node: Obj) -> tuple[Any, ...]:
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    labels = meta(node).get("labels")
    return (
        status.get("allocatable"),
        labels,
        spec.get("taints"),
        spec.get("unschedulable"),
        status.get("images"),
    )


class SchedulerCache:
    """Nodes and assigned pods, mirrored into one NodeTable."""

    def __init__(self, table: NodeTable, namespaces: NamespaceLister | None = None) -> None:
        self.table = table
        self.namespaces = namespaces
        # Pods accounted because we chose them, not yet seen bound by the watch: the node,
        # and the pod as it was summarised.
        self.assumed: dict[str, tuple[str, Obj]] = {}

    def spec_of(self, pod: Obj) -> PodSpec:
        return pod_spec(pod, self.namespaces)

    # ------------------------------------------------------------------ nodes

    def add_node(self, node: Obj) -> None:
        name = name_of(node)
        if name:
            self.table.set_node(name, **node_args(node))

    def update_node(self, old: Obj, new: Obj) -> bool:
        """True when the update changed anything a filter or score looks at."""
        if _node_accounting(old) == _node_accounting(new):
            return False
        self.add_node(new)
        return True

    def remove_node(self, node: Obj) -> None:
        name = name_of(node)
        if name:
            self.table.remove_node(name)

    # ------------------------------------------------------------------- pods

    def add_pod(self, pod: Obj) -> None:
        """A pod seen bound by the watch: accounted for good (confirming an assumption)."""
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            return
        key = pod_key(pod)
        assumed = self.assumed.pop(key, None)
        if assumed is not None:
            if assumed[0] == node and _same_but_binding(assumed[1], pod):
                return  # the binding we made: the account stands as assumed
            log.info("pod %s assumed on %s was bound to %s", key, assumed[0], node)
        self.table.add_pod(key, node, self.spec_of(pod))

    def update_pod(self, old: Obj, new: Obj) -> None:
        if (old.get("spec") or {}).get("nodeName") and _pod_accounting(old) == _pod_accounting(new):
            return
        self.add_pod(new)

    def remove_pod(self, pod: Obj) -> None:
        key = pod_key(pod)
        self.assumed.pop(key, None)
        self.table.remove_pod(key)

    # ----------------------------------------------------------------- assume

    def assume(self, pod: Obj, node: str, spec: PodSpec) -> None:
        """Account a pod to the node chosen for it, before it is bound."""
        key = pod_key(pod)
        self.table.add_pod(key, node, spec)
        self.assumed[key] = (node, pod)

    def forget(self, key: str) -> None:
        """Undo an assumption whose binding failed (a pod the watch confirmed stays)."""
        if self.assumed.pop(key, None) is not None:
            self.table.remove_pod(key)

    def is_assumed(self, key: str) -> bool:
        return key in self.assumed
