"""Tests for the native watch cache against the pure-Python reference."""

from __future__ import annotations

import json
import threading
import time
from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k8slite._native import (
    ExpiredError,
    FieldSelector,
    LabelSelector,
    SelectorError,
    WatchCache,
    dumps,
    loads,
)
from tests.reference import cache as ref
from tests.reference import selectors as ref_sel

FIELDS = [
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "status.phase",
    "spec.priority",
    "spec.hostNetwork",
]
PREFIX = "/registry/core/pods/"


def pod(
    key: str, rv: int, labels: dict[str, str] | None, node: str, phase: str, with_rv: bool = True
) -> bytes:
    ns, name = key.rsplit("/", 2)[-2:]
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if labels is not None:
        meta["labels"] = labels
    if with_rv:
        meta["resourceVersion"] = str(rv)
    spec: dict[str, Any] = {"nodeName": node, "priority": rv % 3, "hostNetwork": rv % 2 == 0}
    if not node:
        del spec["nodeName"]
    return dumps({"metadata": meta, "spec": spec, "status": {"phase": phase}})


def decoded(frames: list[bytes]) -> list[Any]:
    return [loads(f) for f in frames]


# ------------------------------------------------------------------- model checking

keys = st.sampled_from([f"{PREFIX}{ns}/p{i}" for ns in ("ns1", "ns2") for i in range(4)])
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("apply"),
            st.sampled_from(["ADDED", "MODIFIED", "DELETED"]),
            keys,
            st.one_of(
                st.none(),
                st.dictionaries(
                    st.sampled_from(["app", "tier"]), st.sampled_from(["a", "b"]), max_size=2
                ),
            ),
            st.sampled_from(["", "n1", "n2"]),
            st.sampled_from(["Pending", "Running"]),
            st.booleans(),  # same revision as the previous event (one transaction)
            st.booleans(),  # the object carries metadata.resourceVersion
        ),
        st.tuples(st.just("advance"), st.integers(1, 3)),
    ),
    max_size=40,
)

SELECTORS = [
    ("", ""),
    ("app=a", ""),
    ("app!=a", ""),
    ("!tier", ""),
    ("tier in (a,b)", ""),
    ("", "spec.nodeName=n1"),
    ("", "spec.nodeName="),
    ("app", "status.phase=Running"),
    ("", "spec.priority=1,spec.hostNetwork=true"),
    ("", "metadata.namespace=ns2"),
]


def build(
    ops: list[tuple[Any, ...]], capacity: int, start: int
) -> tuple[WatchCache, ref.WatchCache]:
    native, oracle = WatchCache(FIELDS, capacity), ref.WatchCache(FIELDS, capacity)
    if start:
        # Warm up from a snapshot at `start` holding a few objects written before it.
        for i, key in enumerate(sorted({op[2] for op in ops if op[0] == "apply"})[:3]):
            data = pod(key, i + 1, {"app": "a"}, "n1", "Running")
            native.load(key, i + 1, data)
            oracle.load(key, i + 1, data)
        native.advance(start)
        oracle.advance(start)
    rv = start
    for op in ops:
        if op[0] == "advance":
            rv += op[1]
            native.advance(rv)
            oracle.advance(rv)
            continue
        _, kind, key, labels, node, phase, same_rv, with_rv = op
        if not same_rv or rv == start:
            rv += 1
        data = pod(key, rv, labels, node, phase, with_rv)
        native.apply(kind, key, rv, data)
        oracle.apply(kind, key, rv, data)
    return native, oracle


def both(native_call: Any, oracle_call: Any) -> tuple[Any, Any]:
    try:
        got: Any = native_call()
    except ExpiredError:
        got = "expired"
    try:
        want: Any = oracle_call()
    except ref.ExpiredError:
        want = "expired"
    return got, want


def listed(result: Any) -> Any:
    if result == "expired":
        return result
    body, count, last_key, remaining = result
    return loads(body), count, last_key, remaining


@settings(max_examples=300, deadline=None)
@given(
    operations,
    st.integers(1, 8),
    st.sampled_from([0, 10]),
    st.lists(st.sampled_from(SELECTORS), min_size=1, max_size=3, unique=True),
    st.sampled_from([PREFIX, PREFIX + "ns1/"]),
)
def test_matches_reference(
    ops: list[tuple[Any, ...]],
    capacity: int,
    start: int,
    selectors: list[tuple[str, str]],
    prefix: str,
) -> None:
    native, oracle = build(ops, capacity, start)
    assert (len(native), native.revision(), native.oldest()) == (
        len(oracle),
        oracle.revision(),
        oracle.oldest(),
    )
    for key in {op[2] for op in ops if op[0] == "apply"}:
        assert native.get(key) == oracle.get(key)
    revisions = range(max(0, oracle.oldest() - 1), oracle.revision() + 2)
    for label_text, field_text in selectors:
        label = LabelSelector(label_text) if label_text else None
        field = FieldSelector(field_text) if field_text else None
        rlabel = ref_sel.LabelSelector(label_text) if label_text else None
        rfield = ref_sel.FieldSelector(field_text) if field_text else None
        got, want = (
            native.initial_events(prefix, label, field),
            oracle.initial_events(prefix, rlabel, rfield),
        )
        assert (decoded(got[0]), got[1]) == (decoded(want[0]), want[1])
        for at in [None, *revisions]:
            got, want = both(
                partial(native.list, prefix, label, field, at_revision=at),
                partial(oracle.list, prefix, rlabel, rfield, at_revision=at),
            )
            assert listed(got) == listed(want)
        for rv in revisions:
            for max_events in (0, 1, 3):
                got, want = both(
                    partial(native.events_since, rv, prefix, label, field, max_events),
                    partial(oracle.events_since, rv, prefix, rlabel, rfield, max_events),
                )
                if got == "expired" or want == "expired":
                    assert got == want
                else:
                    assert (decoded(got[0]), got[1]) == (decoded(want[0]), want[1])


