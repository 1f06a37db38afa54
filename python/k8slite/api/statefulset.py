"""apps/v1 StatefulSet: defaults and validation as upstream's."""

from __future__ import annotations

from typing import Any

from k8slite.api.apps_v1 import (
    _default_template,
    _int_or_percent,
    _WorkloadStrategy,
    validate_selector_and_template,
)
from k8slite.api.strategy import Obj, Strategy, register
from k8slite.api.validation import FieldErrors, check_dns_label, check_non_negative

POD_MANAGEMENT = ("OrderedReady", "Parallel")
RETENTION = ("Retain", "Delete")
# The spec fields an update may change (upstream's ValidateStatefulSetUpdate).
MUTABLE_SPEC = (
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
)


@register("apps", "StatefulSet")
class StatefulSetStrategy(_WorkloadStrategy):
    def default(self, obj: Obj) -> None:
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        strategy = spec.setdefault("updateStrategy", {})
        if isinstance(strategy, dict):
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                rolling = strategy.setdefault("rollingUpdate", {})
                if isinstance(rolling, dict):
                    rolling.setdefault("partition", 0)
                    # MaxUnavailableStatefulSet (beta, on in 1.35): one at a time.
                    rolling.setdefault("maxUnavailable", 1)
        retention = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
        if isinstance(retention, dict):
            retention.setdefault("whenDeleted", "Retain")
            retention.setdefault("whenScaled", "Retain")
        spec.setdefault("revisionHistoryLimit", 10)
        _default_template(spec)
        for claim in spec.get("volumeClaimTemplates") or ():
            if isinstance(claim, dict):
                claim.setdefault("apiVersion", "v1")
                claim.setdefault("kind", "PersistentVolumeClaim")
                cspec = claim.setdefault("spec", {})
                if isinstance(cspec, dict):
                    cspec.setdefault("volumeMode", "Filesystem")
                claim.setdefault("status", {"phase": "Pending"})

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        Strategy.validate(self, obj, errs, namespaced)
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            errs.required("spec")
            return
        for field in ("replicas", "minReadySeconds", "revisionHistoryLimit"):
            check_non_negative(errs, f"spec.{field}", spec.get(field))
        ordinals = spec.get("ordinals")
        if isinstance(ordinals, dict):
            check_non_negative(errs, "spec.ordinals.start", ordinals.get("start"))
        policy = spec.get("podManagementPolicy")
        if not policy:
            errs.required("spec.podManagementPolicy")
        elif policy not in POD_MANAGEMENT:
            errs.invalid("spec.podManagementPolicy", policy, "must be 'OrderedReady' or 'Parallel'")
        _validate_update_strategy(errs, spec.get("updateStrategy") or {})
        retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
        for when in ("whenDeleted", "whenScaled"):
            value = retention.get(when)
            if value not in RETENTION:
                errs.not_supported(
                    f"spec.persistentVolumeClaimRetentionPolicy.{when}", value, list(RETENTION)
                )
        for i, claim in enumerate(spec.get("volumeClaimTemplates") or ()):
            name = (claim.get("metadata") or {}).get("name") if isinstance(claim, dict) else None
            if not name:
                errs.required(f"spec.volumeClaimTemplates[{i}].metadata.name")
            else:
                check_dns_label(errs, f"spec.volumeClaimTemplates[{i}].metadata.name", name)
        validate_selector_and_template(errs, _with_claim_volumes(spec), "StatefulSet")
        template_spec = (spec.get("template") or {}).get("spec") or {}
        if template_spec.get("activeDeadlineSeconds") is not None:
            errs.forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                "activeDeadlineSeconds in StatefulSet is not Supported",
            )

    def validate_update(self, new: Obj, old: Obj, errs: FieldErrors, namespaced: bool) -> None:
        self.validate(new, errs, namespaced)
        new_spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
        frozen = (set(new_spec) | set(old_spec)) - set(MUTABLE_SPEC)
        if any(new_spec.get(k) != old_spec.get(k) for k in frozen):
            errs.forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                "'template', 'updateStrategy', 'revisionHistoryLimit', "
                "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            )

    def validate_status(self, new: Obj, old: Obj, errs: FieldErrors) -> None:
        status = new.get("status") or {}
        for field in (
            "replicas",
            "readyReplicas",
            "currentReplicas",
            "updatedReplicas",
            "availableReplicas",
            "observedGeneration",
            "collisionCount",
        ):
            check_non_negative(errs, f"status.{field}", status.get(field))


def _validate_update_strategy(errs: FieldErrors, strategy: Any) -> None:
    kind = strategy.get("type") if isinstance(strategy, dict) else None
    path = "spec.updateStrategy"
    if not kind:
        errs.required(f"{path}.type")
        return
    if kind not in ("RollingUpdate", "OnDelete"):
        errs.invalid(
            f"{path}.type",
            kind,
            "must be 'RollingUpdate' or 'OnDelete'",
        )
        return
    rolling = strategy.get("rollingUpdate")
    if kind == "OnDelete":
        if rolling is not None:
            errs.invalid(
                f"{path}.rollingUpdate",
                "{...}",
                "only allowed for updateStrategy 'RollingUpdate'",
            )
        return
    if not isinstance(rolling, dict):
        return
    check_non_negative(errs, f"{path}.rollingUpdate.partition", rolling.get("partition"))
    if rolling.get("maxUnavailable") is not None:
        value = _int_or_percent(
            errs, f"{path}.rollingUpdate.maxUnavailable", rolling["maxUnavailable"]
        )
        if value == 0:
            errs.invalid(
                f"{path}.rollingUpdate.maxUnavailable",
                rolling["maxUnavailable"],
                "must be greater than 0",
            )


def _with_claim_volumes(spec: Obj) -> Obj:
    """The spec with each claim template as a volume of the pod template, as the pods get
    them: containers mount claim templates by name, which a bare pod spec would refuse
    (upstream does not check the template's mounts against its volumes alone)."""
    template = spec.get("template")
    claims = [
        (c.get("metadata") or {}).get("name")
        for c in spec.get("volumeClaimTemplates") or ()
        if isinstance(c, dict)
    ]
    if not isinstance(template, dict) or not isinstance(template.get("spec"), dict) or not claims:
        return spec
    volumes = template["spec"].get("volumes") or []
    if not isinstance(volumes, list):
        return spec
    have = {v.get("name") for v in volumes if isinstance(v, dict)}
    extra = [
        {"name": name, "persistentVolumeClaim": {"claimName": name}}
        for name in claims
        if isinstance(name, str) and name and name not in have
    ]
    pod_spec = {**template["spec"], "volumes": [*volumes, *extra]}
    return {**spec, "template": {**template, "spec": pod_spec}}
