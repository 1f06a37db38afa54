"""Pure-Python filters and scores with kube-scheduler semantics: the oracle of the native kernel.

It has the same face as k8slite._native.NodeTable and PodSpec and is written to be read, not
to be fast: one plain object per node and per pod, every check spelled out in upstream's
terms (plugins, PreFilter, Filter, Score, NormalizeScore).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from k8slite import _native

MAX_NODE_SCORE = 100
MIB = 1024 * 1024
IMAGE_MIN = 23 * MIB
IMAGE_MAX_PER_CONTAINER = 1000 * MIB
ALL_IPS = "0.0.0.0"

# The plugin names and default weights are the kernel's: one list, which the oracle shares
# (the semantics below are its own).
FILTERS = _native.FILTER_PLUGINS
DEFAULT_WEIGHTS = dict(_native.DEFAULT_WEIGHTS)
SCORES = tuple(DEFAULT_WEIGHTS)
BASE = ("cpu", "memory", "ephemeral-storage")

UNSCHEDULABLE = "node(s) were unschedulable"
NODE_NAME = "node(s) didn't match the requested node name"
TAINT = "node(s) had untolerated taint(s)"
NODE_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
PREFILTER = "node(s) didn't satisfy plugin(s) [NodeAffinity]"
PORTS = "node(s) didn't have free ports for the requested pod ports"
TOO_MANY_PODS = "Too many pods"
AFFINITY = "node(s) didn't match pod affinity rules"
ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI = "node(s) didn't satisfy existing pods anti-affinity rules"
CONFLICT = "pod affinity terms conflict"

RawExpr = tuple[str, str, Sequence[str]]
RawNodeTerm = tuple[Sequence[RawExpr], Sequence[RawExpr]]
RawPodTerm = tuple[Sequence[RawExpr] | None, Sequence[str] | None, str]


def go_div(a: int, b: int) -> int:
    """Integer division truncating toward zero, as Go's."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def parse_int64(text: str) -> int | None:
    """Go's strconv.ParseInt(text, 10, 64)."""
    body = text[1:] if text[:1] in "+-" else text
    if not body or not body.isdigit() or not body.isascii():
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None


# ----------------------------------------------------------------------- requirements


@dataclass
class Requirement:
    """A node selector requirement or a label selector requirement, validated."""

    key: str
    op: str
    values: list[str]

    def matches(self, value: str | None) -> bool:
        if self.op == "In":
            return value is not None and value in self.values
        if self.op == "NotIn":
            return value is None or value not in self.values
        if self.op == "Exists":
            return value is not None
        if self.op == "DoesNotExist":
            return value is None
        # Gt and Lt: the label must be an integer beyond the bound.
        if value is None:
            return False
        number, bound = parse_int64(value), parse_int64(self.values[0])
        if number is None or bound is None:
            return False
        return number > bound if self.op == "Gt" else number < bound


def label_requirement(raw: RawExpr, numeric: bool = True) -> Requirement | None:
    """Upstream's validation before matching; None when malformed."""
    key, op, values = raw[0], raw[1], list(raw[2])
    if op in ("In", "NotIn"):
        ok = bool(values)
    elif op in ("Exists", "DoesNotExist"):
        ok = not values
    elif op in ("Gt", "Lt") and numeric:
        ok = len(values) == 1 and parse_int64(values[0]) is not None
    else:
        ok = False
    return Requirement(key, op, values) if ok else None


def field_requirement(raw: RawExpr) -> Requirement | None:
    key, op, values = raw[0], raw[1], list(raw[2])
    if op in ("In", "NotIn") and len(values) == 1:
        return Requirement(key, op, values)
    return None


@dataclass
class NodeTerm:
    """A NodeSelectorTerm: all of its requirements must hold; empty or malformed: no node."""

    raw: RawNodeTerm

    def matches(self, node: Node) -> bool:
        exprs, fields = self.raw
        if not exprs and not fields:
            return False
        for raw in exprs:
            req = label_requirement(raw)
            if req is None or not req.matches(node.labels.get(req.key)):
                return False
        for raw in fields:
            req = field_requirement(raw)
            if req is None:
                return False
            value = node.name if req.key == "metadata.name" else ""
            if (value == req.values[0]) != (req.op == "In"):
                return False
        return True


