"""K8s-Lite's own client with custom resources: a Resource found by discovery at runtime,
CRUD through the API client, and a shared informer following the kind."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from k8slite.client import ApiClient, SharedInformerFactory, discover
from k8slite.client.resource import Resource
from k8slite.component.objects import Obj
from tests.conftest import ServerHandle, start_apiserver
from tests.integration.client_helpers import server_config

GROUP = "client.example.com"
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
CRD: Obj = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture
async def kube(module_apiserver: ServerHandle) -> AsyncIterator[ApiClient]:
    async with ApiClient(server_config(module_apiserver)) as client:
        yield client


async def test_informer_follows_a_kind_made_at_runtime(kube: ApiClient) -> None:
    assert await discover(kube, GROUP, "Widget") is None
    await kube.create(CRDS, CRD)
    widgets = await discover(kube, GROUP, "Widget")
    assert widgets == Resource(GROUP, "v1", "widgets")
    factory = SharedInformerFactory(kube, namespace="default")
    informer = factory.informer(widgets)
    seen: list[tuple[str, int]] = []
    changed = trio.Event()

    def record(obj: Obj) -> None:
        nonlocal changed
        seen.append((obj["metadata"]["name"], obj["spec"].get("size", 0)))
        changed.set()
        changed = trio.Event()

    informer.add_event_handler(record, lambda _old, new: record(new))
    async with trio.open_nursery() as nursery:
        await factory.start(nursery)
        with trio.fail_after(20):
            await factory.wait_for_cache_sync()
        body = {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "w"}}
        await kube.create(widgets, {**body, "spec": {"size": 1}}, namespace="default")
        await kube.patch(widgets, "w", {"spec": {"size": 2}}, namespace="default")
        with trio.fail_after(20):
            while ("w", 2) not in seen:
                await changed.wait()
        assert seen == [("w", 1), ("w", 2)]
        nursery.cancel_scope.cancel()


def test_custom_kinds_and_objects_survive_a_restart(tmp_path: Path) -> None:
    server = start_apiserver(tmp_path / "data")
    try:
        with server.client() as http:
            assert http.post(f"/apis/{CRDS.group}/v1/{CRDS.plural}", json=CRD).status_code == 201
            body = {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "kept"}}
            created = http.post(f"/apis/{GROUP}/v1/namespaces/default/widgets", json=body)
            assert created.status_code == 201, created.text
    finally:
        server.stop()
    again = start_apiserver(tmp_path / "data")
    try:
        with again.client() as http:
            got = http.get(f"/apis/{GROUP}/v1/namespaces/default/widgets/kept")
            assert got.status_code == 200, got.text
            assert got.json()["metadata"]["uid"] == created.json()["metadata"]["uid"]
            kinds = {r["name"] for r in http.get(f"/apis/{GROUP}/v1").json()["resources"]}
            assert kinds == {"widgets"}
    finally:
        again.stop()


def test_defaults_added_later_appear_when_objects_are_read(
    module_apiserver: ServerHandle,
) -> None:
    crd = json.loads(json.dumps(CRD).replace("widgets", "gauges").replace("Widget", "Gauge"))
    crd_path = f"/apis/{CRDS.group}/v1/{CRDS.plural}"
    base = f"/apis/{GROUP}/v1/namespaces/default/gauges"
    with module_apiserver.client() as http:
        assert http.post(crd_path, json=crd).status_code == 201
        body = {"apiVersion": f"{GROUP}/v1", "kind": "Gauge", "metadata": {"name": "old"}}
        assert http.post(base, json={**body, "spec": {}}).status_code == 201
        current = http.get(f"{crd_path}/gauges.{GROUP}").json()
        spec = current["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        spec["properties"]["size"]["default"] = 7
        r = http.put(f"{crd_path}/gauges.{GROUP}", json=current)
        assert r.status_code == 200, r.text
        assert http.get(f"{base}/old").json()["spec"] == {"size": 7}
        assert [i["spec"] for i in http.get(base).json()["items"]] == [{"size": 7}]
        http.delete(f"{crd_path}/gauges.{GROUP}")
