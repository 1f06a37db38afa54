"""Informers against a real API server: list+watch, handlers, indexes, relist after 410."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio

from k8slite.client import (
    ApiClient,
    ClientConfig,
    DeletedFinalStateUnknown,
    SharedInformer,
    SharedInformerFactory,
    object_key,
)
from k8slite.client.informer import strip_managed_fields
from k8slite.client.resource import CONFIGMAPS, NAMESPACES, PODS
from k8slite.client.store import NODE_NAME_INDEX
from k8slite.component.objects import Obj
from tests.conftest import BACKENDS, ServerHandle, apiserver_on
from tests.integration.client_helpers import TcpProxy, server_config


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels or {}},
        "data": data,
    }


class Recorder:
    """Event handler callbacks that log what they got."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.tombstones: list[DeletedFinalStateUnknown] = []
        self.changed = trio.Event()

    def _log(self, kind: str, obj: Obj | DeletedFinalStateUnknown) -> None:
        self.events.append((kind, object_key(obj)))
        self.changed.set()
        self.changed = trio.Event()

    def on_add(self, obj: Obj) -> None:
        self._log("add", obj)

    def on_update(self, old: Obj, new: Obj) -> None:
        self._log("update", new)

    def on_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        if isinstance(obj, DeletedFinalStateUnknown):
            self.tombstones.append(obj)
        self._log("delete", obj)

    def register(self, informer: SharedInformer, **kw: Any) -> None:
        informer.add_event_handler(self.on_add, self.on_update, self.on_delete, **kw)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 20) -> None:
        with trio.fail_after(timeout):
            while not predicate():
                await self.changed.wait()


@pytest.fixture(scope="module", params=BACKENDS)
def apiserver(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerHandle]:
    """This module's API server, once on each storage backend (RocksDB, a real etcd)."""
    with apiserver_on(request.param, tmp_path_factory.mktemp(request.param)) as server:
        yield server


@pytest.fixture
def config(apiserver: ServerHandle) -> ClientConfig:
    return server_config(apiserver)


@pytest.fixture
async def kube(config: ClientConfig) -> AsyncIterator[ApiClient]:
    async with ApiClient(config) as client:
        yield client


async def test_list_then_watch(kube: ApiClient, namespace: str) -> None:
    for name in ("a", "b"):
        await kube.create(CONFIGMAPS, configmap(name), namespace=namespace)
    factory = SharedInformerFactory(kube, namespace=namespace, page_size=1)
    informer = factory.informer(CONFIGMAPS)
    assert factory.informer(CONFIGMAPS) is informer
    assert factory.informer(CONFIGMAPS, label_selector="x=y") is not informer
    rec = Recorder()
    rec.register(informer)
    async with trio.open_nursery() as nursery:
        await factory.start(nursery)
        with trio.fail_after(20):
            await factory.wait_for_cache_sync()
        assert informer.has_synced()
        assert sorted(rec.events) == [("add", f"{namespace}/a"), ("add", f"{namespace}/b")]

        await kube.create(CONFIGMAPS, configmap("c", x="1"), namespace=namespace)
        await kube.patch(CONFIGMAPS, "c", {"data": {"x": "2"}}, namespace=namespace)
        await kube.delete(CONFIGMAPS, "a", namespace=namespace)
        await rec.wait_for(lambda: ("delete", f"{namespace}/a") in rec.events)
        assert rec.events[2:] == [
            ("add", f"{namespace}/c"),
            ("update", f"{namespace}/c"),
            ("delete", f"{namespace}/a"),
        ]
        cached = informer.get("c", namespace)
        assert cached is not None and cached["data"] == {"x": "2"}
        assert informer.get("a", namespace) is None
        assert sorted(o["metadata"]["name"] for o in informer.list(namespace)) == ["b", "c"]
        assert int(informer.last_sync_resource_version) > int(cached["metadata"]["resourceVersion"])

        # A handler added late hears about everything already cached.
        late = Recorder()
        late.register(informer)
        assert sorted(late.events) == [("add", f"{namespace}/b"), ("add", f"{namespace}/c")]
        nursery.cancel_scope.cancel()


async def test_transform_strips_managed_fields_and_updates_keep_them(
    kube: ApiClient, namespace: str
) -> None:
    # The controller manager's, scheduler's and hollow nodes' informers keep no
    # managedFields; a write made from such a cached copy must not lose the stored ones.
    await kube.create(CONFIGMAPS, configmap("m", x="1"), namespace=namespace)
    factory = SharedInformerFactory(kube, namespace=namespace, transform=strip_managed_fields)
    informer = factory.informer(CONFIGMAPS)
    rec = Recorder()
    rec.register(informer)
    async with trio.open_nursery() as nursery:
        await factory.start(nursery)
        with trio.fail_after(20):
            await factory.wait_for_cache_sync()
        listed = informer.get("m", namespace)
        assert listed is not None and "managedFields" not in listed["metadata"]
        await kube.patch(CONFIGMAPS, "m", {"data": {"x": "2"}}, namespace=namespace)
        await rec.wait_for(lambda: ("update", f"{namespace}/m") in rec.events)
        watched = informer.get("m", namespace)
        assert watched is not None and watched["data"] == {"x": "2"}
        assert "managedFields" not in watched["metadata"]
        stored = await kube.get(CONFIGMAPS, "m", namespace=namespace)
        assert stored["metadata"]["managedFields"]
        changed = {**watched, "data": {"x": "3"}}
        updated = await kube.update(CONFIGMAPS, changed, namespace=namespace)
        managers = {e["manager"] for e in updated["metadata"]["managedFields"]}
        assert managers and managers == {e["manager"] for e in stored["metadata"]["managedFields"]}
        nursery.cancel_scope.cancel()