@dataclass
class PodTerm:
    """A required pod (anti-)affinity term."""

    selector: list[RawExpr] | None
    namespaces: list[str] | None
    topology_key: str

    def matches(self, namespace: str, labels: Mapping[str, str]) -> bool:
        if self.selector is None:
            return False
        if self.namespaces is not None and namespace not in self.namespaces:
            return False
        for raw in self.selector:
            req = label_requirement(raw, numeric=False)
            if req is None:
                return False  # a malformed selector selects nothing
            if not req.matches(labels.get(req.key)):
                return False
        return True


@dataclass
class Toleration:
    key: str
    operator: str
    value: str
    effect: str

    def tolerates(self, taint_key: str, taint_value: str, taint_effect: str) -> bool:
        if self.effect and self.effect != taint_effect:
            return False
        if self.key and self.key != taint_key:
            return False
        if self.operator in ("", "Equal"):
            return self.value == taint_value
        return self.operator == "Exists"


# -------------------------------------------------------------------------- pods, nodes


class PodSpec:
    """The same summary of a pod that the native PodSpec takes."""

    def __init__(
        self,
        *,
        namespace: str,
        labels: Mapping[str, str] | None = None,
        node_name: str = "",
        requests: Mapping[str, int] | None = None,
        nonzero: tuple[int, int] = (0, 0),
        node_selector: Mapping[str, str] | None = None,
        required: Sequence[RawNodeTerm] | None = None,
        preferred: Sequence[tuple[int, RawNodeTerm]] = (),
        tolerations: Sequence[tuple[str, str, str, str]] = (),
        ports: Sequence[tuple[str, str, int]] = (),
        images: Sequence[str] = (),
        spread_key: str = "",
        affinity: Sequence[RawPodTerm] = (),
        anti_affinity: Sequence[RawPodTerm] = (),
    ) -> None:
        self.namespace = namespace
        self.labels = dict(labels or {})
        self.node_name = node_name
        reqs = {k: v for k, v in (requests or {}).items() if k in BASE or v != 0}
        self.requests = {k: reqs.get(k, 0) for k in BASE} | reqs
        self.nonzero = nonzero
        self.node_selector = dict(node_selector or {})
        self.required = None if required is None else [NodeTerm(t) for t in required]
        self.preferred = [(w, NodeTerm(t)) for w, t in preferred]
        self.tolerations = [Toleration(*t) for t in tolerations]
        self.ports = [
            (ip or ALL_IPS, proto or "TCP", port) for ip, proto, port in ports if port > 0
        ]
        self.images = list(images)
        self.spread_key = spread_key
        self.affinity = [self._term(t) for t in affinity]
        self.anti_affinity = [self._term(t) for t in anti_affinity]

    @staticmethod
    def _term(raw: RawPodTerm) -> PodTerm:
        selector, namespaces, key = raw
        return PodTerm(
            None if selector is None else list(selector),
            None if namespaces is None else list(namespaces),
            key,
        )

    @property
    def scalars(self) -> dict[str, int]:
        return {k: v for k, v in self.requests.items() if k not in BASE}


@dataclass
class Node:
    name: str
    allocatable: dict[str, int]
    labels: dict[str, str]
    taints: list[tuple[str, str, str]]
    unschedulable: bool
    images: dict[str, int]  # name -> size as this node reports it


@dataclass
class Slot:
    """A node object (if known) and the pods accounted to that node name."""

    node: Node | None = None
    pods: dict[str, PodSpec] = field(default_factory=dict)

    def requested(self, resource: str) -> int:
        return sum(p.requests.get(resource, 0) for p in self.pods.values())

    def nonzero(self, index: int) -> int:
        return sum(p.nonzero[index] for p in self.pods.values())

    def used_ports(self) -> list[tuple[str, str, int]]:
        return [port for p in self.pods.values() for port in p.ports]


@dataclass
class ScheduleResult:
    node: str | None
    score: int
    feasible: int
    nodes: int
    reasons: list[tuple[str, int]]
    unresolvable: int
    rejected_by: list[str]
    prefilter: str | None


