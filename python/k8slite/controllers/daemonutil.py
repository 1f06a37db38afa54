"""DaemonSet logic without I/O: which nodes run a daemon pod, its pod, rolling-update plans."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from k8slite.api.nodeaffinity import node_matches_terms
from k8slite.component.objects import Obj, annotations_of, is_deleting, labels_of, meta
from k8slite.controllers.deploymentutil import scaled_value
from k8slite.controllers.podutil import is_pod_available, is_pod_ready
from k8slite.controllers.tainteviction import tolerates

# Where the API server keeps a DaemonSet's template generation (api/apps_v1.py writes it).
TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"
# Labels a daemon pod carries besides its template's (upstream's names).
REVISION_HASH = "controller-revision-hash"
POD_TEMPLATE_GENERATION = "pod-template-generation"

# Taints every daemon pod tolerates, as upstream's AddOrUpdateDaemonPodTolerations adds
# them: a node's trouble must not evict (or keep out) the agents that may fix it.
_EXISTS = "Exists"
DAEMON_TOLERATIONS: tuple[Obj, ...] = (
    {"key": "node.kubernetes.io/not-ready", "operator": _EXISTS, "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": _EXISTS, "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": _EXISTS, "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": _EXISTS, "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": _EXISTS, "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": _EXISTS, "effect": "NoSchedule"},
)
NETWORK_UNAVAILABLE: Obj = {
    "key": "node.kubernetes.io/network-unavailable",
    "operator": _EXISTS,
    "effect": "NoSchedule",
}


# ---------------------------------------------------------------- template and pods


def template_generation(ds: Obj) -> int | None:
    value = annotations_of(ds).get(TEMPLATE_GENERATION)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def daemon_tolerations(spec: Obj) -> list[Obj]:
    """The template's tolerations plus the daemon ones it lacks (none is duplicated)."""
    out = [dict(t) for t in spec.get("tolerations") or ()]
    wanted = list(DAEMON_TOLERATIONS)
    if spec.get("hostNetwork"):
        wanted.append(NETWORK_UNAVAILABLE)
    for toleration in wanted:
        same = [
            t
            for t in out
            if t.get("key") == toleration["key"] and t.get("effect") == toleration["effect"]
        ]
        for t in same:
            out.remove(t)
        out.append(dict(toleration))
    return out


def pod_template(ds: Obj, revision_hash: str) -> Obj:
    """The template a daemon pod is made from: daemon tolerations and its two labels."""
    template = copy.deepcopy((ds.get("spec") or {}).get("template") or {})
    spec = template.setdefault("spec", {})
    spec["tolerations"] = daemon_tolerations(spec)
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    generation = template_generation(ds)
    if generation is not None:
        labels[POD_TEMPLATE_GENERATION] = str(generation)
    if revision_hash:
        labels[REVISION_HASH] = revision_hash
    return template


