"""autoscaling/v1 HorizontalPodAutoscaler: served from the autoscaling/v2 objects stored.

As upstream's conversion: v1's spec.targetCPUUtilizationPercentage is v2's Resource metric
for cpu with a Utilization target, and status.currentCPUUtilizationPercentage that metric's
current utilization. What v1 cannot say (other metrics, behavior, conditions, the current
metrics' raw values) v1 readers see in upstream's autoscaling.alpha.kubernetes.io/*
annotations; those are never stored, and the fields stay as they were when a v1 client
updates the object.
"""

from __future__ import annotations

import json
from typing import Any

from k8slite.api.autoscaling_v2 import HorizontalPodAutoscalerStrategy, default_hpa_spec
from k8slite.api.strategy import ConvertingStrategy, Obj, register


def _is_cpu_utilization(metric: Any) -> bool:
    if not isinstance(metric, dict) or metric.get("type") != "Resource":
        return False
    source = metric.get("resource") or {}
    target = source.get("target") or {}
    return (
        source.get("name") == "cpu"
        and target.get("type") == "Utilization"
        and target.get("averageUtilization") is not None
    )


def cpu_metric(target: int) -> Obj:
    return {
        "type": "Resource",
        "resource": {
            "name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": target},
        },
    }


def spec_to_v2(spec: Obj) -> None:
    if "targetCPUUtilizationPercentage" in spec:
        target = spec.pop("targetCPUUtilizationPercentage")
        spec["metrics"] = [cpu_metric(target)] if target is not None else []


def status_to_v2(status: Obj) -> None:
    if "currentCPUUtilizationPercentage" in status:
        current = status.pop("currentCPUUtilizationPercentage")
        if current is not None:
            status["currentMetrics"] = [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "current": {"averageUtilization": current}},
                }
            ]


# What v1 cannot hold, shown to v1 readers in annotations as upstream's conversion does.
METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/metrics"
CURRENT_METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/current-metrics"
BEHAVIOR_ANNOTATION = "autoscaling.alpha.kubernetes.io/behavior"
CONDITIONS_ANNOTATION = "autoscaling.alpha.kubernetes.io/conditions"
ANNOTATIONS = (
    METRICS_ANNOTATION,
    CURRENT_METRICS_ANNOTATION,
    BEHAVIOR_ANNOTATION,
    CONDITIONS_ANNOTATION,
)


def _v1_values(values: Obj, prefix: str) -> Obj:
    """A v2 MetricTarget or MetricValueStatus as v1's flat fields (targetAverageValue...)."""
    names = {
        "averageUtilization": "AverageUtilization",
        "averageValue": "AverageValue",
        "value": "Value",
    }
    return {prefix + names[k]: v for k, v in values.items() if k in names}


def _v1_metric(metric: Obj, part: str, prefix: str) -> Obj:
    """A v2 MetricSpec (part "target") or MetricStatus (part "current") as v1 writes it."""
    stype = str(metric.get("type") or "")
    out: Obj = {"type": stype}
    field = stype[:1].lower() + stype[1:]
    source = metric.get(field)
    if not isinstance(source, dict):
        return out
    values = _v1_values(source.get(part) or {}, prefix)
    ident = source.get("metric") or {}
    if field in ("resource", "containerResource"):
        converted: Obj = {"name": source.get("name")}
        if field == "containerResource":
            converted["container"] = source.get("container")
        converted.update(values)
    elif field == "object":
        converted = {"target": source.get("describedObject"), "metricName": ident.get("name")}
        converted.update(values)
    else:
        converted = {"metricName": ident.get("name"), **values}
    if ident.get("selector") is not None:
        converted["metricSelector" if field == "external" else "selector"] = ident["selector"]
    out[field] = converted
    return out


def _annotate(obj: Obj, key: str, value: Any) -> None:
    obj.setdefault("metadata", {}).setdefault("annotations", {})[key] = json.dumps(
        value, separators=(",", ":")
    )