class NodeTable:
    """The oracle: the native NodeTable's behaviour, computed the slow and obvious way."""

    def __init__(
        self,
        *,
        weights: Mapping[str, int] | None = None,
        strategy: str = "LeastAllocated",
        resources: Sequence[tuple[str, int]] | None = None,
        balanced_resources: Sequence[str] | None = None,
        disabled: Sequence[str] = (),
    ) -> None:
        if strategy not in ("LeastAllocated", "MostAllocated"):
            raise ValueError(f"unknown scoring strategy {strategy!r}")
        self.weights = dict(DEFAULT_WEIGHTS) | dict(weights or {})
        self.strategy = strategy
        self.fit_resources = (
            list(resources) if resources is not None else [("cpu", 1), ("memory", 1)]
        )
        self.balanced_resources = list(dict.fromkeys(balanced_resources or ("cpu", "memory")))
        self.filters = {f: f not in disabled for f in FILTERS}
        for name in disabled:
            if name in SCORES and name not in FILTERS:
                self.weights[name] = 0
        self.slots: dict[str, Slot] = {}
        self.pod_nodes: dict[str, str] = {}
        # Image name -> (size first reported, nodes that have it), like upstream's cache.
        self.image_sizes: dict[str, int] = {}

    # ------------------------------------------------------------------ updates

    def set_node(
        self,
        name: str,
        *,
        allocatable: Mapping[str, int],
        labels: Mapping[str, str] | None = None,
        taints: Sequence[tuple[str, str, str]] = (),
        unschedulable: bool = False,
        images: Sequence[tuple[Sequence[str], int]] = (),
    ) -> None:
        slot = self.slots.setdefault(name, Slot())
        # The old images go first: an image no other node has is then sized afresh.
        slot.node = None
        self._forget_unused_images()
        sizes: dict[str, int] = {}
        for names, size in images:
            for image in names:
                sizes.setdefault(image, size)
        slot.node = Node(
            name, dict(allocatable), dict(labels or {}), list(taints), unschedulable, sizes
        )
        for image, size in sizes.items():
            self.image_sizes.setdefault(image, size)

    def remove_node(self, name: str) -> bool:
        slot = self.slots.get(name)
        if slot is None or slot.node is None:
            return False
        slot.node = None
        if not slot.pods:
            del self.slots[name]
        self._forget_unused_images()
        return True

    def _forget_unused_images(self) -> None:
        used = {i for s in self.slots.values() if s.node for i in s.node.images}
        self.image_sizes = {i: s for i, s in self.image_sizes.items() if i in used}

    def add_pod(self, key: str, node: str, spec: PodSpec) -> None:
        self.remove_pod(key)
        self.slots.setdefault(node, Slot()).pods[key] = spec
        self.pod_nodes[key] = node

    def remove_pod(self, key: str) -> bool:
        node = self.pod_nodes.pop(key, None)
        if node is None:
            return False
        slot = self.slots[node]
        del slot.pods[key]
        if slot.node is None and not slot.pods:
            del self.slots[node]
        return True

    def pod_node(self, key: str) -> str | None:
        return self.pod_nodes.get(key)

    def __len__(self) -> int:
        return sum(1 for s in self.slots.values() if s.node is not None)

    def nodes(self) -> list[Node]:
        return [s.node for s in self.slots.values() if s.node is not None]

    # ----------------------------------------------------------------- filters

    def prefilter_names(self, pod: PodSpec) -> set[str] | None:
        """NodeAffinity's PreFilter: node names every required term pins (None: any)."""
        if not self.filters["NodeAffinity"] or not pod.required:
            return None
        union: set[str] = set()
        for term in pod.required:
            names: set[str] | None = None
            for key, op, values in term.raw[1]:
                if key == "metadata.name" and op == "In":
                    names = set(values) if names is None else names & set(values)
            if names is None:
                return None
            union |= names
        return union

    def filter(
        self, pod: PodSpec, node: Node, names: set[str] | None, interpod: InterPodState | None
    ) -> tuple[list[str], bool] | None:
        """(reasons, unresolvable) of the first filter that rejects the node; None if it fits."""
        on = self.filters
        if names is not None and node.name not in names:
            return [PREFILTER], True
        if (
            on["NodeUnschedulable"]
            and node.unschedulable
            and not any(
                t.tolerates("node.kubernetes.io/unschedulable", "", "NoSchedule")
                for t in pod.tolerations
            )
        ):
            return [UNSCHEDULABLE], True
        if on["NodeName"] and pod.node_name and pod.node_name != node.name:
            return [NODE_NAME], True
        if on["TaintToleration"]:
            for key, value, effect in node.taints:
                if effect in ("NoSchedule", "NoExecute") and not any(
                    t.tolerates(key, value, effect) for t in pod.tolerations
                ):
                    return [TAINT], True
        if on["NodeAffinity"]:
            selector_ok = all(node.labels.get(k) == v for k, v in pod.node_selector.items())
            affinity_ok = pod.required is None or any(t.matches(node) for t in pod.required)
            if not (selector_ok and affinity_ok):
                return [NODE_AFFINITY], True
        if on["NodePorts"] and self.ports_conflict(pod, self.slots[node.name]):
            return [PORTS], False
        if on["NodeResourcesFit"]:
            failure = self.fit(pod, node, self.slots[node.name])
            if failure is not None:
                return failure
        if interpod is not None:
            reason = interpod.filter(node)
            if reason is not None:
                return [reason], reason == AFFINITY
        return None

    @staticmethod
    def ports_conflict(pod: PodSpec, slot: Slot) -> bool:
        used = slot.used_ports()
        for ip, proto, port in pod.ports:
            for used_ip, used_proto, used_port in used:
                if (proto, port) != (used_proto, used_port):
                    continue
                if ip in (ALL_IPS, used_ip) or used_ip == ALL_IPS:
                    return True
        return False

    @staticmethod
    def fit(pod: PodSpec, node: Node, slot: Slot) -> tuple[list[str], bool] | None:
        reasons: list[str] = []
        unresolvable = False
        if len(slot.pods) + 1 > node.allocatable.get("pods", 0):
            reasons.append(TOO_MANY_PODS)
        for resource in BASE:
            want = pod.requests[resource]
            alloc = node.allocatable.get(resource, 0)
            if want > 0 and want > alloc - slot.requested(resource):
                reasons.append(f"Insufficient {resource}")
                unresolvable = unresolvable or want > alloc
        for resource, want in sorted(pod.scalars.items()):
            alloc = node.allocatable.get(resource, 0)
            if want > alloc - slot.requested(resource):
                reasons.append(f"Insufficient {resource}")
                unresolvable = unresolvable or want > alloc
        return (reasons, unresolvable) if reasons else None

    # ------------------------------------------------------------------ scores

    def score(self, pod: PodSpec, feasible: list[Node]) -> list[dict[str, int]]:
        """Normalised, unweighted scores of every enabled score plugin, per feasible node."""
        w = self.weights
        rows: list[dict[str, int]] = [{} for _ in feasible]
        if w["NodeResourcesFit"]:
            for row, node in zip(rows, feasible, strict=True):
                row["NodeResourcesFit"] = self.fit_score(pod, node)
        if w["NodeResourcesBalancedAllocation"]:
            best_effort = all(pod.requests[r] == 0 for r in self.balanced_resources)
            for row, node in zip(rows, feasible, strict=True):
                row["NodeResourcesBalancedAllocation"] = (
                    0 if best_effort else self.balanced_score(pod, node)
                )
        if w["ImageLocality"]:
            # How many nodes hold each image (ImageLocality spreads by it).
            holders: dict[str, int] = {}
            for node in self.nodes():
                for image in node.images:
                    holders[image] = holders.get(image, 0) + 1
            total = len(self.nodes())
            for row, node in zip(rows, feasible, strict=True):
                row["ImageLocality"] = self.image_score(pod, node, holders, total)
        if w["NodeAffinity"]:
            raw = [
                sum(weight for weight, term in pod.preferred if weight and term.matches(node))
                for node in feasible
            ]
            if pod.preferred:
                raw = default_normalize(raw, reverse=False)
            for row, value in zip(rows, raw, strict=True):
                row["NodeAffinity"] = value
        if w["TaintToleration"]:
            prefer = [t for t in pod.tolerations if t.effect in ("", "PreferNoSchedule")]
            raw = [
                sum(
                    1
                    for key, value, effect in node.taints
                    if effect == "PreferNoSchedule"
                    and not any(t.tolerates(key, value, effect) for t in prefer)
                )
                for node in feasible
            ]
            for row, value in zip(rows, default_normalize(raw, reverse=True), strict=True):
                row["TaintToleration"] = value
        if w["SelectorSpread"]:
            for row, value in zip(rows, self.spread_scores(pod, feasible), strict=True):
                row["SelectorSpread"] = value
        return rows

    def fit_score(self, pod: PodSpec, node: Node) -> int:
        slot = self.slots[node.name]
        total = weights = 0
        for resource, weight in self.fit_resources:
            alloc = node.allocatable.get(resource, 0)
            if alloc == 0:
                continue
            index = BASE.index(resource)
            # Upstream scores cpu and memory with non-zero defaults for unset requests.
            if index < 2:
                requested = slot.nonzero(index) + pod.nonzero[index]
            else:
                requested = slot.requested(resource) + pod.requests[resource]
            if self.strategy == "LeastAllocated":
                score = 0 if requested > alloc else (alloc - requested) * MAX_NODE_SCORE // alloc
            else:
                score = min(requested, alloc) * MAX_NODE_SCORE // alloc
            total += score * weight
            weights += weight
        return go_div(total, weights) if weights else 0

    def balanced_score(self, pod: PodSpec, node: Node) -> int:
        slot = self.slots[node.name]
        fractions = []
        for resource in self.balanced_resources:
            alloc = node.allocatable.get(resource, 0)
            if alloc == 0:
                continue
            requested = slot.requested(resource) + pod.requests[resource]
            fractions.append(min(float(requested) / float(alloc), 1.0))
        if len(fractions) == 2:
            std = abs((fractions[0] - fractions[1]) / 2)
        elif len(fractions) > 2:
            mean = sum(fractions) / len(fractions)
            std = math.sqrt(sum((f - mean) * (f - mean) for f in fractions) / len(fractions))
        else:
            std = 0.0
        return int((1 - std) * MAX_NODE_SCORE)

    def image_score(
        self, pod: PodSpec, node: Node, holders: dict[str, int], total_nodes: int
    ) -> int:
        total = 0
        for image in pod.images:
            if image in node.images:
                spread = holders[image] / total_nodes
                total += int(float(self.image_sizes[image]) * spread)
        maximum = IMAGE_MAX_PER_CONTAINER * len(pod.images)
        clamped = IMAGE_MIN if total < IMAGE_MIN else min(total, maximum)
        return go_div(MAX_NODE_SCORE * (clamped - IMAGE_MIN), maximum - IMAGE_MIN)

    def spread_scores(self, pod: PodSpec, feasible: list[Node]) -> list[int]:
        if not pod.spread_key:
            return [0] * len(feasible)
        counts = [
            sum(1 for p in self.slots[n.name].pods.values() if p.spread_key == pod.spread_key)
            for n in feasible
        ]
        top = max(counts, default=0)
        if top == 0:
            return [MAX_NODE_SCORE] * len(feasible)
        return [int(float(MAX_NODE_SCORE) * (float(top - c) / float(top))) for c in counts]

    # -------------------------------------------------------------------- calls

    def evaluate(self, pod: PodSpec) -> list[tuple[str, list[str], bool, dict[str, int] | None]]:
        names = self.prefilter_names(pod)
        nodes = self.nodes()
        if names is not None and not names:
            return [(n.name, [CONFLICT], True, None) for n in nodes]
        interpod = InterPodState(self, pod) if self.filters["InterPodAffinity"] else None
        verdicts: list[tuple[str, list[str], bool, dict[str, int] | None]] = []
        feasible: list[Node] = []
        for node in nodes:
            failure = self.filter(pod, node, names, interpod)
            if failure is None:
                feasible.append(node)
                verdicts.append((node.name, [], False, None))
            else:
                verdicts.append((node.name, failure[0], failure[1], None))
        scores = iter(self.score(pod, feasible))
        return [(n, r, u, next(scores) if not r else None) for n, r, u, _ in verdicts]

    def schedule(self, pod: PodSpec, seed: int | None = None) -> ScheduleResult:
        verdicts = self.evaluate(pod)
        histogram: dict[str, int] = {}
        rejected: set[str] = set()
        unresolvable = 0
        best: list[tuple[str, int]] = []
        prefilter = None
        for name, reasons, unres, scores in verdicts:
            if scores is None:
                unresolvable += unres
                if reasons == [CONFLICT]:
                    prefilter = CONFLICT
                    rejected.add("NodeAffinity")
                    continue
                for reason in reasons:
                    histogram[reason] = histogram.get(reason, 0) + 1
                    rejected.add(plugin_of(reason))
                continue
            total = sum(scores[p] * self.weights[p] for p in scores)
            best.append((name, total))
        top = max((t for _, t in best), default=0)
        tied = [n for n, t in best if t == top]
        node = random.Random(seed).choice(tied) if tied else None
        order = {r: i for i, r in enumerate(REASON_ORDER)}
        ordered = sorted(histogram.items(), key=lambda kv: (order.get(kv[0], 99), kv[0]))
        return ScheduleResult(
            node,
            top if node else 0,
            len(best),
            len(verdicts),
            ordered,
            unresolvable,
            [f for f in FILTERS if f in rejected],
            prefilter,
        )


