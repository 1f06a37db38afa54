"""A StatefulSet on real components: API server, controller manager, scheduler and two
kubelets (fake runtime). Pods come up in ordinal order as the kubelets report them Ready,
and go highest first when `kubectl scale` shrinks the set."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from k8slite.client import ApiClient
from k8slite.client.resource import STATEFULSETS
from tests.conftest import ServerHandle
from tests.integration.cluster_harness import nodes_with_control_plane, ready_nodes
from tests.integration.controller_harness import (
    admin_config,
    create_namespace,
    kubectl,
    wait_for,
)
from tests.integration.test_controllers_statefulset import PodLog, all_ready, statefulset


@pytest.fixture(scope="module")
def cluster(
    module_apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    """The controller manager, the scheduler and two kubelets; yields the node names."""
    workdir = tmp_path_factory.mktemp("sts")
    with nodes_with_control_plane(module_apiserver, workdir, "sts") as nodes:
        yield nodes


@pytest.fixture
async def kube(module_apiserver: ServerHandle, cluster: list[str]) -> AsyncIterator[ApiClient]:
    async with ApiClient(admin_config(module_apiserver)) as client:
        yield client


async def test_ordered_statefulset_on_real_kubelets(
    module_apiserver: ServerHandle, kube: ApiClient, cluster: list[str], nursery: trio.Nursery
) -> None:
    await wait_for(lambda: ready_nodes(kube, cluster), 60, message="nodes Ready")
    ns = await create_namespace(kube, "sts")
    log = PodLog(kube, ns)
    await nursery.start(log.run)
    body = statefulset()
    body["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
    await kube.create(STATEFULSETS, body, namespace=ns)
    names = ["web-0", "web-1", "web-2"]
    await wait_for(lambda: all_ready(kube, ns, names), 60, message="3 pods Ready")
    assert log.created == names
    assert "web-0" in log.ready_at_create["web-1"]
    assert {"web-0", "web-1"} <= log.ready_at_create["web-2"]
    out = await kubectl(module_apiserver, "get", "sts", "web", "-n", ns)
    assert out.splitlines()[1].split()[:2] == ["web", "3/3"]

    await kubectl(module_apiserver, "scale", "sts/web", "-n", ns, "--replicas=1")
    await wait_for(lambda: all_ready(kube, ns, ["web-0"]), 60, message="web-0 alone")
    assert log.deleting == ["web-2", "web-1"]
