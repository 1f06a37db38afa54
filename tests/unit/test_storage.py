"""The Store contract against real backends: RocksDB, and etcd (a real etcd process).

CAS, atomicity, revisions, events and reopening run on both backends, with revisions counted
from where the store starts (etcd's first is 1, and the tests share one etcd); group commit,
staged writes and crashes are RocksDB's own.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from k8slite.storage import (
    Event,
    KeyExists,
    KeyNotFound,
    Op,
    RevisionConflict,
    RocksStore,
    StorageError,
    StoreUnavailable,
)
from k8slite.storage.base import Encoder
from k8slite.storage.etcd import EtcdStore
from k8slite.storage.etcdlayout import storage_key, upstream_key
from tests.etcd_server import EtcdProcess, start_etcd
from tests.integration.client_helpers import TcpProxy

BACKENDS = ["rocksdb", "etcd"]
# Opens a new store on the same data each call (so a test can close and reopen it).
StoreOpener = Callable[[], Any]


def encoder(key: str) -> Encoder:
    return lambda rv: json.dumps({"key": key, "rv": rv}).encode()


def create(key: str) -> Op:
    return Op("create", key, encoder(key))


def update(key: str, expected_rv: int | None = None) -> Op:
    return Op("update", key, encoder(key), expected_rv)


def delete(key: str, expected_rv: int | None = None) -> Op:
    return Op("delete", key, encoder(key), expected_rv)


def body(key: str, rv: int) -> bytes:
    return encoder(key)(rv)


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdProcess]:
    """One etcd for the session; each store gets a prefix of its own."""
    server = start_etcd(tmp_path_factory.mktemp("etcd"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def etcd_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdProcess]:
    server = start_etcd(tmp_path_factory.mktemp("etcd-tls"), tls=True)
    yield server
    server.stop()


def etcd_opener(etcd: EtcdProcess) -> StoreOpener:
    prefix = f"/test-{uuid.uuid4().hex}"
    return lambda: EtcdStore(
        [etcd.url], prefix=prefix, root="", tls=etcd.tls, compaction_interval=0
    )


def opener(request: pytest.FixtureRequest, backend: str, path: Path) -> StoreOpener:
    if backend == "rocksdb":
        return lambda: RocksStore(path)
    return etcd_opener(request.getfixturevalue(backend))


@pytest.fixture(params=BACKENDS)
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreOpener:
    return opener(request, request.param, tmp_path / "db")


@pytest.fixture
async def store(new_store: StoreOpener) -> AsyncIterator[Any]:
    async with new_store() as store:
        yield store


@pytest.fixture
async def rocks(tmp_path: Path) -> AsyncIterator[RocksStore]:
    async with RocksStore(tmp_path / "db") as store:
        yield store


async def check_create_get_update_delete(store: Any) -> None:
    base = store.revision()
    assert await store.get("/registry/pods/a") is None

    rv, datas = await store.txn([create("/registry/pods/a")])
    assert (rv, datas) == (base + 1, [body("/registry/pods/a", base + 1)])
    assert await store.get("/registry/pods/a") == (body("/registry/pods/a", base + 1), base + 1)

    rv, _ = await store.txn([update("/registry/pods/a", expected_rv=base + 1)])
    assert rv == base + 2
    assert await store.get("/registry/pods/a") == (body("/registry/pods/a", base + 2), base + 2)

    rv, datas = await store.txn([delete("/registry/pods/a", expected_rv=base + 2)])
    assert (rv, datas) == (base + 3, [body("/registry/pods/a", base + 3)])
    assert await store.get("/registry/pods/a") is None
    assert store.revision() == base + 3


async def test_create_get_update_delete(store: Any) -> None:
    if isinstance(store, RocksStore):
        assert store.revision() == 0
    await check_create_get_update_delete(store)


async def test_etcd_over_tls_with_client_certificates(etcd_tls: EtcdProcess) -> None:
    assert etcd_tls.url.startswith("https://")
    async with etcd_opener(etcd_tls)() as store:
        await check_create_get_update_delete(store)
        assert [key for key, _, _ in store.scan("")] == []


@pytest.mark.parametrize(
    ("op", "error", "conflict"),
    [
        (create("/k/exists"), KeyExists, False),
        (update("/k/missing"), KeyNotFound, False),
        (delete("/k/missing"), KeyNotFound, False),
        (update("/k/exists", expected_rv=10**9), RevisionConflict, True),
        (delete("/k/exists", expected_rv=10**9), RevisionConflict, True),
    ],
)
async def test_cas_failure_writes_nothing(
    store: Any, op: Op, error: type[StorageError], conflict: bool
) -> None:
    created, _ = await store.txn([create("/k/exists")])
    events: list[list[Event]] = []
    store.subscribe(events.append)
    writes = getattr(store, "synced_writes", None)

    with pytest.raises(error) as raised:
        await store.txn([create("/k/new"), op])

    assert raised.value.key == op.key
    assert isinstance(raised.value, RevisionConflict) == conflict
    if isinstance(raised.value, RevisionConflict):
        assert raised.value.current_rv == created
    assert await store.get("/k/new") is None
    assert await store.get("/k/exists") == (body("/k/exists", created), created)
    assert (store.revision(), getattr(store, "synced_writes", None), events) == (
        created,
        writes,
        [],
    )
    # The failed transaction did not use up a revision.
    assert (await store.txn([create("/k/next")]))[0] == created + 1


async def test_multi_op_txn_is_atomic_and_shares_a_revision(store: Any) -> None:
    events: list[list[Event]] = []
    store.subscribe(events.append)
    first, _ = await store.txn([create("/a"), create("/b")])

    rv, _ = await store.txn([update("/a", first), delete("/b", first), create("/c")])

    assert rv == first + 1
    assert await store.get("/a") == (body("/a", rv), rv)
    assert await store.get("/b") is None
    assert await store.get("/c") == (body("/c", rv), rv)
    assert [[(e.type, e.key, e.rv) for e in batch] for batch in events] == [
        [("ADDED", "/a", first), ("ADDED", "/b", first)],
        [("MODIFIED", "/a", rv), ("DELETED", "/b", rv), ("ADDED", "/c", rv)],
    ]
    # A delete carries the object's final state at the deletion's revision (on etcd: its
    # last stored value, as upstream's DELETED events; these encoders make the two equal).
    assert events[1][1].data == body("/b", rv)


async def test_failing_encoder_and_malformed_txns_stage_nothing(store: Any) -> None:
    def boom(rv: int) -> bytes:
        raise RuntimeError("cannot encode")

    with pytest.raises(RuntimeError):
        await store.txn([create("/a"), Op("create", "/b", boom)])
    with pytest.raises(ValueError):
        await store.txn([])
    with pytest.raises(ValueError):
        await store.txn([create("/a"), update("/a")])

    assert await store.get("/a") is None
    base = store.revision()
    assert (await store.txn([create("/a")]))[0] == base + 1


async def test_revisions_and_index_survive_reopen(new_store: StoreOpener) -> None:
    async with new_store() as store:
        base = store.revision()
        await store.txn([create("/r/a")])
        await store.txn([create("/r/b")])
        await store.txn([update("/r/a", base + 1)])
        last, _ = await store.txn([delete("/r/b", base + 2)])  # the newest lives on no key

    async with new_store() as store:
        assert store.revision() == last == base + 4
        assert await store.get("/r/a") == (body("/r/a", base + 3), base + 3)
        assert await store.get("/r/b") is None
        with pytest.raises(KeyExists):
            await store.txn([create("/r/a")])
        with pytest.raises(RevisionConflict):
            await store.txn([update("/r/a", base + 1)])
        assert (await store.txn([create("/r/b")]))[0] == base + 5

    async with new_store() as store:
        assert store.revision() == base + 5
        assert list(store.scan("/r/")) == [
            ("/r/a", body("/r/a", base + 3), base + 3),
            ("/r/b", body("/r/b", base + 5), base + 5),
        ]


async def test_scan_returns_prefix_in_key_order(store: Any) -> None:
    keys = ["/reg/pods/ns/b", "/reg/pods/ns/a", "/reg/pods/ns/é", "/reg/pods/ns0/x", "/reg/pod"]
    base = store.revision()
    for key in keys:
        await store.txn([create(key)])
    await store.txn([update("/reg/pods/ns/a")])

    scanned = list(store.scan("/reg/pods/ns/"))

    assert scanned == [
        ("/reg/pods/ns/a", body("/reg/pods/ns/a", base + 6), base + 6),
        ("/reg/pods/ns/b", body("/reg/pods/ns/b", base + 1), base + 1),
        ("/reg/pods/ns/é", body("/reg/pods/ns/é", base + 3), base + 3),
    ]
    assert [key for key, _, _ in store.scan("")] == sorted(keys)


async def test_subscribers_see_events_in_order_before_txn_returns(store: Any) -> None:
    seen: dict[str, int] = {}
    revisions: list[int] = []

    def subscriber(events: list[Event]) -> None:
        assert store.revision() == events[0].rv
        revisions.append(events[0].rv)
        for event in events:
            seen[event.key] = event.rv

    store.subscribe(subscriber)
    base = store.revision()

    async def write(i: int) -> None:
        rv, _ = await store.txn([create(f"/s/{i}")])
        assert seen[f"/s/{i}"] == rv
        rv, _ = await store.txn([update(f"/s/{i}", rv)])
        assert seen[f"/s/{i}"] == rv

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(write, i)

    assert revisions == list(range(base + 1, base + 101))


async def test_concurrent_txns_are_group_committed(rocks: RocksStore) -> None:
    store = rocks
    rvs: list[int] = []

    async def write(i: int) -> None:
        rvs.append((await store.txn([create(f"/g/{i}")]))[0])

    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(write, i)

    assert sorted(rvs) == list(range(1, 201))
    assert store.synced_writes < 200 // 4


async def test_one_group_commit_answers_each_writer_with_its_own_revision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writers queued behind one gated disk write share the next group's write batch; each
    gets its own revision and event, in order, and is answered only once the group is
    durable; a writer whose CAS fails is refused alone, the others commit."""
    path = tmp_path / "db"
    async with RocksStore(path) as store:
        await store.txn([create("/c/stale")])
        await store.txn([update("/c/stale", 1)])
        seen: list[tuple[str, int]] = []
        store.subscribe(lambda events: seen.extend((e.key, e.rv) for e in events))
        gate = threading.Event()
        real_write = store._write
        batches: list[int] = []

        def gated_write(batch: Any) -> None:
            gate.wait()
            batches.append(len(batch))
            real_write(batch)

        monkeypatch.setattr(store, "_write", gated_write)
        answered: dict[int, int] = {}
        refused: list[StorageError] = []

        async def write(i: int) -> None:
            answered[i] = (await store.txn([create(f"/c/{i}")]))[0]
            # Answered only once durable: the store's revision has reached ours.
            assert store.revision() >= answered[i]

        async def conflicting() -> None:
            try:
                await store.txn([update("/c/stale", 1)])  # the key is at revision 2
            except RevisionConflict as exc:
                refused.append(exc)

        try:
            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(write, -1)  # the first group, held at the gate
                    await trio.testing.wait_all_tasks_blocked()
                    for i in range(20):
                        nursery.start_soon(write, i)
                    nursery.start_soon(conflicting)
                    await trio.testing.wait_all_tasks_blocked()
                    assert not answered  # nothing answered before its write is durable
                    gate.set()
        finally:
            gate.set()

        assert len(refused) == 1 and refused[0].current_rv == 2
        assert answered[-1] == 3
        assert sorted(answered[i] for i in range(20)) == list(range(4, 24))
        # Two synced writes: the gated one, then the twenty queued behind it (each batch
        # also carries the revision key).
        assert batches == [2, 21]
        assert seen == sorted(seen, key=lambda e: e[1])
        assert {key: rv for key, rv in seen} == {f"/c/{i}": rv for i, rv in answered.items()}

    async with RocksStore(path) as store:  # every answered write survived
        assert store.revision() == 23
        assert len(list(store.scan("/c/"))) == 22


