"""The API server on real etcd: several servers on one etcd, etcd killed and restarted under
load, compaction and 410 Gone, the etcd health check, TLS to etcd."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerHandle, start_apiserver
from tests.etcd_server import EtcdProcess, start_etcd
from tests.polling import wait_for

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdProcess]:
    server = start_etcd(tmp_path / "etcd")
    yield server
    server.stop()


@pytest.fixture
def etcd_tls(tmp_path: Path) -> Iterator[EtcdProcess]:
    server = start_etcd(tmp_path / "etcd-tls", tls=True)
    yield server
    server.stop()


def on_etcd(tmp_path: Path, etcd: EtcdProcess, name: str, *extra: str) -> ServerHandle:
    return start_apiserver(tmp_path / name, *etcd.flags, *extra)


class Watcher:
    """A watch through an API server, in a thread: every event it receives, in order."""

    def __init__(self, server: ServerHandle, url: str, rv: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(server, url, rv), daemon=True)
        self._thread.start()

    def _run(self, server: ServerHandle, url: str, rv: str) -> None:
        params = {"watch": "1", "resourceVersion": rv, "timeoutSeconds": "600"}
        try:
            with server.client() as c, c.stream("GET", url, params=params) as r:
                assert r.status_code == 200, r.read()
                for line in r.iter_lines():
                    if line:
                        self.events.append(json.loads(line))
                    if self._stop.is_set():
                        return
        except (httpx.HTTPError, AssertionError, ValueError) as e:  # reported by names()
            if not self._stop.is_set():
                self.error = e

    def names(self, kind: str = "ADDED") -> list[str]:
        assert self.error is None, f"the watch ended: {self.error!r}"
        return [e["object"]["metadata"]["name"] for e in self.events if e["type"] == kind]

    def stop(self) -> None:
        self._stop.set()


def list_rv(api: httpx.Client, url: str = CONFIGMAPS) -> str:
    return str(api.get(url).json()["metadata"]["resourceVersion"])


def stored(api: httpx.Client, url: str = CONFIGMAPS) -> dict[str, int]:
    items = api.get(url).json()["items"]
    return {i["metadata"]["name"]: int(i["metadata"]["resourceVersion"]) for i in items}


def test_two_apiservers_on_one_etcd_over_tls(tmp_path: Path, etcd_tls: EtcdProcess) -> None:
    # Started together, as `k8slite up --ha` will: both create the bootstrap objects at once.
    with ThreadPoolExecutor(2) as pool:
        started = [pool.submit(on_etcd, tmp_path, etcd_tls, name) for name in ("a", "b")]
    failed = [f.exception() for f in started if f.exception() is not None]
    if failed:  # stop the one that did start, then fail with why the other did not
        for f in started:
            if f.exception() is None:
                f.result().stop()
        raise failed[0]
    a, b = (f.result() for f in started)
    try:
        with a.client() as api_a, b.client() as api_b:
            watcher = Watcher(b, CONFIGMAPS, list_rv(api_b))
            acked: list[tuple[str, int]] = []
            for i in range(20):
                r = api_a.post(CONFIGMAPS, json={"metadata": {"name": f"x{i}"}})
                assert r.status_code == 201, r.text
                acked.append((f"x{i}", int(r.json()["metadata"]["resourceVersion"])))

            # B's watcher sees every write made through A, once each, in order.
            wait_for(lambda: len(watcher.names()) >= 20, what="B's watcher to see A's writes")
            seen = [
                (e["object"]["metadata"]["name"], int(e["object"]["metadata"]["resourceVersion"]))
                for e in watcher.events
                if e["type"] == "ADDED"
            ]
            assert seen == acked
            # One revision line: B lists what A wrote, at A's revisions.
            assert {n: rv for n, rv in acked}.items() <= stored(api_b).items()

            # A read of the latest state through B sees what A just acknowledged (B waits for
            # its watch to reach etcd's revision, as upstream's consistent reads do).
            for i in range(30):
                r = api_a.post(CONFIGMAPS, json={"metadata": {"name": f"y{i}"}})
                assert r.status_code == 201, r.text
                assert api_b.get(f"{CONFIGMAPS}/y{i}").status_code == 200
                assert f"y{i}" in stored(api_b)

            # Compare-and-swap holds across servers: B updates at A's revision, then A's
            # copy of that revision is stale.
            name, rv = acked[0]
            body = {"metadata": {"name": name, "resourceVersion": str(rv)}, "data": {"k": "b"}}
            assert api_b.put(f"{CONFIGMAPS}/{name}", json=body).status_code == 200
            r = api_a.put(f"{CONFIGMAPS}/{name}", json=body)
            assert r.status_code == 409 and r.json()["reason"] == "Conflict"

            assert api_a.get("/readyz/etcd").text == "ok"
            assert "[+]etcd ok" in api_b.get("/readyz", params={"verbose": "1"}).text
            watcher.stop()
    finally:
        a.stop()
        b.stop()


def test_acknowledged_writes_survive_kill9_of_etcd(tmp_path: Path, etcd: EtcdProcess) -> None:
    """etcd is killed and restarted while a writer runs: nothing acknowledged is lost, and
    the API server's watch resumes without losing or repeating an event."""
    server = on_etcd(tmp_path, etcd, "a")
    try:
        with server.client() as api:
            watcher = Watcher(server, CONFIGMAPS, list_rv(api))
            acked: dict[str, int] = {}
            failed = 0
            stop = threading.Event()

            def writer() -> None:
                nonlocal failed
                with server.client() as c:
                    i = 0
                    while not stop.is_set():
                        name = f"w{i}"
                        i += 1
                        try:
                            r = c.post(CONFIGMAPS, json={"metadata": {"name": name}})
                        except httpx.HTTPError:
                            failed += 1
                            continue
                        if r.status_code == 201:
                            acked[name] = int(r.json()["metadata"]["resourceVersion"])
                        else:
                            assert r.status_code in (500, 503, 504), r.text
                            failed += 1

            thread = threading.Thread(target=writer)
            thread.start()
            try:
                wait_for(lambda: len(acked) >= 100, what="100 acknowledged writes")
                etcd.kill9()
                wait_for(lambda: failed > 0, what="a write to fail while etcd is down")
                before = len(acked)
                etcd.restart()
                wait_for(lambda: len(acked) >= before + 100, what="writes after etcd's restart")
            finally:
                stop.set()
                thread.join(120)

            # Every acknowledged write is stored, at the revision acknowledged.
            wait_for(lambda: acked.items() <= stored(api).items(), what="the cache to settle")
            # The watch saw each create once, in revision order, across the restart.
            wait_for(lambda: set(acked) <= set(watcher.names()), what="every ADDED event")
            added = [e for e in watcher.events if e["type"] == "ADDED"]
            rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in added]
            assert rvs == sorted(set(rvs))
            assert len(watcher.names()) == len(set(watcher.names()))
            watcher.stop()

        # What etcd holds, read by a new API server warming from it, agrees.
        fresh = on_etcd(tmp_path, etcd, "fresh")
        try:
            with fresh.client() as api:
                assert acked.items() <= stored(api).items()
        finally:
            fresh.stop()
    finally:
        server.stop()


