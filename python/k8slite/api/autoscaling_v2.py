"""autoscaling/v2 HorizontalPodAutoscaler: defaults and validation, with upstream's messages."""

from __future__ import annotations

from typing import Any, TypeGuard

from k8slite.api.quantity import QuantityError, parse_quantity
from k8slite.api.strategy import Obj, Strategy, register
from k8slite.api.validation import FieldErrors, check_path_segment_name

# Upstream's autoscaling.DefaultCPUUtilization: the target when an HPA names no metric.
DEFAULT_CPU_UTILIZATION = 80
MAX_STABILIZATION_WINDOW_SECONDS = 3600
MAX_PERIOD_SECONDS = 1800
METRIC_SOURCE_TYPES = ["ContainerResource", "External", "Object", "Pods", "Resource"]
# The field of a MetricSpec (and MetricStatus) each source type fills in.
SOURCE_FIELDS = {
    "ContainerResource": "containerResource",
    "External": "external",
    "Object": "object",
    "Pods": "pods",
    "Resource": "resource",
}
SELECT_POLICIES = ["Disabled", "Max", "Min"]
POLICY_TYPES = ["Percent", "Pods"]


def default_scale_up() -> Obj:
    """Upstream's scale-up rules: the larger of doubling and adding four pods per 15 s."""
    return {
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15},
        ],
    }


def default_scale_down() -> Obj:
    """Upstream's scale-down rules; the window is left to the controller's flag
    (--horizontal-pod-autoscaler-downscale-stabilization), so it has no default here."""
    return {
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
    }


def _default_rules(rules: Any, defaults: Obj) -> Obj:
    if not isinstance(rules, dict):
        return defaults
    if not rules.get("policies"):
        rules["policies"] = defaults["policies"]
    rules.setdefault("selectPolicy", defaults["selectPolicy"])
    if "stabilizationWindowSeconds" in defaults:
        rules.setdefault("stabilizationWindowSeconds", defaults["stabilizationWindowSeconds"])
    return rules


def default_hpa_spec(spec: Obj) -> None:
    """SetDefaults_HorizontalPodAutoscaler: minReplicas 1, a CPU target of 80% when no metric
    is named, and a given behavior's missing rules and fields filled in."""
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {
                        "type": "Utilization",
                        "averageUtilization": DEFAULT_CPU_UTILIZATION,
                    },
                },
            }
        ]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        behavior["scaleUp"] = _default_rules(behavior.get("scaleUp"), default_scale_up())
        behavior["scaleDown"] = _default_rules(behavior.get("scaleDown"), default_scale_down())


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _positive_quantity(errs: FieldErrors, path: str, value: Any) -> None:
    if value is None:
        return
    try:
        q = parse_quantity(value)
    except QuantityError as e:
        errs.invalid(path, value, str(e))
        return
    if q <= 0:
        errs.invalid(path, value, "must be positive")


def _validate_target(errs: FieldErrors, path: str, target: Any) -> None:
    if not isinstance(target, dict):
        target = {}
    ttype = target.get("type")
    if not ttype:
        errs.required(f"{path}.type", "must specify a metric target type")
    if ttype not in ("Utilization", "Value", "AverageValue"):
        errs.invalid(
            f"{path}.type", ttype or "", "must be either Utilization, Value, or AverageValue"
        )
    _positive_quantity(errs, f"{path}.value", target.get("value"))
    _positive_quantity(errs, f"{path}.averageValue", target.get("averageValue"))
    utilization = target.get("averageUtilization")
    if utilization is not None and (not _is_int(utilization) or utilization < 1):
        errs.invalid(f"{path}.averageUtilization", utilization, "must be greater than 0")


def _validate_resource_source(errs: FieldErrors, path: str, src: Obj, container: bool) -> None:
    if not src.get("name"):
        errs.required(f"{path}.name", "must specify a resource name")
    if container and not src.get("container"):
        errs.required(f"{path}.container", "must specify a container")
    target = _dict(src.get("target"))
    _validate_target(errs, f"{path}.target", target)
    utilization, average = target.get("averageUtilization"), target.get("averageValue")
    if utilization is None and average is None:
        errs.required(
            f"{path}.target.averageUtilization",
            "must set either a target raw value or a target utilization",
        )
    if utilization is not None and average is not None:
        errs.forbidden(
            f"{path}.target.averageValue",
            "may not set both a target raw value and a target utilization",
        )


def _validate_metric_identifier(errs: FieldErrors, path: str, metric: Any) -> None:
    if not isinstance(metric, dict) or not metric.get("name"):
        errs.required(f"{path}.name", "must specify a metric name")


def _validate_named_source(errs: FieldErrors, path: str, stype: str, src: Obj) -> None:
    """Pods, Object and External sources: a metric and a target of the kind each allows."""
    _validate_metric_identifier(errs, f"{path}.metric", src.get("metric"))
    target = _dict(src.get("target"))
    _validate_target(errs, f"{path}.target", target)
    if stype == "Object":
        ref = src.get("describedObject") or {}
        if not ref.get("kind"):
            errs.required(f"{path}.describedObject.kind")
        if not ref.get("name"):
            errs.required(f"{path}.describedObject.name")
        if target.get("value") is None and target.get("averageValue") is None:
            errs.required(
                f"{path}.target.averageValue", "must set either a target value or averageValue"
            )
    elif stype == "External":
        if target.get("value") is None and target.get("averageValue") is None:
            errs.required(
                f"{path}.target.averageValue",
                "must set either a target value for metric or a per-pod target",
            )
        if target.get("value") is not None and target.get("averageValue") is not None:
            errs.forbidden(
                f"{path}.target.value",
                "may not set both a target value for metric and a per-pod target",
            )
    elif target.get("averageValue") is None:
        errs.required(f"{path}.target.averageValue", "must specify a positive target averageValue")


