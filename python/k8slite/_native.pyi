"""Typed face of the Rust core: JSON codec, selectors, the watch cache, the scheduler kernel."""

import builtins
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Self, TypeAlias, final

__all__ = [
    "DEFAULT_WEIGHTS",
    "FILTER_PLUGINS",
    "DecodeError",
    "ExpiredError",
    "FieldSelector",
    "LabelSelector",
    "NodeTable",
    "PodSpec",
    "ScheduleResult",
    "SelectorError",
    "WatchCache",
    "dumps",
    "loads",
]

# ---------------------------------------------------------------- codec

class DecodeError(ValueError):
    """Malformed JSON; the message names the problem and the byte offset.

    Worded like Go's encoding/json, e.g. "invalid character 'x' looking for beginning of
    value at byte 3" or "unexpected end of JSON input at byte 12".
    """

def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON (no spaces), dict keys in insertion order.

    Accepts dict (str keys), list, tuple, str, int (any size), float (finite), bool and None,
    and subclasses of these. Raises TypeError for anything else and ValueError for NaN or
    infinity, and for nesting deeper than 1000 levels (which also catches cycles).
    """

def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON exactly: ints of any size stay ints, floats stay floats.

    Raises DecodeError for malformed input, trailing garbage, invalid UTF-8 or nesting
    deeper than 1000 levels.
    """

# ------------------------------------------------------------ selectors

class SelectorError(ValueError):
    """A selector that does not parse; the message is upstream's wording."""

@final
class LabelSelector:
    """A parsed label selector (`a=b,c!=d,e in (f,g),h notin (i),j,!k`, also `x>1`, `x<1`).

    str() gives upstream's canonical form: requirements sorted by key, values sorted.
    """

    def __new__(cls, text: str = "") -> Self: ...
    @staticmethod
    def from_dict(selector: Mapping[str, Any] | None) -> LabelSelector:
        """From a metav1.LabelSelector dict (matchLabels, matchExpressions).

        None selects nothing; an empty dict selects everything, as upstream.
        """
    def matches(self, labels: Mapping[str, str] | None) -> bool: ...
    def is_empty(self) -> bool:
        """True when it selects everything (False for from_dict(None), which selects nothing)."""
    def requirements(self) -> list[tuple[str, str, list[str]]]:
        """(key, operator, values) sorted by key; values sorted.

        Operators: =, ==, !=, in, notin, exists, !, gt, lt.
        """

@final
class FieldSelector:
    """A parsed field selector (`metadata.name=x,spec.nodeName!=`); `\\`, `,`, `=` escaped.

    str() gives upstream's canonical form: terms sorted, values escaped.
    """

    def __new__(cls, text: str = "") -> Self: ...
    def matches(self, fields: Mapping[str, str]) -> bool:
        """A missing field counts as "" (so `spec.nodeName=` selects unscheduled pods)."""
    def is_empty(self) -> bool: ...
    def requirements(self) -> list[tuple[str, str, str]]:
        """(field, operator, value); operators: = and != (`==` reads as =)."""

# ---------------------------------------------------------- watch cache

class ExpiredError(Exception):
    """The requested resourceVersion is older than the event ring holds (410 Gone).

    The message is upstream's "too old resource version: <asked> (<oldest>)".
    """