def pin_to_node(spec: Obj, node_name: str) -> None:
    """Upstream's ReplaceDaemonSetPodNodeNameNodeAffinity: the required node affinity
    becomes a single term naming the node, so the default scheduler binds it there."""
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}
    affinity = spec.setdefault("affinity", {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    required = node_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    required["nodeSelectorTerms"] = [term]


def target_node(pod: Obj) -> str | None:
    """The node a daemon pod is for: its nodeName, or the node its affinity names."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or ():
        for req in term.get("matchFields") or ():
            values = list(req.get("values") or ())
            named = req.get("key") == "metadata.name" and req.get("operator") == "In"
            if named and len(values) == 1:
                return str(values[0])
    return None


def is_pod_updated(pod: Obj, revision_hash: str, generation: int | None) -> bool:
    labels = labels_of(pod)
    if generation is not None and labels.get(POD_TEMPLATE_GENERATION) == str(generation):
        return True
    return bool(revision_hash) and labels.get(REVISION_HASH) == revision_hash


# ---------------------------------------------------------------- node eligibility


def fits_node_affinity(spec: Obj, node: Obj) -> bool:
    """nodeSelector and the required node affinity terms (ORed) against the node."""
    labels = labels_of(node)
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if required is None:
        return True
    return node_matches_terms(required.get("nodeSelectorTerms") or (), node)


class Eligibility:
    """Upstream's NodeShouldRunDaemonPod for one DaemonSet, set up once per sync."""

    def __init__(self, ds: Obj) -> None:
        self.spec: Obj = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
        self.tolerations = daemon_tolerations(self.spec)

    def __call__(self, node: Obj) -> tuple[bool, bool]:
        """(should run, should keep running) on node.

        A node the template's selectors rule out runs nothing. An untolerated NoSchedule
        taint keeps a new pod off but lets a running one stay; a NoExecute one does not.
        """
        node_name = self.spec.get("nodeName")
        if node_name and node_name != meta(node).get("name"):
            return False, False
        if not fits_node_affinity(self.spec, node):
            return False, False
        run, keep = True, True
        for taint in (node.get("spec") or {}).get("taints") or ():
            effect = taint.get("effect")
            if effect not in ("NoSchedule", "NoExecute"):
                continue
            if any(tolerates(t, taint) for t in self.tolerations):
                continue
            run = False
            if effect == "NoExecute":
                keep = False
        return run, keep


def should_run(ds: Obj, node: Obj) -> tuple[bool, bool]:
    return Eligibility(ds)(node)


# ---------------------------------------------------------------- history


def revision_data(ds: Obj) -> Obj:
    """What a ControllerRevision records: a patch that puts this template back."""
    template = copy.deepcopy((ds.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def same_data(a: object, b: object) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# ---------------------------------------------------------------- per-node plan


def _creation_key(pod: Obj) -> tuple[str, str]:
    m = meta(pod)
    return str(m.get("creationTimestamp", "")), str(m.get("name", ""))


@dataclass
class NodePlan:
    """What manage() should do: nodes needing a pod, pods to delete, failed pods seen."""

    create_on: list[str] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)
    failed: list[tuple[str, Obj]] = field(default_factory=list)


def plan_node(
    plan: NodePlan,
    node_name: str,
    run: bool,
    keep: bool,
    pods: list[Obj],
    revision_hash: str,
    allow_surge: bool,
    min_ready: int,
    now: dt.datetime,
) -> None:
    """Upstream's podsShouldBeOnNode for one node."""
    if run and not pods:
        plan.create_on.append(node_name)
        return
    if not keep:
        plan.delete.extend(p for p in pods if not is_deleting(p))
        return
    running: list[Obj] = []
    for pod in pods:
        if is_deleting(pod):
            continue
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Failed":
            # Killed so that a fresh one replaces it (after a backoff the caller keeps).
            plan.failed.append((node_name, pod))
            continue
        running.append(pod)
    if len(running) <= 1:
        return
    running.sort(key=_creation_key)
    if not allow_surge:
        # One pod per node: the oldest stays.
        plan.delete.extend(running[1:])
        return
    oldest_new: Obj | None = None
    oldest_old: Obj | None = None
    for pod in running:
        if labels_of(pod).get(REVISION_HASH) == revision_hash:
            if oldest_new is None:
                oldest_new = pod
                continue
        elif oldest_old is None:
            oldest_old = pod
            continue
        plan.delete.append(pod)
    # A surged node keeps its old pod until the new one is available.
    if (
        oldest_new is not None
        and oldest_old is not None
        and (not is_pod_ready(oldest_old) or is_pod_available(oldest_new, min_ready, now))
    ):
        plan.delete.append(oldest_old)


# ---------------------------------------------------------------- rolling update


def find_updated_pods(
    pods: Iterable[Obj], revision_hash: str, generation: int | None
) -> tuple[Obj | None, Obj | None, bool]:
    """(new pod, old pod, ok) of a node; not ok when it has two of either kind."""
    new: Obj | None = None
    old: Obj | None = None
    for pod in pods:
        if is_deleting(pod):
            continue
        if is_pod_updated(pod, revision_hash, generation):
            if new is not None:
                return None, None, False
            new = pod
        else:
            if old is not None:
                return None, None, False
            old = pod
    return new, old, True


def surge_and_unavailable(ds: Obj, desired: int) -> tuple[int, int]:
    """maxSurge and maxUnavailable over the desired nodes (percents round up); both zero
    means one unavailable, so that a rollout can always move."""
    strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
    rolling = strategy.get("rollingUpdate") or {}
    surge = scaled_value(rolling.get("maxSurge"), desired, True)
    unavailable = scaled_value(rolling.get("maxUnavailable"), desired, True)
    if desired > 0 and surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def rolling_update_plan(
    ds: Obj,
    node_pods: Mapping[str, list[Obj]],
    eligible: set[str],
    revision_hash: str,
    now: dt.datetime,
) -> tuple[list[Obj], list[str]]:
    """Upstream's rollingUpdate: (old pods to delete, nodes to surge a new pod onto).

    node_pods maps every node that has pods or should run one (possibly with no pods).
    Without surge, old pods go while the unavailable count stays within maxUnavailable;
    with surge, new pods come up beside old ones, at most maxSurge at a time, and an old pod
    goes once its node's new pod is available.
    """
    generation = template_generation(ds)
    # Nothing to roll once every pod runs the current template (the common case).
    if all(
        is_pod_updated(p, revision_hash, generation) for pods in node_pods.values() for p in pods
    ):
        return [], []
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    surge, max_unavailable = surge_and_unavailable(ds, len(eligible))
    if surge == 0:
        unavailable = 0
        replace: list[Obj] = []
        candidates: list[Obj] = []
        for name in sorted(node_pods):
            new, old, ok = find_updated_pods(node_pods[name], revision_hash, generation)
            if not ok or (new is None) == (old is None):
                unavailable += 1  # manage() creates or prunes here
            elif new is not None:
                if not is_pod_available(new, min_ready, now):
                    unavailable += 1
            elif old is not None:
                if not is_pod_available(old, min_ready, now):
                    replace.append(old)
                elif unavailable < max_unavailable:
                    candidates.append(old)
        room = max(0, min(max_unavailable - unavailable, len(candidates)))
        return replace + candidates[:room], []
    surged = 0
    allowed: list[str] = []
    candidate_nodes: list[str] = []
    to_delete: list[Obj] = []
    for name in sorted(node_pods):
        new, old, ok = find_updated_pods(node_pods[name], revision_hash, generation)
        if not ok:
            surged += 1
            continue
        if old is None:
            continue
        if new is None:
            if not is_pod_available(old, min_ready, now):
                if name in eligible:
                    allowed.append(name)
            elif surged < surge:
                candidate_nodes.append(name)
        elif not is_pod_available(new, min_ready, now):
            surged += 1
        else:
            to_delete.append(old)
    room = max(0, min(surge - surged, len(candidate_nodes)))
    return to_delete, allowed + candidate_nodes[:room]


# ---------------------------------------------------------------- status


def compute_status(
    ds: Obj,
    runs: Mapping[str, bool],
    node_pods: Mapping[str, list[Obj]],
    revision_hash: str,
    now: dt.datetime,
) -> Obj:
    """The counts of upstream's updateDaemonSetStatus, per node (the oldest pod counts);
    runs says for each existing node whether it should run the daemon pod."""
    generation = template_generation(ds)
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    desired = current = misscheduled = ready = available = updated = 0
    for name, run in runs.items():
        pods = node_pods.get(name) or []
        if run:
            desired += 1
            if pods:
                current += 1
                pod = pods[0] if len(pods) == 1 else min(pods, key=_creation_key)
                if is_pod_ready(pod):
                    ready += 1
                    if min_ready <= 0 or is_pod_available(pod, min_ready, now):
                        available += 1
                if is_pod_updated(pod, revision_hash, generation):
                    updated += 1
        elif pods:
            misscheduled += 1
    return {
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "desiredNumberScheduled": desired,
        "numberReady": ready,
        "updatedNumberScheduled": updated,
        "numberAvailable": available,
        "numberUnavailable": desired - available,
    }