def _validate_metric(errs: FieldErrors, path: str, spec: Any) -> None:
    if not isinstance(spec, dict):
        errs.required(f"{path}.type", "must specify a metric source type")
        return
    stype = spec.get("type")
    if not stype:
        errs.required(f"{path}.type", "must specify a metric source type")
    elif stype not in METRIC_SOURCE_TYPES:
        errs.not_supported(f"{path}.type", stype, METRIC_SOURCE_TYPES)
    present = [f for f in SOURCE_FIELDS.values() if spec.get(f) is not None]
    for field in present[:1]:
        src = spec[field] if isinstance(spec[field], dict) else {}
        sub = f"{path}.{field}"
        if field in ("resource", "containerResource"):
            _validate_resource_source(errs, sub, src, field == "containerResource")
        else:
            stype_of = {v: k for k, v in SOURCE_FIELDS.items()}[field]
            _validate_named_source(errs, sub, stype_of, src)
    expected = SOURCE_FIELDS.get(stype or "")
    if expected is not None and spec.get(expected) is None:
        errs.required(f"{path}.{expected}", "must populate information for the given metric source")
    if len(present) != 1:
        for field in sorted(f for f in present if f != expected):
            errs.forbidden(f"{path}.{field}", "must populate the given metric source only")


def _validate_rules(errs: FieldErrors, path: str, rules: Any) -> None:
    if not isinstance(rules, dict):
        return
    window = rules.get("stabilizationWindowSeconds")
    if window is not None and _is_int(window):
        if window < 0:
            errs.invalid(
                f"{path}.stabilizationWindowSeconds",
                window,
                "must be greater than or equal to zero",
            )
        if window > MAX_STABILIZATION_WINDOW_SECONDS:
            errs.invalid(
                f"{path}.stabilizationWindowSeconds",
                window,
                f"must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}",
            )
    select = rules.get("selectPolicy")
    if select is not None and select not in SELECT_POLICIES:
        errs.not_supported(f"{path}.selectPolicy", select, SELECT_POLICIES)
    policies = rules.get("policies")
    if not policies:
        errs.required(f"{path}.policies", "must specify at least one Policy")
    for i, policy in enumerate(policies if isinstance(policies, list) else ()):
        p = f"{path}.policies[{i}]"
        policy = policy if isinstance(policy, dict) else {}
        if policy.get("type") not in POLICY_TYPES:
            errs.not_supported(f"{p}.type", policy.get("type") or "", POLICY_TYPES)
        value, period = policy.get("value", 0), policy.get("periodSeconds", 0)
        if _is_int(value) and value <= 0:
            errs.invalid(f"{p}.value", value, "must be greater than zero")
        if _is_int(period) and period <= 0:
            errs.invalid(f"{p}.periodSeconds", period, "must be greater than zero")
        if _is_int(period) and period > MAX_PERIOD_SECONDS:
            errs.invalid(
                f"{p}.periodSeconds", period, f"must be less than or equal to {MAX_PERIOD_SECONDS}"
            )
    tolerance = rules.get("tolerance")
    if tolerance is not None:
        try:
            if parse_quantity(tolerance) < 0:
                errs.invalid(
                    f"{path}.tolerance", tolerance, "must be greater than or equal to zero"
                )
        except QuantityError as e:
            errs.invalid(f"{path}.tolerance", tolerance, str(e))


def validate_hpa_spec(errs: FieldErrors, spec: Obj) -> None:
    """ValidateHorizontalPodAutoscalerSpec: the target reference, replica bounds, metrics
    and behavior."""
    ref = _dict(spec.get("scaleTargetRef"))
    for field in ("kind", "name"):
        value = ref.get(field)
        if not value:
            errs.required(f"spec.scaleTargetRef.{field}")
        elif isinstance(value, str):
            check_path_segment_name(errs, f"spec.scaleTargetRef.{field}", value)
    lowest = spec.get("minReplicas")
    if _is_int(lowest) and lowest < 1:
        errs.invalid("spec.minReplicas", lowest, "must be greater than or equal to 1")
    highest = spec.get("maxReplicas")
    if not _is_int(highest) or highest < 1:
        errs.invalid(
            "spec.maxReplicas", highest if highest is not None else 0, "must be greater than 0"
        )
    elif _is_int(lowest) and highest < lowest:
        errs.invalid("spec.maxReplicas", highest, "must be greater than or equal to `minReplicas`")
    metrics = spec.get("metrics")
    for i, metric in enumerate(metrics if isinstance(metrics, list) else ()):
        _validate_metric(errs, f"spec.metrics[{i}]", metric)
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        _validate_rules(errs, "spec.behavior.scaleUp", behavior.get("scaleUp"))
        _validate_rules(errs, "spec.behavior.scaleDown", behavior.get("scaleDown"))


@register("autoscaling", "HorizontalPodAutoscaler")
class HorizontalPodAutoscalerStrategy(Strategy):
    def prepare_create(self, obj: Obj) -> None:
        # desiredReplicas is not omitempty upstream: a new HPA shows it as 0.
        obj["status"] = {"desiredReplicas": 0}

    def default(self, obj: Obj) -> None:
        spec = obj.get("spec")
        if isinstance(spec, dict):
            default_hpa_spec(spec)

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            errs.required("spec")
            return
        validate_hpa_spec(errs, spec)
