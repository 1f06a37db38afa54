"""autoscaling/v1 HorizontalPodAutoscaler: served from the autoscaling/v2 objects stored.

As upstream's conversion: v1's spec.targetCPUUtilizationPercentage is v2's Resource metric
for cpu with a Utilization target, and status.currentCPUUtilizationPercentage that metric's
current utilization. What v1 cannot say (other metrics, behavior, conditions) is not shown
to v1 clients and is kept when one of them updates the object.
"""

from __future__ import annotations

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


def to_v1(obj: Obj) -> None:
    """A stored (v2) HorizontalPodAutoscaler as v1 shows it, in place."""
    spec = obj.get("spec")
    if isinstance(spec, dict):
        metrics = spec.pop("metrics", None) or []
        spec.pop("behavior", None)
        for metric in metrics:
            if _is_cpu_utilization(metric):
                target = metric["resource"]["target"]["averageUtilization"]
                spec["targetCPUUtilizationPercentage"] = target
                break
    status = obj.get("status")
    if isinstance(status, dict):
        current = status.pop("currentMetrics", None) or []
        status.pop("conditions", None)
        for metric in current:
            if isinstance(metric, dict) and metric.get("type") == "Resource":
                source = metric.get("resource") or {}
                utilization = (source.get("current") or {}).get("averageUtilization")
                if source.get("name") == "cpu" and utilization is not None:
                    status["currentCPUUtilizationPercentage"] = utilization
                    break


@register("autoscaling", "HorizontalPodAutoscaler", version="v1")
class HorizontalPodAutoscalerV1Strategy(HorizontalPodAutoscalerStrategy, ConvertingStrategy):
    """v1 requests become v2 objects before v2's defaulting and validation."""

    def from_storage(self, obj: Obj) -> None:
        to_v1(obj)

    def default(self, obj: Obj) -> None:
        # Only the conversion: v2's defaults wait until an update has carried over what v1
        # cannot express (prepare_update), so that a missing CPU target is not taken for it.
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
