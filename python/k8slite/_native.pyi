"""Typed face of the Rust core: JSON codec, selectors and the watch cache."""

from collections.abc import Mapping
from typing import Any

# ---------------------------------------------------------------- codec

class DecodeError(ValueError):
    """Malformed JSON; the message names the problem and the byte offset."""

def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON (no spaces), dict keys in insertion order.

    Accepts dict (str keys), list, tuple, str, int (any size), float (finite), bool and None.
    Raises TypeError for anything else and ValueError for NaN or infinity.
    """

def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON exactly: ints of any size stay ints, floats stay floats."""

# ------------------------------------------------------------ selectors

class SelectorError(ValueError):
    """A selector that does not parse; the message is upstream's wording."""

class LabelSelector:
    """A parsed label selector (`a=b,c!=d,e in (f,g),h notin (i),j,!k`)."""

    def __init__(self, text: str = "") -> None: ...
    @staticmethod
    def from_dict(selector: Mapping[str, Any] | None) -> LabelSelector:
        """From a metav1.LabelSelector dict (matchLabels, matchExpressions).

        None selects nothing; an empty dict selects everything, as upstream.
        """
    def matches(self, labels: Mapping[str, str] | None) -> bool: ...
    def is_empty(self) -> bool: ...
    def requirements(self) -> list[tuple[str, str, list[str]]]:
        """(key, operator, values); operators: =, !=, in, notin, exists, !."""
    def __str__(self) -> str: ...

class FieldSelector:
    """A parsed field selector (`metadata.name=x,spec.nodeName!=`)."""

    def __init__(self, text: str = "") -> None: ...
    def matches(self, fields: Mapping[str, str]) -> bool: ...
    def is_empty(self) -> bool: ...
    def requirements(self) -> list[tuple[str, str, str]]:
        """(field, operator, value); operators: = and !=."""
    def __str__(self) -> str: ...

# ---------------------------------------------------------- watch cache

class ExpiredError(Exception):
    """The requested resourceVersion is older than the event ring holds (410 Gone)."""

class WatchCache:
    """Current objects and a ring of recent events for one resource type.

    Keys are storage keys (`/registry/core/pods/<ns>/<name>`); values are the object's JSON
    bytes exactly as stored and served. Each entry also keeps its labels and the values of
    `field_paths` (dotted JSON paths such as `spec.nodeName`), extracted once at apply.
    """

    def __init__(self, field_paths: list[str], capacity: int = 10000) -> None: ...
    def apply(self, type: str, key: str, rv: int, data: bytes) -> None:
        """Record ADDED, MODIFIED or DELETED of `key` at `rv` (rvs increase; equal allowed)."""
    def advance(self, rv: int) -> None:
        """Note the store's revision when it moved on without touching this resource."""
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
    ) -> tuple[bytes, int, str | None, int]:
        """Matching objects in key order as one JSON array.

        Returns (items, count, last_key, remaining): items is b"[obj,obj,...]";
        last_key is the key of the last item when `limit` cut the list short (else None);
        remaining counts matching objects after it. `at_revision` answers as of that
        revision (ExpiredError when the ring no longer reaches back to it).
        """
    def initial_events(
        self,
        prefix: str,
        label: LabelSelector | None = None,
        field: FieldSelector | None = None,
    ) -> tuple[list[bytes], int]:
        """ADDED frames for every matching current object, and the revision they reflect."""
    def events_since(
        self,
        rv: int,
        prefix: str,
        label: LabelSelector | None = None,
        field: FieldSelector | None = None,
        max_events: int = 0,
    ) -> tuple[list[bytes], int]:
        """Watch frames for events after `rv`, and the rv to resume from.

        A frame is b'{"type":"MODIFIED","object":{...}}\\n'. With selectors an object that
        starts matching is ADDED and one that stops matching is DELETED (carrying its
        previous state with the event's resourceVersion), as upstream's watch cache does.
        Raises ExpiredError when `rv` < oldest().
        """
