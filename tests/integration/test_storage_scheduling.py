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
from tests.integration.controller_harness import (
    ManagerHandle,
    admin_config,
    create_namespace,
    start_controller_manager,
    wait_for,
)
from tests.integration.kubelet_harness import KubeletProcess, unique_node
from tests.integration.test_scheduler import SchedulerProcess, start_scheduler


@pytest.fixture(scope="module")
def nodes(
    module_apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    workdir = tmp_path_factory.mktemp("storage-sched")
    manager: ManagerHandle = start_controller_manager(module_apiserver)
    scheduler: SchedulerProcess | None = None
    kubelets: list[KubeletProcess] = []
    try:
        scheduler = start_scheduler(module_apiserver, workdir / "scheduler.log")
        for i in range(2):
            (workdir / f"k{i}").mkdir()
            kubelet = KubeletProcess(module_apiserver, unique_node("vs"), "fake", workdir / f"k{i}")
            kubelet.start()
            kubelets.append(kubelet)
        yield [k.node for k in kubelets]
    finally:
        for kubelet in kubelets:
            kubelet.stop()
        if scheduler is not None:
            scheduler.stop()
        manager.stop()


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
