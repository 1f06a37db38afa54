"""The scheduler and claims on two nodes (fake-runtime kubelets): a pod follows its bound
volume's node affinity, a ReadWriteOncePod claim takes one pod, an unbound Immediate claim
keeps its pod Pending."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from k8slite.client import ApiClient
from k8slite.client.resource import PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES, PODS, STORAGECLASSES
from k8slite.component.objects import Obj
from tests.conftest import ServerHandle
from tests.integration.cluster_harness import nodes_with_control_plane
from tests.integration.controller_harness import (
    admin_config,
    create_namespace,
    wait_for,
)


@pytest.fixture(scope="module")
def nodes(
    module_apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    """The controller manager, the scheduler and two kubelets; yields the node names."""
    workdir = tmp_path_factory.mktemp("storage-sched")
    with nodes_with_control_plane(module_apiserver, workdir, "vs") as nodes:
        yield nodes


@pytest.fixture
async def kube(module_apiserver: ServerHandle) -> AsyncIterator[ApiClient]:
    async with ApiClient(admin_config(module_apiserver)) as client:
        yield client


def _pod(name: str, claim: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "c", "image": "busybox:1.35"}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


def _claim(name: str, cls: str, modes: list[str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {
            "accessModes": modes,
            "storageClassName": cls,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


async def _node_of(kube: ApiClient, ns: str, name: str) -> str:
    pod = await kube.get(PODS, name, namespace=ns)
    return str(pod["spec"].get("nodeName") or "")


async def _unschedulable_message(kube: ApiClient, ns: str, name: str) -> str:
    pod = await kube.get(PODS, name, namespace=ns)
    for c in (pod.get("status") or {}).get("conditions") or ():
        if c["type"] == "PodScheduled" and c["status"] == "False":
            return str(c.get("message") or "")
    return ""


async def test_volume_affinity_and_read_write_once_pod(kube: ApiClient, nodes: list[str]) -> None:
    suffix = os.urandom(3).hex()
    cls = f"imm-{suffix}"
    await kube.create(
        STORAGECLASSES,
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": cls},
            "provisioner": "kubernetes.io/no-provisioner",
        },
    )
    target = nodes[1]
    affinity = {
        "required": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": [target]}
                    ]
                }
            ]
        }
    }
    for name, modes in ((f"a-{suffix}", ["ReadWriteOnce"]), (f"b-{suffix}", ["ReadWriteOncePod"])):
        await kube.create(
            PERSISTENTVOLUMES,
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": name},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": modes,
                    "storageClassName": cls,
                    "local": {"path": "/tmp"},
                    "nodeAffinity": affinity,
                },
            },
        )
    ns = await create_namespace(kube, "volsched")

    # Unbound Immediate claim (no volume of its class yet): the pod waits.
    await kube.create(
        PERSISTENTVOLUMECLAIMS, _claim("none", f"other-{suffix}", ["ReadWriteOnce"]), namespace=ns
    )
    await kube.create(PODS, _pod("waits", "none"), namespace=ns)
    text = await wait_for(lambda: _unschedulable_message(kube, ns, "waits"), 30, message="Pending")
    assert "pod has unbound immediate PersistentVolumeClaims" in text

    await kube.create(PERSISTENTVOLUMECLAIMS, _claim("rwo", cls, ["ReadWriteOnce"]), namespace=ns)
    await kube.create(
        PERSISTENTVOLUMECLAIMS, _claim("rwop", cls, ["ReadWriteOncePod"]), namespace=ns
    )
    for i in range(3):
        await kube.create(PODS, _pod(f"p{i}", "rwo"), namespace=ns)
    for i in range(3):
        node = await wait_for(lambda i=i: _node_of(kube, ns, f"p{i}"), 30, message=f"p{i} placed")
        assert node == target

    await kube.create(PODS, _pod("first", "rwop"), namespace=ns)
    assert await wait_for(lambda: _node_of(kube, ns, "first"), 30, message="first") == target
    await kube.create(PODS, _pod("second", "rwop"), namespace=ns)
    text = await wait_for(lambda: _unschedulable_message(kube, ns, "second"), 30, message="second")
    assert "ReadWriteOncePod access mode" in text
