"""The horizontal pod autoscaler controller: set a target's scale from its pods' resource usage.

Every --horizontal-pod-autoscaler-sync-period each HPA is reconciled as upstream's
reconcileAutoscaler: read the target's scale subresource, compute a replica count per metric
from metrics.k8s.io (through the API server, hpacalc.py), take the highest, stabilize and
limit it (hpabehavior.py), write the scale if it changed, and report status (currentReplicas,
desiredReplicas, currentMetrics, lastScaleTime), the AbleToScale / ScalingActive /
ScalingLimited conditions and events with upstream's reasons and messages.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import Any

from k8slite._native import LabelSelector
from k8slite.api.meta import now as now_text
from k8slite.api.quantity import milli_value
from k8slite.client import ApiError, Conflict, NotFound
from k8slite.client.resource import (
    HORIZONTALPODAUTOSCALERS,
    PODS,
    Resource,
    group_version_path,
)
from k8slite.component.events import NORMAL, WARNING
from k8slite.component.objects import Obj, key_of, meta, namespace_of, set_condition
from k8slite.controllers.base import AutoscalerOptions, Controller, ControllerContext
from k8slite.controllers.hpabehavior import Decision, History, normalize, normalize_with_behavior
from k8slite.controllers.hpacalc import (
    MetricsError,
    Readiness,
    Tolerances,
    raw_resource_replicas,
    resource_replicas,
)
from k8slite.controllers.hpametrics import milli_quantity, resource_metrics

log = logging.getLogger(__name__)

KIND = "HorizontalPodAutoscaler"
API_VERSION = "autoscaling/v2"
# The reason of ScalingActive=False, and the event, when each kind of metric fails.
_FAILED_REASONS = {
    "Resource": "FailedGetResourceMetric",
    "ContainerResource": "FailedGetContainerResourceMetric",
    "Pods": "FailedGetPodsMetric",
    "Object": "FailedGetObjectMetric",
    "External": "FailedGetExternalMetric",
}


class MetricFailure(Exception):
    """One metric gave no proposal: its ScalingActive reason, the error (condition and
    event), and the error as the sync reports it, naming the metric."""

    def __init__(self, reason: str, message: str, wrapped: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.wrapped = wrapped or message


@dataclass
class Proposal:
    replicas: int
    metric: str
    status: Obj


def _condition(status: Obj, ctype: str, value: bool, reason: str, message: str) -> None:
    set_condition(
        status,
        {
            "type": ctype,
            "status": "True" if value else "False",
            "lastTransitionTime": now_text(),
            "reason": reason,
            "message": message,
        },
    )


def _tolerances(hpa: Obj, default: float) -> Tolerances:
    """The global tolerance, or a direction's own spec.behavior.*.tolerance."""
    behavior = (hpa.get("spec") or {}).get("behavior") or {}

    def of(direction: str) -> float:
        value = (behavior.get(direction) or {}).get("tolerance")
        return default if value is None else milli_value(value) / 1000

    return Tolerances(scale_down=of("scaleDown"), scale_up=of("scaleUp"))