async def test_each_group_is_fdatasynced_before_its_writers_are_answered(
    rocks: RocksStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = rocks
    synced: list[str] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        real(fd)
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    await store.txn([create("/d/a")])
    assert synced and all(name.endswith(".log") for name in synced)
    before = len(synced)
    await store.txn([create("/d/b")])
    assert len(synced) > before


async def test_a_new_wal_file_is_synced_after_rocksdb_switches_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "db"
    synced: list[str] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        real(fd)
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")).name)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    async with RocksStore(path) as store:
        await store.txn([create("/n/a")])
        first = max(path.glob("*.log"), key=lambda p: int(p.stem)).name
        assert synced[-1] == first
        assert store._db is not None
        store._db.flush()  # switches memtables, so RocksDB starts a new WAL file
        await store.txn([create("/n/b")])
        newest = max(path.glob("*.log"), key=lambda p: int(p.stem)).name
        assert newest != first and synced[-1] == newest
        synced.clear()
        await store.txn([create("/n/c")])
        assert synced == [newest]  # the usual case: one fdatasync of the open WAL file
    async with RocksStore(path) as store:
        assert [key for key, _, _ in store.scan("/n/")] == ["/n/a", "/n/b", "/n/c"]


async def test_failed_wal_sync_fails_each_writer_of_the_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with RocksStore(tmp_path / "db") as store:
        await store.txn([create("/w/kept")])

        def fdatasync(fd: int) -> None:
            raise OSError("I/O error")

        monkeypatch.setattr(os, "fdatasync", fdatasync)
        failures: list[BaseException] = []

        async def write(i: int) -> None:
            try:
                await store.txn([create(f"/w/{i}")])
            except StoreUnavailable as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(write, i)

        assert len(failures) == 10
        assert all(isinstance(f.__cause__, OSError) for f in failures)
        assert store.revision() == 1
        with pytest.raises(StoreUnavailable):
            await store.txn([create("/w/later")])


async def test_reads_and_cas_see_staged_writes(
    rocks: RocksStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = rocks
    await store.txn([create("/p/a")])
    gate = threading.Event()
    real_write = store._write

    def gated_write(batch: object) -> None:
        gate.wait()
        real_write(batch)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "_write", gated_write)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.txn, [update("/p/a", 1), create("/p/b")])
        # A txn that wrongly succeeds would wait behind the gated write: time it out, and
        # open the gate whatever happens, as the write thread cannot be cancelled.
        try:
            with trio.fail_after(10):
                await trio.testing.wait_all_tasks_blocked()
                assert store.revision() == 1  # staged, not yet durable
                assert await store.get("/p/a") == (body("/p/a", 2), 2)
                assert await store.get("/p/b") == (body("/p/b", 2), 2)
                with pytest.raises(KeyExists):
                    await store.txn([create("/p/b")])
                with pytest.raises(RevisionConflict) as conflict:
                    await store.txn([delete("/p/a", 1)])
                assert conflict.value.current_rv == 2
        finally:
            gate.set()

    assert store.revision() == 2
    assert await store.get("/p/a") == (body("/p/a", 2), 2)


