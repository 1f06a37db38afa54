"""The PVC and PV protection controllers: a claim a pod still uses, or a volume still bound,
keeps its protection finalizer after deletion until it is no longer in use."""

from __future__ import annotations

import copy

from k8slite.api.storage_v1 import PV_PROTECTION, PVC_PROTECTION
from k8slite.client import DeletedFinalStateUnknown
from k8slite.client.resource import PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES, PODS
from k8slite.component.objects import Obj, is_deleting, meta, name_of, namespace_of
from k8slite.controllers.base import Controller, ControllerContext


def without_finalizer(obj: Obj, finalizer: str) -> Obj:
    new = copy.deepcopy(obj)
    m = meta(new)
    m["finalizers"] = [f for f in m.get("finalizers") or () if f != finalizer]
    return new


def claims_of(pod: Obj) -> list[str]:
    """Names of the claims a pod's volumes use (generic ephemeral ones included)."""
    names = []
    for vol in (pod.get("spec") or {}).get("volumes") or ():
        source = vol.get("persistentVolumeClaim")
        if isinstance(source, dict) and source.get("claimName"):
            names.append(str(source["claimName"]))
        elif vol.get("ephemeral") is not None:
            names.append(f"{name_of(pod)}-{vol.get('name')}")
    return names


def pod_uses_claim(pod: Obj, claim_name: str) -> bool:
    """A pod not yet finished holds its claims (upstream: Succeeded and Failed pods do not)."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    return claim_name in claims_of(pod)


class PVCProtectionController(Controller):
    name = "pvc-protection-controller"
    queue_name = "pvcprotection"

    def __init__(self, ctx: ControllerContext, workers: int = 1) -> None:
        super().__init__(ctx, workers)
        self.claims = ctx.informers.informer(PERSISTENTVOLUMECLAIMS)
        self.pods = ctx.informers.informer(PODS)
        self.claims.add_event_handler(self.enqueue, lambda old, new: self.enqueue(new), None)
        self.pods.add_event_handler(
            self._pod_changed, lambda old, new: self._pod_changed(new), self._pod_changed
        )

    def _pod_changed(self, pod: Obj | DeletedFinalStateUnknown) -> None:
        obj = pod.obj if isinstance(pod, DeletedFinalStateUnknown) else pod
        for claim in claims_of(obj):
            self.queue.add(f"{namespace_of(obj)}/{claim}")

    async def sync(self, key: str) -> float | None:
        namespace, name = key.split("/", 1)
        claim = self.claims.get(name, namespace)
        if claim is None or not is_deleting(claim):
            return None
        if PVC_PROTECTION not in (meta(claim).get("finalizers") or ()):
            return None
        if any(pod_uses_claim(p, name) for p in self.pods.list(namespace)):
            return None
        # The cache may not have a pod made a moment ago: ask the API server before letting
        # the claim go, as upstream does.
        live = await self.client.list(PODS, namespace=namespace)
        if any(pod_uses_claim(p, name) for p in live.get("items") or ()):
            return None
        await self.client.update(PERSISTENTVOLUMECLAIMS, without_finalizer(claim, PVC_PROTECTION))
        return None


class PVProtectionController(Controller):
    name = "pv-protection-controller"
    queue_name = "pvprotection"

    def __init__(self, ctx: ControllerContext, workers: int = 1) -> None:
        super().__init__(ctx, workers)
        self.volumes = ctx.informers.informer(PERSISTENTVOLUMES)
        self.volumes.add_event_handler(self.enqueue, lambda old, new: self.enqueue(new), None)

    async def sync(self, key: str) -> float | None:
        pv = self.volumes.get(key)
        if pv is None or not is_deleting(pv):
            return None
        if PV_PROTECTION not in (meta(pv).get("finalizers") or ()):
            return None
        if (pv.get("status") or {}).get("phase") == "Bound":
            return None
        await self.client.update(PERSISTENTVOLUMES, without_finalizer(pv, PV_PROTECTION))
        return None
