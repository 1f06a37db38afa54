"""Acknowledged writes survive kill -9 of the API server, and revisions keep increasing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKENDS, start_apiserver
from tests.etcd_server import start_etcd

WRITERS = 8


@pytest.fixture(params=BACKENDS)
def storage_flags(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    """RocksDB in the data dir, or a real etcd that outlives the API server's kill."""
    if request.param == "rocksdb":
        yield []
        return
    etcd = start_etcd(tmp_path / "etcd")
    yield etcd.flags
    etcd.stop()


def test_acknowledged_writes_survive_kill9(tmp_path: Path, storage_flags: list[str]) -> None:
    data = tmp_path / "data"
    server = start_apiserver(data, *storage_flags)
    acked: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()
    enough = threading.Event()

    def writer(n: int) -> None:
        with server.client() as api:
            i = 0
            while not stop.is_set():
                name = f"w{n}-{i}"
                try:
                    r = api.post(
                        "/api/v1/namespaces/default/configmaps",
                        json={"metadata": {"name": name}, "data": {"i": str(i)}},
                    )
                except httpx.HTTPError:
                    return  # the server died mid-request: that write was never acknowledged
                if r.status_code == 201:
                    with lock:
                        acked[name] = int(r.json()["metadata"]["resourceVersion"])
                        if len(acked) >= 300:
                            enough.set()
                i += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for t in threads:
        t.start()
    assert enough.wait(60), "writers made no progress"
    server.kill9()  # while writes are in flight
    stop.set()
    for t in threads:
        t.join(30)
    with lock:
        snapshot = dict(acked)

    restarted = start_apiserver(data, *storage_flags)
    try:
        with restarted.client() as api:
            listed = api.get("/api/v1/namespaces/default/configmaps").json()
            stored = {
                i["metadata"]["name"]: int(i["metadata"]["resourceVersion"])
                for i in listed["items"]
            }
            missing = [name for name in snapshot if name not in stored]
            assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
            for name, rv in snapshot.items():
                assert stored[name] == rv
            r = api.post(
                "/api/v1/namespaces/default/configmaps",
                json={"metadata": {"name": "after-restart"}},
            )
            assert int(r.json()["metadata"]["resourceVersion"]) > max(snapshot.values())
    finally:
        restarted.stop()
