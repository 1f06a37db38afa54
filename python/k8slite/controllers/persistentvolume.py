"""The PersistentVolume controller: binds claims to volumes, keeps both phases, waits for the
first consumer or a provisioner, reclaims released volumes, and grows bound volumes."""

from __future__ import annotations

import copy
import logging

from k8slite.api.quantity import QuantityError, parse_quantity
from k8slite.api.storage_v1 import (
    BETA_STORAGE_PROVISIONER,
    BIND_COMPLETED,
    BOUND_BY_CONTROLLER,
    PROVISIONED_BY,
    SELECTED_NODE,
    STORAGE_PROVISIONER,
    storage_request,
)
from k8slite.client import DeletedFinalStateUnknown, NotFound
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
    meta,
    name_of,
    namespace_of,
    resource_version_of,
    uid_of,
)
from k8slite.controllers.base import Controller, ControllerContext
from k8slite.controllers.volumematch import bound_to_claim, claim_class, find_best_match

log = logging.getLogger(__name__)

WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
# A class naming this provisioner has only volumes an administrator makes (upstream's).
NO_PROVISIONER = "kubernetes.io/no-provisioner"


def _phase(obj: Obj) -> str:
    return str((obj.get("status") or {}).get("phase") or "")


class PersistentVolumeController(Controller):
    name = "persistentvolume-binder-controller"
    queue_name = "persistentvolume"
    event_source = "persistentvolume-controller"

    def __init__(self, ctx: ControllerContext, workers: int = 1) -> None:
        super().__init__(ctx, workers)
        self.claims = ctx.informers.informer(PERSISTENTVOLUMECLAIMS)
        self.volumes = ctx.informers.informer(PERSISTENTVOLUMES)
        self.classes = ctx.informers.informer(STORAGECLASSES)
        self.nodes = ctx.informers.informer(NODES)
        self.claims.add_event_handler(
            self.enqueue, lambda old, new: self.enqueue(new), self._claim_gone
        )
        self.volumes.add_event_handler(
            self._volume_changed, lambda old, new: self._volume_changed(new), self._volume_gone
        )

    def _volume_changed(self, pv: Obj) -> None:
        self.enqueue(pv)
        ref = (pv.get("spec") or {}).get("claimRef")
        if ref and ref.get("name"):
            self.queue.add(f"{ref.get('namespace', '')}/{ref['name']}")

    def _volume_gone(self, pv: Obj | DeletedFinalStateUnknown) -> None:
        obj = pv.obj if isinstance(pv, DeletedFinalStateUnknown) else pv
        ref = (obj.get("spec") or {}).get("claimRef")
        if ref and ref.get("name"):
            self.queue.add(f"{ref.get('namespace', '')}/{ref['name']}")

    def _claim_gone(self, claim: Obj | DeletedFinalStateUnknown) -> None:
        obj = claim.obj if isinstance(claim, DeletedFinalStateUnknown) else claim
        for pv in self.volumes.list():
            ref = (pv.get("spec") or {}).get("claimRef") or {}
            if ref.get("name") == name_of(obj) and ref.get("namespace") == namespace_of(obj):
                self.enqueue(pv)

    async def sync(self, key: str) -> float | None:
        if "/" in key:
            namespace, name = key.split("/", 1)
            claim = self.claims.get(name, namespace)
            if claim is not None:
                await self._sync_claim(claim)
            return None
        pv = self.volumes.get(key)
        if pv is not None:
            await self._sync_volume(pv)
        return None

    # ------------------------------------------------------------------ claims

    async def _sync_claim(self, claim: Obj) -> None:
        if annotations_of(claim).get(BIND_COMPLETED) is None:
            await self._sync_unbound(claim)
            return
        volume_name = (claim.get("spec") or {}).get("volumeName") or ""
        pv = self.volumes.get(volume_name) if volume_name else None
        if pv is None:
            if _phase(claim) != "Lost":
                await self._claim_phase(claim, "Lost")
                self.recorder.event(
                    claim,
                    WARNING,
                    "ClaimLost",
                    "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
                )
            return
        ref = (pv.get("spec") or {}).get("claimRef")
        if not ref or bound_to_claim(pv, claim):
            await self._bind(pv, claim)
            return
        if _phase(claim) != "Lost":
            await self._claim_phase(claim, "Lost")
            self.recorder.event(
                claim,
                WARNING,
                "ClaimMisbound",
                "Two claims are bound to the same volume, this one is bound incorrectly",
            )

    async def _sync_unbound(self, claim: Obj) -> None:
        spec = claim.get("spec") or {}
        volume_name = spec.get("volumeName") or ""
        if volume_name:
            # Pre-bound by the user to a volume.
            pv = self.volumes.get(volume_name)
            if pv is None:
                await self._claim_phase(claim, "Pending")
            elif not (pv.get("spec") or {}).get("claimRef") or bound_to_claim(pv, claim):
                await self._bind(pv, claim)
            else:
                await self._claim_phase(claim, "Pending")
                self.recorder.event(
                    claim,
                    WARNING,
                    "FailedBinding",
                    f'volume "{volume_name}" already bound to a different claim.',
                )
            return
        class_name = claim_class(claim)
        sc = self.classes.get(class_name) if class_name else None
        delayed = sc is not None and sc.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER
        node = None
        if delayed:
            selected = annotations_of(claim).get(SELECTED_NODE)
            if not selected:
                await self._claim_phase(claim, "Pending")
                self.recorder.event(
                    claim,
                    NORMAL,
                    WAIT_FOR_FIRST_CONSUMER,
                    "waiting for first consumer to be created before binding",
                )
                return
            node = self.nodes.get(selected)
        pv = find_best_match(claim, self.volumes.list(), node if delayed else None)
        if pv is not None:
            await self._bind(pv, claim)
            return
        await self._claim_phase(claim, "Pending")
        if class_name and sc is None:
            self.recorder.event(
                claim,
                WARNING,
                "ProvisioningFailed",
                f'storageclass.storage.k8s.io "{class_name}" not found',
            )
        elif sc is None:
            self.recorder.event(
                claim,
                NORMAL,
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set",
            )
        elif sc.get("provisioner") == NO_PROVISIONER:
            self.recorder.event(
                claim,
                NORMAL,
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set"
                if not class_name
                else "no persistent volumes available for this claim",
            )
        else:
            await self._ask_provisioner(claim, str(sc.get("provisioner") or ""))

    async def _ask_provisioner(self, claim: Obj, provisioner: str) -> None:
        """Name the class's provisioner on the claim; it makes the volume, we bind it."""
        annotations = annotations_of(claim)
        if annotations.get(STORAGE_PROVISIONER) != provisioner:
            new = copy.deepcopy(claim)
            ann = meta(new).setdefault("annotations", {})
            ann[STORAGE_PROVISIONER] = provisioner
            ann[BETA_STORAGE_PROVISIONER] = provisioner
            await self.client.update(PERSISTENTVOLUMECLAIMS, new)
        self.recorder.event(
            claim,
            NORMAL,
            "ExternalProvisioning",
            "Waiting for a volume to be created either by the external provisioner "
            f"'{provisioner}' or manually by the system administrator. If volume creation is "
            "delayed, please verify that the provisioner is running and correctly registered.",
        )

    async def _claim_phase(self, claim: Obj, phase: str) -> Obj:
        if _phase(claim) == phase:
            return claim
        new = copy.deepcopy(claim)
        status = new.setdefault("status", {})
        status["phase"] = phase
        if phase == "Lost":
            status.pop("capacity", None)
            status.pop("accessModes", None)
        result: Obj = await self.client.update_status(PERSISTENTVOLUMECLAIMS, new)
        return result

    # ----------------------------------------------------------------- binding

    async def _bind(self, pv: Obj, claim: Obj) -> None:
        """Upstream's bind: the volume's claimRef, its phase, the claim's volumeName and
        annotations, then the claim's status; each write only when something changes."""
        pv = await self._grow(pv, claim)
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if ref.get("uid") != uid_of(claim):
            new = copy.deepcopy(pv)
            new["spec"]["claimRef"] = {
                "kind": "PersistentVolumeClaim",
                "namespace": namespace_of(claim),
                "name": name_of(claim),
                "uid": uid_of(claim),
                "apiVersion": "v1",
                "resourceVersion": resource_version_of(claim),
            }
            if not ref:
                meta(new).setdefault("annotations", {})[BOUND_BY_CONTROLLER] = "yes"
            pv = await self.client.update(PERSISTENTVOLUMES, new)
        pv = await self._volume_phase(pv, "Bound")
        spec = claim.get("spec") or {}
        annotations = annotations_of(claim)
        if spec.get("volumeName") != name_of(pv) or annotations.get(BIND_COMPLETED) != "yes":
            new = copy.deepcopy(claim)
            ann = meta(new).setdefault("annotations", {})
            if spec.get("volumeName") != name_of(pv):
                new["spec"]["volumeName"] = name_of(pv)
                ann[BOUND_BY_CONTROLLER] = "yes"
            ann[BIND_COMPLETED] = "yes"
            claim = await self.client.update(PERSISTENTVOLUMECLAIMS, new)
        pv_spec = pv.get("spec") or {}
        status = claim.get("status") or {}
        wanted = {
            "phase": "Bound",
            "accessModes": list(pv_spec.get("accessModes") or ()),
            "capacity": dict(pv_spec.get("capacity") or {}),
        }
        if any(status.get(k) != v for k, v in wanted.items()):
            new = copy.deepcopy(claim)
            new.setdefault("status", {}).update(wanted)
            await self.client.update_status(PERSISTENTVOLUMECLAIMS, new)
            if _phase(claim) != "Bound" and ref.get("uid") != uid_of(claim):
                log.info(
                    "bound claim %s/%s to %s", namespace_of(claim), name_of(claim), name_of(pv)
                )

    async def _grow(self, pv: Obj, claim: Obj) -> Obj:
        """A bound claim asking for more than its volume has: grow the volume (a directory
        has no quota to change, so this is the volume's recorded capacity only)."""
        if annotations_of(claim).get(BIND_COMPLETED) is None:
            return pv
        request = storage_request(claim)
        capacity = ((pv.get("spec") or {}).get("capacity") or {}).get("storage")
        try:
            if request is None or parse_quantity(request) <= parse_quantity(capacity):
                return pv
        except QuantityError:
            return pv
        new = copy.deepcopy(pv)
        new["spec"]["capacity"]["storage"] = request
        grown: Obj = await self.client.update(PERSISTENTVOLUMES, new)
        self.recorder.event(
            claim,
            NORMAL,
            "VolumeResizeSuccessful",
            f'resize volume "{name_of(pv)}" succeeded',
        )
        return grown

    # ----------------------------------------------------------------- volumes

    async def _volume_phase(self, pv: Obj, phase: str, reason: str = "", message: str = "") -> Obj:
        status = pv.get("status") or {}
        if status.get("phase") == phase and status.get("reason", "") == reason:
            return pv
        new = copy.deepcopy(pv)
        new["status"] = {"phase": phase}
        if reason:
            new["status"]["reason"] = reason
        if message:
            new["status"]["message"] = message
        result: Obj = await self.client.update_status(PERSISTENTVOLUMES, new)
        return result

    async def _sync_volume(self, pv: Obj) -> None:
        ref = (pv.get("spec") or {}).get("claimRef")
        if not ref:
            await self._volume_phase(pv, "Available")
            return
        claim = self.claims.get(str(ref.get("name") or ""), str(ref.get("namespace") or ""))
        if not ref.get("uid"):
            # Pre-bound by a user to a claim that may not exist yet: the claim binds it.
            await self._volume_phase(pv, "Available")
            return
        if claim is None:
            # Our cache may lag a claim just made; only the API server's word releases.
            try:
                claim = await self.client.get(
                    PERSISTENTVOLUMECLAIMS, str(ref["name"]), namespace=str(ref["namespace"])
                )
            except NotFound:
                claim = None
        if claim is not None and uid_of(claim) != ref.get("uid"):
            claim = None
        if claim is None:
            await self._reclaim(pv)
            return
        volume_name = (claim.get("spec") or {}).get("volumeName") or ""
        if volume_name == name_of(pv):
            await self._volume_phase(pv, "Bound")
        elif not volume_name:
            self.enqueue(claim)  # binding in progress
        elif annotations_of(pv).get(BOUND_BY_CONTROLLER):
            # The claim went to another volume: undo our half of a binding.
            new = copy.deepcopy(pv)
            new["spec"].pop("claimRef", None)
            pv = await self.client.update(PERSISTENTVOLUMES, new)
            await self._volume_phase(pv, "Available")

    async def _reclaim(self, pv: Obj) -> None:
        """The volume's claim is gone: Retain keeps it Released; Delete leaves it to its
        provisioner; other volumes fail, as no in-tree plugin here deletes or recycles."""
        if _phase(pv) == "Failed":
            return
        pv = await self._volume_phase(pv, "Released")
        policy = (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy")
        if policy == "Retain":
            return
        if policy == "Delete":
            if annotations_of(pv).get(PROVISIONED_BY):
                return  # the provisioner that made it deletes it
            message = (
                f'error getting deleter volume plugin for volume "{name_of(pv)}": '
                "no deletable volume plugin matched"
            )
            self.recorder.event(pv, WARNING, "VolumeFailedDelete", message)
            await self._volume_phase(pv, "Failed", "", message)
            return
        message = "No recycler plugin found for the volume!"
        self.recorder.event(pv, WARNING, "VolumeFailedRecycle", message)
        await self._volume_phase(pv, "Failed", "", message)
