"""Acknowledged writes survive kill -9 of the API server, and revisions keep increasing."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from tests.conftest import start_apiserver

WRITERS = 8


def test_acknowledged_writes_survive_kill9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_apiserver(data)
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

    restarted = start_apiserver(data)
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