async def test_selectors_and_indexes(kube: ApiClient, namespace: str) -> None:
    def pod(name: str, node: str | None, app: str) -> Obj:
        spec: Obj = {"containers": [{"name": "c", "image": "busybox:1.36"}]}
        if node:
            spec["nodeName"] = node
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": app}},
            "spec": spec,
        }

    await kube.create(PODS, pod("p1", "n1", "web"), namespace=namespace)
    await kube.create(PODS, pod("p2", "n2", "web"), namespace=namespace)
    await kube.create(PODS, pod("p3", "n1", "db"), namespace=namespace)
    factory = SharedInformerFactory(kube)
    web = factory.informer(PODS, namespace=namespace, label_selector={"app": "web"})
    unscheduled = factory.informer(
        PODS,
        namespace=namespace,
        field_selector="spec.nodeName=",
        indexers={"app": lambda o: [o["metadata"]["labels"]["app"]]},
    )
    async with trio.open_nursery() as nursery:
        await factory.start(nursery)
        with trio.fail_after(20):
            await factory.wait_for_cache_sync()
        assert sorted(p["metadata"]["name"] for p in web.list()) == ["p1", "p2"]
        assert [p["metadata"]["name"] for p in web.indexer.by_index(NODE_NAME_INDEX, "n1")] == [
            "p1"
        ]
        assert unscheduled.list() == []
        rec = Recorder()
        rec.register(unscheduled)
        await kube.create(PODS, pod("p4", None, "db"), namespace=namespace)
        await rec.wait_for(lambda: bool(rec.events))
        assert [p["metadata"]["name"] for p in unscheduled.indexer.by_index("app", "db")] == ["p4"]
        nursery.cancel_scope.cancel()


async def test_failing_handler_does_not_stop_others(kube: ApiClient, namespace: str) -> None:
    informer = SharedInformer(kube, CONFIGMAPS, namespace=namespace)

    def broken(obj: Obj) -> None:
        raise RuntimeError("handler bug")

    informer.add_event_handler(on_add=broken)
    rec = Recorder()
    rec.register(informer)
    async with trio.open_nursery() as nursery:
        await nursery.start(informer.run)
        await kube.create(CONFIGMAPS, configmap("one"), namespace=namespace)
        await kube.create(CONFIGMAPS, configmap("two"), namespace=namespace)
        await rec.wait_for(lambda: len(rec.events) == 2)
        assert len(informer.list()) == 2
        nursery.cancel_scope.cancel()


async def test_resync_redelivers_cached_objects(kube: ApiClient, namespace: str) -> None:
    await kube.create(CONFIGMAPS, configmap("r"), namespace=namespace)
    informer = SharedInformer(kube, CONFIGMAPS, namespace=namespace)
    rec = Recorder()
    rec.register(informer, resync_period=0.2)
    async with trio.open_nursery() as nursery:
        await nursery.start(informer.run)
        await rec.wait_for(lambda: rec.events.count(("update", f"{namespace}/r")) >= 2)
        nursery.cancel_scope.cancel()
    assert rec.events[0] == ("add", f"{namespace}/r")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_relist_after_410_reports_missed_deletes(tmp_path: Path, backend: str) -> None:
    # A tiny watch cache: a watcher that was away for a few writes must relist.
    with apiserver_on(
        backend, tmp_path, "--watch-cache-size", "3", "--watch-cache-window", "0"
    ) as server:
        config = server_config(server)
        target = urlsplit(config.server)
        async with ApiClient(config) as direct, trio.open_nursery() as nursery:
            ns = "relist"
            await direct.create(NAMESPACES, {"metadata": {"name": ns}})
            await direct.create(CONFIGMAPS, configmap("keep", v="1"), namespace=ns)
            await direct.create(CONFIGMAPS, configmap("doomed"), namespace=ns)

            proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 443)
            await nursery.start(proxy.run)
            via_proxy = ApiClient(dataclasses.replace(config, server=proxy.url))
            informer = SharedInformer(via_proxy, CONFIGMAPS, namespace=ns)
            rec = Recorder()
            rec.register(informer)
            await nursery.start(informer.run)
            with trio.fail_after(20):
                await informer.wait_synced()
            await direct.create(CONFIGMAPS, configmap("seen"), namespace=ns)
            await rec.wait_for(lambda: ("add", f"{ns}/seen") in rec.events)

            # Away from the server while more changes than its watch cache holds happen.
            proxy.cut()
            await direct.delete(CONFIGMAPS, "doomed", namespace=ns)
            await direct.patch(CONFIGMAPS, "keep", {"data": {"v": "2"}}, namespace=ns)
            for i in range(6):
                await direct.create(CONFIGMAPS, configmap(f"new-{i}"), namespace=ns)
            await proxy.restore()

            await rec.wait_for(lambda: ("add", f"{ns}/new-5") in rec.events, timeout=60)
            assert [t.key for t in rec.tombstones] == [f"{ns}/doomed"]
            assert rec.tombstones[0].obj["metadata"]["name"] == "doomed"
            assert ("update", f"{ns}/keep") in rec.events
            keep = informer.get("keep", ns)
            assert keep is not None and keep["data"] == {"v": "2"}
            assert sorted(o["metadata"]["name"] for o in informer.list()) == sorted(
                ["keep", "seen"] + [f"new-{i}" for i in range(6)]
            )
            # The watch resumes after the relist: later changes still arrive.
            await direct.create(CONFIGMAPS, configmap("later"), namespace=ns)
            await rec.wait_for(lambda: ("add", f"{ns}/later") in rec.events)
            await via_proxy.aclose()
            proxy.close()
            nursery.cancel_scope.cancel()
