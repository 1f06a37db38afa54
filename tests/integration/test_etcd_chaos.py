"""Chaos on a three-member etcd cluster behind three API servers, while a writer creates
ConfigMaps as fast as it can through one API server and watchers follow on the others:
an etcd member killed with -9 and started again from its data dir (it rejoins and catches
up, and then counts towards the quorum), and compaction under a watcher that was away
(410 Expired, a relist, and it converges). Each counts what was acknowledged against what
is stored afterwards: nothing lost, nothing twice.

One cluster for the module (the first test leaves every member running again).
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import ServerHandle, start_apiserver
from tests.etcd_server import EtcdProcess, cluster_flags, start_etcd_cluster
from tests.integration.test_etcd import Watcher
from tests.polling import wait_for

# The third API server compacts every second, so a watcher away for a few seconds is past
# it, and its watch cache holds 50 events, so its window moves past too. Only the last one
# started compacts: an API server reads at its revision while it warms its caches, and one
# warming for longer than another's compaction interval finds that revision gone.
C_FLAGS = ("--etcd-compaction-interval=1s", "--watch-cache-size=50", "--watch-cache-window=0")


@dataclass
class HA:
    members: list[EtcdProcess]
    servers: list[ServerHandle]  # A takes the writes; B and C serve the watchers


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HA]:
    tmp = tmp_path_factory.mktemp("etcd-chaos")
    members = start_etcd_cluster(tmp / "etcd")
    servers: list[ServerHandle] = []
    try:
        for name, extra in (("a", ()), ("b", ()), ("c", C_FLAGS)):
            servers.append(start_apiserver(tmp / name, *cluster_flags(members), *extra))
        yield HA(members, servers)
    finally:
        for server in servers:  # all at once: each takes a few seconds to drain
            server.proc.terminate()
        for server in servers:
            server.stop()
        for member in members:
            member.stop()


def new_namespace(server: ServerHandle) -> str:
    name = f"chaos-{uuid.uuid4().hex[:8]}"
    with server.client() as api:
        r = api.post("/api/v1/namespaces", json={"metadata": {"name": name}})
        assert r.status_code == 201, r.text
    return name


class Writer:
    """Creates ConfigMaps through one API server as fast as it can, in a thread: the names
    acknowledged (201), in order, and those not (a 5xx or a broken connection: maybe
    stored, maybe not)."""

    def __init__(self, server: ServerHandle, url: str) -> None:
        self.acked: list[str] = []
        self.unacked: list[str] = []
        self.unexpected: list[str] = []  # answers a writer must never get
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(server, url), daemon=True)
        self._thread.start()

    def _loop(self, server: ServerHandle, url: str) -> None:
        with server.client() as api:
            i = 0
            while not self._stop.is_set():
                name = f"w{i:06}"
                i += 1
                try:
                    r = api.post(url, json={"metadata": {"name": name}})
                except httpx.HTTPError:
                    self.unacked.append(name)
                    continue
                if r.status_code == 201:
                    self.acked.append(name)
                else:
                    self.unacked.append(name)
                    if r.status_code not in (500, 503, 504):
                        self.unexpected.append(f"{r.status_code} {r.text[:200]}")

    def wait_more(self, n: int, what: str) -> None:
        target = len(self.acked) + n
        wait_for(lambda: len(self.acked) >= target, timeout=60, what=f"{n} writes {what}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the writer did not stop"


def list_rv(server: ServerHandle, url: str) -> str:
    with server.client() as api:
        return str(api.get(url).json()["metadata"]["resourceVersion"])


def stored(server: ServerHandle, url: str) -> list[str]:
    with server.client() as api:
        return [i["metadata"]["name"] for i in api.get(url).json()["items"]]


def check_nothing_lost(writer: Writer, names: list[str]) -> None:
    """Every acknowledged write stored once; nothing stored that was not attempted."""
    assert not writer.unexpected, writer.unexpected
    assert len(names) == len(set(names)), "an object stored twice"
    lost = set(writer.acked) - set(names)
    assert not lost, f"{len(lost)} acknowledged writes lost: {sorted(lost)[:10]}"
    assert set(names) <= set(writer.acked) | set(writer.unacked)


def check_watcher(watcher: Watcher, writer: Writer) -> None:
    """The watcher saw every acknowledged create once, in the order acknowledged."""
    acked = set(writer.acked)
    wait_for(
        lambda: acked <= set(watcher.names()), what="the watcher to see every acknowledged write"
    )
    seen = watcher.names()
    assert len(seen) == len(set(seen)), "an event seen twice"
    assert [n for n in seen if n in acked] == writer.acked


def keys_on(member: EtcdProcess, prefix: str) -> tuple[int, set[str]]:
    """(revision, keys under prefix) from this member's own copy (a serializable read)."""
    start = prefix.encode()
    end = start[:-1] + bytes([start[-1] + 1])
    body = {
        "key": base64.b64encode(start).decode(),
        "range_end": base64.b64encode(end).decode(),
        "keys_only": True,
        "serializable": True,
    }
    with member.client() as c:
        answer: dict[str, Any] = c.post("/v3/kv/range", json=body).json()
    keys = {base64.b64decode(kv["key"]).decode() for kv in answer.get("kvs") or []}
    return int(answer["header"]["revision"]), keys


