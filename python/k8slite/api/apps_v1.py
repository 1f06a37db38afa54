"""apps/v1 kinds: Deployment, ReplicaSet, DaemonSet and ControllerRevision rules."""

from __future__ import annotations

import re
from typing import Any

from k8slite._native import LabelSelector, SelectorError
from k8slite.api.core_v1 import default_pod_spec, validate_pod_spec
from k8slite.api.strategy import Obj, Strategy, register
from k8slite.api.validation import FieldErrors, check_labels, check_non_negative
from k8slite.component.objects import labels_of

_PERCENT_RE = re.compile(r"(\d+)%\Z")


def go_map(labels: dict[str, str] | None) -> str:
    """A label map the way Go's %#v prints it in upstream's messages."""
    inner = ", ".join(f'"{k}":"{v}"' for k, v in sorted((labels or {}).items()))
    return "map[string]string{" + inner + "}"


def go_selector(sel: dict[str, Any]) -> str:
    exprs = sel.get("matchExpressions")
    rendered = "nil" if not exprs else "{...}"
    return (
        f"v1.LabelSelector{{MatchLabels:{go_map(sel.get('matchLabels'))}, "
        f"MatchExpressions:[]v1.LabelSelectorRequirement({rendered})}}"
    )


def validate_selector_and_template(errs: FieldErrors, spec: Obj, kind: str) -> None:
    selector = spec.get("selector")
    template = spec.get("template")
    if not isinstance(selector, dict):
        errs.required("spec.selector")
        return
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        errs.invalid(
            "spec.selector", go_selector(selector), f"empty selector is invalid for {kind.lower()}"
        )
        return
    check_labels(errs, "spec.selector.matchLabels", selector.get("matchLabels"))
    try:
        parsed = LabelSelector.from_dict(selector)
    except SelectorError as e:
        errs.invalid("spec.selector", go_selector(selector), str(e))
        return
    validate_template(errs, template, parsed)


def validate_template(errs: FieldErrors, template: Any, selector: LabelSelector) -> None:
    """spec.template of a workload: present, selected by its selector, restartPolicy Always."""
    if not isinstance(template, dict):
        errs.required("spec.template")
        return
    labels = labels_of(template)
    check_labels(errs, "spec.template.metadata.labels", labels)
    if not selector.matches(labels):
        errs.invalid(
            "spec.template.metadata.labels",
            go_map(labels),
            "`selector` does not match template `labels`",
        )
    validate_pod_spec(errs, "spec.template.spec", template.get("spec"))
    policy = (template.get("spec") or {}).get("restartPolicy")
    if policy != "Always":
        errs.not_supported("spec.template.spec.restartPolicy", policy, ["Always"])


def _int_or_percent(errs: FieldErrors, path: str, value: Any) -> int | None:
    """Percent values return None (their size depends on replicas)."""
    if isinstance(value, str):
        m = _PERCENT_RE.match(value)
        if not m:
            errs.invalid(
                path,
                value,
                "a valid percent string must be a numeric string followed "
                "by an ending '%' (e.g. '1%',  or '93%', regex used for validation is "
                "'[0-9]+%')",
            )
            return None
        if int(m.group(1)) > 100:
            errs.invalid(path, value, "must not be greater than 100%")
        return int(m.group(1)) or 0
    check_non_negative(errs, path, value)
    return value if isinstance(value, int) else None


def _default_template(spec: Obj) -> None:
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        default_pod_spec(template["spec"])