async def test_failed_disk_write_fails_the_group_and_breaks_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "db"
    async with RocksStore(path) as store:
        await store.txn([create("/f/kept")])

        def failing_write(batch: object) -> None:
            raise OSError("disk on fire")

        monkeypatch.setattr(store, "_write", failing_write)
        failures: list[BaseException] = []

        async def write(i: int) -> None:
            try:
                await store.txn([create(f"/f/{i}")])
            except StoreUnavailable as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(write, i)

        assert len(failures) == 10
        assert isinstance(failures[0].__cause__, OSError)
        with pytest.raises(StoreUnavailable):
            await store.txn([create("/f/later")])
        with pytest.raises(StoreUnavailable):
            await store.get("/f/kept")

    async with RocksStore(path) as store:
        assert store.revision() == 1
        assert [key for key, _, _ in store.scan("/f/")] == ["/f/kept"]


async def test_failing_subscriber_breaks_the_store(store: Any) -> None:
    def subscriber(events: list[Event]) -> None:
        raise RuntimeError("cache bug")

    store.subscribe(subscriber)
    with pytest.raises(StoreUnavailable):
        await store.txn([create("/x")])
    with pytest.raises(StoreUnavailable):
        await store.txn([create("/y")])


async def test_store_refuses_service_outside_its_block(new_store: StoreOpener) -> None:
    store = new_store()
    with pytest.raises(StoreUnavailable):
        await store.txn([create("/a")])
    async with store:
        await store.txn([create("/a")])
    with pytest.raises(StoreUnavailable):
        await store.get("/a")


