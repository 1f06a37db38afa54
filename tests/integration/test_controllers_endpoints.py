"""Endpoints and EndpointSlices from Services and their pods, against a real API server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trio

from k8slite.client import ApiClient, NotFound
from k8slite.client.resource import DEPLOYMENTS, ENDPOINTS, ENDPOINTSLICES, PODS, SERVICES
from k8slite.component.objects import Obj
from tests.conftest import ServerHandle
from tests.integration.controller_harness import (
    FakeKubelet,
    ManagerHandle,
    admin_config,
    create_namespace,
    deployment,
    is_ready,
    start_controller_manager,
    wait_for,
)

SLICE_OF = "kubernetes.io/service-name"


@pytest.fixture(scope="module")
def manager(module_apiserver: ServerHandle) -> Iterator[ManagerHandle]:
    handle = start_controller_manager(module_apiserver)
    yield handle
    handle.stop()


@pytest.fixture
async def kube(module_apiserver: ServerHandle, manager: ManagerHandle) -> AsyncIterator[ApiClient]:
    async with ApiClient(admin_config(module_apiserver)) as client:
        yield client


@pytest.fixture
async def ns(kube: ApiClient) -> str:
    return await create_namespace(kube, "ep")


@pytest.fixture
async def kubelet(kube: ApiClient, ns: str, nursery: trio.Nursery) -> FakeKubelet:
    fake = FakeKubelet(kube, ns, ["node-1", "node-2"])
    await nursery.start(fake.run)
    return fake


def service(name: str, selector: dict[str, str] | None, **spec: Any) -> Obj:
    body: Obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"team": "blue"}},
        "spec": {
            "ports": [
                {"name": "web", "port": 80, "targetPort": "http"},
                {"name": "metrics", "port": 9090, "targetPort": 9090},
            ],
            **spec,
        },
    }
    if selector is not None:
        body["spec"]["selector"] = selector
    return body


async def endpoints(kube: ApiClient, ns: str, name: str) -> Obj | None:
    try:
        return await kube.get(ENDPOINTS, name, namespace=ns)
    except NotFound:
        return None


async def slices(kube: ApiClient, ns: str, name: str) -> list[Obj]:
    listed = await kube.list(ENDPOINTSLICES, namespace=ns, label_selector={SLICE_OF: name})
    return list(listed["items"])


def addresses(ep: Obj, field: str = "addresses") -> list[str]:
    return sorted(a["ip"] for s in ep.get("subsets") or () for a in s.get(field) or ())


async def pod_ips(kube: ApiClient, ns: str) -> list[str]:
    items = (await kube.list(PODS, namespace=ns))["items"]
    return sorted(
        p["status"]["podIP"]
        for p in items
        if is_ready(p) and not p["metadata"].get("deletionTimestamp")
    )


async def test_endpoints_follow_ready_pods(kube: ApiClient, ns: str, kubelet: FakeKubelet) -> None:
    await kube.create(SERVICES, service("web", {"app": "web"}), namespace=ns)
    await kube.create(DEPLOYMENTS, deployment("web", 3), namespace=ns)

    async def three() -> Obj | None:
        ep = await endpoints(kube, ns, "web")
        ips = await pod_ips(kube, ns)
        return ep if ep is not None and len(ips) == 3 and addresses(ep) == ips else None

    ep = await wait_for(three, message="3 ready addresses")
    [subset] = ep["subsets"]
    assert sorted((p["name"], p["port"]) for p in subset["ports"]) == [
        ("metrics", 9090),
        ("web", 8080),
    ], "a named targetPort resolves to the container port"
    address = subset["addresses"][0]
    assert address["targetRef"]["kind"] == "Pod" and address["nodeName"].startswith("node-")
    labels = ep["metadata"]["labels"]
    assert labels["team"] == "blue"
    assert labels["endpoints.kubernetes.io/managed-by"] == "endpoint-controller"
    assert "endpoints.kubernetes.io/last-change-trigger-time" in ep["metadata"]["annotations"]

    # A pod that stops being ready moves to notReadyAddresses.
    pod = next(p for p in (await kube.list(PODS, namespace=ns))["items"] if is_ready(p))
    for cond in pod["status"]["conditions"]:
        if cond["type"] == "Ready":
            cond["status"] = "False"
    kubelet.dead.add(pod["spec"]["nodeName"])  # so the fake kubelet leaves it unready
    await kube.update_status(PODS, pod)

    async def moved() -> Obj | None:
        current = await endpoints(kube, ns, "web")
        if current is not None and addresses(current, "notReadyAddresses") == [
            pod["status"]["podIP"]
        ]:
            return current
        return None

    current = await wait_for(moved, message="not ready address")
    assert pod["status"]["podIP"] not in addresses(current)
    kubelet.dead.clear()

    await kube.patch(DEPLOYMENTS, "web", {"spec": {"replicas": 0}}, namespace=ns)

    async def empty() -> bool:
        current = await endpoints(kube, ns, "web")
        return current is not None and not current.get("subsets")

    await wait_for(empty, message="no addresses")
    await kube.delete(SERVICES, "web", namespace=ns)

    async def removed() -> bool:
        return await endpoints(kube, ns, "web") is None

    await wait_for(removed, message="endpoints deleted with the service")


async def test_endpoint_slices_follow_pods(kube: ApiClient, ns: str, kubelet: FakeKubelet) -> None:
    await kube.create(SERVICES, service("web", {"app": "web"}), namespace=ns)

    async def placeholder() -> list[Obj] | None:
        found = await slices(kube, ns, "web")
        return found if len(found) == 1 and not found[0].get("endpoints") else None

    [empty] = await wait_for(placeholder, message="placeholder slice")
    assert empty["addressType"] == "IPv4"
    await kube.create(DEPLOYMENTS, deployment("web", 3), namespace=ns)

    async def three() -> Obj | None:
        found = await slices(kube, ns, "web")
        ips = await pod_ips(kube, ns)
        if len(found) != 1 or len(ips) != 3:
            return None
        eps = found[0].get("endpoints") or []
        ready = sorted(e["addresses"][0] for e in eps if e["conditions"]["ready"])
        return found[0] if ready == ips else None

    slice_ = await wait_for(three, message="3 ready endpoints")
    assert slice_["metadata"]["name"] == empty["metadata"]["name"], "the slice is reused"
    labels = slice_["metadata"]["labels"]
    assert labels[SLICE_OF] == "web" and labels["team"] == "blue"
    assert labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    assert slice_["metadata"]["generateName"] == "web-"
    [owner] = slice_["metadata"]["ownerReferences"]
    assert owner["kind"] == "Service" and owner["controller"] is True
    assert sorted((p["name"], p["port"]) for p in slice_["ports"]) == [
        ("metrics", 9090),
        ("web", 8080),
    ]
    ep = slice_["endpoints"][0]
    assert ep["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert ep["targetRef"]["kind"] == "Pod" and ep["nodeName"].startswith("node-")

    await kube.delete(SERVICES, "web", namespace=ns)

    async def collected() -> bool:
        return not await slices(kube, ns, "web")

    await wait_for(collected, message="slices deleted with the service")


async def test_services_without_selector_are_left_alone(
    kube: ApiClient, ns: str, kubelet: FakeKubelet
) -> None:
    await kube.create(SERVICES, service("manual", None), namespace=ns)
    manual = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "manual"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 80}]}],
    }
    await kube.create(ENDPOINTS, manual, namespace=ns)
    await kube.create(DEPLOYMENTS, deployment("web", 1), namespace=ns)
    await wait_for(lambda: _ready_pods(kube, ns, 1), message="a running pod")
    await trio.sleep(1.0)  # time enough for a wrong write to happen
    ep = await endpoints(kube, ns, "manual")
    assert ep is not None and addresses(ep) == ["192.0.2.10"]
    assert await slices(kube, ns, "manual") == []


async def _ready_pods(kube: ApiClient, ns: str, n: int) -> bool:
    return len(await pod_ips(kube, ns)) == n