@settings(max_examples=100, deadline=None)
@given(operations, operations, st.integers(1, 2), st.integers(2, 30))
def test_pagination_is_a_consistent_snapshot(
    first: list[tuple[Any, ...]], later: list[tuple[Any, ...]], limit: int, capacity: int
) -> None:
    native, _oracle = build(first, capacity, 0)
    at = native.revision()
    expected = loads(native.list(PREFIX)[0])
    body, _, last_key, _ = native.list(PREFIX, limit=limit, at_revision=at)
    pages = loads(body)
    # Writes between pages must not show up in later pages.
    rv = at
    for op in later:
        if op[0] == "apply":
            rv += 1
            native.apply(op[1], op[2], rv, pod(op[2], rv, op[3], op[4], op[5]))
    while last_key is not None:
        try:
            body, _, last_key, _ = native.list(
                PREFIX, limit=limit, start_after=last_key, at_revision=at
            )
        except ExpiredError:
            assert native.oldest() > at
            return
        pages += loads(body)
    assert pages == expected


# ------------------------------------------------------------------------ specifics


def test_warm_up_with_load() -> None:
    cache = WatchCache(FIELDS)
    cache.load(PREFIX + "ns1/a", 40, pod(PREFIX + "ns1/a", 40, {"app": "a"}, "n1", "Running"))
    cache.load(PREFIX + "ns1/b", 90, pod(PREFIX + "ns1/b", 90, None, "", "Pending"))
    assert (len(cache), cache.revision(), cache.oldest()) == (2, 90, 90)
    cache.advance(100)  # the snapshot's revision ends warm-up: the cache starts there
    assert (cache.revision(), cache.oldest()) == (100, 100)
    assert cache.events_since(100, PREFIX) == ([], 100)
    with pytest.raises(ExpiredError, match=r"too old resource version: 99 \(100\)"):
        cache.events_since(99, PREFIX)
    frames, revision = cache.initial_events(PREFIX, LabelSelector("app=a"))
    assert revision == 100 and [loads(f)["type"] for f in frames] == ["ADDED"]
    with pytest.raises(ValueError, match="warm-up"):
        cache.load(PREFIX + "ns1/c", 1, pod(PREFIX + "ns1/c", 1, None, "", "Pending"))
    cache.apply("DELETED", PREFIX + "ns1/b", 101, pod(PREFIX + "ns1/b", 101, None, "", "Pending"))
    frames, resume = cache.events_since(100, PREFIX)
    assert [loads(f)["type"] for f in frames] == ["DELETED"] and resume == 101
    # Later advances (commits to other resources) never move oldest(), so a quiet resource
    # keeps accepting watches from any revision since warm-up.
    cache.advance(500)
    assert (cache.revision(), cache.oldest()) == (500, 100)
    assert cache.events_since(101, PREFIX) == ([], 500)


def test_cache_without_warm_up_starts_at_first_advance() -> None:
    cache = WatchCache(FIELDS)
    cache.advance(7)
    assert cache.oldest() == 7
    with pytest.raises(ExpiredError):
        cache.list(PREFIX, at_revision=6)


def test_window_keeps_young_events_beyond_the_capacity() -> None:
    # Upstream keeps 75 s of history however many events that is (up to a bound): a
    # watcher or a paginated LIST behind by less than that can still resume.
    def write(cache: WatchCache, rv: int) -> None:
        cache.apply(
            "MODIFIED", PREFIX + "ns1/a", rv, pod(PREFIX + "ns1/a", rv, None, "", "Pending")
        )

    young = WatchCache(FIELDS, 2, 60.0, 5)
    young.advance(10)
    for rv in range(11, 16):
        write(young, rv)
    assert young.oldest() == 10  # 5 events, all young: none dropped though capacity is 2
    assert len(young.events_since(10, PREFIX)[0]) == 5
    assert young.list(PREFIX, at_revision=11)[1] == 1  # a snapshot inside the window
    write(young, 16)  # the upper bound holds even for young events
    assert young.oldest() == 11
    with pytest.raises(ExpiredError):
        young.events_since(10, PREFIX)

    aging = WatchCache(FIELDS, 2, 0.2, 100)
    aging.advance(10)
    for rv in range(11, 15):
        write(aging, rv)
    assert aging.oldest() == 10
    time.sleep(0.3)  # the window's own clock: every event so far is now too old
    write(aging, 15)
    assert aging.oldest() == 13  # back to the capacity: events 14 and 15 kept

    counted = WatchCache(FIELDS, 2)  # no window: exactly the capacity
    counted.advance(10)
    for rv in range(11, 15):
        write(counted, rv)
    assert counted.oldest() == 12
    with pytest.raises(ValueError, match="window"):
        WatchCache(FIELDS, 2, -1.0)