REASON_ORDER = (
    UNSCHEDULABLE,
    NODE_NAME,
    TAINT,
    NODE_AFFINITY,
    PREFILTER,
    PORTS,
    TOO_MANY_PODS,
    "Insufficient cpu",
    "Insufficient memory",
    "Insufficient ephemeral-storage",
    AFFINITY,
    ANTI_AFFINITY,
    EXISTING_ANTI,
)


def plugin_of(reason: str) -> str:
    if reason == UNSCHEDULABLE:
        return "NodeUnschedulable"
    if reason == NODE_NAME:
        return "NodeName"
    if reason == TAINT:
        return "TaintToleration"
    if reason in (NODE_AFFINITY, PREFILTER):
        return "NodeAffinity"
    if reason == PORTS:
        return "NodePorts"
    if reason in (AFFINITY, ANTI_AFFINITY, EXISTING_ANTI):
        return "InterPodAffinity"
    return "NodeResourcesFit"


def default_normalize(scores: list[int], reverse: bool) -> list[int]:
    """Upstream's DefaultNormalizeScore: scale to 0..100 by the maximum (reverse: 100 - x)."""
    top = max([0, *scores])
    if top == 0:
        return [MAX_NODE_SCORE if reverse else s for s in scores]
    scaled = [go_div(MAX_NODE_SCORE * s, top) for s in scores]
    return [MAX_NODE_SCORE - s for s in scaled] if reverse else scaled