class ModelStore:
    """The reference: CAS on a dict, one revision per successful transaction."""

    def __init__(self, revision: int = 0) -> None:
        self.revs: dict[str, int] = {}
        self.revision = revision

    def txn(self, ops: list[Op]) -> int:
        for op in ops:
            current = self.revs.get(op.key)
            if op.verb == "create":
                if current is not None:
                    raise KeyExists(op.key)
            elif current is None:
                raise KeyNotFound(op.key)
            elif op.expected_rv is not None and op.expected_rv != current:
                raise RevisionConflict(op.key, current)
        self.revision += 1
        for op in ops:
            if op.verb == "delete":
                del self.revs[op.key]
            else:
                self.revs[op.key] = self.revision
        return self.revision


async def outcome(run: Awaitable[tuple[int, list[bytes]]]) -> tuple[object, ...]:
    try:
        return ("ok", (await run)[0])
    except StorageError as error:
        return (type(error).__name__, error.key, getattr(error, "current_rv", None))


def model_outcome(model: ModelStore, ops: list[Op]) -> tuple[object, ...]:
    try:
        return ("ok", model.txn(ops))
    except StorageError as error:
        return (type(error).__name__, error.key, getattr(error, "current_rv", None))


ops = st.builds(
    Op,
    verb=st.sampled_from(["create", "update", "delete"]),
    key=st.sampled_from(["/m/a", "/m/b", "/m/c"]),
    encode=st.just(lambda rv: b"%d" % rv),
    expected_rv=st.none() | st.integers(1, 6),
)
txns = st.lists(st.lists(ops, min_size=1, max_size=3, unique_by=lambda op: op.key), max_size=10)


