"""PersistentVolume, PersistentVolumeClaim (core/v1) and StorageClass (storage.k8s.io/v1):
upstream's defaults and validation."""

from __future__ import annotations

from typing import Any

from k8slite._native import LabelSelector, SelectorError
from k8slite.api.quantity import QuantityError, parse_quantity
from k8slite.api.strategy import Obj, Strategy, register
from k8slite.api.validation import FieldErrors, check_labels, check_quantity

ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]
VOLUME_MODES = ["Block", "Filesystem"]
PV_RECLAIM_POLICIES = ["Delete", "Recycle", "Retain"]
SC_RECLAIM_POLICIES = ["Delete", "Retain"]
BINDING_MODES = ["Immediate", "WaitForFirstConsumer"]
# The PV volume sources upstream has; exactly one must be set.
PV_SOURCES = (
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
)
# Annotations the binder, the scheduler and provisioners share (upstream's names).
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"
# Where a node's kubelet keeps local-path volumes; the kubelet sets it on its Node.
LOCAL_PATH_DIR = "k8slite.io/local-path-dir"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
BETA_DEFAULT_CLASS_ANNOTATION = "storageclass.beta.kubernetes.io/is-default-class"


def is_default_class(sc: Obj) -> bool:
    annotations = (sc.get("metadata") or {}).get("annotations") or {}
    return "true" in (
        annotations.get(DEFAULT_CLASS_ANNOTATION),
        annotations.get(BETA_DEFAULT_CLASS_ANNOTATION),
    )


def storage_request(claim: Obj) -> Any:
    """A claim's spec.resources.requests.storage (a quantity string), or None."""
    spec = claim.get("spec") or {}
    return ((spec.get("resources") or {}).get("requests") or {}).get("storage")


def _check_access_modes(errs: FieldErrors, path: str, modes: Any, detail: str = "") -> None:
    if not modes:
        errs.required(path, detail)
        return
    if not isinstance(modes, list):
        errs.invalid(path, modes, "must be a list")
        return
    for mode in modes:
        if mode not in ACCESS_MODES:
            errs.not_supported(path, mode, ACCESS_MODES)
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        errs.forbidden(path, "may not use ReadWriteOncePod with other access modes")


def _check_selector(errs: FieldErrors, path: str, selector: Any) -> None:
    if selector is None:
        return
    if not isinstance(selector, dict):
        errs.invalid(path, selector, "must be a label selector")
        return
    check_labels(errs, f"{path}.matchLabels", selector.get("matchLabels"))
    try:
        LabelSelector.from_dict(selector)
    except SelectorError as e:
        errs.invalid(path, selector, str(e))


def _check_storage(errs: FieldErrors, path: str, value: Any) -> None:
    if value is None:
        errs.required(path)
        return
    check_quantity(errs, path, value)
    try:
        if parse_quantity(value) <= 0:
            errs.invalid(path, value, "must be greater than zero")
    except QuantityError:
        pass


def _default_volume_mode(spec: Obj) -> None:
    spec.setdefault("volumeMode", "Filesystem")


@register("", "PersistentVolume")
class PersistentVolumeStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
            _default_volume_mode(spec)
            if isinstance(spec.get("hostPath"), dict):
                spec["hostPath"].setdefault("type", "")

    def prepare_create(self, obj: Obj) -> None:
        # Upstream's PV strategy starts every volume in phase Pending.
        obj["status"] = {"phase": "Pending"}

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            errs.required("spec")
            return
        _check_access_modes(errs, "spec.accessModes", spec.get("accessModes"))
        capacity = spec.get("capacity")
        if not capacity:
            errs.required("spec.capacity")
        elif not isinstance(capacity, dict) or set(capacity) != {"storage"}:
            errs.not_supported("spec.capacity", sorted(capacity or ()), ["storage"])
        else:
            _check_storage(errs, "spec.capacity.storage", capacity["storage"])
        policy = spec.get("persistentVolumeReclaimPolicy")
        if policy not in PV_RECLAIM_POLICIES:
            errs.not_supported("spec.persistentVolumeReclaimPolicy", policy, PV_RECLAIM_POLICIES)
        if spec.get("volumeMode") not in VOLUME_MODES:
            errs.not_supported("spec.volumeMode", spec.get("volumeMode"), VOLUME_MODES)
        sources = [s for s in PV_SOURCES if spec.get(s) is not None]
        if not sources:
            errs.required("spec", "must specify a volume type")
        elif len(sources) > 1:
            errs.forbidden(f"spec.{sources[1]}", "may not specify more than 1 volume type")
        for source in ("hostPath", "local"):
            value = spec.get(source)
            if isinstance(value, dict) and not value.get("path"):
                errs.required(f"spec.{source}.path")
        if spec.get("local") is not None and not spec.get("nodeAffinity"):
            errs.required("spec.nodeAffinity", "Local volume requires node affinity")
        affinity = spec.get("nodeAffinity")
        if affinity is not None and not (affinity or {}).get("required"):
            errs.required("spec.nodeAffinity.required")

    def validate_update(self, new: Obj, old: Obj, errs: FieldErrors, namespaced: bool) -> None:
        self.validate(new, errs, namespaced)
        ns, os_ = new.get("spec") or {}, old.get("spec") or {}
        if any(ns.get(s) != os_.get(s) for s in PV_SOURCES):
            errs.forbidden(
                "spec.persistentvolumesource", "spec.persistentvolumesource is forbidden."
            )
        if os_.get("volumeMode") != ns.get("volumeMode"):
            errs.immutable("spec.volumeMode", ns.get("volumeMode"))
        if os_.get("nodeAffinity") and os_.get("nodeAffinity") != ns.get("nodeAffinity"):
            errs.invalid("spec.nodeAffinity", "", "field is immutable")


