"""The Store on embedded RocksDB: CAS transactions, group-committed with fsync."""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import trio
from rocksdict import (
    BlockBasedOptions,
    Cache,
    ColumnFamily,
    DBCompressionType,
    DBRecoveryMode,
    Options,
    Rdict,
    WriteBatch,
    WriteOptions,
)

from k8slite.storage.base import (
    BackgroundTasks,
    Event,
    KeyExists,
    KeyNotFound,
    Op,
    RevisionConflict,
    StoreUnavailable,
    Subscriber,
)

log = logging.getLogger(__name__)

# Layout. Column family "default": storage key -> 8-byte big-endian revision + the JSON
# bytes, so a key's bytes and revision can never disagree and one read returns both.
# Column family "meta": b"revision" -> the global revision, written in every group's batch.
_RV = struct.Struct(">Q")
_META_CF = "meta"
_REVISION_KEY = b"revision"
# Changes whenever a column family switches memtables (and so RocksDB switches WAL files).
_SUPER_VERSION = "rocksdb.current-super-version-number"

_EVENT_TYPES: dict[str, Literal["ADDED", "MODIFIED", "DELETED"]] = {
    "create": "ADDED",
    "update": "MODIFIED",
    "delete": "DELETED",
}


def _options() -> Options:
    """RocksDB options for many small JSON values, point reads and prefix scans."""
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    # After kill -9 the WAL may end in a torn, never-acknowledged batch: drop it and open,
    # keeping every complete (hence every acknowledged) batch before it.
    opts.set_wal_recovery_mode(DBRecoveryMode.point_in_time())
    # Two cores: one flush and one compaction at a time, never starving the API server.
    opts.set_max_background_jobs(2)
    # JSON compresses several-fold; LZ4 costs little CPU on flush and read.
    opts.set_compression_type(DBCompressionType.lz4())
    opts.set_level_compaction_dynamic_level_bytes(True)
    # The meta column family holds one key, so its memtable rarely fills; without a cap it
    # would pin old WAL files, wasting disk and lengthening recovery at open.
    opts.set_max_total_wal_size(64 << 20)
    opts.set_keep_log_file_num(3)
    # No bloom filter: get() never asks RocksDB for a key the in-memory index lacks.
    table = BlockBasedOptions()
    table.set_block_cache(Cache(64 << 20))
    opts.set_block_based_table_factory(table)
    return opts


def _unsynced_writes() -> WriteOptions:
    # The WAL is fdatasync'ed by _sync_wal after the write, not by RocksDB during it:
    # rocksdict holds the GIL for all of a write, so a synced write would stall the API
    # server's event loop for the whole fsync (milliseconds), once per group.
    write = WriteOptions()
    write.sync = False
    return write


@dataclass(slots=True)
class _Commit:
    """A transaction staged in memory, waiting for its group's synced write."""

    rv: int
    events: list[Event]
    done: trio.Event = field(default_factory=trio.Event)
    durable: bool = False


