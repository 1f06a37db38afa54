"""Pure-Python watch cache with the native WatchCache's semantics: the oracle for its tests.

It keeps the whole history and answers "as of revision R" by replaying history forward,
where the native cache undoes its ring backwards, so the two share no algorithm.
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass
from typing import Any

from tests.reference.selectors import FieldSelector, LabelSelector, SelectorError


class ExpiredError(Exception):
    """The requested resourceVersion is older than the ring reaches."""


@dataclass(frozen=True)
class Event:
    rv: int
    type: str  # ADDED, MODIFIED or DELETED, after normalisation
    key: str
    data: bytes  # the new object; for DELETED its final state
    prev: bytes | None  # the object before the event


def frame(kind: str, data: bytes) -> bytes:
    return b'{"type":"' + kind.encode() + b'","object":' + data + b"}\n"


class WatchCache:
    def __init__(self, field_paths: list[str], capacity: int = 10000) -> None:
        self.field_paths = list(field_paths)
        self.capacity = capacity
        self.base: dict[str, tuple[int, bytes]] = {}  # what load() filled in
        self.history: list[Event] = []
        self.current: dict[str, tuple[int, bytes]] = {}
        self.rev = 0
        self.start = 0  # oldest() while no event has left the ring
        self.warming = True  # until the first advance() or apply()

    # ------------------------------------------------------------------- writing

    def load(self, key: str, rv: int, data: bytes) -> None:
        if not self.warming:
            raise ValueError("load() after warm-up")
        self.base[key] = self.current[key] = (rv, data)
        self.rev = max(self.rev, rv)
        self.start = max(self.start, rv)

    def apply(self, type: str, key: str, rv: int, data: bytes) -> None:
        if rv < self.rev:
            raise ValueError("resourceVersion went backwards")
        prev = self.current.get(key)
        if type == "DELETED":
            kind = "DELETED"
            self.current.pop(key, None)
        else:
            kind = "MODIFIED" if prev is not None else "ADDED"
            self.current[key] = (rv, data)
        self.history.append(Event(rv, kind, key, data, prev[1] if prev else None))
        self.rev = rv
        self.warming = False

    def advance(self, rv: int) -> None:
        self.rev = max(self.rev, rv)
        if self.warming:
            # The snapshot is as of rv: nothing earlier can be replayed.
            self.warming = False
            self.start = self.rev

    # ------------------------------------------------------------------- reading

    def revision(self) -> int:
        return self.rev

    def ring(self) -> builtins.list[Event]:
        return self.history[-self.capacity :]

    def oldest(self) -> int:
        evicted = self.history[: -self.capacity] if len(self.history) > self.capacity else []
        return evicted[-1].rv if evicted else self.start

    def get(self, key: str) -> tuple[bytes, int] | None:
        found = self.current.get(key)
        return (found[1], found[0]) if found else None

    def __len__(self) -> int:
        return len(self.current)

    def state_at(self, revision: int) -> dict[str, tuple[int, bytes]]:
        """Replays history from the loaded snapshot up to `revision`."""
        state = dict(self.base)
        for e in self.history:
            if e.rv > revision:
                break
            if e.type == "DELETED":
                state.pop(e.key, None)
            else:
                state[e.key] = (e.rv, e.data)
        return state

    def list(
        self,
        prefix: str,
        label: LabelSelector | None = None,
        field: FieldSelector | None = None,
        limit: int = 0,
        start_after: str | None = None,
        at_revision: int | None = None,
    ) -> tuple[bytes, int, str | None, int]:
        if at_revision is not None and at_revision < self.oldest():
            raise ExpiredError(at_revision)
        state = self.current if at_revision is None else self.state_at(at_revision)
        keys = sorted(k for k in state if k.startswith(prefix))
        if start_after is not None:
            keys = [k for k in keys if k > start_after]
        hits = [k for k in keys if self.matches(state[k][1], label, field)]
        page = hits if limit == 0 else hits[:limit]
        rest = len(hits) - len(page)
        body = b"[" + b",".join(state[k][1] for k in page) + b"]"
        return body, len(page), (page[-1] if rest else None), rest

    def initial_events(
        self, prefix: str, label: LabelSelector | None = None, field: FieldSelector | None = None
    ) -> tuple[builtins.list[bytes], int]:
        keys = sorted(k for k in self.current if k.startswith(prefix))
        hits = [k for k in keys if self.matches(self.current[k][1], label, field)]
        return [frame("ADDED", self.current[k][1]) for k in hits], self.rev

    def events_since(
        self,
        rv: int,
        prefix: str,
        label: LabelSelector | None = None,
        field: FieldSelector | None = None,
        max_events: int = 0,
    ) -> tuple[builtins.list[bytes], int]:
        if rv < self.oldest():
            raise ExpiredError(rv)
        self.check_fields(field)
        frames: builtins.list[bytes] = []
        last_rv = rv
        for e in (e for e in self.ring() if e.rv > rv):
            if max_events and len(frames) >= max_events and e.rv != last_rv:
                return frames, last_rv
            last_rv = e.rv
            if e.key.startswith(prefix):
                out = self.transition(e, label, field)
                if out is not None:
                    frames.append(out)
        return frames, max(self.rev, rv)

    # --------------------------------------------------------------- selectors

    def transition(
        self, e: Event, label: LabelSelector | None, field: FieldSelector | None
    ) -> bytes | None:
        now = e.type != "DELETED" and self.matches(e.data, label, field)
        if e.prev is not None:
            before = self.matches(e.prev, label, field)
        else:
            before = e.type == "DELETED" and self.matches(e.data, label, field)
        if now and not before:
            return frame("ADDED", e.data)
        if now and before:
            return frame("MODIFIED", e.data)
        if before and e.type == "DELETED":
            return frame("DELETED", e.data)
        if before:
            assert e.prev is not None
            obj = json.loads(e.prev)
            obj.setdefault("metadata", {})["resourceVersion"] = str(e.rv)
            return frame("DELETED", json.dumps(obj, separators=(",", ":")).encode())
        return None

    def check_fields(self, field: FieldSelector | None) -> None:
        for name, _, _ in field.requirements() if field else []:
            if name not in self.field_paths:
                raise SelectorError(f"field label not supported: {name}")

    def matches(
        self, data: bytes, label: LabelSelector | None, field: FieldSelector | None
    ) -> bool:
        self.check_fields(field)
        obj = json.loads(data)
        labels = {
            k: v
            for k, v in (obj.get("metadata", {}).get("labels") or {}).items()
            if isinstance(v, str)
        }
        if label is not None and not label.matches(labels):
            return False
        fields = {path: field_text(obj, path) for path in self.field_paths}
        return field is None or field.matches(fields)


def field_text(obj: Any, path: str) -> str:
    """A field as a field selector compares it: missing, null and containers read as ""."""
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return ""
        obj = obj[part]
    if isinstance(obj, bool):
        return "true" if obj else "false"
    if isinstance(obj, str):
        return obj
    if isinstance(obj, int | float):
        return json.dumps(obj)
    return ""