class InterPodState:
    """InterPodAffinity's PreFilter: which topology domains hold the pods its terms name."""

    def __init__(self, table: NodeTable, pod: PodSpec) -> None:
        self.pod = pod
        self.affinity_counts: dict[tuple[str, str], int] = {}
        self.anti_domains: set[tuple[str, str]] = set()
        self.existing_domains: set[tuple[str, str]] = set()
        for node in table.nodes():
            for other in table.slots[node.name].pods.values():
                self._count(pod, other, node)
                for term in other.anti_affinity:
                    key = term.topology_key
                    if term.matches(pod.namespace, pod.labels) and key in node.labels:
                        self.existing_domains.add((key, node.labels[key]))

    def _count(self, pod: PodSpec, other: PodSpec, node: Node) -> None:
        if pod.affinity and all(t.matches(other.namespace, other.labels) for t in pod.affinity):
            for term in pod.affinity:
                key = term.topology_key
                if key in node.labels:
                    pair = (key, node.labels[key])
                    self.affinity_counts[pair] = self.affinity_counts.get(pair, 0) + 1
        for term in pod.anti_affinity:
            key = term.topology_key
            if term.matches(other.namespace, other.labels) and key in node.labels:
                self.anti_domains.add((key, node.labels[key]))

    def filter(self, node: Node) -> str | None:
        pod = self.pod
        if pod.affinity:
            exist = True
            for term in pod.affinity:
                key = term.topology_key
                if key not in node.labels:
                    return AFFINITY
                if not self.affinity_counts.get((key, node.labels[key])):
                    exist = False
            # The first pod of a group that selects itself may start it anywhere.
            first = not self.affinity_counts and all(
                t.matches(pod.namespace, pod.labels) for t in pod.affinity
            )
            if not exist and not first:
                return AFFINITY
        for term in pod.anti_affinity:
            key = term.topology_key
            if key in node.labels and (key, node.labels[key]) in self.anti_domains:
                return ANTI_AFFINITY
        for key, value in self.existing_domains:
            if node.labels.get(key) == value:
                return EXISTING_ANTI
        return None
