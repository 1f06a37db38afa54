"""`kubectl drain` on a cluster of real components: API server, controller manager, scheduler
and two kubelets (fake runtime). The budget holds drain back until a replacement pod runs
on the other node; the scheduler keeps replacements off the cordoned one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from k8slite.client import ApiClient
from k8slite.client.resource import DEPLOYMENTS, PODDISRUPTIONBUDGETS, PODS
from k8slite.component.objects import Obj
from tests.conftest import ServerHandle
from tests.integration.cluster_harness import nodes_with_control_plane, ready_nodes
from tests.integration.controller_harness import (
    admin_config,
    create_namespace,
    deployment,
    is_ready,
    kubectl,
    pods_of,
    wait_for,
)


@pytest.fixture(scope="module")
def cluster(
    module_apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    """The controller manager, the scheduler and two kubelets; yields the node names."""
    workdir = tmp_path_factory.mktemp("drain")
    with nodes_with_control_plane(module_apiserver, workdir, "drain") as nodes:
        yield nodes


@pytest.fixture
async def kube(module_apiserver: ServerHandle, cluster: list[str]) -> AsyncIterator[ApiClient]:
    async with ApiClient(admin_config(module_apiserver)) as client:
        yield client


async def _web_pods(kube: ApiClient, ns: str) -> list[Obj]:
    listed = await kube.list(PODS, namespace=ns, label_selector="app=web")
    return pods_of(listed["items"])


async def _budget(kube: ApiClient, ns: str, **want: int) -> bool:
    obj = await kube.get(PODDISRUPTIONBUDGETS, "web", namespace=ns)
    status = obj.get("status") or {}
    return status.get("observedGeneration") == obj["metadata"]["generation"] and all(
        status.get(k) == v for k, v in want.items()
    )


async def test_drain_waits_for_the_budget_on_real_kubelets(
    module_apiserver: ServerHandle, kube: ApiClient, cluster: list[str]
) -> None:
    await wait_for(lambda: ready_nodes(kube, cluster), 60, message="nodes Ready")
    ns = await create_namespace(kube, "drain")
    web = deployment("web", replicas=2, image="busybox:1.35")
    web["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
    await kube.create(DEPLOYMENTS, web, namespace=ns)
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 2},
    }
    await kube.create(PODDISRUPTIONBUDGETS, budget, namespace=ns)
    await wait_for(
        lambda: _budget(kube, ns, currentHealthy=2, disruptionsAllowed=0),
        60,
        message="2 running pods, no disruption allowed",
    )
    pods = await _web_pods(kube, ns)
    node = pods[0]["spec"]["nodeName"]
    victims = {p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == node}

    try:
        out = await kubectl(
            module_apiserver, "drain", node, "--timeout=7s", "--grace-period=1", check=False
        )
        assert "Cannot evict pod as it would violate the pod's disruption budget." in out
        assert f"node/{node} drained" not in out
        assert victims <= {p["metadata"]["name"] for p in await _web_pods(kube, ns)}

        # One disruption allowed: drain evicts one pod at a time, each time waiting for the
        # replacement (scheduled on the other node) to be ready before the next eviction.
        await kube.patch(PODDISRUPTIONBUDGETS, "web", {"spec": {"minAvailable": 1}}, namespace=ns)
        out = await kubectl(module_apiserver, "drain", node, "--timeout=90s", "--grace-period=1")
        assert f"node/{node} drained" in out
        left = await _web_pods(kube, ns)
        assert not victims & {p["metadata"]["name"] for p in left}
        await wait_for(
            lambda: _all_ready_elsewhere(kube, ns, node), 60, message="2 ready elsewhere"
        )
    finally:
        await kubectl(module_apiserver, "uncordon", node, check=False)
        await kube.delete(DEPLOYMENTS, "web", namespace=ns)


async def _all_ready_elsewhere(kube: ApiClient, ns: str, node: str) -> bool:
    pods = await _web_pods(kube, ns)
    return len(pods) == 2 and all(is_ready(p) and p["spec"]["nodeName"] != node for p in pods)