def test_etcd_member_restarted_from_its_data_rejoins_and_catches_up(ha: HA) -> None:
    a, b, c = ha.servers
    first, second, third = ha.members
    ns = new_namespace(a)
    url = f"/api/v1/namespaces/{ns}/configmaps"
    watchers = [Watcher(s, url, list_rv(s, url)) for s in (b, c)]
    writer = Writer(a, url)
    try:
        writer.wait_more(20, "before the kill")
        # The first member: the one every API server talks to (first in --etcd-servers).
        first.kill9()
        writer.wait_more(50, "with a member down")
        first.restart()  # from its data dir: the same member, behind by what it missed
        writer.wait_more(50, "after the restart")
        # It is a voter again: with the second member down too, the cluster still has a
        # quorum (first and third) only if the restarted member takes part.
        second.kill9()
        writer.wait_more(50, "with the restarted member in the quorum")
        second.restart()
        writer.wait_more(20, "with every member back")
    finally:
        writer.stop()
        for w in watchers:
            w.stop()
    names = stored(a, url)
    check_nothing_lost(writer, names)
    for w in watchers:
        check_watcher(w, writer)
    # Each member's own copy holds exactly what the API servers store, at upstream's keys.
    expected = {f"/registry/configmaps/{ns}/{name}" for name in names}
    for member in ha.members:
        wait_for(
            lambda m=member: keys_on(m, f"/registry/configmaps/{ns}/")[1] == expected,
            what="every member to catch up",
        )
    print(
        f"acknowledged {len(writer.acked)}, not acknowledged {len(writer.unacked)}, "
        f"stored {len(names)}"
    )