def test_rejects_bad_input() -> None:
    cache = WatchCache(FIELDS)
    cache.apply("ADDED", PREFIX + "a/b", 5, pod(PREFIX + "a/b", 5, None, "", "Pending"))
    with pytest.raises(ValueError, match="older"):
        cache.apply("MODIFIED", PREFIX + "a/b", 4, pod(PREFIX + "a/b", 4, None, "", "Pending"))
    with pytest.raises(ValueError, match="event type"):
        cache.apply("BOOKMARK", PREFIX + "a/b", 6, b"{}")
    with pytest.raises(ValueError, match="malformed"):
        cache.apply("MODIFIED", PREFIX + "a/b", 6, b'{"metadata":')
    with pytest.raises(SelectorError, match="field label not supported: spec.foo"):
        cache.list(PREFIX, field=FieldSelector("spec.foo=x"))
    with pytest.raises(ValueError):
        WatchCache(FIELDS, capacity=0)


def test_stop_matching_sends_previous_state_at_event_rv() -> None:
    cache = WatchCache(FIELDS)
    key = PREFIX + "ns/p"
    cache.apply("ADDED", key, 1, pod(key, 1, {"app": "a"}, "", "Pending"))
    cache.apply("MODIFIED", key, 2, pod(key, 2, {"app": "b"}, "n1", "Pending", with_rv=False))
    frames, resume = cache.events_since(1, PREFIX, LabelSelector("app=a"))
    (event,) = decoded(frames)
    assert event["type"] == "DELETED" and resume == 2
    assert event["object"]["metadata"] == {
        "name": "p",
        "namespace": "ns",
        "labels": {"app": "a"},
        "resourceVersion": "2",
    }
    frames, _ = cache.events_since(1, PREFIX, field=FieldSelector("spec.nodeName=n1"))
    assert [e["type"] for e in decoded(frames)] == ["ADDED"]
    # Nothing selects nothing; an empty selector selects everything.
    assert cache.events_since(0, PREFIX, LabelSelector.from_dict(None)) == ([], 2)
    assert len(cache.events_since(0, PREFIX, LabelSelector.from_dict({}))[0]) == 2


def test_frames_are_shared_and_well_formed() -> None:
    cache = WatchCache(FIELDS)
    key = PREFIX + "ns/p"
    data = pod(key, 1, {"app": "a"}, "n1", "Running")
    cache.apply("ADDED", key, 1, data)
    first, _ = cache.events_since(0, PREFIX)
    second, _ = cache.events_since(0, PREFIX)
    assert first[0] is second[0]
    assert first[0] == b'{"type":"ADDED","object":' + data + b"}\n"
    assert cache.get(key) == (data, 1)
    assert cache.list(PREFIX, field=FieldSelector("spec.hostNetwork=false,spec.priority=1"))[1] == 1


def test_max_events_keeps_a_revision_together() -> None:
    cache = WatchCache(FIELDS)
    for i in range(3):
        key = f"{PREFIX}ns/p{i}"
        cache.apply("ADDED", key, 7, pod(key, 7, None, "", "Pending"))
    key = PREFIX + "ns/q"
    cache.apply("ADDED", key, 8, pod(key, 8, None, "", "Pending"))
    frames, resume = cache.events_since(0, PREFIX, max_events=1)
    assert (len(frames), resume) == (3, 7)
    frames, resume = cache.events_since(resume, PREFIX, max_events=1)
    assert (len(frames), resume) == (1, 8)
    cache.advance(12)
    assert cache.events_since(8, PREFIX) == ([], 12)
    assert cache.events_since(15, PREFIX) == ([], 15)


def test_list_with_the_gil_released_while_writing() -> None:
    # Lists in worker threads (GIL released while they build) interleave with writes from
    # this thread: nothing deadlocks, every list is a well-formed snapshot.
    cache = WatchCache(FIELDS)
    for i in range(3000):
        key = f"{PREFIX}ns/p{i:05d}"
        cache.apply("ADDED", key, i + 1, pod(key, i + 1, {"app": "a"}, "n1", "Running"))
    errors: list[BaseException] = []

    def lister() -> None:
        try:
            for _ in range(10):
                body, count, _, _ = cache.list(PREFIX, LabelSelector("app=a"))
                assert count >= 3000 and len(json.loads(body)) == count
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=lister) for _ in range(2)]
    for t in threads:
        t.start()
    for rv in range(3001, 3501):
        key = f"{PREFIX}ns/x{rv}"
        cache.apply("ADDED", key, rv, pod(key, rv, {"app": "a"}, "", "Pending"))
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()
    assert not errors