@register("", "PersistentVolumeClaim")
class PersistentVolumeClaimStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            _default_volume_mode(spec)

    def prepare_create(self, obj: Obj) -> None:
        obj["status"] = {"phase": "Pending"}

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            errs.required("spec")
            return
        _check_access_modes(
            errs, "spec.accessModes", spec.get("accessModes"), "at least 1 access mode is required"
        )
        _check_selector(errs, "spec.selector", spec.get("selector"))
        _check_storage(errs, "spec.resources[storage]", storage_request(obj))
        if spec.get("volumeMode") not in VOLUME_MODES:
            errs.not_supported("spec.volumeMode", spec.get("volumeMode"), VOLUME_MODES)
        name = spec.get("storageClassName")
        if name is not None and name != "" and not isinstance(name, str):
            errs.invalid("spec.storageClassName", name, "must be a string")

    def validate_update(self, new: Obj, old: Obj, errs: FieldErrors, namespaced: bool) -> None:
        self.validate(new, errs, namespaced)
        ns, os_ = dict(new.get("spec") or {}), dict(old.get("spec") or {})
        # A claim binds by setting volumeName once; a missing class may be set once (as
        # upstream allows for the default-class retroactive assignment).
        if not os_.get("volumeName") and "volumeName" in ns:
            os_["volumeName"] = ns["volumeName"]
        if os_.get("storageClassName") is None and "storageClassName" in ns:
            os_["storageClassName"] = ns["storageClassName"]
        bound = (old.get("status") or {}).get("phase") == "Bound"
        for spec in (ns, os_):
            spec.pop("volumeAttributesClassName", None)
            if bound:
                spec["resources"] = {
                    k: v for k, v in (spec.get("resources") or {}).items() if k != "requests"
                }
        if ns != os_:
            errs.forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and "
                "volumeAttributesClassName for bound claims",
            )
            return
        new_size, old_size = storage_request(new), storage_request(old)
        capacity = _status_capacity(old)
        if bound and capacity is not None and new_size is not None and old_size is not None:
            # Shrinking is allowed only back to (not below) what the volume has.
            try:
                size = parse_quantity(new_size)
                if size < parse_quantity(old_size) and size < parse_quantity(capacity):
                    errs.forbidden(
                        "spec.resources.requests.storage",
                        "field can not be less than status.capacity",
                    )
            except QuantityError:
                pass

    def validate_status(self, new: Obj, old: Obj, errs: FieldErrors) -> None:
        status = new.get("status") or {}
        modes = status.get("accessModes")
        if modes:
            _check_access_modes(errs, "status.accessModes", modes)


def _status_capacity(claim: Obj) -> Any:
    return ((claim.get("status") or {}).get("capacity") or {}).get("storage")


@register("storage.k8s.io", "StorageClass")
class StorageClassStrategy(Strategy):
    reset_status_on_create = False

    def default(self, obj: Obj) -> None:
        obj.setdefault("reclaimPolicy", "Delete")
        obj.setdefault("volumeBindingMode", "Immediate")

    def prepare_update(self, new: Obj, old: Obj) -> None:
        """A StorageClass has no status."""

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        if not obj.get("provisioner"):
            errs.required("provisioner")
        policy = obj.get("reclaimPolicy")
        if policy not in SC_RECLAIM_POLICIES:
            errs.not_supported("reclaimPolicy", policy, SC_RECLAIM_POLICIES)
        mode = obj.get("volumeBindingMode")
        if mode not in BINDING_MODES:
            errs.not_supported("volumeBindingMode", mode, BINDING_MODES)
        expand = obj.get("allowVolumeExpansion")
        if expand is not None and not isinstance(expand, bool):
            errs.invalid("allowVolumeExpansion", expand, "must be a boolean")

    def validate_update(self, new: Obj, old: Obj, errs: FieldErrors, namespaced: bool) -> None:
        self.validate(new, errs, namespaced)
        for field in ("parameters", "provisioner", "reclaimPolicy"):
            if new.get(field) != old.get(field):
                errs.forbidden(field, f"updates to {field} are forbidden.")
        if new.get("volumeBindingMode") != old.get("volumeBindingMode"):
            errs.immutable("volumeBindingMode", new.get("volumeBindingMode"))

    def spec_changed(self, new: Obj, old: Obj) -> bool:
        return False
