"""Garbage collection (background, foreground, orphan) and namespace deletion, against a
real API server and controller manager, with the real kubectl."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from k8slite.client import ApiClient, NotFound
from k8slite.client.resource import (
    CONFIGMAPS,
    DEPLOYMENTS,
    NAMESPACES,
    PODS,
    REPLICASETS,
    SERVICES,
    Resource,
)
from k8slite.component.objects import Obj
from tests.conftest import ServerHandle
from tests.integration.controller_harness import (
    FakeKubelet,
    ManagerHandle,
    admin_config,
    create_namespace,
    deployment,
    kubectl,
    start_controller_manager,
    wait_for,
)


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
    return await create_namespace(kube, "gc")


@pytest.fixture
async def kubelet(kube: ApiClient, ns: str, nursery: trio.Nursery) -> FakeKubelet:
    fake = FakeKubelet(kube, ns, ["node-1", "node-2"])
    await nursery.start(fake.run)
    return fake


async def names(kube: ApiClient, res: Resource, ns: str) -> list[str]:
    return sorted(o["metadata"]["name"] for o in (await kube.list(res, namespace=ns))["items"])


async def running_deployment(kube: ApiClient, ns: str, replicas: int = 3) -> None:
    await kube.create(DEPLOYMENTS, deployment("web", replicas), namespace=ns)

    async def ready() -> bool:
        d = await kube.get(DEPLOYMENTS, "web", namespace=ns)
        return int((d.get("status") or {}).get("availableReplicas") or 0) == replicas

    await wait_for(ready, message="deployment available")


async def gone(kube: ApiClient, res: Resource, name: str, ns: str | None) -> bool:
    try:
        await kube.get(res, name, namespace=ns)
    except NotFound:
        return True
    return False


class Deletions:
    """The resourceVersion at which each object was deleted, from watches."""

    def __init__(self) -> None:
        self.rv: dict[tuple[str, str], int] = {}

    async def follow(
        self,
        kube: ApiClient,
        res: Resource,
        ns: str,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listed = await kube.list(res, namespace=ns)
        async with kube.watch(
            res,
            namespace=ns,
            timeout_seconds=300,
            resource_version=listed["metadata"]["resourceVersion"],
        ) as events:
            task_status.started()
            async for etype, obj in events:
                if etype == "DELETED":
                    key = (res.plural, obj["metadata"]["name"])
                    self.rv[key] = int(obj["metadata"]["resourceVersion"])


async def test_foreground_deletion_removes_dependents_first(
    kube: ApiClient,
    ns: str,
    kubelet: FakeKubelet,
    module_apiserver: ServerHandle,
    nursery: trio.Nursery,
) -> None:
    await running_deployment(kube, ns)
    deletions = Deletions()
    for res in (DEPLOYMENTS, REPLICASETS, PODS):
        await nursery.start(deletions.follow, kube, res, ns)
    pods = await names(kube, PODS, ns)
    [rs] = await names(kube, REPLICASETS, ns)
    answer = await kube.delete(DEPLOYMENTS, "web", namespace=ns, propagation_policy="Foreground")
    assert "foregroundDeletion" in answer["metadata"]["finalizers"]
    assert answer["metadata"].get("deletionTimestamp")
    await wait_for(lambda: gone(kube, DEPLOYMENTS, "web", ns), message="deployment gone")
    assert await names(kube, REPLICASETS, ns) == [] and await names(kube, PODS, ns) == []
    await wait_for(lambda: ("deployments", "web") in deletions.rv, message="watch")
    owner_gone = deletions.rv[("deployments", "web")]
    assert deletions.rv[("replicasets", rs)] < owner_gone
    for pod in pods:
        assert deletions.rv[("pods", pod)] < deletions.rv[("replicasets", rs)]


async def test_foreground_deletion_with_kubectl(
    kube: ApiClient, ns: str, kubelet: FakeKubelet, module_apiserver: ServerHandle
) -> None:
    await running_deployment(kube, ns, 2)
    out = await kubectl(
        module_apiserver,
        "-n",
        ns,
        "delete",
        "deployment",
        "web",
        "--cascade=foreground",
        "--timeout=60s",
    )
    assert 'deployment.apps "web" deleted' in out
    # kubectl waited for the Deployment itself, which goes last.
    assert await names(kube, REPLICASETS, ns) == [] and await names(kube, PODS, ns) == []


async def test_orphan_deletion_keeps_dependents(
    kube: ApiClient, ns: str, kubelet: FakeKubelet, module_apiserver: ServerHandle
) -> None:
    await running_deployment(kube, ns)
    pods = await names(kube, PODS, ns)
    out = await kubectl(
        module_apiserver,
        "-n",
        ns,
        "delete",
        "deployment",
        "web",
        "--cascade=orphan",
        "--timeout=60s",
    )
    assert 'deployment.apps "web" deleted' in out
    assert await gone(kube, DEPLOYMENTS, "web", ns)
    [rs] = (await kube.list(REPLICASETS, namespace=ns))["items"]
    assert not rs["metadata"].get("ownerReferences")
    assert "orphan" not in (rs["metadata"].get("finalizers") or [])
    await trio.sleep(1.0)  # time enough for a wrong collection to happen
    assert await names(kube, PODS, ns) == pods
    assert rs["spec"]["replicas"] == 3


async def test_background_deletion_collects_dependents(
    kube: ApiClient, ns: str, kubelet: FakeKubelet, module_apiserver: ServerHandle
) -> None:
    await running_deployment(kube, ns)
    await kubectl(module_apiserver, "-n", ns, "delete", "deployment", "web")
    assert await gone(kube, DEPLOYMENTS, "web", ns)
    await wait_for(lambda: _empty(kube, ns), message="replica set and pods collected")


async def _empty(kube: ApiClient, ns: str) -> bool:
    return await names(kube, REPLICASETS, ns) == [] and await names(kube, PODS, ns) == []


async def test_dangling_owner_reference_is_collected(kube: ApiClient, ns: str) -> None:
    owner = await kube.create(
        CONFIGMAPS,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}},
        namespace=ns,
    )

    def owned(name: str, uid: str) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
                ],
            },
        }

    await kube.create(CONFIGMAPS, owned("kept", owner["metadata"]["uid"]), namespace=ns)
    await kube.create(
        CONFIGMAPS, owned("dangling", "00000000-0000-0000-0000-000000000000"), namespace=ns
    )
    await wait_for(lambda: gone(kube, CONFIGMAPS, "dangling", ns), message="dangling collected")
    remaining = await names(kube, CONFIGMAPS, ns)
    assert "kept" in remaining and "owner" in remaining
    await kube.delete(CONFIGMAPS, "owner", namespace=ns)
    await wait_for(lambda: gone(kube, CONFIGMAPS, "kept", ns), message="dependent collected")


async def test_namespace_deletion_empties_then_removes_it(
    kube: ApiClient, ns: str, kubelet: FakeKubelet, module_apiserver: ServerHandle
) -> None:
    await running_deployment(kube, ns, 2)
    await kube.create(
        SERVICES,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
        },
        namespace=ns,
    )
    held = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]},
    }
    await kube.create(CONFIGMAPS, held, namespace=ns)
    await kube.delete(NAMESPACES, ns)

    async def held_only() -> Obj | None:
        namespace = await kube.get(NAMESPACES, ns)
        conds = {c["type"]: c for c in (namespace.get("status") or {}).get("conditions") or ()}
        finalizers = conds.get("NamespaceFinalizersRemaining", {})
        if await names(kube, PODS, ns) or await names(kube, DEPLOYMENTS, ns):
            return None
        return conds if finalizers.get("status") == "True" else None

    conds = await wait_for(held_only, timeout=30, message="only the held configmap left")
    assert conds["NamespaceFinalizersRemaining"]["message"] == (
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 "
        "resource instances"
    )
    assert conds["NamespaceContentRemaining"]["reason"] == "SomeResourcesRemain"
    assert "configmaps. has 1 resource instances" in conds["NamespaceContentRemaining"]["message"]
    assert conds["NamespaceDeletionDiscoveryFailure"]["status"] == "False"
    namespace = await kube.get(NAMESPACES, ns)
    assert namespace["status"]["phase"] == "Terminating"
    assert namespace["spec"]["finalizers"] == ["kubernetes"]
    await kube.patch(CONFIGMAPS, "held", {"metadata": {"finalizers": None}}, namespace=ns)
    await wait_for(lambda: gone(kube, NAMESPACES, ns, None), timeout=30, message="namespace gone")


async def test_namespace_deletion_with_kubectl(
    kube: ApiClient, ns: str, kubelet: FakeKubelet, module_apiserver: ServerHandle
) -> None:
    await running_deployment(kube, ns, 2)
    out = await kubectl(module_apiserver, "delete", "namespace", ns, "--timeout=60s")
    assert f'namespace "{ns}" deleted' in out
    assert await gone(kube, NAMESPACES, ns, None)
