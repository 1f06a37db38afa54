"""Persistent storage on real components: API server, controller manager (PV binder,
protection controllers, local-path provisioner), scheduler and a Docker kubelet.

The default local-path class binds a claim once its first pod is scheduled, to a volume on
that pod's node; data outlives the pod; a claim in use waits for its pod before it goes;
reclaim Delete removes the directory. An Immediate class binds a pre-made volume at once,
and Retain leaves it Released. A StatefulSet pod's synced writes survive kill -9 of the
kubelet.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from k8slite.client import ApiClient, NotFound
from k8slite.client.resource import (
    EVENTS,
    PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES,
    PODS,
    STATEFULSETS,
    STORAGECLASSES,
)
from k8slite.component.objects import Obj
from tests.conftest import ServerHandle
from tests.integration.controller_harness import (
    ManagerHandle,
    admin_config,
    create_namespace,
    kubectl,
    start_controller_manager,
    wait_for,
)
from tests.integration.kubelet_harness import (
    BUSYBOX,
    KubeletProcess,
    docker_problem,
    remove_docker_leftovers,
    retire_node,
    unique_node,
    wait_idle,
)
from tests.integration.test_scheduler import SchedulerProcess, start_scheduler

_PROBLEM = docker_problem()


@pytest.fixture(scope="module")
def components(
    module_apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeletProcess | None]:
    """Controller manager and scheduler; a Docker kubelet when Docker is usable."""
    workdir = tmp_path_factory.mktemp("storage")
    manager: ManagerHandle = start_controller_manager(module_apiserver)
    scheduler: SchedulerProcess | None = None
    kubelet: KubeletProcess | None = None
    node = unique_node("st")
    network = f"k8slite-t-{node}"
    try:
        scheduler = start_scheduler(module_apiserver, workdir / "scheduler.log")
        if _PROBLEM is None:
            kubelet = KubeletProcess(
                module_apiserver, node, "docker", workdir, "--docker-network", network
            )
            kubelet.start()
        yield kubelet
    finally:
        if kubelet is not None:
            if kubelet.proc is not None:
                retire_node(module_apiserver, node)
                wait_idle(kubelet)
                kubelet.stop()
            # Also after a failed restart (no kubelet left to delete the pods).
            remove_docker_leftovers([node], network)
        if scheduler is not None:
            scheduler.stop()
        manager.stop()


@pytest.fixture
async def kube(module_apiserver: ServerHandle) -> AsyncIterator[ApiClient]:
    async with ApiClient(admin_config(module_apiserver)) as client:
        yield client


def _claim(name: str, size: str = "1Gi", cls: str | None = None) -> Obj:
    spec: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": spec,
    }


def _pod(name: str, claim: str, script: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "c",
                    "image": BUSYBOX,
                    "command": ["sh", "-c", script],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


async def _get(kube: ApiClient, res: object, name: str, ns: str | None = None) -> Obj | None:
    try:
        obj: Obj = await kube.get(res, name, namespace=ns)  # type: ignore[arg-type]
    except NotFound:
        return None
    return obj


async def _phase(kube: ApiClient, res: object, name: str, ns: str | None = None) -> str:
    obj = await _get(kube, res, name, ns)
    return "" if obj is None else str((obj.get("status") or {}).get("phase") or "")


async def _phase_is(
    want: str, kube: ApiClient, res: object, name: str, ns: str | None = None
) -> bool:
    return await _phase(kube, res, name, ns) == want


async def _reasons(kube: ApiClient, ns: str, name: str) -> set[str]:
    listed = await kube.list(EVENTS, namespace=ns, field_selector=f"involvedObject.name={name}")
    return {e.get("reason", "") for e in listed["items"]}


@pytest.mark.skipif(_PROBLEM is not None, reason=_PROBLEM or "")
async def test_local_path_claim_follows_its_first_pod(
    module_apiserver: ServerHandle, kube: ApiClient, components: KubeletProcess | None
) -> None:
    assert components is not None
    node = components.node
    ns = await create_namespace(kube, "local-path")
    await kube.create(PERSISTENTVOLUMECLAIMS, _claim("data"), namespace=ns)
    await wait_for(
        lambda: _reasons(kube, ns, "data"),
        30,
        message="the WaitForFirstConsumer event",
    )
    assert "WaitForFirstConsumer" in await _reasons(kube, ns, "data")
    assert await _phase(kube, PERSISTENTVOLUMECLAIMS, "data", ns) == "Pending"

    await kube.create(
        PODS, _pod("writer", "data", "echo hello > /data/f; sleep 3600"), namespace=ns
    )
    await wait_for(
        lambda: _phase_is("Bound", kube, PERSISTENTVOLUMECLAIMS, "data", ns),
        60,
        message="the claim bound",
    )
    await wait_for(lambda: _phase_is("Running", kube, PODS, "writer", ns), 60, message="writer")
    claim = await kube.get(PERSISTENTVOLUMECLAIMS, "data", namespace=ns)
    assert claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == node
    assert claim["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    pv_name = claim["spec"]["volumeName"]
    pv = await kube.get(PERSISTENTVOLUMES, pv_name)
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == [node]
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    directory = Path(pv["spec"]["hostPath"]["path"])
    assert directory.name == f"{pv_name}_{ns}_data"
    await wait_for(lambda: (directory / "f").exists(), 30, message="the file on the node")
    assert (directory / "f").read_text() == "hello\n"
    assert {"ProvisioningSucceeded", "ExternalProvisioning"} <= await _reasons(kube, ns, "data")

    # The data outlives the pod: a second pod finds it.
    await kube.delete(PODS, "writer", namespace=ns)

    async def writer_gone() -> bool:
        return await _get(kube, PODS, "writer", ns) is None

    await wait_for(writer_gone, 60, message="writer gone")
    reader = _pod("reader", "data", "grep -q hello /data/f && sleep 3600")
    await kube.create(PODS, reader, namespace=ns)
    await wait_for(lambda: _phase_is("Running", kube, PODS, "reader", ns), 60, message="reader")

    # A claim in use is only marked for deletion until its pod is gone.
    # What holds it is the protection finalizer, kept while the reader runs: checked as such
    # rather than by waiting a guessed while for the claim not to go.
    await kube.delete(PERSISTENTVOLUMECLAIMS, "data", namespace=ns)
    held = await kube.get(PERSISTENTVOLUMECLAIMS, "data", namespace=ns)
    assert held["metadata"].get("deletionTimestamp")
    assert "kubernetes.io/pvc-protection" in held["metadata"]["finalizers"]
    assert await _phase_is("Running", kube, PODS, "reader", ns)
    assert "Terminating" in await kubectl(module_apiserver, "get", "pvc", "data", "-n", ns)
    await kube.delete(PODS, "reader", namespace=ns)

    async def claim_gone() -> bool:
        return await _get(kube, PERSISTENTVOLUMECLAIMS, "data", ns) is None

    async def volume_gone() -> bool:
        return await _get(kube, PERSISTENTVOLUMES, pv_name) is None

    await wait_for(claim_gone, 60, message="the claim removed once its pod is gone")
    await wait_for(volume_gone, 60, message="the volume deleted (reclaim Delete)")
    await wait_for(lambda: not directory.exists(), 60, message="the directory removed")


async def test_immediate_class_binds_premade_volume_and_retain_releases(
    module_apiserver: ServerHandle, kube: ApiClient, components: KubeletProcess | None
) -> None:
    suffix = os.urandom(3).hex()
    cls = f"manual-{suffix}"
    await kube.create(
        STORAGECLASSES,
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": cls},
            "provisioner": "kubernetes.io/no-provisioner",
            "reclaimPolicy": "Retain",
            "allowVolumeExpansion": True,
        },
    )
    for name, size in ((f"small-{suffix}", "1Gi"), (f"big-{suffix}", "5Gi")):
        await kube.create(
            PERSISTENTVOLUMES,
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": name},
                "spec": {
                    "capacity": {"storage": size},
                    "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                    "storageClassName": cls,
                    "hostPath": {"path": f"/tmp/k8slite-test-{name}"},
                },
            },
        )
    ns = await create_namespace(kube, "immediate")
    await kube.create(PERSISTENTVOLUMECLAIMS, _claim("c", "500Mi", cls), namespace=ns)
    await wait_for(
        lambda: _phase_is("Bound", kube, PERSISTENTVOLUMECLAIMS, "c", ns), 30, message="bound"
    )
    claim = await kube.get(PERSISTENTVOLUMECLAIMS, "c", namespace=ns)
    assert claim["spec"]["volumeName"] == f"small-{suffix}"
    assert claim["status"]["capacity"] == {"storage": "1Gi"}
    assert claim["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
    assert claim["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    await wait_for(
        lambda: _phase_is("Bound", kube, PERSISTENTVOLUMES, f"small-{suffix}"), 30, message="PV"
    )
    assert await _phase(kube, PERSISTENTVOLUMES, f"big-{suffix}") == "Available"

    out = await kubectl(module_apiserver, "get", "pv,pvc", "-n", ns)
    lines = out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "CAPACITY",
        "ACCESS",
        "MODES",
        "RECLAIM",
        "POLICY",
        "STATUS",
        "CLAIM",
        "STORAGECLASS",
        "VOLUMEATTRIBUTESCLASS",
        "REASON",
        "AGE",
    ]
    small = next(line for line in lines if line.startswith(f"persistentvolume/small-{suffix}"))
    assert small.split()[1:7] == ["1Gi", "RWO,RWX", "Retain", "Bound", f"{ns}/c", cls]
    pvc_row = next(line for line in lines if line.startswith("persistentvolumeclaim/c "))
    assert pvc_row.split()[1:6] == ["Bound", f"small-{suffix}", "1Gi", "RWO,RWX", cls]

    # Expansion: the volume's recorded capacity and the claim's status follow the request.
    await kube.patch(
        PERSISTENTVOLUMECLAIMS,
        "c",
        {"spec": {"resources": {"requests": {"storage": "3Gi"}}}},
        namespace=ns,
    )

    async def grown() -> bool:
        c = await kube.get(PERSISTENTVOLUMECLAIMS, "c", namespace=ns)
        v = await kube.get(PERSISTENTVOLUMES, f"small-{suffix}")
        return (c.get("status") or {}).get("capacity") == {"storage": "3Gi"} and v["spec"][
            "capacity"
        ] == {"storage": "3Gi"}

    await wait_for(grown, 30, message="the claim and volume grown to 3Gi")
    assert "VolumeResizeSuccessful" in await _reasons(kube, ns, "c")

    await kube.delete(PERSISTENTVOLUMECLAIMS, "c", namespace=ns)
    await wait_for(
        lambda: _phase_is("Released", kube, PERSISTENTVOLUMES, f"small-{suffix}"),
        30,
        message="the volume Released under Retain",
    )
    for name in (f"small-{suffix}", f"big-{suffix}"):
        await kube.delete(PERSISTENTVOLUMES, name)
    await kube.delete(STORAGECLASSES, cls)


async def test_pod_with_missing_claim_stays_pending(
    kube: ApiClient, components: KubeletProcess | None
) -> None:
    ns = await create_namespace(kube, "missing-claim")
    await kube.create(PODS, _pod("p", "nope", "true"), namespace=ns)

    async def message() -> str:
        pod = await kube.get(PODS, "p", namespace=ns)
        for c in (pod.get("status") or {}).get("conditions") or ():
            if c["type"] == "PodScheduled" and c["status"] == "False":
                return str(c.get("message") or "")
        return ""

    text = await wait_for(message, 30, message="PodScheduled=False")
    assert 'persistentvolumeclaim "nope" not found' in text


# Appends "line N" and syncs after each line, numbering on from what the file holds (so a
# restarted container continues the sequence instead of starting over).
_COUNTER = (
    "touch /data/log; i=$(wc -l < /data/log); "
    'while true; do i=$((i+1)); echo "line $i" >> /data/log; sync; sleep 0.05; done'
)


def _counter_set() -> Obj:
    labels = {"app": "counter"}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "counter"},
        "spec": {
            "replicas": 1,
            "serviceName": "counter",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "c",
                            "image": BUSYBOX,
                            "command": ["sh", "-c", _COUNTER],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                },
            },
            "volumeClaimTemplates": [_claim("data", "64Mi")],
        },
    }


def _lines(path: Path) -> list[str]:
    # The last line may be half written at the moment of reading: only whole lines count.
    text = path.read_text() if path.exists() else ""
    return text.splitlines()[: text.count("\n")]


@pytest.mark.skipif(_PROBLEM is not None, reason=_PROBLEM or "")
async def test_statefulset_data_survives_kubelet_kill(
    kube: ApiClient, components: KubeletProcess | None
) -> None:
    """kill -9 the kubelet while a StatefulSet pod appends and syncs: nothing written
    before the kill is lost, and the pod goes on writing after the kubelet restarts."""
    assert components is not None
    kubelet = components
    ns = await create_namespace(kube, "durable")
    await kube.create(STATEFULSETS, _counter_set(), namespace=ns)
    await wait_for(lambda: _phase_is("Running", kube, PODS, "counter-0", ns), 90, message="pod")
    claim = await kube.get(PERSISTENTVOLUMECLAIMS, "data-counter-0", namespace=ns)
    pv = await kube.get(PERSISTENTVOLUMES, claim["spec"]["volumeName"])
    log_file = Path(pv["spec"]["hostPath"]["path"]) / "log"
    pod = await kube.get(PODS, "counter-0", namespace=ns)

    async def lines_at_least(n: int) -> list[str] | None:
        lines = _lines(log_file)
        return lines if len(lines) >= n else None

    await wait_for(lambda: lines_at_least(20), 60, message="the pod writing")
    assert kubelet.proc is not None
    before = _lines(log_file)  # every one of these was written (and synced) before the kill
    kubelet.proc.kill()
    kubelet.proc.wait()
    kubelet.proc = None
    # The container outlives its kubelet, and keeps writing.
    await wait_for(lambda: lines_at_least(len(before) + 10), 60, message="writes, kubelet dead")
    kubelet.start()

    async def running_again() -> bool:
        now = await _get(kube, PODS, "counter-0", ns)
        return (
            now is not None
            and now["metadata"]["uid"] == pod["metadata"]["uid"]
            and (now.get("status") or {}).get("phase") == "Running"
            and all(c.get("ready") for c in now["status"].get("containerStatuses") or ())
        )

    await wait_for(running_again, 90, message="the pod Running under the new kubelet")
    after_restart = len(_lines(log_file))
    final = await wait_for(
        lambda: lines_at_least(after_restart + 10), 60, message="writes after the restart"
    )
    assert final[: len(before)] == before, "lines written before the kill were lost"
    # One unbroken sequence: no line lost or written twice, whether the container was
    # kept or restarted (a restarted one numbers on from the file).
    assert final == [f"line {i}" for i in range(1, len(final) + 1)]
    await kube.delete(STATEFULSETS, "counter", namespace=ns)