class _WorkloadStrategy(Strategy):
    tracks_generation = True

    def default(self, obj: Obj) -> None:
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            spec.setdefault("replicas", 1)
            _default_template(spec)

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            errs.required("spec")
            return
        check_non_negative(errs, "spec.replicas", spec.get("replicas"))
        check_non_negative(errs, "spec.minReadySeconds", spec.get("minReadySeconds"))
        validate_selector_and_template(errs, spec, obj.get("kind", "ReplicaSet"))

    def validate_update(self, new: Obj, old: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate_update(new, old, errs, namespaced)
        new_sel = (new.get("spec") or {}).get("selector")
        old_sel = (old.get("spec") or {}).get("selector")
        if new_sel != old_sel and isinstance(new_sel, dict):
            errs.immutable("spec.selector", go_selector(new_sel))

    def validate_status(self, new: Obj, old: Obj, errs: FieldErrors) -> None:
        status = new.get("status") or {}
        for field in (
            "replicas",
            "readyReplicas",
            "availableReplicas",
            "updatedReplicas",
            "fullyLabeledReplicas",
            "observedGeneration",
            "unavailableReplicas",
        ):
            check_non_negative(errs, f"status.{field}", status.get(field))


@register("apps", "ReplicaSet")
class ReplicaSetStrategy(_WorkloadStrategy):
    pass


@register("apps", "Deployment")
class DeploymentStrategy(_WorkloadStrategy):
    def default(self, obj: Obj) -> None:
        super().default(obj)
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        strategy = spec.get("strategy") or {}
        kind = strategy.get("type")
        if kind not in ("Recreate", "RollingUpdate"):
            errs.not_supported("spec.strategy.type", kind, ["Recreate", "RollingUpdate"])
        elif kind == "Recreate" and strategy.get("rollingUpdate") is not None:
            errs.forbidden(
                "spec.strategy.rollingUpdate",
                "may not be specified when strategy `type` is 'Recreate'",
            )
        elif kind == "RollingUpdate":
            rolling = strategy.get("rollingUpdate") or {}
            path = "spec.strategy.rollingUpdate"
            surge = _int_or_percent(errs, f"{path}.maxSurge", rolling.get("maxSurge", 0))
            unavailable = _int_or_percent(
                errs, f"{path}.maxUnavailable", rolling.get("maxUnavailable", 0)
            )
            if surge == 0 and unavailable == 0:
                errs.invalid(
                    f"{path}.maxUnavailable",
                    rolling.get("maxUnavailable"),
                    "may not be 0 when `maxSurge` is 0",
                )
        check_non_negative(errs, "spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
        deadline = spec.get("progressDeadlineSeconds")
        if isinstance(deadline, int) and deadline <= spec.get("minReadySeconds", 0):
            errs.invalid(
                "spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"
            )


# apps/v1 keeps the DaemonSet's template generation (upstream's internal
# spec.templateGeneration) in this annotation; its pods carry it as a label.
TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"
_DS_STATUS_FIELDS = (
    "currentNumberScheduled",
    "numberMisscheduled",
    "desiredNumberScheduled",
    "numberReady",
    "observedGeneration",
    "updatedNumberScheduled",
    "numberAvailable",
    "numberUnavailable",
    "collisionCount",
)


def _template_generation(obj: Obj) -> int:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(TEMPLATE_GENERATION)
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _set_template_generation(obj: Obj, generation: int) -> None:
    annotations = obj.setdefault("metadata", {}).get("annotations")
    if not isinstance(annotations, dict):
        annotations = obj["metadata"]["annotations"] = {}
    annotations[TEMPLATE_GENERATION] = str(generation)


@register("apps", "DaemonSet")
class DaemonSetStrategy(Strategy):
    tracks_generation = True

    def default(self, obj: Obj) -> None:
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        _default_template(spec)
        strategy = spec.setdefault("updateStrategy", {})
        if isinstance(strategy, dict):
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                rolling = strategy.setdefault("rollingUpdate", {})
                rolling.setdefault("maxUnavailable", 1)
                rolling.setdefault("maxSurge", 0)
        spec.setdefault("revisionHistoryLimit", 10)

    def prepare_create(self, obj: Obj) -> None:
        super().prepare_create(obj)
        _set_template_generation(obj, max(1, _template_generation(obj)))

    def prepare_update(self, new: Obj, old: Obj) -> None:
        super().prepare_update(new, old)
        # Clients may not set the template generation: it moves on when the template does.
        generation = _template_generation(old)
        if (new.get("spec") or {}).get("template") != (old.get("spec") or {}).get("template"):
            generation += 1
        _set_template_generation(new, generation)

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            errs.required("spec")
            return
        validate_selector_and_template(errs, spec, "DaemonSet")
        template_spec = (spec.get("template") or {}).get("spec") or {}
        if template_spec.get("activeDeadlineSeconds") is not None:
            errs.forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                "activeDeadlineSeconds in DaemonSet is not Supported",
            )
        check_non_negative(errs, "spec.minReadySeconds", spec.get("minReadySeconds"))
        check_non_negative(errs, "spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
        strategy = spec.get("updateStrategy") or {}
        kind = strategy.get("type")
        path = "spec.updateStrategy"
        if kind not in ("OnDelete", "RollingUpdate"):
            errs.not_supported(f"{path}.type", kind, ["OnDelete", "RollingUpdate"])
        elif kind == "RollingUpdate":
            rolling = strategy.get("rollingUpdate")
            if not isinstance(rolling, dict):
                errs.required(f"{path}.rollingUpdate")
                return
            path += ".rollingUpdate"
            unavailable = _int_or_percent(
                errs, f"{path}.maxUnavailable", rolling.get("maxUnavailable", 0)
            )
            surge = _int_or_percent(errs, f"{path}.maxSurge", rolling.get("maxSurge", 0))
            if unavailable == 0 and surge == 0:
                errs.invalid(
                    f"{path}.maxUnavailable",
                    rolling.get("maxUnavailable"),
                    "may not be 0 when `maxSurge` is 0",
                )

    def validate_update(self, new: Obj, old: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate_update(new, old, errs, namespaced)
        new_sel = (new.get("spec") or {}).get("selector")
        if new_sel != (old.get("spec") or {}).get("selector") and isinstance(new_sel, dict):
            errs.immutable("spec.selector", go_selector(new_sel))

    def validate_status(self, new: Obj, old: Obj, errs: FieldErrors) -> None:
        status = new.get("status") or {}
        for field in _DS_STATUS_FIELDS:
            check_non_negative(errs, f"status.{field}", status.get(field))


@register("apps", "ControllerRevision")
class ControllerRevisionStrategy(Strategy):
    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        if obj.get("data") is None:
            errs.required("data", "data is mandatory")
        check_non_negative(errs, "revision", obj.get("revision"))

    def validate_update(self, new: Obj, old: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate_update(new, old, errs, namespaced)
        # A revision records history: its data may never change.
        if new.get("data") != old.get("data"):
            errs.immutable("data", new.get("data"))
