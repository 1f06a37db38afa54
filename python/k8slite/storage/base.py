"""The Store protocol: compare-and-swap transactions on keys under one global revision."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol, Self

# Given the revision the transaction will commit at, the bytes to store (create, update)
# or, for delete, the object's final state that the DELETED event carries.
Encoder = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class Op:
    """One write inside a transaction."""

    verb: Literal["create", "update", "delete"]
    key: str
    encode: Encoder
    # update/delete: the revision the key must still have (None: whatever it has).
    expected_rv: int | None = None
    # create/update: seconds after which the key may disappear by itself (an etcd lease, as
    # upstream writes Events with --event-ttl); None: kept until deleted. RocksDB keeps it.
    ttl: int | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A committed change, delivered to subscribers in revision order."""

    type: Literal["ADDED", "MODIFIED", "DELETED"]
    key: str
    rv: int
    # The object's bytes; for DELETED, its final state, or b"" when that is not known (etcd:
    # a relist after the watch's history was compacted), so keep the last state seen.
    data: bytes


class StorageError(Exception):
    """Base of the errors a transaction raises; nothing of the transaction was written."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class KeyExists(StorageError):
    """create of a key that exists."""


class KeyNotFound(StorageError):
    """update or delete of a key that does not exist."""


class RevisionConflict(StorageError):
    """update or delete whose expected_rv is not the key's current revision."""

    def __init__(self, key: str, current_rv: int) -> None:
        super().__init__(key)
        self.current_rv = current_rv


class StoreUnavailable(Exception):
    """The store is not open, closed, or broken by a failed disk write.

    A transaction that raises it may or may not have been written: the outcome is unknown,
    as with an etcd request that timed out.
    """


Subscriber = Callable[[list[Event]], None]


class Store(Protocol):
    """What the API server needs from storage: embedded RocksDB, or etcd for HA.

    Revisions are global and increase with every committed transaction; all ops of one
    transaction share its revision (as in etcd, so etcd's revision can be ours). A
    transaction returns only once it is durable and every subscriber has seen its events,
    so a read from a subscriber's cache right after a write sees the write.
    """

    # `async with store:` opens it and runs its background tasks (the group committer) in
    # a nursery of its own; leaving the block stops them and closes it. Trio needs a
    # nursery for those tasks, which a bare open()/close() pair cannot provide.
    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...

    def revision(self) -> int:
        """The last committed revision."""

    async def sync(self) -> None:
        """Until the subscribers' caches hold every write committed before the call, by this
        process or any other: what a read of the latest state (a get, list or watch without
        a resourceVersion) waits for, as upstream's consistent reads do."""

    async def get(self, key: str) -> tuple[bytes, int] | None:
        """The stored bytes and revision of `key`, including writes not yet committed."""

    def scan(self, prefix: str) -> Iterable[tuple[str, bytes, int]]:
        """Every (key, bytes, rv) under prefix in key order; used to warm caches at start."""

    async def txn(self, ops: list[Op]) -> tuple[int, list[bytes]]:
        """Apply all ops atomically or none; returns the revision and each op's bytes."""

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call subscriber with each committed transaction's events, in revision order."""

    def health(self) -> str | None:
        """None while the store can serve, else why not (the API server's etcd check)."""


class BackgroundTasks:
    """The `async with` exit the stores share: their __aenter__ leaves in self._stack what
    leaving must undo (the nursery of their background tasks, the database or clients)."""

    _stack: AsyncExitStack | None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        assert stack is not None, "__aexit__ without __aenter__"
        try:
            return await stack.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # The background tasks never raise, so a group holding just the block's own
            # exception is the nursery's wrapping of it: let that propagate as raised.
            if exc is not None and group.exceptions == (exc,):
                return False
            raise