def etcd_range(etcd: EtcdProcess, body: dict[str, Any]) -> dict[str, Any]:
    with etcd.client() as c:
        answer: dict[str, Any] = c.post("/v3/kv/range", json=body).json()
        return answer


def test_compaction_and_gone(tmp_path: Path, etcd: EtcdProcess) -> None:
    server = on_etcd(
        tmp_path,
        etcd,
        "a",
        "--etcd-compaction-interval=1s",
        "--watch-cache-size=5",
        "--watch-cache-window=0",
    )
    try:
        with server.client() as api:
            first = api.post(CONFIGMAPS, json={"metadata": {"name": "c0"}}).json()
            old = first["metadata"]["resourceVersion"]
            for i in range(1, 12):
                assert api.post(CONFIGMAPS, json={"metadata": {"name": f"c{i}"}}).status_code == 201

            # The compactor runs each interval, compacting to the revision of the one before.
            def compacted() -> bool:
                answer = etcd_range(etcd, {"key": "Lw==", "revision": old})
                return "compacted" in str(answer.get("error", ""))

            wait_for(compacted, what="etcd history to be compacted past the first write")

            # Too old for the watch cache (and for etcd): 410 Gone, as upstream.
            params = {"watch": "1", "resourceVersion": old, "timeoutSeconds": "5"}
            with api.stream("GET", CONFIGMAPS, params=params) as r:
                event = json.loads(next(line for line in r.iter_lines() if line))
            assert event["type"] == "ERROR"
            assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"
            exact = {"resourceVersion": old, "resourceVersionMatch": "Exact"}
            r = api.get(CONFIGMAPS, params=exact)
            assert r.status_code == 410 and r.json()["reason"] == "Expired", r.text

            # The server's own watch lives on: writes after compaction are served.
            assert api.post(CONFIGMAPS, json={"metadata": {"name": "after"}}).status_code == 201
            assert api.get(f"{CONFIGMAPS}/after").status_code == 200
            assert len(stored(api)) == 13
    finally:
        server.stop()


def test_etcd_health_check_follows_etcd(tmp_path: Path, etcd: EtcdProcess) -> None:
    server = on_etcd(tmp_path, etcd, "a")
    try:
        with server.client() as api:
            assert api.get("/readyz").text == "ok"
            etcd.kill9()

            def failing() -> str | None:
                r = api.get("/readyz")
                return r.text if r.status_code == 500 else None

            body = wait_for(failing, what="/readyz to fail without etcd")
            assert "[-]etcd failed: reason withheld" in body
            assert body.rstrip().endswith("readyz check failed")
            assert "[+]ping ok" in body
            # A read of the latest state needs etcd's revision (a quorum read, as upstream's);
            # a read of any state (resourceVersion=0) comes from the cache.
            r = api.get(CONFIGMAPS + "/nothing-yet")
            assert r.status_code == 503 and r.json()["reason"] == "ServiceUnavailable", r.text
            r = api.get(CONFIGMAPS + "/nothing-yet", params={"resourceVersion": "0"})
            assert r.status_code == 404, r.text
            assert api.get(CONFIGMAPS, params={"resourceVersion": "0"}).status_code == 200
            r = api.post(CONFIGMAPS, json={"metadata": {"name": "while-down"}})
            assert r.status_code == 503 and r.json()["reason"] == "ServiceUnavailable", r.text

            etcd.restart()
            wait_for(lambda: api.get("/readyz").text == "ok", what="/readyz to recover")
            assert api.post(CONFIGMAPS, json={"metadata": {"name": "back"}}).status_code == 201
    finally:
        server.stop()


