"""policy/v1 PodDisruptionBudget validation (the Eviction body is the pods/eviction handler's)."""

from __future__ import annotations

from typing import Any

from k8slite._native import LabelSelector, SelectorError
from k8slite.api.apps_v1 import go_selector
from k8slite.api.strategy import Obj, Strategy, register
from k8slite.api.validation import FieldErrors, check_labels, check_non_negative

UNHEALTHY_POD_EVICTION_POLICIES = ["AlwaysAllow", "IfHealthyBudget"]
_PERCENT_MSG = (
    "a valid percent string must be a numeric string followed by an ending '%' "
    "(e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"
)


def check_int_or_percent(errs: FieldErrors, path: str, value: Any) -> None:
    """upstream's ValidatePositiveIntOrPercent and IsNotMoreThan100Percent."""
    if isinstance(value, str):
        digits = value[:-1]
        if not value.endswith("%") or not digits.isdigit() or not digits.isascii():
            errs.invalid(path, value, _PERCENT_MSG)
        elif int(digits) > 100:
            errs.invalid(path, value, "must not be greater than 100%")
    elif isinstance(value, int) and not isinstance(value, bool):
        check_non_negative(errs, path, value)
    else:
        errs.invalid(path, value, "must be an integer or a percentage")


@register("policy", "PodDisruptionBudget")
class PodDisruptionBudgetStrategy(Strategy):
    tracks_generation = True

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        spec = obj.get("spec")
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            errs.invalid("spec", spec, "must be an object")
            return
        min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
        if min_available is not None and max_unavailable is not None:
            errs.invalid(
                "spec",
                f"minAvailable: {min_available}, maxUnavailable: {max_unavailable}",
                "minAvailable and maxUnavailable cannot be both set",
            )
        if min_available is not None:
            check_int_or_percent(errs, "spec.minAvailable", min_available)
        if max_unavailable is not None:
            check_int_or_percent(errs, "spec.maxUnavailable", max_unavailable)
        selector = spec.get("selector")
        if selector is not None:
            if not isinstance(selector, dict):
                errs.invalid("spec.selector", selector, "must be a label selector")
            else:
                check_labels(errs, "spec.selector.matchLabels", selector.get("matchLabels"))
                try:
                    LabelSelector.from_dict(selector)
                except SelectorError as e:
                    errs.invalid("spec.selector", go_selector(selector), str(e))
        policy = spec.get("unhealthyPodEvictionPolicy")
        if policy is not None and policy not in UNHEALTHY_POD_EVICTION_POLICIES:
            errs.not_supported(
                "spec.unhealthyPodEvictionPolicy", policy, UNHEALTHY_POD_EVICTION_POLICIES
            )

    def validate_status(self, new: Obj, old: Obj, errs: FieldErrors) -> None:
        status = new.get("status") or {}
        for field in ("disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"):
            check_non_negative(errs, f"status.{field}", status.get(field))
