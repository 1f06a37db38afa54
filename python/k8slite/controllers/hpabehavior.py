"""How the HPA turns a metric's recommendation into the replicas it sets, as upstream does.

Without spec.behavior: the highest recommendation of the downscale stabilization window,
then min/max and a scale-up cap of max(2 x current, 4). With behavior: the recommendations
of each direction's stabilization window bound the change, and the scaling policies
(Pods/Percent per periodSeconds, picked by selectPolicy Max/Min, or Disabled) bound it
by the scale events of the last period. Each decision comes with the condition reason and
message upstream sets (AbleToScale for stabilization, ScalingLimited for the bounds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from k8slite.component.objects import Obj

INT32_MAX = 2**31 - 1
# Without behavior, a scale-up is capped at max(2 x current, 4) (upstream's constants).
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0

WITHIN_RANGE = ("DesiredWithinRange", "the desired count is within the acceptable range")
SCALE_UP_LIMIT = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
)
SCALE_DOWN_LIMIT = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
)
TOO_MANY = ("TooManyReplicas", "the desired replica count is more than the maximum replica count")
TOO_FEW = ("TooFewReplicas", "the desired replica count is less than the minimum replica count")
READY = ("ReadyForNewScale", "recommended size matches current size")
DOWN_STABILIZED = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent "
    "recommendation",
)
UP_STABILIZED = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
)


@dataclass
class Recommendation:
    replicas: int
    timestamp: float


@dataclass
class ScaleEvent:
    change: int
    timestamp: float
    outdated: bool = False


@dataclass
class Decision:
    """The replicas to set, and the conditions saying why: AbleToScale's (True) reason and
    message, and ScalingLimited's status, reason and message."""

    replicas: int
    able: tuple[str, str]
    limited: bool
    limit: tuple[str, str]


@dataclass
class History:
    """One HPA's recent recommendations and scale events (upstream keeps them in memory,
    so a restarted controller starts over)."""

    recommendations: list[Recommendation] = field(default_factory=list)
    scale_up: list[ScaleEvent] = field(default_factory=list)
    scale_down: list[ScaleEvent] = field(default_factory=list)

    def record_initial(self, current: int, now: float) -> None:
        if not self.recommendations:
            self.recommendations.append(Recommendation(current, now))

    def _record(self, replicas: int, now: float, stale: int | None) -> None:
        if stale is not None:
            self.recommendations[stale] = Recommendation(replicas, now)
        else:
            self.recommendations.append(Recommendation(replicas, now))

    def record_scale(self, behavior: Obj | None, before: int, after: int, now: float) -> None:
        """Remember a rescale for the policies' periods (only HPAs with behavior use them)."""
        if behavior is None or before == after:
            return
        up = after > before
        events = self.scale_up if up else self.scale_down
        rules = behavior.get("scaleUp" if up else "scaleDown") or {}
        longest = max((p.get("periodSeconds", 0) for p in rules.get("policies") or ()), default=0)
        for event in events:
            if event.timestamp < now - longest:
                event.outdated = True
        new = ScaleEvent(abs(after - before), now)
        for i, event in enumerate(events):
            if event.outdated:
                events[i] = new
                return
        events.append(new)


def _limit_without_behavior(current: int, desired: int, lowest: int, highest: int) -> Decision:
    cap = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
    allowed, limit = (cap, SCALE_UP_LIMIT) if highest > cap else (highest, TOO_MANY)
    if desired < lowest:
        return Decision(lowest, READY, True, TOO_FEW)
    if desired > allowed:
        return Decision(allowed, READY, True, limit)
    return Decision(desired, READY, False, WITHIN_RANGE)


def normalize(
    history: History,
    current: int,
    desired: int,
    lowest: int,
    highest: int,
    window: float,
    now: float,
) -> Decision:
    """normalizeDesiredReplicas: an HPA without behavior."""
    stabilized = desired
    stale = None
    for i, rec in enumerate(history.recommendations):
        if rec.timestamp < now - window:
            stale = i
        elif rec.replicas > stabilized:
            stabilized = rec.replicas
    history._record(desired, now, stale)
    decision = _limit_without_behavior(current, stabilized, lowest, highest)
    decision.able = DOWN_STABILIZED if stabilized != desired else READY
    decision.limited = decision.replicas != stabilized
    return decision