def shift(op: Op, base: int) -> Op:
    return op if op.expected_rv is None else replace(op, expected_rv=op.expected_rv + base)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=20, deadline=None)
@given(txns=txns)
def test_store_matches_a_reference_model(
    request: pytest.FixtureRequest, backend: str, txns: list[list[Op]]
) -> None:
    def expected_scan(model: ModelStore) -> list[tuple[str, bytes, int]]:
        return [(key, b"%d" % rv, rv) for key, rv in sorted(model.revs.items())]

    async def run(new_store: StoreOpener) -> None:
        async with new_store() as store:
            # Expected revisions count from where the store starts.
            base = store.revision()
            model = ModelStore(base)
            for relative in txns:
                ops = [shift(op, base) for op in relative]
                assert await outcome(store.txn(ops)) == model_outcome(model, ops)
            assert list(store.scan("")) == expected_scan(model)
        async with new_store() as store:
            assert store.revision() == model.revision
            assert list(store.scan("")) == expected_scan(model)

    with tempfile.TemporaryDirectory() as tmp:
        trio.run(run, opener(request, backend, Path(tmp) / "db"))


def read_acks(lines: list[bytes]) -> dict[str, tuple[str, int]]:
    """The last acknowledged write of each key, from complete lines only."""
    last: dict[str, tuple[str, int]] = {}
    for line in lines:
        if line.endswith(b"\n"):
            verb, key, rv = line.decode().split()
            last[key] = (verb, int(rv))
    return last


