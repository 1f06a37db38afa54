"""The scheduling profile (plugins, weights, scoring strategy) and the native kernel's inputs."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from k8slite import _native
from k8slite._native import FILTER_PLUGINS, LabelSelector, NodeTable, PodSpec, SelectorError
from k8slite.api.quantity import QuantityError, parse_quantity
from k8slite.component.objects import Obj, controller_ref, labels_of, name_of, namespace_of

DEFAULT_SCHEDULER = "default-scheduler"
# The kernel owns the plugin names and upstream's default profile weights; SelectorSpread
# stands in for PodTopologySpread's default spreading. InterPodAffinity only filters here
# (required terms; no preferred ones).
DEFAULT_WEIGHTS: dict[str, int] = dict(_native.DEFAULT_WEIGHTS)
SCORE_PLUGINS = tuple(DEFAULT_WEIGHTS)
SCORING_STRATEGIES = ("LeastAllocated", "MostAllocated")

# What the scorers assume for a container that requests no cpu or memory (upstream's
# DefaultMilliCPURequest and DefaultMemoryRequest).
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024
_BASE = ("cpu", "memory", "ephemeral-storage")
_POD_LEVEL = ("cpu", "memory")


class ConfigError(ValueError):
    """A scheduler configuration file that cannot be used; the message says why."""


@dataclass(frozen=True)
class Profile:
    """One scheduling profile: whose pods it takes and how it filters and scores."""

    scheduler_name: str = DEFAULT_SCHEDULER
    weights: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    strategy: str = "LeastAllocated"
    fit_resources: tuple[tuple[str, int], ...] = (("cpu", 1), ("memory", 1))
    balanced_resources: tuple[str, ...] = ("cpu", "memory")
    disabled: frozenset[str] = frozenset()

    def node_table(self) -> NodeTable:
        """A fresh native table configured for this profile."""
        return NodeTable(
            weights=dict(self.weights),
            strategy=self.strategy,
            resources=list(self.fit_resources),
            balanced_resources=list(self.balanced_resources),
            disabled=sorted(self.disabled),
        )


def load_profile(path: Path) -> Profile:
    """A KubeSchedulerConfiguration file's (first) profile.

    Understood: profiles[0].schedulerName; plugins.{multiPoint,filter,score}.{enabled,disabled}
    (names and score weights; "*" disables all); pluginConfig NodeResourcesFit
    scoringStrategy (type LeastAllocated or MostAllocated, resources) and
    NodeResourcesBalancedAllocation resources.
    """
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from e
    if doc.get("kind") != "KubeSchedulerConfiguration":
        raise ConfigError(f"{path}: kind must be KubeSchedulerConfiguration")
    profiles = doc.get("profiles") or [{}]
    return profile_from_dict(profiles[0])


def profile_from_dict(p: Obj) -> Profile:
    weights = dict(DEFAULT_WEIGHTS)
    filters_off: set[str] = set()
    known = set(FILTER_PLUGINS) | set(SCORE_PLUGINS)
    plugins = p.get("plugins") or {}
    # Which plugins each extension point's lists speak for.
    points = {"multiPoint": known, "filter": set(FILTER_PLUGINS), "score": set(SCORE_PLUGINS)}
    for point, scope in points.items():
        sets = plugins.get(point) or {}
        for entry in sets.get("disabled") or ():
            name = entry.get("name", "")
            if name != "*" and name not in known:
                raise ConfigError(f"unknown plugin {name!r}")
            for target in scope if name == "*" else {name} & scope:
                if target in FILTER_PLUGINS and point != "score":
                    filters_off.add(target)
                if target in SCORE_PLUGINS and point != "filter":
                    weights[target] = 0
        for entry in sets.get("enabled") or ():
            name = entry.get("name", "")
            if name not in known:
                raise ConfigError(f"unknown plugin {name!r}")
            if point != "score":
                filters_off.discard(name)
            if name in SCORE_PLUGINS and point != "filter":
                weights[name] = int(entry.get("weight") or DEFAULT_WEIGHTS[name])
    strategy = "LeastAllocated"
    fit_resources: tuple[tuple[str, int], ...] = (("cpu", 1), ("memory", 1))
    balanced: tuple[str, ...] = ("cpu", "memory")
    for entry in p.get("pluginConfig") or ():
        args = entry.get("args") or {}
        if entry.get("name") == "NodeResourcesFit":
            scoring = args.get("scoringStrategy") or {}
            strategy = scoring.get("type", strategy)
            if strategy not in SCORING_STRATEGIES:
                raise ConfigError(f"unsupported scoringStrategy type {strategy!r}")
            if scoring.get("resources"):
                fit_resources = tuple(
                    (r["name"], int(r.get("weight", 1))) for r in scoring["resources"]
                )
        elif entry.get("name") == "NodeResourcesBalancedAllocation" and args.get("resources"):
            balanced = tuple(r["name"] for r in args["resources"])
    for name, _ in fit_resources:
        if name not in _BASE:
            raise ConfigError(f"unsupported scoring resource {name!r}")
    return Profile(
        scheduler_name=p.get("schedulerName") or DEFAULT_SCHEDULER,
        weights=weights,
        strategy=strategy,
        fit_resources=fit_resources,
        balanced_resources=balanced,
        disabled=frozenset(filters_off),
    )


# --------------------------------------------------------------------------- resources


def is_scalar_resource(name: str) -> bool:
    """Extended, prefixed-native, hugepages and attachable-volume resources (upstream's
    IsScalarResourceName); other names are not counted."""
    return "/" in name or name.startswith(("hugepages-", "attachable-volumes-"))


def _counted(name: str) -> bool:
    return name in _BASE or is_scalar_resource(name)


# Quantities are summed as integers of nano-units: exact for every suffix down to "n" (the
# finest a quantity keeps), and far cheaper than Fractions on the per-pod path.
_NANO = 10**9


@functools.lru_cache(maxsize=4096)
def _nano_of(value: str) -> int | None:
    try:
        return math.ceil(parse_quantity(value) * _NANO)
    except QuantityError:
        return None  # validation keeps these out; a stray one must not stop scheduling


def _quantities(resources: Mapping[str, Any] | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, value in (resources or {}).items():
        if _counted(name):
            nano = _nano_of(value if isinstance(value, str) else str(value))
            if nano is not None:
                out[name] = nano
    return out


def _add(total: dict[str, int], more: Mapping[str, int]) -> None:
    for name, value in more.items():
        total[name] = total.get(name, 0) + value


def _max(total: dict[str, int], other: Mapping[str, int]) -> None:
    for name, value in other.items():
        if value > total.get(name, 0):
            total[name] = value


def _aggregate(spec: Obj, defaults: Mapping[str, int]) -> dict[str, int]:
    """Upstream's PodRequests: app containers and running sidecars add up; each ordinary init
    container runs alone beside the sidecars started before it; the pod needs the larger."""

    def requests(c: Obj) -> dict[str, int]:
        got = _quantities((c.get("resources") or {}).get("requests"))
        for name, value in defaults.items():
            got.setdefault(name, value)
        return got

    total: dict[str, int] = {}
    for c in spec.get("containers") or ():
        _add(total, requests(c))
    sidecars: dict[str, int] = {}
    init_peak: dict[str, int] = {}
    for c in spec.get("initContainers") or ():
        own = requests(c)
        if c.get("restartPolicy") == "Always":
            _add(total, own)
            _add(sidecars, own)
            _max(init_peak, sidecars)
        else:
            running = dict(sidecars)
            _add(running, own)
            _max(init_peak, running)
    _max(total, init_peak)
    pod_level = _quantities((spec.get("resources") or {}).get("requests"))
    for name in _POD_LEVEL:
        if name in pod_level:
            total[name] = pod_level[name]
    _add(total, _quantities(spec.get("overhead")))
    return total


def to_units(nanos: Mapping[str, int]) -> dict[str, int]:
    """cpu in millicores, everything else in units, rounded up as upstream rounds."""
    return {name: -(-q // 10**6) if name == "cpu" else -(-q // _NANO) for name, q in nanos.items()}


_DEFAULTS = {"cpu": DEFAULT_MILLI_CPU * 10**6, "memory": DEFAULT_MEMORY * _NANO}


def pod_requests(spec: Obj) -> tuple[dict[str, int], tuple[int, int]]:
    """(requests for the filter, (cpu, memory) for scoring with upstream's defaults)."""
    requests = to_units(_aggregate(spec, {}))
    nonzero = to_units(_aggregate(spec, _DEFAULTS))
    return requests, (nonzero.get("cpu", 0), nonzero.get("memory", 0))


# ------------------------------------------------------------------------ pod summary


def _exprs(items: Iterable[Obj] | None) -> list[tuple[str, str, list[str]]]:
    return [
        (str(e.get("key", "")), str(e.get("operator", "")), [str(v) for v in e.get("values") or ()])
        for e in items or ()
    ]


def _node_term(term: Obj | None) -> tuple[list[Any], list[Any]]:
    term = term or {}
    return _exprs(term.get("matchExpressions")), _exprs(term.get("matchFields"))


def _selector(
    selector: Obj | None,
    labels: Mapping[str, str],
    match_keys: Iterable[str],
    mismatch_keys: Iterable[str],
) -> list[tuple[str, str, list[str]]] | None:
    """A metav1.LabelSelector as requirements (None selects nothing), with matchLabelKeys and
    mismatchLabelKeys folded in from the pod's own labels as the API server does."""
    if selector is None:
        return None
    reqs = [(str(k), "In", [str(v)]) for k, v in (selector.get("matchLabels") or {}).items()]
    reqs += _exprs(selector.get("matchExpressions"))
    reqs += [(k, "In", [labels[k]]) for k in match_keys if k in labels]
    reqs += [(k, "NotIn", [labels[k]]) for k in mismatch_keys if k in labels]
    return reqs


NamespaceLister = Callable[[], Iterable[Obj]]


def _namespaces(term: Obj, own: str, namespaces: NamespaceLister | None) -> list[str] | None:
    """The namespaces a pod affinity term covers (None: all of them)."""
    names = [str(n) for n in term.get("namespaces") or ()]
    ns_selector = term.get("namespaceSelector")
    if ns_selector is None:
        return names or [own]
    try:
        selector = LabelSelector.from_dict(ns_selector)
    except SelectorError:
        return names
    if selector.is_empty():
        return None
    for ns in namespaces() if namespaces is not None else ():
        if selector.matches(labels_of(ns)):
            names.append(name_of(ns))
    return names


def _pod_terms(
    terms: Iterable[Obj] | None,
    namespace: str,
    labels: Mapping[str, str],
    namespaces: NamespaceLister | None,
) -> list[Any]:
    out = []
    for term in terms or ():
        selector = _selector(
            term.get("labelSelector"),
            labels,
            term.get("matchLabelKeys") or (),
            term.get("mismatchLabelKeys") or (),
        )
        out.append(
            (selector, _namespaces(term, namespace, namespaces), str(term.get("topologyKey", "")))
        )
    return out


def normalized_image(name: str) -> str:
    """An image reference with its implied tag (":latest" when none is given)."""
    return name if name.rfind(":") > name.rfind("/") else name + ":latest"


def spread_key(pod: Obj) -> str:
    """Pods owned by the same controller (ReplicaSet, StatefulSet, ...) spread together."""
    ref = controller_ref(pod)
    return f"{ref.get('kind', '')}/{ref['uid']}" if ref is not None and ref.get("uid") else ""


def host_ports(spec: Obj) -> list[tuple[str, str, int]]:
    """Host ports the pod's containers bind; with hostNetwork a port is its container port."""
    out = []
    host_network = bool(spec.get("hostNetwork"))
    for c in spec.get("containers") or ():
        for p in c.get("ports") or ():
            port = p.get("hostPort") or (p.get("containerPort") if host_network else 0)
            if isinstance(port, int) and port > 0:
                out.append((str(p.get("hostIP") or ""), str(p.get("protocol") or "TCP"), port))
    return out


def combine_terms(required: list[Obj] | None, extra: list[list[Obj]]) -> list[Obj] | None:
    """ANDs lists of ORed node-selector terms into one ORed list (a cross product)."""
    result = required
    for terms in extra:
        if result is None:
            result = list(terms)
            continue
        result = [
            {
                "matchExpressions": [
                    *(a.get("matchExpressions") or ()),
                    *(b.get("matchExpressions") or ()),
                ],
                "matchFields": [*(a.get("matchFields") or ()), *(b.get("matchFields") or ())],
            }
            for a in result
            for b in terms
        ]
    return result


def pod_spec(
    pod: Obj,
    namespaces: NamespaceLister | None = None,
    volume_terms: list[list[Obj]] | None = None,
) -> PodSpec:
    """The kernel's summary of a pod, built once per pod version; volume_terms are the node
    constraints of its volumes (term lists ANDed with the pod's own required terms)."""
    spec = pod.get("spec") or {}
    namespace = namespace_of(pod) or "default"
    labels = {str(k): str(v) for k, v in labels_of(pod).items()}
    requests, nonzero = pod_requests(spec)
    affinity = spec.get("affinity") or {}
    node_affinity = affinity.get("nodeAffinity") or {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    required_terms = None if required is None else list(required.get("nodeSelectorTerms") or ())
    if volume_terms:
        required_terms = combine_terms(required_terms, volume_terms)
    preferred = [
        (int(p.get("weight") or 0), _node_term(p.get("preference")))
        for p in node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or ()
    ]
    pod_affinity = affinity.get("podAffinity") or {}
    pod_anti = affinity.get("podAntiAffinity") or {}
    containers = [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]
    return PodSpec(
        namespace=namespace,
        labels=labels,
        node_name=str(spec.get("nodeName") or ""),
        requests=requests,
        nonzero=nonzero,
        node_selector={str(k): str(v) for k, v in (spec.get("nodeSelector") or {}).items()},
        required=None if required_terms is None else [_node_term(t) for t in required_terms],
        preferred=preferred,
        tolerations=[
            (
                str(t.get("key") or ""),
                str(t.get("operator") or ""),
                str(t.get("value") or ""),
                str(t.get("effect") or ""),
            )
            for t in spec.get("tolerations") or ()
        ],
        ports=host_ports(spec),
        images=[normalized_image(str(c.get("image") or "")) for c in containers],
        spread_key=spread_key(pod),
        affinity=_pod_terms(
            pod_affinity.get("requiredDuringSchedulingIgnoredDuringExecution"),
            namespace,
            labels,
            namespaces,
        ),
        anti_affinity=_pod_terms(
            pod_anti.get("requiredDuringSchedulingIgnoredDuringExecution"),
            namespace,
            labels,
            namespaces,
        ),
    )


# ----------------------------------------------------------------------- node summary


def node_args(node: Obj) -> dict[str, Any]:
    """Keyword arguments of NodeTable.set_node for a Node object."""
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    quantities = {}
    for name, value in (status.get("allocatable") or {}).items():
        if _counted(name) or name == "pods":
            nano = _nano_of(value if isinstance(value, str) else str(value))
            if nano is not None:
                quantities[name] = nano
    return {
        "allocatable": to_units(quantities),
        "labels": {str(k): str(v) for k, v in labels_of(node).items()},
        "taints": [
            (str(t.get("key") or ""), str(t.get("value") or ""), str(t.get("effect") or ""))
            for t in spec.get("taints") or ()
        ],
        "unschedulable": bool(spec.get("unschedulable")),
        "images": [
            ([str(n) for n in image.get("names") or ()], int(image.get("sizeBytes") or 0))
            for image in status.get("images") or ()
        ],
    }