def to_v1(obj: Obj) -> None:
    """A stored (v2) HorizontalPodAutoscaler as v1 shows it, in place."""
    spec = obj.get("spec")
    if isinstance(spec, dict):
        metrics = spec.pop("metrics", None) or []
        behavior = spec.pop("behavior", None)
        others = []
        for metric in metrics:
            if _is_cpu_utilization(metric) and "targetCPUUtilizationPercentage" not in spec:
                target = metric["resource"]["target"]["averageUtilization"]
                spec["targetCPUUtilizationPercentage"] = target
            elif isinstance(metric, dict):
                others.append(_v1_metric(metric, "target", "target"))
        if others:
            _annotate(obj, METRICS_ANNOTATION, others)
        if behavior is not None:
            _annotate(obj, BEHAVIOR_ANNOTATION, behavior)
    status = obj.get("status")
    if isinstance(status, dict):
        current = status.pop("currentMetrics", None) or []
        conditions = status.pop("conditions", None)
        for metric in current:
            if isinstance(metric, dict) and metric.get("type") == "Resource":
                source = metric.get("resource") or {}
                utilization = (source.get("current") or {}).get("averageUtilization")
                if source.get("name") == "cpu" and utilization is not None:
                    status["currentCPUUtilizationPercentage"] = utilization
                    break
        # Every current metric, the CPU one too: it alone carries the raw value.
        if current:
            statuses = [_v1_metric(m, "current", "current") for m in current if isinstance(m, dict)]
            _annotate(obj, CURRENT_METRICS_ANNOTATION, statuses)
        if conditions:
            _annotate(obj, CONDITIONS_ANNOTATION, conditions)


def _drop_annotations(obj: Obj) -> None:
    """A v1 writer sends back what it read: the annotations are views, never stored (the
    fields they show are kept from the stored object instead)."""
    annotations = (obj.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict):
        for key in ANNOTATIONS:
            annotations.pop(key, None)
        if not annotations:
            obj["metadata"].pop("annotations")


@register("autoscaling", "HorizontalPodAutoscaler", version="v1")
class HorizontalPodAutoscalerV1Strategy(HorizontalPodAutoscalerStrategy, ConvertingStrategy):
    """v1 requests become v2 objects before v2's defaulting and validation."""

    def from_storage(self, obj: Obj) -> None:
        to_v1(obj)

    def default(self, obj: Obj) -> None:
        # Only the conversion: v2's defaults wait until an update has carried over what v1
        # cannot express (prepare_update), so that a missing CPU target is not taken for it.
        _drop_annotations(obj)
        spec = obj.get("spec")
        if isinstance(spec, dict):
            spec_to_v2(spec)
        status = obj.get("status")
        if isinstance(status, dict):
            status_to_v2(status)

    def prepare_create(self, obj: Obj) -> None:
        super().prepare_create(obj)
        if isinstance(obj.get("spec"), dict):
            default_hpa_spec(obj["spec"])

    def prepare_update(self, new: Obj, old: Obj) -> None:
        super().prepare_update(new, old)
        spec, old_spec = new.get("spec"), old.get("spec") or {}
        if not isinstance(spec, dict):
            return
        # The metrics besides v1's CPU target, and behavior, stay as they were.
        kept = [m for m in old_spec.get("metrics") or () if not _is_cpu_utilization(m)]
        spec["metrics"] = [*(spec.get("metrics") or []), *kept]
        if old_spec.get("behavior") is not None:
            spec["behavior"] = old_spec["behavior"]
        default_hpa_spec(spec)

    def prepare_status_update(self, new: Obj, old: Obj) -> Obj:
        status = new.get("status")
        if isinstance(status, dict):
            status_to_v2(status)
            # Conditions are v2's: a v1 writer cannot see them, so they stay.
            if (old.get("status") or {}).get("conditions"):
                status["conditions"] = old["status"]["conditions"]
        return super().prepare_status_update(new, old)