class Reflector:
    """A client's list-then-watch loop, as client-go's reflector: it lists, watches from
    the list's revision in short watches (timeoutSeconds=1), each resuming at the last
    revision seen, and relists on 410 Expired. While paused it does not watch at all."""

    def __init__(self, server: ServerHandle, url: str) -> None:
        self.state: dict[str, str] = {}  # name -> resourceVersion
        self.rv = ""
        self.expired: list[dict[str, Any]] = []  # the 410 Status objects received
        self.lists = 0
        self.error: BaseException | None = None
        self.running = threading.Event()  # cleared: stop watching (after the current one)
        self.running.set()
        self.idle = threading.Event()  # set while it does not watch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(server, url), daemon=True)
        self._thread.start()

    def _run(self, server: ServerHandle, url: str) -> None:
        try:
            with server.client() as api:
                self._relist(api, url)
                while not self._stop.is_set():
                    if not self.running.is_set():
                        self.idle.set()
                        self.running.wait()
                        self.idle.clear()
                    if self._watch(api, url):
                        self._relist(api, url)
        except (httpx.HTTPError, AssertionError, ValueError, KeyError) as e:
            self.error = e

    def _relist(self, api: httpx.Client, url: str) -> None:
        r = api.get(url)
        assert r.status_code == 200, r.text
        body = r.json()
        items = body["items"]
        self.state = {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in items}
        self.rv = body["metadata"]["resourceVersion"]
        self.lists += 1

    def _watch(self, api: httpx.Client, url: str) -> bool:
        """One short watch from self.rv; True when it answered 410 (relist)."""
        params = {"watch": "1", "resourceVersion": self.rv, "timeoutSeconds": "1"}
        with api.stream("GET", url, params=params) as r:
            if r.status_code == 410:
                self.expired.append(json.loads(r.read()))
                return True
            assert r.status_code == 200, r.read()
            for line in r.iter_lines():
                if not line:
                    continue
                event = json.loads(line)
                obj = event["object"]
                if event["type"] == "ERROR":
                    assert obj["code"] == 410, obj
                    self.expired.append(obj)
                    return True
                name, rv = obj["metadata"]["name"], obj["metadata"]["resourceVersion"]
                if event["type"] == "DELETED":
                    self.state.pop(name, None)
                else:
                    self.state[name] = rv
                self.rv = rv
        return False

    def stop(self) -> None:
        self._stop.set()
        self.running.set()
        self._thread.join(30)


def compacted_past(member: EtcdProcess, rv: str) -> bool:
    with member.client() as c:
        answer = c.post("/v3/kv/range", json={"key": "Lw==", "revision": rv}).json()
    return "compacted" in str(answer.get("error", ""))


def test_compaction_under_a_watcher_that_was_away(ha: HA) -> None:
    """A reflector on C stops watching while writes go on and etcd compacts; back, its watch
    from the old revision answers 410 Expired; it relists and converges on what is stored.
    A watch on B that stays connected meanwhile sees every write once, in order."""
    a, b, c = ha.servers
    ns = new_namespace(a)
    url = f"/api/v1/namespaces/{ns}/configmaps"
    long_watch = Watcher(b, url, list_rv(b, url))
    reflector = Reflector(c, url)
    writer = Writer(a, url)
    try:
        writer.wait_more(20, "before the reflector goes away")
        reflector.running.clear()
        wait_for(reflector.idle.is_set, timeout=30, what="the reflector to stop watching")
        away_at = reflector.rv
        # Away until etcd has compacted past its revision and C's watch cache window has
        # moved past it (more than 50 events since).
        wait_for(
            lambda: compacted_past(ha.members[2], away_at),
            timeout=30,
            what="etcd to compact past the reflector's revision",
        )
        writer.wait_more(80, "while the reflector is away")
        lists = reflector.lists
        reflector.running.set()
        wait_for(lambda: reflector.lists > lists, timeout=30, what="the reflector to relist")
        writer.wait_more(50, "after the relist")
    finally:
        writer.stop()
    try:
        names = stored(a, url)
        check_nothing_lost(writer, names)
        assert reflector.expired, "no 410 after compaction"
        assert reflector.expired[0]["reason"] == "Expired", reflector.expired[0]
        with a.client() as api:
            items = api.get(url).json()["items"]
        truth = {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in items}
        wait_for(lambda: reflector.state == truth, what="the reflector to converge")
        assert reflector.error is None, reflector.error
        check_watcher(long_watch, writer)
        print(
            f"acknowledged {len(writer.acked)}, not acknowledged {len(writer.unacked)}, "
            f"reflector lists {reflector.lists}, 410s {len(reflector.expired)}"
        )
    finally:
        reflector.stop()
        long_watch.stop()