@final
class WatchCache:
    """Current objects and a ring of recent events for one resource type.

    Keys are storage keys (`/registry/core/pods/<ns>/<name>`); values are the object's JSON
    bytes exactly as stored and served. Each entry also keeps its labels and the values of
    `field_paths` (dotted JSON paths such as `spec.nodeName`), extracted once at apply:
    strings as they are, booleans as "true"/"false", numbers as their JSON text, and null,
    objects, arrays and missing fields as "".

    Warm-up: `load()` every object of a store snapshot, then `advance(snapshot_revision)`.
    That first advance() ends warm-up and fixes where the cache starts: oldest() becomes
    that revision, so watches and LISTs can reach back to it but not earlier. Later
    advance() calls never move oldest(). (An apply() before any advance() also ends
    warm-up; oldest() then stays at the newest loaded rv, or 0.)
    """

    def __new__(
        cls,
        field_paths: list[str],
        capacity: int = 10000,
        window: float = 0.0,
        max_capacity: int = 0,
    ) -> Self:
        """At least `capacity` events are kept in the ring (at least 1); more while they are
        younger than `window` seconds, up to `max_capacity` (0: `capacity`)."""
    def load(self, key: str, rv: int, data: bytes) -> None:
        """Warm-up: store an object without an event. ValueError once warm-up has ended."""
    def apply(self, type: str, key: str, rv: int, data: bytes) -> None:
        """Record ADDED, MODIFIED or DELETED of `key` at `rv` (rvs increase; equal allowed).

        DELETED removes the key; `data` is the deleted object's final state. The type is
        normalised by presence (ADDED of a present key is recorded as MODIFIED, MODIFIED of an
        absent one as ADDED), so watch streams always agree with LIST. Apply every event of a
        store revision before waking watchers: a watcher resumed at rv N never sees N again.
        Raises ValueError for an rv below revision(), an unknown type or malformed JSON.
        """
    def advance(self, rv: int) -> None:
        """Note the store's revision when it moved on without touching this resource.

        The first call before any apply() ends warm-up (see the class docstring).
        """
    def revision(self) -> int: ...
    def oldest(self) -> int:
        """Events with rv > oldest() are all in the ring; older starts are Expired."""
    def get(self, key: str) -> tuple[bytes, int] | None: ...
    def __len__(self) -> int: ...
    def list(
        self,
        prefix: str,
        label: LabelSelector | None = None,
        field: FieldSelector | None = None,
        limit: int = 0,
        start_after: str | None = None,
        at_revision: int | None = None,
        envelope: Callable[[str | None, int], tuple[bytes, bytes]] | None = None,
    ) -> tuple[bytes, int, str | None, int]:
        """Matching objects in key order as one JSON array (built with the GIL released).

        With `envelope`, it is called with (last_key, remaining) once the page is chosen and
        the (head, tail) it returns are written around the array in the same buffer, so a
        whole list response is built with one copy of its items.

        Returns (items, count, last_key, remaining): items is b"[obj,obj,...]";
        last_key is the key of the last item when `limit` cut the list short (else None);
        remaining counts matching objects after it. `limit` 0 means all; `start_after` is
        exclusive (a continue token's key). `at_revision` answers as of that revision, by
        undoing newer ring events, so every page of a paginated LIST can be served from one
        snapshot (ExpiredError when at_revision < oldest(); at or past revision() means now).
        A field selector on a field not in `field_paths` raises SelectorError
        ("field label not supported: <field>"); the same holds for the methods below.
        """
    def initial_events(
        self,
        prefix: str,
        label: LabelSelector | None = None,
        field: FieldSelector | None = None,
    ) -> tuple[builtins.list[bytes], int]:
        """ADDED frames for every matching current object, and the revision they reflect."""
    def events_since(
        self,
        rv: int,
        prefix: str,
        label: LabelSelector | None = None,
        field: FieldSelector | None = None,
        max_events: int = 0,
    ) -> tuple[builtins.list[bytes], int]:
        """Watch frames for events after `rv`, and the rv to resume from.

        A frame is b'{"type":"MODIFIED","object":{...}}\\n'; frames are shared bytes objects
        (every watcher gets the same one). With selectors an object that starts matching is
        ADDED and one that stops matching is DELETED (carrying its previous state with the
        event's resourceVersion), as upstream's watch cache does; a DELETED event is sent
        when the object matched before it. The resume rv is that of the last event examined,
        or max(revision(), rv) when caught up. `max_events` (0 = no limit) is a soft cap:
        the events of one revision are never split, so a page may exceed it.
        Raises ExpiredError when `rv` < oldest().
        """

# ------------------------------------------------------------- scheduler kernel

# Defaults written `...` below are empty ("", (), and (0, 0) for `nonzero`): pyo3 shows a
# default that is not a Python literal as `...`, and the stub says the same so stubtest agrees.

# (key, operator, values) of a node selector requirement or a label selector requirement.
_Requirement: TypeAlias = tuple[str, str, Sequence[str]]
# A NodeSelectorTerm: (matchExpressions, matchFields).
_NodeSelectorTerm: TypeAlias = tuple[Sequence[_Requirement], Sequence[_Requirement]]
# A required pod (anti-)affinity term: (label selector as requirements, or None to select
# nothing; namespaces, or None for all of them; topology key).
_PodAffinityTerm: TypeAlias = tuple[Sequence[_Requirement] | None, Sequence[str] | None, str]

# The filter plugins in upstream's order (a node reports the first that rejects it).
FILTER_PLUGINS: Final[tuple[str, ...]]
# The score plugins in order, with the default profile's weights (upstream's; SelectorSpread
# takes PodTopologySpread's 2).
DEFAULT_WEIGHTS: Final[tuple[tuple[str, int], ...]]

