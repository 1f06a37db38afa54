"""Storage admission as upstream's plugins: DefaultStorageClass, PersistentVolumeClaimResize
and StorageObjectInUseProtection (the protection finalizers on new claims and volumes)."""

from __future__ import annotations

from k8slite._native import loads
from k8slite.api import errors
from k8slite.api.quantity import QuantityError, parse_quantity
from k8slite.api.storage_v1 import (
    PV_PROTECTION,
    PVC_PROTECTION,
    is_default_class,
    storage_request,
)
from k8slite.apiserver.registry import Registry
from k8slite.component.objects import Obj, meta, name_of

_RESIZE_REFUSED = (
    "only dynamically provisioned pvc can be resized and the storageclass that provisions "
    "the pvc must support resize"
)


def _classes(classes: Registry) -> list[Obj]:
    found: list[Obj] = loads(classes.cache.list(classes.rt.key_prefix)[0])
    return found


def default_class(classes: Registry) -> Obj | None:
    """The default StorageClass; with several, the newest (then the first by name) wins."""
    defaults = [sc for sc in _classes(classes) if is_default_class(sc)]
    if not defaults:
        return None
    defaults.sort(key=lambda sc: name_of(sc))
    defaults.sort(key=lambda sc: sc["metadata"].get("creationTimestamp", ""), reverse=True)
    return defaults[0]


def _grows(new: Obj, old: Obj) -> bool:
    try:
        return parse_quantity(storage_request(new)) > parse_quantity(storage_request(old))
    except QuantityError:
        return False


def _protect(obj: Obj, finalizer: str) -> None:
    finalizers = meta(obj).setdefault("finalizers", [])
    if isinstance(finalizers, list) and finalizer not in finalizers:
        finalizers.append(finalizer)


def install(claims: Registry, classes: Registry, volumes: Registry) -> None:
    """Admit claims: the default class and protection on create, resize only where the
    class allows it; and volumes: protection on create."""

    def admit(new: Obj, old: Obj | None) -> None:
        spec = new.get("spec")
        if not isinstance(spec, dict):
            return
        if old is None:
            _protect(new, PVC_PROTECTION)
            if spec.get("storageClassName") is None:
                sc = default_class(classes)
                if sc is not None:
                    spec["storageClassName"] = name_of(sc)
            return
        if not _grows(new, old):
            return
        # Upstream checks the bound volume's class; a claim not yet bound may not grow.
        class_name = spec.get("storageClassName") or ""
        hit = classes.cache.get(classes.key(None, class_name)) if class_name else None
        sc = loads(hit[0]) if hit is not None else {}
        if not (old.get("spec") or {}).get("volumeName") or not sc.get("allowVolumeExpansion"):
            raise errors.forbidden("persistentvolumeclaims", name_of(new), "", _RESIZE_REFUSED)

    def admit_volume(new: Obj, old: Obj | None) -> None:
        if old is None:
            _protect(new, PV_PROTECTION)

    claims.admission = admit
    volumes.admission = admit_volume