def run_child_and_kill(path: Path, acks: int) -> list[bytes]:
    child = Path(__file__).with_name("storage_child.py")
    lines: list[bytes] = []
    with subprocess.Popen(
        [sys.executable, str(child), str(path), "50"], stdout=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        try:
            while len(lines) < acks:
                line = proc.stdout.readline()
                assert line, f"child exited early with {proc.wait()}"
                lines.append(line)
        finally:
            proc.send_signal(signal.SIGKILL)
        lines += proc.stdout.read().splitlines(keepends=True)  # acks already in the pipe count
    assert proc.returncode == -signal.SIGKILL
    return lines


def check_key(key: str, acked: tuple[str, int], found: tuple[bytes, int] | None) -> None:
    verb, rv = acked
    if verb == "del":
        assert found is None, key
        return
    if found is None:
        # An unacknowledged delete of an even shadow may have committed after its create.
        assert key.endswith("/shadow") and int(key.split("/")[-2]) % 2 == 0, key
        return
    data, found_rv = found
    assert json.loads(data)["key"] == key
    assert json.loads(data)["rv"] == found_rv
    assert found_rv >= rv, key  # newer only by an in-flight, unacknowledged update


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "db"
    acks = read_acks(run_child_and_kill(path, acks=2000))
    assert len(acks) >= 1000

    async def verify() -> None:
        async with RocksStore(path) as store:
            assert store.revision() >= max(rv for _, rv in acks.values())
            moved_on = 0
            for key, acked in acks.items():
                found = await store.get(key)
                check_key(key, acked, found)
                moved_on += acked[0] == "put" and (found is None or found[1] != acked[1])
            # Each of the 50 writers had at most one unacknowledged op in flight at the kill.
            assert moved_on <= 50
            await store.txn([create("/after/crash")])

    trio.run(verify)


def behind_proxy_and_direct(etcd: EtcdProcess, proxy: TcpProxy) -> tuple[EtcdStore, EtcdStore]:
    """Two stores on one new prefix: the first reaches etcd through the proxy, the second
    directly."""
    prefix = f"/test-{uuid.uuid4().hex}"
    return (
        EtcdStore(
            [f"http://127.0.0.1:{proxy.port}"], prefix=prefix, root="", compaction_interval=0
        ),
        EtcdStore([etcd.url], prefix=prefix, root="", compaction_interval=0),
    )


async def test_etcd_watch_relists_after_its_history_is_compacted(etcd: EtcdProcess) -> None:
    """Cut off from etcd while others write and compact, a store catches up from etcd's
    state in one batch, then follows the watch again."""
    proxy = TcpProxy("127.0.0.1", int(etcd.url.rsplit(":", 1)[1]))
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        cut_off, other = behind_proxy_and_direct(etcd, proxy)
        async with cut_off, other:
            events: list[list[Event]] = []
            cut_off.subscribe(events.append)
            first, _ = await cut_off.txn([create("/k1"), create("/k2"), create("/k3")])

            proxy.cut()
            second, _ = await other.txn([update("/k1", first), delete("/k2", first), create("/k4")])
            third, _ = await other.txn([update("/k1", second)])
            async with httpx.AsyncClient(base_url=etcd.url) as c:
                r = await c.post("/v3/kv/compaction", json={"revision": str(third)})
                assert r.status_code == 200, r.text
            assert cut_off.revision() == first
            await proxy.restore()

            with trio.fail_after(30):
                while cut_off.revision() < third:
                    await cut_off._moved.wait()
            assert cut_off.relists == 1
            relisted = cut_off.revision()
            assert events[-1] == [
                Event("MODIFIED", "/k1", relisted, body("/k1", third)),
                Event("DELETED", "/k2", relisted, b""),  # its final state went with history
                Event("ADDED", "/k4", relisted, body("/k4", second)),
            ]
            # Following the watch again, and writing.
            fourth, _ = await cut_off.txn([update("/k4", second)])
            assert events[-1] == [Event("MODIFIED", "/k4", fourth, body("/k4", fourth))]
        nursery.cancel_scope.cancel()


async def test_etcd_keys_with_a_ttl_expire_through_a_shared_lease(etcd: EtcdProcess) -> None:
    async with etcd_opener(etcd)() as store:
        events: list[Event] = []
        store.subscribe(events.extend)
        # Writes of one TTL share a lease while it still covers that TTL (upstream's reuse).
        await store.txn([Op("create", "/ev/long1", encoder("/ev/long1"), ttl=600)])
        await store.txn([Op("create", "/ev/long2", encoder("/ev/long2"), ttl=600)])
        assert store.leases_granted == 1
        # A lease revoked under the store (its keys go with it): the next write gets another.
        async with httpx.AsyncClient(base_url=etcd.url) as c:
            r = await c.post("/v3/lease/revoke", json={"ID": str(store._leases[600][0])})
            assert r.status_code == 200, r.text
        await store.txn([Op("create", "/ev/long3", encoder("/ev/long3"), ttl=600)])
        assert store.leases_granted == 2
        assert await store.get("/ev/long1") is None

        rv, _ = await store.txn(
            [Op("create", "/ev/a", encoder("/ev/a"), ttl=2), create("/ev/kept")]
        )
        assert store.leases_granted == 3
        with trio.fail_after(30):
            while "/ev/a" not in {e.key for e in events if e.type == "DELETED"}:
                await store._moved.wait()
        assert await store.get("/ev/a") is None
        assert await store.get("/ev/kept") == (body("/ev/kept", rv), rv)
        assert (await store.get("/ev/long3")) is not None
        deleted = next(e for e in events if e.type == "DELETED" and e.key == "/ev/a")
        assert deleted.data == body("/ev/a", deleted.rv)


async def test_etcd_conflict_means_the_conflicting_write_was_delivered(etcd: EtcdProcess) -> None:
    """Told KeyExists or RevisionConflict because of another store's write, a store has
    already delivered that write to its subscribers (so its cache shows what conflicted)."""
    new_store = etcd_opener(etcd)
    async with new_store() as mine, new_store() as other:
        seen: dict[str, int] = {}
        mine.subscribe(lambda events: seen.update((e.key, e.rv) for e in events))
        for i in range(20):
            rv, _ = await other.txn([create(f"/c/{i}")])
            with pytest.raises(KeyExists):
                await mine.txn([create(f"/c/{i}")])
            assert seen[f"/c/{i}"] == rv
        # A write outside the prefix (the compactor's key) moves etcd's revision on without
        # an event for us: a conflict must not wait for it.
        await mine.compact_once(*await mine.compact_once(0, 0))
        with trio.fail_after(5), pytest.raises(RevisionConflict):
            await mine.txn([update("/c/0", 1)])


@pytest.mark.parametrize(
    ("ours", "upstream"),
    [
        ("/core/pods/default/x", "/pods/default/x"),
        ("/core/services/default/kubernetes", "/services/specs/default/kubernetes"),
        ("/core/endpoints/default/kubernetes", "/services/endpoints/default/kubernetes"),
        ("/core/nodes/n1", "/minions/n1"),
        ("/core/replicationcontrollers/ns/rc", "/controllers/ns/rc"),
        ("/apps/deployments/ns/web", "/deployments/ns/web"),
        ("/core/pods/", "/pods/"),
        # Other groups, custom resources and our own keys stay as they are.
        ("/batch/jobs/ns/j", "/batch/jobs/ns/j"),
        ("/example.com/widgets/ns/w", "/example.com/widgets/ns/w"),
        ("/masterleases/10.0.0.1:6443", "/masterleases/10.0.0.1:6443"),
        ("/k8slite/servicenodeports/30000", "/k8slite/servicenodeports/30000"),
    ],
)
def test_etcd_keys_are_upstreams(ours: str, upstream: str) -> None:
    assert upstream_key(ours) == upstream
    assert storage_key(upstream) == ours


async def test_etcd_store_writes_upstreams_keys(etcd: EtcdProcess) -> None:
    """Under /registry, a pod is at /registry/pods/<ns>/<name> in etcd, as upstream's; the
    store's own keys, scans and events keep the group segment."""
    prefix = f"/registry-{uuid.uuid4().hex}"
    events: list[Event] = []
    async with EtcdStore([etcd.url], prefix=prefix, compaction_interval=0) as store:
        store.subscribe(events.extend)
        pod, deployment = "/registry/core/pods/default/x", "/registry/apps/deployments/ns/web"
        await store.txn([create(pod), create(deployment)])
        with etcd.client() as c:
            start = base64.b64encode(f"{prefix}/".encode()).decode()
            end = base64.b64encode(f"{prefix}0".encode()).decode()
            kvs = c.post("/v3/kv/range", json={"key": start, "range_end": end}).json()["kvs"]
        raw = sorted(base64.b64decode(kv["key"]).decode() for kv in kvs)
        assert raw == [f"{prefix}/deployments/ns/web", f"{prefix}/pods/default/x"]
        assert [key for key, _, _ in store.scan("/registry/core/pods/")] == [pod]
        assert sorted(e.key for e in events) == [deployment, pod]
        assert await store.get(pod) is not None
        with pytest.raises(ValueError, match="spans several etcd prefixes"):
            store.scan("/registry/core/")


class WatchHoldingProxy(TcpProxy):
    """A TcpProxy to etcd that, while held, keeps back what etcd sends on watch streams
    (connections whose request is POST /v3/watch): the store behind it learns of other
    stores' writes late, as an API server's watch does under load."""

    def __init__(self, etcd: EtcdProcess) -> None:
        super().__init__("127.0.0.1", int(etcd.url.rsplit(":", 1)[1]))
        self.held = False
        self._released = trio.Event()

    def hold(self) -> None:
        self.held, self._released = True, trio.Event()

    def release(self) -> None:
        self.held = False
        self._released.set()

    async def _forward(self, client: trio.SocketStream) -> None:
        try:
            upstream = await trio.open_tcp_stream(*self.target)
            async with client, upstream, trio.open_nursery() as nursery:
                request = await client.receive_some(65536)
                await upstream.send_all(request)
                nursery.start_soon(self._pump, client, upstream)
                if request.startswith(b"POST /v3/watch"):
                    nursery.start_soon(self._pump_held, upstream, client)
                else:
                    nursery.start_soon(self._pump, upstream, client)
        except (OSError, trio.BrokenResourceError):
            pass

    async def _pump_held(self, src: trio.SocketStream, dst: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            while data := await src.receive_some(65536):
                while self.held:
                    await self._released.wait()
                await dst.send_all(data)


async def test_etcd_sync_waits_for_writes_made_through_another_store(etcd: EtcdProcess) -> None:
    """An API server's write is acknowledged once etcd committed it; another API server's
    cache learns of it through its watch, later. sync() waits until it has: a read of the
    latest state after it sees the write. Writes outside the prefix, and a key made and
    removed again, are not waited for, and their events still come in order."""
    proxy = WatchHoldingProxy(etcd)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        reader, writer = behind_proxy_and_direct(etcd, proxy)
        async with reader, writer:
            seen: list[tuple[str, str]] = []
            reader.subscribe(lambda events: seen.extend((e.type, e.key) for e in events))

            proxy.hold()
            rv, _ = await writer.txn([create("/s/a")])
            await trio.sleep(0.3)
            assert reader.revision() < rv  # held back: without sync, a read would miss it
            synced = trio.Event()

            async def sync() -> None:
                await reader.sync()
                synced.set()

            nursery.start_soon(sync)
            await trio.sleep(0.5)
            assert not synced.is_set()  # etcd says our prefix changed: sync waits
            proxy.release()
            with trio.fail_after(5):
                await synced.wait()
            assert reader.revision() >= rv
            assert seen == [("ADDED", "/s/a")]

            # A key made and deleted again while the watch is held: etcd's state is what the
            # cache holds, so sync need not wait; the events come after, in order.
            proxy.hold()
            await writer.txn([create("/s/b")])
            gone, _ = await writer.txn([delete("/s/b")])
            with trio.fail_after(3):
                await reader.sync()
            assert reader.revision() < gone
            proxy.release()
            with trio.fail_after(5):
                while reader.revision() < gone:
                    await trio.sleep(0.01)
            assert seen[1:] == [("ADDED", "/s/b"), ("DELETED", "/s/b")]

            # A write outside the prefix moves etcd's revision on without an event for us.
            async with httpx.AsyncClient(base_url=etcd.url) as c:
                key = base64.b64encode(f"/elsewhere-{uuid.uuid4().hex}".encode()).decode()
                r = await c.post("/v3/kv/put", json={"key": key, "value": key})
                assert r.status_code == 200, r.text
            with trio.fail_after(3):
                await reader.sync()
                await reader.sync()  # the second from what the first learnt: no wait
            assert reader.revision() == gone
        nursery.cancel_scope.cancel()