class RocksStore(BackgroundTasks):
    """A Store on RocksDB at `path`; use as `async with RocksStore(path) as store:`.

    Transactions are checked against an in-memory index (key -> revision, staged writes
    included), staged, and queued; one committer task writes every queued transaction in
    a single RocksDB write batch, fdatasyncs the WAL, feeds subscribers (each transaction
    its own revision and events, in order), then wakes the callers. A caller cancelled
    while waiting does not undo its transaction: it may still commit, as in etcd.

    Durability: RocksDB appends the batch to its WAL (in the OS page cache) while holding
    the GIL; the fdatasync of every WAL file then runs in a worker thread without it, so
    the event loop serves requests (and stages the next group) while the disk flushes.
    A WAL file that RocksDB has since deleted held only data already in synced SST files.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.synced_writes = 0  # group commits so far; fewer than txns when grouping works
        self._db: Rdict | None = None
        self._meta: ColumnFamily | None = None  # where the revision key lives
        self._write_options = _unsynced_writes()
        self._meta_db: Rdict | None = None  # the meta column family, for its properties
        self._wal_fd: int | None = None  # our fd on the WAL file RocksDB appends to
        self._wal_versions: tuple[int | None, ...] = ()  # see _sync_wal
        self._dir_fd: int | None = None
        self._revs: dict[str, int] = {}  # every live key's revision, staged writes included
        self._staged: dict[str, tuple[bytes | None, int]] = {}  # not yet durable; None: deleted
        self._batch = WriteBatch(raw_mode=True)
        self._queue: list[_Commit] = []
        self._queued = trio.Event()
        self._next_rv = 1
        self._committed_rv = 0
        self._subscribers: list[Subscriber] = []
        self._down: str | None = "not open"
        self._cause: BaseException | None = None
        self._stack: AsyncExitStack | None = None

    # Lifecycle.

    async def __aenter__(self) -> Self:
        if self._down != "not open":
            raise RuntimeError("a RocksStore opens once; make a new one to reopen")
        await trio.to_thread.run_sync(self._load)
        async with AsyncExitStack() as stack:
            stack.push_async_callback(self._close_db)
            nursery = await stack.enter_async_context(trio.open_nursery())
            nursery.start_soon(self._commit_loop)
            stack.callback(nursery.cancel_scope.cancel)
            self._stack = stack.pop_all()
        return self

    def _load(self) -> None:
        """Open the database and rebuild the index; blocking, so run in a thread."""
        self.path.mkdir(parents=True, exist_ok=True)
        opts = _options()
        db = Rdict(str(self.path), opts, column_families={_META_CF: opts})
        raw = db.get_column_family(_META_CF).get(_REVISION_KEY)
        self._committed_rv = _RV.unpack(raw)[0] if raw is not None else 0
        self._next_rv = self._committed_rv + 1
        self._revs = {key: rv for key, _, rv in _scan(db.items(), b"")}
        self._meta = db.get_column_family_handle(_META_CF)
        self._meta_db = db.get_column_family(_META_CF)
        self._dir_fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        self._db = db
        self._down = None

    async def _close_db(self) -> None:
        if self._down is None:
            self._down = "closed"
        self._fail(self._queue)
        self._batch = WriteBatch(raw_mode=True)
        db, self._db, self._meta, self._meta_db = self._db, None, None, None
        if db is not None:
            # Closing flushes memtables; finish it even when shutdown is a cancellation.
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(db.close)
        for fd in (self._wal_fd, self._dir_fd):
            if fd is not None:
                os.close(fd)
        self._wal_fd, self._dir_fd, self._wal_versions = None, None, ()

    # The Store protocol.

    def revision(self) -> int:
        return self._committed_rv

    async def sync(self) -> None:
        # This process is the only writer, and a write returns after its subscribers saw it.
        return

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def health(self) -> str | None:
        return self._down

    async def get(self, key: str) -> tuple[bytes, int] | None:
        db = self._usable()
        staged = self._staged.get(key)
        if staged is not None:
            data, rv = staged
            return None if data is None else (data, rv)
        if key not in self._revs:
            return None
        # Not staged means no write of this key is in flight, so disk is current for it.
        raw = db.get(key.encode())
        assert raw is not None, f"{key} is in the index but not on disk"
        return _split(raw)

    def scan(self, prefix: str) -> Iterator[tuple[str, bytes, int]]:
        """Durable (key, bytes, rv) under prefix in key order, from one consistent view."""
        start = prefix.encode()
        # The RocksDB iterator pins its view when created, here, not at the first next().
        return _scan(self._usable().items(from_key=start), start)

    async def txn(self, ops: list[Op]) -> tuple[int, list[bytes]]:
        self._usable()
        self._check(ops)
        rv = self._next_rv
        # Encode before staging anything, so an encoder that raises leaves no trace.
        datas = [op.encode(rv) for op in ops]
        self._next_rv += 1
        commit = self._stage(rv, ops, datas)
        self._queue.append(commit)
        self._queued.set()
        await commit.done.wait()
        if not commit.durable:
            raise self._unavailable()
        return rv, datas

    # Staging: synchronous, so each transaction is checked and staged atomically.

    def _usable(self) -> Rdict:
        if self._db is None or self._down is not None:
            raise self._unavailable()
        return self._db

    def _unavailable(self) -> StoreUnavailable:
        error = StoreUnavailable(f"store at {self.path} is {self._down or 'closed'}")
        error.__cause__ = self._cause
        return error

    def _check(self, ops: list[Op]) -> None:
        if not ops:
            raise ValueError("a transaction needs at least one op")
        keys = {op.key for op in ops}
        if len(keys) != len(ops):
            raise ValueError("a transaction may write each key only once")
        for op in ops:
            current = self._revs.get(op.key)
            if op.verb == "create":
                if current is not None:
                    raise KeyExists(op.key)
            elif current is None:
                raise KeyNotFound(op.key)
            elif op.expected_rv is not None and op.expected_rv != current:
                raise RevisionConflict(op.key, current)

    def _stage(self, rv: int, ops: list[Op], datas: list[bytes]) -> _Commit:
        events = []
        for op, data in zip(ops, datas, strict=True):
            if op.verb == "delete":
                del self._revs[op.key]
                self._staged[op.key] = (None, rv)
                self._batch.delete(op.key.encode())
            else:
                self._revs[op.key] = rv
                self._staged[op.key] = (data, rv)
                self._batch.put(op.key.encode(), _RV.pack(rv) + data)
            events.append(Event(_EVENT_TYPES[op.verb], op.key, rv, data))
        return _Commit(rv, events)

    # Group commit.

    async def _commit_loop(self) -> None:
        while self._down is None:
            await self._queued.wait()
            self._queued = trio.Event()
            group, self._queue = self._queue, []
            batch, self._batch = self._batch, WriteBatch(raw_mode=True)
            batch.put(_REVISION_KEY, _RV.pack(group[-1].rv), self._meta)
            # A group taken off the queue is always finished, whatever cancels us meanwhile.
            with trio.CancelScope(shield=True):
                await self._commit(group, batch)

    async def _commit(self, group: list[_Commit], batch: WriteBatch) -> None:
        try:
            await trio.to_thread.run_sync(self._write, batch)
        except Exception as exc:
            # Memory now holds writes the disk may lack: refuse all service from here on.
            log.exception("store at %s: a RocksDB write failed", self.path)
            self._break("broken: a RocksDB write failed", exc, group)
            return
        self.synced_writes += 1
        try:
            self._publish(group)
        except Exception as exc:
            # A subscriber's cache missed an event; serving on would serve stale reads.
            log.exception("store at %s: a subscriber failed", self.path)
            self._break("broken: a subscriber failed", exc, group)

    def _write(self, batch: WriteBatch) -> None:
        """Write the group's batch and make it durable; runs in a worker thread."""
        assert self._db is not None
        self._db.write(batch, self._write_options)
        self._sync_wal()

    def _sync_wal(self) -> None:
        """fdatasync the WAL file the batch went to.

        Each call that releases the GIL here costs the worker a wait for it when the event
        loop is busy, so the usual case is one fdatasync of the WAL file already open.
        RocksDB starts a new WAL file only when a column family switches memtables, which
        also changes that family's super version: when a version moved, every WAL file is
        listed and synced (an older one may still hold an earlier group's unsynced bytes,
        written before the switch), the directory too when a file is new, and the newest
        is kept for next time. A WAL file that RocksDB deleted meanwhile held only data
        already in synced SST files.
        """
        assert self._db is not None and self._meta_db is not None
        versions = (
            self._db.property_int_value(_SUPER_VERSION),
            self._meta_db.property_int_value(_SUPER_VERSION),
        )
        if versions == self._wal_versions and self._wal_fd is not None:
            os.fdatasync(self._wal_fd)
            return
        assert self._dir_fd is not None
        names = sorted(
            (name for name in os.listdir(self.path) if name.endswith(".log")),
            key=lambda name: int(name.removesuffix(".log")),
        )
        newest: int | None = None
        try:
            for name in names:
                try:
                    fd = os.open(self.path / name, os.O_RDONLY)
                except FileNotFoundError:
                    continue  # obsolete and purged meanwhile: its data is in synced SSTs
                if newest is not None:
                    os.close(newest)
                newest = fd
                os.fdatasync(fd)
            if newest is not None and (
                self._wal_fd is None or not os.path.sameopenfile(newest, self._wal_fd)
            ):
                os.fsync(self._dir_fd)  # the new WAL file's directory entry
        except BaseException:
            if newest is not None:
                os.close(newest)
            raise
        if self._wal_fd is not None:
            os.close(self._wal_fd)
        self._wal_fd, self._wal_versions = newest, versions

    def _publish(self, group: list[_Commit]) -> None:
        for commit in group:
            self._committed_rv = commit.rv
            for event in commit.events:
                if self._staged[event.key][1] == commit.rv:
                    del self._staged[event.key]
            for subscriber in self._subscribers:
                subscriber(commit.events)
            commit.durable = True
            commit.done.set()

    def _break(self, reason: str, exc: Exception, group: list[_Commit]) -> None:
        self._down, self._cause = reason, exc
        self._fail(group)
        self._fail(self._queue)

    def _fail(self, commits: Iterable[_Commit]) -> None:
        for commit in commits:
            commit.done.set()  # not durable: its caller raises StoreUnavailable


def _split(raw: bytes) -> tuple[bytes, int]:
    return raw[_RV.size :], _RV.unpack_from(raw)[0]


def _scan(items: Iterable[tuple[Any, Any]], start: bytes) -> Iterator[tuple[str, bytes, int]]:
    for key, raw in items:
        if not key.startswith(start):
            break
        data, rv = _split(raw)
        yield key.decode(), data, rv