class HorizontalPodAutoscalerController(Controller):
    name = "horizontal-pod-autoscaler-controller"
    queue_name = "horizontalpodautoscaler"
    event_source = "horizontal-pod-autoscaler"

    def __init__(self, ctx: ControllerContext, workers: int = 5) -> None:
        super().__init__(ctx, workers)
        self.options: AutoscalerOptions = ctx.options.autoscaler
        self.readiness = Readiness(
            self.options.cpu_initialization_period, self.options.initial_readiness_delay
        )
        self.hpa_informer = ctx.informers.informer(HORIZONTALPODAUTOSCALERS)
        self.pod_informer = ctx.informers.informer(PODS)
        # Upstream queues every HPA at the sync period and drops requests for one already
        # waiting: its own status writes must not make it sync again at once.
        self.hpa_informer.add_event_handler(
            self._queue_later, lambda _old, new: self._queue_later(new), self._forget
        )
        self.histories: dict[str, History] = {}
        self._resources: dict[tuple[str, str], Resource] = {}

    def _queue_later(self, hpa: Obj) -> None:
        self.enqueue_after(hpa, self.options.sync_period)

    def _forget(self, hpa: Any) -> None:
        if isinstance(hpa, dict):
            self.histories.pop(key_of(hpa), None)

    async def sync(self, key: str) -> float | None:
        namespace, name = key.split("/", 1)
        hpa = self.hpa_informer.get(name, namespace)
        if hpa is None:
            self.histories.pop(key, None)
            return None
        try:
            await self.reconcile(copy.deepcopy(hpa), key)
        except (ApiError, MetricsError) as e:
            log.info("%s: %s", key, e)
        return self.options.sync_period

    # ------------------------------------------------------------------ the target

    async def _resource_for(self, api_version: str, kind: str) -> Resource:
        """The REST resource of a kind in the group apiVersion names (any served version
        of it, as upstream's RESTMapper finds one), looked up by discovery."""
        group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
        cached = self._resources.get((group, kind))
        if cached is not None:
            return cached
        versions = ["v1"]
        missing = LookupError(f'no matches for kind "{kind}" in group "{group}"')
        if group:
            try:
                doc = await self.client.request("GET", f"/apis/{group}")
            except NotFound:
                raise missing from None
            versions = [v["version"] for v in (doc or {}).get("versions") or ()]
            preferred = ((doc or {}).get("preferredVersion") or {}).get("version")
            if preferred in versions:
                versions.remove(preferred)
                versions.insert(0, preferred)
        for version in versions:
            listing = await self.client.request("GET", group_version_path(group, version))
            for entry in (listing or {}).get("resources") or ():
                if entry.get("kind") == kind and "/" not in entry.get("name", "/"):
                    res = Resource(group, version, entry["name"])
                    self._resources[(group, kind)] = res
                    return res
        raise missing

    async def _scale(self, hpa: Obj) -> tuple[Resource, Obj]:
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        try:
            res = await self._resource_for(str(ref.get("apiVersion") or ""), str(ref.get("kind")))
        except (LookupError, NotFound) as e:
            detail = e.message if isinstance(e, NotFound) else str(e)
            raise _ScaleError(
                f"unable to determine resource for scale target reference: {detail}", detail
            ) from e
        try:
            scale = await self.client.get(
                res, str(ref.get("name")), namespace=namespace_of(hpa), subresource="scale"
            )
        except ApiError as e:
            # The kind may have gone (a deleted CRD): look it up again next time.
            self._resources.pop((res.group, str(ref.get("kind"))), None)
            raise _ScaleError(
                f"failed to query scale subresource for {_reference(hpa)}: {e.message}", e.message
            ) from e
        return res, scale

    # ------------------------------------------------------------------ reconcile

    async def reconcile(self, hpa: Obj, key: str) -> None:
        hpa.setdefault("kind", KIND)
        hpa.setdefault("apiVersion", API_VERSION)
        original = copy.deepcopy(hpa.get("status") or {})
        status: Obj = copy.deepcopy(original)
        hpa["status"] = status
        spec = hpa.get("spec") or {}
        try:
            res, scale = await self._scale(hpa)
        except _ScaleError as e:
            self.recorder.event(hpa, WARNING, "FailedGetScale", e.detail)
            _condition(
                status,
                "AbleToScale",
                False,
                "FailedGetScale",
                f"the HPA controller was unable to get the target's current scale: {e.detail}",
            )
            await self._write_status(hpa, original)
            raise MetricsError(str(e)) from None
        _condition(
            status,
            "AbleToScale",
            True,
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        )
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        history = self.histories.setdefault(key, History())
        now = time.time()
        history.record_initial(current, now)
        lowest = int(spec.get("minReplicas") or 1)
        highest = int(spec.get("maxReplicas") or 0)
        metric_statuses: list[Obj] = []
        rescale, reason, desired = True, "", 0
        failure: MetricsError | None = None
        if current == 0 and lowest != 0:
            rescale = False
            _condition(
                status,
                "ScalingActive",
                False,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            )
        elif current > highest:
            reason, desired = "Current number of replicas above Spec.MaxReplicas", highest
        elif current < lowest:
            reason, desired = "Current number of replicas below Spec.MinReplicas", lowest
        else:
            proposal, metric_statuses, failure = await self._replicas_for_metrics(
                hpa, scale, current
            )
            if proposal is None:
                assert failure is not None
                self._set_current(status, current, metric_statuses)
                await self._write_status(hpa, original)
                self.recorder.event(hpa, WARNING, "FailedComputeMetricsReplicas", str(failure))
                raise failure
            desired, metric = max(proposal.replicas, 0), proposal.metric
            if desired > current:
                reason = f"{metric} above target"
            elif desired < current:
                reason = "All metrics below target"
            decision = self._normalize(hpa, history, current, desired, lowest, highest, now)
            _condition(status, "AbleToScale", True, *decision.able)
            _condition(status, "ScalingLimited", decision.limited, *decision.limit)
            desired = decision.replicas
            rescale = desired != current
        if rescale:
            try:
                scale.setdefault("spec", {})["replicas"] = desired
                await self.client.update(res, scale, subresource="scale")
            except ApiError as e:
                self.recorder.event(
                    hpa,
                    WARNING,
                    "FailedRescale",
                    f"New size: {desired}; reason: {reason}; error: {e.message}",
                )
                _condition(
                    status,
                    "AbleToScale",
                    False,
                    "FailedUpdateScale",
                    f"the HPA controller was unable to update the target scale: {e.message}",
                )
                self._set_current(status, current, metric_statuses)
                await self._write_status(hpa, original)
                raise
            _condition(
                status,
                "AbleToScale",
                True,
                "SucceededRescale",
                f"the HPA controller was able to update the target scale to {desired}",
            )
            self.recorder.event(
                hpa, NORMAL, "SuccessfulRescale", f"New size: {desired}; reason: {reason}"
            )
            history.record_scale(spec.get("behavior"), current, desired, time.time())
            log.info(
                "%s: rescaled %s from %d to %d: %s", key, _reference(hpa), current, desired, reason
            )
        else:
            desired = current
        self._set_current(status, current, metric_statuses)
        status["desiredReplicas"] = desired
        if rescale:
            status["lastScaleTime"] = now_text()
        await self._write_status(hpa, original)
        if failure is not None:
            raise failure

    def _normalize(
        self,
        hpa: Obj,
        history: History,
        current: int,
        desired: int,
        lowest: int,
        highest: int,
        now: float,
    ) -> Decision:
        behavior = (hpa.get("spec") or {}).get("behavior")
        window = self.options.downscale_stabilization
        if behavior is None:
            return normalize(history, current, desired, lowest, highest, window, now)
        return normalize_with_behavior(
            history, behavior, current, desired, lowest, highest, window, now
        )

    @staticmethod
    def _set_current(status: Obj, current: int, metrics: list[Obj]) -> None:
        status["currentReplicas"] = current
        if metrics:
            status["currentMetrics"] = metrics
        else:
            status.pop("currentMetrics", None)

    async def _write_status(self, hpa: Obj, original: Obj) -> None:
        """updateStatusIfNeeded: write only a changed status."""
        if hpa["status"] == original:
            return
        try:
            await self.client.update_status(HORIZONTALPODAUTOSCALERS, hpa)
        except (Conflict, NotFound) as e:
            # The next sync works from the newer object (or finds it gone).
            log.debug("%s: status not written: %s", key_of(hpa), e)

    # ------------------------------------------------------------------ metrics

    async def _replicas_for_metrics(
        self, hpa: Obj, scale: Obj, current: int
    ) -> tuple[Proposal | None, list[Obj], MetricsError | None]:
        """computeReplicasForMetrics: the highest proposal; None (and the first failure)
        when every metric failed, or some failed and the rest would scale down."""
        status = hpa["status"]
        selector_text = str((scale.get("status") or {}).get("selector") or "")
        if not selector_text:
            self.recorder.event(hpa, WARNING, "SelectorRequired", "selector is required")
            _condition(
                status,
                "ScalingActive",
                False,
                "InvalidSelector",
                "the HPA target's scale is missing a selector",
            )
            return None, [], MetricsError("selector is required")
        try:
            selector = LabelSelector(selector_text)
        except ValueError as e:
            message = (
                f"couldn't convert selector into a corresponding internal selector object: {e}"
            )
            self.recorder.event(hpa, WARNING, "InvalidSelector", message)
            _condition(status, "ScalingActive", False, "InvalidSelector", message)
            return None, [], MetricsError(message)
        specs = (hpa.get("spec") or {}).get("metrics") or []
        statuses: list[Obj] = [{"type": ""} for _ in specs]
        best: Proposal | None = None
        failures: list[MetricFailure] = []
        for i, spec in enumerate(specs):
            try:
                proposal = await self._replicas_for_metric(hpa, spec, current, selector)
            except MetricFailure as e:
                self.recorder.event(hpa, WARNING, e.reason, str(e))
                failures.append(e)
                continue
            statuses[i] = proposal.status
            if best is None or proposal.replicas > best.replicas:
                best = proposal
        failure = None
        if failures:
            first = failures[0]
            failure = MetricsError(
                f"invalid metrics ({len(failures)} invalid out of {len(specs)}), first error "
                f"is: {first.wrapped}"
            )
            if best is None or best.replicas < current:
                _condition(
                    status,
                    "ScalingActive",
                    False,
                    first.reason,
                    f"the HPA was unable to compute the replica count: {first}",
                )
                return None, statuses, failure
        assert best is not None
        _condition(
            status,
            "ScalingActive",
            True,
            "ValidMetricFound",
            f"the HPA was able to successfully calculate a replica count from {best.metric}",
        )
        return best, statuses, failure

    async def _replicas_for_metric(
        self, hpa: Obj, spec: Obj, current: int, selector: LabelSelector
    ) -> Proposal:
        stype = spec.get("type")
        field = {"Resource": "resource", "ContainerResource": "containerResource"}.get(stype or "")
        if field is None:
            reason = _FAILED_REASONS.get(stype or "", "InvalidMetricSourceType")
            if reason == "InvalidMetricSourceType":
                raise MetricFailure(reason, f'unknown metric source type "{stype}"')
            # No custom or external metrics API is served: what upstream's clients say then.
            api = "external" if stype == "External" else "custom"
            message = (
                f"unable to get {'external ' if api == 'external' else ''}metric "
                f"{_metric_name(spec)}: unable to fetch metrics from {api} metrics API: no "
                f"{api} metrics API ({api}.metrics.k8s.io) registered"
            )
            raise MetricFailure(
                reason, message, f"failed to get {str(stype).lower()} metric value: {message}"
            )
        source = spec.get(field) or {}
        resource = str(source.get("name") or "")
        container = str(source.get("container") or "") if field == "containerResource" else ""
        try:
            return await self._resource_proposal(
                hpa, source, resource, container, current, selector, stype == "ContainerResource"
            )
        except MetricsError as e:
            what = f"{container} container" if container else f"{resource} resource"
            raise MetricFailure(
                _FAILED_REASONS[stype or ""], str(e), f"failed to get {what} metric value: {e}"
            ) from e

    async def _resource_proposal(
        self,
        hpa: Obj,
        source: Obj,
        resource: str,
        container: str,
        current: int,
        selector: LabelSelector,
        per_container: bool,
    ) -> Proposal:
        """computeStatusForResourceMetricGeneric: AverageValue or Utilization targets."""
        namespace = namespace_of(hpa)
        target = source.get("target") or {}
        tolerances = _tolerances(hpa, self.options.tolerance)
        pods = [
            p for p in self.pod_informer.list(namespace) if selector.matches(meta(p).get("labels"))
        ]
        now = time.time()
        status_type = "ContainerResource" if per_container else "Resource"
        status_field = "containerResource" if per_container else "resource"
        ident: Obj = {"name": resource}
        if per_container:
            ident["container"] = container
        if target.get("averageValue") is not None:
            try:
                metrics = await resource_metrics(
                    self.client, resource, namespace, str(selector), container
                )
                replicas, average = raw_resource_replicas(
                    current,
                    milli_value(target["averageValue"]),
                    resource,
                    pods,
                    metrics,
                    tolerances=tolerances,
                    readiness=self.readiness,
                    now=now,
                )
            except MetricsError as e:
                raise MetricsError(f"failed to get {resource} usage: {e}") from e
            current_value: Obj = {"averageValue": milli_quantity(average)}
            name = f"{resource} resource"
        elif target.get("averageUtilization") is not None:
            try:
                metrics = await resource_metrics(
                    self.client, resource, namespace, str(selector), container
                )
                replicas, utilization, average = resource_replicas(
                    current,
                    int(target["averageUtilization"]),
                    resource,
                    pods,
                    metrics,
                    tolerances=tolerances,
                    readiness=self.readiness,
                    now=now,
                    container=container,
                )
            except MetricsError as e:
                raise MetricsError(f"failed to get {resource} utilization: {e}") from e
            current_value = {
                "averageValue": milli_quantity(average),
                "averageUtilization": utilization,
            }
            kind = "container resource" if per_container else "resource"
            name = f"{resource} {kind} utilization (percentage of request)"
        else:
            raise MetricsError(
                "invalid resource metric source: neither an average utilization target nor an "
                "average value (usage) target was set"
            )
        status = {"type": status_type, status_field: {**ident, "current": current_value}}
        return Proposal(replicas, name, status)


class _ScaleError(Exception):
    """The target's scale could not be read: the returned error and the event's text."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


def _reference(hpa: Obj) -> str:
    ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
    return f"{ref.get('kind')}/{namespace_of(hpa)}/{ref.get('name')}"


def _metric_name(spec: Obj) -> str:
    for field in ("pods", "object", "external"):
        source = spec.get(field)
        if isinstance(source, dict):
            return str((source.get("metric") or {}).get("name") or "")
    return ""