def _changed_within(period: float, events: list[ScaleEvent], now: float) -> int:
    return sum(e.change for e in events if e.timestamp > now - period)


def _period_start(current: int, policy: Obj, history: History, now: float) -> int:
    period = float(policy.get("periodSeconds", 0))
    added = _changed_within(period, history.scale_up, now)
    removed = _changed_within(period, history.scale_down, now)
    return current - added + removed


def scale_up_limit(current: int, rules: Obj, history: History, now: float) -> int:
    """calculateScaleUpLimitWithScalingRules: the most replicas the policies allow now."""
    select = rules.get("selectPolicy", "Max")
    if select == "Disabled":
        return current
    proposals = []
    for policy in rules.get("policies") or ():
        start = _period_start(current, policy, history, now)
        if policy.get("type") == "Pods":
            proposals.append(start + int(policy.get("value", 0)))
        else:
            proposals.append(math.ceil(start * (1 + int(policy.get("value", 0)) / 100)))
    if not proposals:
        return current
    return min(proposals) if select == "Min" else max(proposals)


def scale_down_limit(current: int, rules: Obj, history: History, now: float) -> int:
    """calculateScaleDownLimitWithBehaviors: the fewest replicas the policies allow now."""
    select = rules.get("selectPolicy", "Max")
    if select == "Disabled":
        return current
    proposals = []
    for policy in rules.get("policies") or ():
        start = _period_start(current, policy, history, now)
        if policy.get("type") == "Pods":
            proposals.append(start - int(policy.get("value", 0)))
        else:
            proposals.append(int(start * (1 - int(policy.get("value", 0)) / 100)))
    if not proposals:
        return current
    return max(proposals) if select == "Min" else min(proposals)


def _stabilize(
    history: History, current: int, desired: int, up_window: float, down_window: float, now: float
) -> tuple[int, tuple[str, str]]:
    up, down = desired, desired
    stale = None
    for i, rec in enumerate(history.recommendations):
        if rec.timestamp > now - up_window:
            up = min(up, rec.replicas)
        if rec.timestamp > now - down_window:
            down = max(down, rec.replicas)
        if rec.timestamp < now - up_window and rec.timestamp < now - down_window:
            stale = i
    recommendation = max(current, up)
    recommendation = min(recommendation, down)
    history._record(desired, now, stale)
    return recommendation, UP_STABILIZED if desired >= current else DOWN_STABILIZED


def normalize_with_behavior(
    history: History,
    behavior: Obj,
    current: int,
    desired: int,
    lowest: int,
    highest: int,
    default_down_window: float,
    now: float,
) -> Decision:
    """normalizeDesiredReplicasWithBehaviors: stabilize by both windows, then apply the
    policies of the direction of the change and min/max."""
    up_rules = behavior.get("scaleUp") or {}
    down_rules = behavior.get("scaleDown") or {}
    up_window = float(up_rules.get("stabilizationWindowSeconds") or 0)
    down_seconds = down_rules.get("stabilizationWindowSeconds")
    down_window = default_down_window if down_seconds is None else float(down_seconds)
    stabilized, reason = _stabilize(history, current, desired, up_window, down_window, now)
    able = reason if stabilized != desired else READY
    replicas, limit = stabilized, WITHIN_RANGE
    if stabilized > current:
        cap = max(scale_up_limit(current, up_rules, history, now), current)
        allowed, why = (cap, SCALE_UP_LIMIT) if highest > cap else (highest, TOO_MANY)
        if stabilized > allowed:
            replicas, limit = allowed, why
    elif stabilized < current:
        floor = min(scale_down_limit(current, down_rules, history, now), current)
        allowed, why = (floor, SCALE_DOWN_LIMIT) if lowest < floor else (lowest, TOO_FEW)
        if stabilized < allowed:
            replicas, limit = allowed, why
    return Decision(replicas, able, replicas != stabilized, limit)
