"""Periodic bookmarks: an idle watcher learns how far the store has moved, on a timer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from k8slite.api.resources import RESOURCES
from k8slite.apiserver import watch
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.http import Request
from k8slite.apiserver.requestinfo import parse
from k8slite.storage import RocksStore


def _request(path: str, query: str) -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "headers": [],
        "query_string": query.encode(),
        "extensions": {},
    }

    async def receive() -> dict[str, Any]:
        await trio.sleep_forever()
        raise AssertionError

    return Request(scope, receive)


async def _watch_frames(
    core: ApiCore, query: str, seconds: float, during: Any
) -> list[tuple[float, dict[str, Any]]]:
    """Run a configmaps watch for `seconds` while `during()` runs; frames with arrival times."""
    path = "/api/v1/namespaces/default/configmaps"
    req = _request(path, f"watch=1&{query}")
    info = parse("GET", path, True)
    reg = core.registry(next(rt for rt in RESOURCES if rt.plural == "configmaps"))
    frames: list[tuple[float, dict[str, Any]]] = []
    start = trio.current_time()

    async def send(message: dict[str, Any]) -> None:
        for line in message.get("body", b"").splitlines():
            frames.append((trio.current_time() - start, json.loads(line)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch.bookmark_ticker, core.registries.values())
        nursery.start_soon(watch.serve_watch, reg, req, info, send)
        await during()
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    return frames


@pytest.fixture
async def core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(watch, "BOOKMARK_INTERVAL", 0.5)
    monkeypatch.setattr(watch, "BOOKMARK_TICK", 0.1)
    async with RocksStore(tmp_path / "db") as store:
        api = ApiCore(store)
        api.warm()
        await api.ensure_system_namespaces()
        yield api


async def _create_pod(core: ApiCore) -> int:
    pods = core.registry(next(rt for rt in RESOURCES if rt.plural == "pods"))
    data = await pods.create(
        "default",
        {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
    )
    return int(json.loads(data)["metadata"]["resourceVersion"])


async def test_an_idle_watcher_gets_a_bookmark_after_the_interval(core: ApiCore) -> None:
    rv = core.store.revision()
    created: list[int] = []

    async def write_elsewhere() -> None:
        created.append(await _create_pod(core))  # moves the revision, not configmaps

    frames = await _watch_frames(
        core, f"allowWatchBookmarks=true&resourceVersion={rv}", 1.2, write_elsewhere
    )
    bookmarks = [(t, f) for t, f in frames if f["type"] == "BOOKMARK"]
    assert bookmarks, frames
    first_at, first = bookmarks[0]
    assert first["object"]["metadata"]["resourceVersion"] == str(created[0])
    assert 0.5 <= first_at <= 0.5 + 0.1 + 0.3  # interval, then at most a tick (and slack)
    assert len(bookmarks) == 1  # nothing new since: no second bookmark
    assert all(f["type"] == "BOOKMARK" for _, f in frames)


async def test_no_bookmarks_unless_asked(core: ApiCore) -> None:
    rv = core.store.revision()

    async def write_elsewhere() -> None:
        await _create_pod(core)

    frames = await _watch_frames(core, f"resourceVersion={rv}", 1.0, write_elsewhere)
    assert frames == []
