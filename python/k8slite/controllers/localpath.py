"""The local-path provisioner: a directory on the claim's selected node for each claim of a
class naming it, as k3s's rancher.io/local-path does; deletes released volumes it made.

The controller manager need not run on the node, so it only writes API objects: the volume
is a hostPath of type DirectoryOrCreate under the directory the node's kubelet advertises
(annotation k8slite.io/local-path-dir), with required node affinity to that node. The
kubelet makes the directory when a pod first mounts it and removes directories whose
volume is gone (kubelet/localpath.py).
"""

from __future__ import annotations

import logging

from k8slite.api.storage_v1 import (
    BIND_COMPLETED,
    LOCAL_PATH_DIR,
    PROVISIONED_BY,
    SELECTED_NODE,
    STORAGE_PROVISIONER,
    storage_request,
)
from k8slite.client import AlreadyExists, NotFound
from k8slite.client.resource import (
    NODES,
    PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES,
    STORAGECLASSES,
)
from k8slite.component.events import NORMAL, WARNING
from k8slite.component.objects import (
    Obj,
    annotations_of,
    name_of,
    namespace_of,
    resource_version_of,
    uid_of,
)
from k8slite.controllers.base import Controller, ControllerContext
from k8slite.controllers.volumematch import claim_class

log = logging.getLogger(__name__)

PROVISIONER = "rancher.io/local-path"
HOSTNAME_LABEL = "kubernetes.io/hostname"
# Looked at again when a node has not yet advertised its directory.
NODE_RETRY = 5.0


def volume_name(claim: Obj) -> str:
    return f"pvc-{uid_of(claim)}"


def volume_dir_name(claim: Obj) -> str:
    """k3s's directory name: pvc-<uid>_<namespace>_<name>; the part before '_' is the PV."""
    return f"{volume_name(claim)}_{namespace_of(claim)}_{name_of(claim)}"


def local_path_volume(claim: Obj, sc: Obj, node: str, base_dir: str) -> Obj:
    spec = claim.get("spec") or {}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": volume_name(claim),
            "annotations": {PROVISIONED_BY: PROVISIONER, SELECTED_NODE: node},
        },
        "spec": {
            "capacity": {"storage": storage_request(claim)},
            "accessModes": list(spec.get("accessModes") or ()),
            "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete",
            "storageClassName": name_of(sc),
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "claimRef": {
                "kind": "PersistentVolumeClaim",
                "namespace": namespace_of(claim),
                "name": name_of(claim),
                "uid": uid_of(claim),
                "apiVersion": "v1",
                "resourceVersion": resource_version_of(claim),
            },
            "hostPath": {
                "path": f"{base_dir.rstrip('/')}/{volume_dir_name(claim)}",
                "type": "DirectoryOrCreate",
            },
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}
                            ]
                        }
                    ]
                }
            },
        },
    }


class LocalPathProvisioner(Controller):
    name = "local-path-provisioner"
    queue_name = "localpath"
    event_source = PROVISIONER

    def __init__(self, ctx: ControllerContext, workers: int = 1) -> None:
        super().__init__(ctx, workers)
        self.claims = ctx.informers.informer(PERSISTENTVOLUMECLAIMS)
        self.volumes = ctx.informers.informer(PERSISTENTVOLUMES)
        self.classes = ctx.informers.informer(STORAGECLASSES)
        self.nodes = ctx.informers.informer(NODES)
        self.claims.add_event_handler(self.enqueue, lambda old, new: self.enqueue(new), None)
        self.volumes.add_event_handler(self.enqueue, lambda old, new: self.enqueue(new), None)

    async def sync(self, key: str) -> float | None:
        if "/" in key:
            namespace, name = key.split("/", 1)
            claim = self.claims.get(name, namespace)
            return await self._provision(claim) if claim is not None else None
        pv = self.volumes.get(key)
        if pv is not None:
            await self._delete_released(pv)
        return None

    async def _provision(self, claim: Obj) -> float | None:
        annotations = annotations_of(claim)
        if annotations.get(STORAGE_PROVISIONER) != PROVISIONER:
            return None
        if (claim.get("spec") or {}).get("volumeName") or annotations.get(BIND_COMPLETED):
            return None
        if self.volumes.get(volume_name(claim)) is not None:
            return None
        sc = self.classes.get(claim_class(claim))
        if sc is None or sc.get("provisioner") != PROVISIONER:
            return None
        node_name = annotations.get(SELECTED_NODE)
        if not node_name:
            # A local directory needs a node: an Immediate class gives none.
            self.recorder.event(
                claim,
                WARNING,
                "ProvisioningFailed",
                f'failed to provision volume with StorageClass "{name_of(sc)}": '
                "configuration error, no node was specified",
            )
            return None
        node = self.nodes.get(node_name)
        base_dir = annotations_of(node).get(LOCAL_PATH_DIR) if node is not None else None
        if not base_dir:
            self.recorder.event(
                claim,
                WARNING,
                "ProvisioningFailed",
                f'failed to provision volume with StorageClass "{name_of(sc)}": node '
                f'"{node_name}" has no local-path directory (annotation {LOCAL_PATH_DIR})',
            )
            return NODE_RETRY
        self.recorder.event(
            claim,
            NORMAL,
            "Provisioning",
            f'External provisioner is provisioning volume for claim "{namespace_of(claim)}/'
            f'{name_of(claim)}"',
        )
        pv = local_path_volume(claim, sc, node_name, base_dir)
        try:
            await self.client.create(PERSISTENTVOLUMES, pv)
        except AlreadyExists:
            return None
        self.recorder.event(
            claim, NORMAL, "ProvisioningSucceeded", f"Successfully provisioned volume {name_of(pv)}"
        )
        return None

    async def _delete_released(self, pv: Obj) -> None:
        if annotations_of(pv).get(PROVISIONED_BY) != PROVISIONER:
            return
        spec, status = pv.get("spec") or {}, pv.get("status") or {}
        if status.get("phase") != "Released" or spec.get("persistentVolumeReclaimPolicy") != (
            "Delete"
        ):
            return
        if (pv.get("metadata") or {}).get("deletionTimestamp"):
            return
        try:
            await self.client.delete(PERSISTENTVOLUMES, name_of(pv))
        except NotFound:
            return
        log.info("deleted released volume %s", name_of(pv))