def test_events_expire_after_event_ttl(tmp_path: Path, etcd: EtcdProcess) -> None:
    """Events are written with an etcd lease of --event-ttl, as upstream: they go by themselves
    (watchers see DELETED), while other kinds stay."""
    server = on_etcd(tmp_path, etcd, "a", "--event-ttl=2s")
    events_url = "/api/v1/namespaces/default/events"
    try:
        with server.client() as api:
            watcher = Watcher(server, events_url, list_rv(api, events_url))
            event = {
                "metadata": {"name": "e1"},
                "involvedObject": {"kind": "ConfigMap", "namespace": "default", "name": "x"},
                "reason": "Tested",
                "message": "expires",
                "type": "Normal",
            }
            r = api.post(events_url, json=event)
            assert r.status_code == 201, r.text
            assert api.post(CONFIGMAPS, json={"metadata": {"name": "stays"}}).status_code == 201
            wait_for(lambda: watcher.names("DELETED") == ["e1"], what="the Event to expire")
            assert api.get(f"{events_url}/e1").status_code == 404
            assert api.get(f"{CONFIGMAPS}/stays").status_code == 200
            watcher.stop()
    finally:
        server.stop()


def endpoint_ports(api: httpx.Client) -> list[int]:
    ep = api.get("/api/v1/namespaces/default/endpoints/kubernetes").json()
    return sorted(p["port"] for s in ep.get("subsets") or [] for p in s["ports"])


def slice_ports(api: httpx.Client) -> list[int]:
    slices = api.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices").json()
    return sorted(
        p["port"]
        for s in slices["items"]
        if s["metadata"]["labels"].get("kubernetes.io/service-name") == "kubernetes"
        for p in s["ports"]
    )


def port_of(server: ServerHandle) -> int:
    return int(server.url.rsplit(":", 1)[1])


def test_kubernetes_endpoints_list_every_live_apiserver(tmp_path: Path, etcd: EtcdProcess) -> None:
    """Upstream's lease endpoint reconciler: each API server holds a lease; the `kubernetes`
    Endpoints and EndpointSlices name the live ones. One that stops removes itself; one
    that dies drops out when its lease runs out."""
    a = on_etcd(tmp_path, etcd, "a")
    b = on_etcd(tmp_path, etcd, "b")
    c: ServerHandle | None = None
    try:
        with a.client() as api:
            both = sorted([port_of(a), port_of(b)])
            wait_for(lambda: endpoint_ports(api) == both, what="both servers in the endpoints")
            wait_for(lambda: slice_ports(api) == both, what="both servers in the slices")

            b.kill9()
            wait_for(
                lambda: endpoint_ports(api) == [port_of(a)],
                timeout=90,
                what="the killed server to drop out when its lease runs out",
            )
            assert slice_ports(api) == [port_of(a)]

            # Each server also holds an identity Lease in kube-system (upstream's
            # APIServerIdentity); the dead one's stays until it expires (an hour).
            leases = api.get(
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases",
                params={"labelSelector": "apiserver.kubernetes.io/identity=kube-apiserver"},
            ).json()["items"]
            assert len(leases) == 2
            for lease in leases:
                assert lease["metadata"]["name"].startswith("apiserver-")
                assert lease["spec"]["leaseDurationSeconds"] == 3600
                assert lease["spec"]["holderIdentity"].startswith(lease["metadata"]["name"] + "_")

            # An identity lease not renewed within its duration is collected.
            stale = {
                "metadata": {
                    "name": "apiserver-gone",
                    "labels": {"apiserver.kubernetes.io/identity": "kube-apiserver"},
                },
                "spec": {
                    "holderIdentity": "apiserver-gone_x",
                    "leaseDurationSeconds": 3600,
                    "renewTime": "2020-01-01T00:00:00.000000Z",
                },
            }
            url = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"
            assert api.post(url, json=stale).status_code == 201
            wait_for(
                lambda: api.get(f"{url}/apiserver-gone").status_code == 404,
                what="the expired identity lease to be collected",
            )

            c = on_etcd(tmp_path, etcd, "c")
            wait_for(lambda: port_of(c) in endpoint_ports(api), what="a new server to join")
            c.stop()
            # Gone at once (well within the lease's 15 s): it removed itself as it stopped.
            wait_for(
                lambda: endpoint_ports(api) == [port_of(a)],
                timeout=10,
                what="a stopped server to remove itself",
            )
    finally:
        for server in (a, b, c):
            if server is not None:
                server.stop()