@final
class PodSpec:
    """What the kernel needs of one pod, built once per pod version (see
    k8slite.scheduler.plugins.pod_spec). Quantities are integers: cpu in millicores, memory,
    ephemeral-storage and extended resources in units.
    """

    def __new__(
        cls,
        *,
        namespace: str,
        labels: Mapping[str, str] | None = None,
        node_name: str = ...,
        requests: Mapping[str, int] | None = None,
        nonzero: tuple[int, int] = ...,
        node_selector: Mapping[str, str] | None = None,
        required: Sequence[_NodeSelectorTerm] | None = None,
        preferred: Sequence[tuple[int, _NodeSelectorTerm]] = ...,
        tolerations: Sequence[tuple[str, str, str, str]] = ...,
        ports: Sequence[tuple[str, str, int]] = ...,
        images: Sequence[str] = ...,
        spread_key: str = ...,
        affinity: Sequence[_PodAffinityTerm] = ...,
        anti_affinity: Sequence[_PodAffinityTerm] = ...,
    ) -> Self:
        """`nonzero` is (cpu, memory) as the scorers count them (upstream's 100m and 200Mi
        for a container without requests); `required` None means no required node affinity
        (an empty list matches no node); `tolerations` are (key, operator, value, effect);
        `ports` are (hostIP, protocol, hostPort); `images` one per container, normalised.
        ValueError for more than 51 extended resources.
        """
    @property
    def namespace(self) -> str: ...
    @property
    def requests(self) -> dict[str, int]:
        """cpu (millicores), memory, ephemeral-storage, then extended resources."""

@final
class ScheduleResult:
    """One schedule() decision: the node (None if none fits) and why the others did not."""

    node: str | None
    score: int
    feasible: int
    nodes: int
    # Upstream's reason histogram: (reason, nodes), e.g. ("Insufficient cpu", 2).
    reasons: list[tuple[str, int]]
    # Nodes whose rejection preemption could not fix (UnschedulableAndUnresolvable).
    unresolvable: int
    # Filter plugins that rejected at least one node.
    rejected_by: list[str]
    # Set when NodeAffinity's PreFilter left no node to try ("pod affinity terms conflict").
    prefilter: str | None

@final
class NodeTable:
    """The columnar node table: allocatable and requested resources, labels, taints, host
    ports, images and spread counts per node, updated incrementally from informers; filters
    and scores every node for a pod in one call with the GIL released.

    Filters, in upstream's order (a node reports the first that rejects it):
    NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit,
    InterPodAffinity. Scores (normalised 0..100, weighted): NodeResourcesFit (LeastAllocated
    or MostAllocated), NodeResourcesBalancedAllocation, ImageLocality, NodeAffinity,
    TaintToleration, SelectorSpread.
    """

    def __new__(
        cls,
        *,
        weights: Mapping[str, int] | None = None,
        strategy: str = "LeastAllocated",
        resources: Sequence[tuple[str, int]] | None = None,
        balanced_resources: Sequence[str] | None = None,
        disabled: Sequence[str] = ...,
    ) -> Self:
        """`weights` overrides the default profile's (Fit 1, BalancedAllocation 1,
        ImageLocality 1, NodeAffinity 2, TaintToleration 3, SelectorSpread 2; 0 disables);
        `resources` are NodeResourcesFit's scored (name, weight) pairs and
        `balanced_resources` BalancedAllocation's (cpu, memory, ephemeral-storage);
        `disabled` names filter (or score) plugins to switch off. ValueError otherwise.
        """
    def set_node(
        self,
        name: str,
        *,
        allocatable: Mapping[str, int],
        labels: Mapping[str, str] | None = None,
        taints: Sequence[tuple[str, str, str]] = ...,
        unschedulable: bool = False,
        images: Sequence[tuple[Sequence[str], int]] = ...,
    ) -> None:
        """Add or replace a node (pods already accounted to it stay). `allocatable` has cpu
        (millicores), memory, ephemeral-storage, pods and extended resources; `taints` are
        (key, value, effect); `images` (names, sizeBytes)."""
    def remove_node(self, name: str) -> bool:
        """Forget a node; pods still accounted to it wait for it (not a candidate meanwhile)."""
    def add_pod(self, key: str, node: str, spec: PodSpec) -> None:
        """Account a bound or assumed pod to `node`, replacing an earlier account of `key`."""
    def remove_pod(self, key: str) -> bool:
        """Undo add_pod; False if `key` was not accounted."""
    def pod_node(self, key: str) -> str | None: ...
    def pod_count(self) -> int: ...
    def node_info(self, name: str) -> dict[str, Any] | None:
        """A node's accounting: present, allocatable, requested, nonzero_requested, pods,
        ports."""
    def schedule(self, pod: PodSpec, seed: int | None = None) -> ScheduleResult:
        """Filter and score every node and pick the best; ties are broken at random
        (reproducibly when `seed` is given). The GIL is released throughout."""
    def evaluate(self, pod: PodSpec) -> list[tuple[str, list[str], bool, dict[str, int] | None]]:
        """Every node's verdict: (name, reasons, unresolvable, scores). Reasons are empty for
        a feasible node, whose scores map each enabled score plugin to its normalised,
        unweighted score."""
    @property
    def weights(self) -> dict[str, int]: ...
    def __len__(self) -> int: ...
    def __contains__(self, name: str, /) -> bool: ...
