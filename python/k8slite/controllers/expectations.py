"""Expectations: what a controller has asked for and not yet seen through its informers.

client-go's UIDTrackingControllerExpectations. A controller that created 3 pods must not
count pods again until its informer has shown it all 3 (or the record expired), or a slow
watch would make it create them twice. Deletions are tracked by pod key so that a pod seen
deleted twice (terminating, then gone) is counted once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# After this long without being satisfied a record is ignored: a lost watch event must not
# stop a controller for good (upstream's ExpectationsTimeout).
EXPECTATIONS_TTL = 300.0


@dataclass
class _Record:
    add: int = 0
    delete: int = 0
    timestamp: float = 0.0
    deleting: set[str] = field(default_factory=set)


class Expectations:
    """Pending creations and deletions per controller key."""

    def __init__(
        self, ttl: float = EXPECTATIONS_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self._clock = clock
        self._records: dict[str, _Record] = {}

    def satisfied(self, key: str) -> bool:
        """True when nothing is pending (or the record is too old to trust)."""
        record = self._records.get(key)
        if record is None:
            return True
        if record.add <= 0 and record.delete <= 0:
            return True
        return self._clock() - record.timestamp > self.ttl

    def expect_creations(self, key: str, count: int) -> None:
        self._records[key] = _Record(add=count, timestamp=self._clock())

    def expect_deletions(self, key: str, pod_keys: Iterable[str]) -> None:
        keys = set(pod_keys)
        self._records[key] = _Record(delete=len(keys), timestamp=self._clock(), deleting=keys)

    def creation_observed(self, key: str) -> None:
        record = self._records.get(key)
        if record is not None:
            record.add -= 1

    def deletion_observed(self, key: str, pod_key: str) -> None:
        record = self._records.get(key)
        if record is not None and pod_key in record.deleting:
            record.deleting.discard(pod_key)
            record.delete -= 1

    def delete(self, key: str) -> None:
        self._records.pop(key, None)

    def pending(self, key: str) -> tuple[int, int]:
        record = self._records.get(key)
        return (record.add, record.delete) if record is not None else (0, 0)
