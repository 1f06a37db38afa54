"""POST pods/<name>/eviction: a pod delete that the pod's PodDisruptionBudget may refuse.

Upstream's EvictionREST: terminal, pending and terminating pods are deleted without a
budget check; otherwise the one budget selecting the pod must allow a disruption, which
the eviction takes (status.disruptionsAllowed down by one, the pod in disruptedPods) in a
compare-and-swap of the budget's status before the pod gets the DisruptionTarget
condition and is deleted.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import trio

from k8slite._native import LabelSelector, SelectorError, dumps, loads
from k8slite.api import errors, meta
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.http import Request
from k8slite.apiserver.registry import DeleteOptions, Registry
from k8slite.apiserver.requestinfo import RequestInfo
from k8slite.apiserver.rest import decode_body, delete_options
from k8slite.component.objects import (
    Obj,
    generation_of,
    is_deleting,
    labels_of,
    name_of,
    resource_version_of,
    set_condition,
    uid_of,
)
from k8slite.controllers.podutil import is_pod_ready

EVICTION_API_VERSIONS = ("policy/v1", "policy/v1beta1")
DISRUPTION_BUDGET_CAUSE = "DisruptionBudget"
VIOLATION_MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."
MULTIPLE_BUDGETS_MESSAGE = (
    "This pod has more than one PodDisruptionBudget, which the eviction subresource "
    "does not support."
)
# Upstream's MaxDisruptedPodSize: evictions the disruption controller has yet to confirm.
MAX_DISRUPTED_PODS = 2000
# Retries of a delete whose resourceVersion precondition we set ourselves (upstream's
# EvictionsRetry steps): the pod changed between our read and our delete.
_RETRIES = 20
# And the pause between them (upstream's EvictionsRetry: 500 ms, jitter 0.1): without it
# twenty tries can all read the watch cache before it has our own last write.
_RETRY_DELAY = 0.5


async def _pause() -> None:
    await trio.sleep(_RETRY_DELAY * (1 + 0.1 * random.random()))  # noqa: S311


def _status(code: int, status: str, message: str = "") -> bytes:
    body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": status}
    if message:
        body["message"] = message
    body["code"] = code
    return dumps(body)


def _too_many_requests(cause: str, retry_after: int) -> errors.ApiError:
    """Upstream's NewTooManyRequests with a DisruptionBudget cause."""
    details: Obj = {"causes": [{"reason": DISRUPTION_BUDGET_CAUSE, "message": cause}]}
    headers: dict[str, str] = {}
    if retry_after:
        details["retryAfterSeconds"] = retry_after
        headers["Retry-After"] = str(retry_after)
    return errors.ApiError(429, "TooManyRequests", VIOLATION_MESSAGE, details, headers)


def can_ignore_budget(pod: Obj) -> bool:
    """Terminal and pending pods disrupt nothing more; a terminating one is going anyway."""
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Succeeded", "Failed", "Pending") or is_deleting(pod)


def _needs_rv_precondition(pod: Obj) -> bool:
    # A pending pod could start (and count for a budget) between our read and the delete.
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def budgets_for(pdbs: list[Obj], pod: Obj) -> list[Obj]:
    """The budgets whose selector selects the pod; a nil or empty selector selects none."""
    out = []
    labels = labels_of(pod)
    for pdb in pdbs:
        try:
            selector = LabelSelector.from_dict((pdb.get("spec") or {}).get("selector"))
        except SelectorError:
            continue
        if not selector.is_empty() and selector.matches(labels):
            out.append(pdb)
    return out


def take_disruption(pdb: Obj, pod_name: str, now: str) -> Obj:
    """Upstream's checkAndDecrement on a fresh copy of the budget: raise 429 (or 403) when
    no disruption is left, else record the pod as disrupted and return the budget."""
    status = pdb.setdefault("status", {})
    name = name_of(pdb)
    if int(status.get("observedGeneration") or 0) < generation_of(pdb):
        raise _too_many_requests(
            f"The disruption budget {name} is still being processed by the server.", 10
        )
    allowed = int(status.get("disruptionsAllowed") or 0)
    if allowed < 0:
        raise errors.forbidden(
            "poddisruptionbudget", name, "policy", "pdb disruptions allowed is negative"
        )
    if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_PODS:
        raise errors.forbidden(
            "poddisruptionbudget",
            name,
            "policy",
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        )
    if allowed == 0:
        raise _too_many_requests(
            f"The disruption budget {name} needs {int(status.get('desiredHealthy') or 0)} "
            f"healthy pods and has {int(status.get('currentHealthy') or 0)} currently",
            0,
        )
    status["disruptionsAllowed"] = allowed - 1
    if allowed - 1 == 0:
        set_condition(
            status,
            {
                "type": "DisruptionAllowed",
                "status": "False",
                "observedGeneration": int(status.get("observedGeneration") or 0),
                "lastTransitionTime": now,
                "reason": "InsufficientPods",
                "message": "",
            },
        )
    status.setdefault("disruptedPods", {})[pod_name] = now
    return pdb


async def _add_condition_and_delete(
    pods: Registry, namespace: str | None, name: str, opts: DeleteOptions
) -> None:
    """The DisruptionTarget condition (checking the preconditions first), then the delete."""
    if not opts.dry_run:

        def mark(current: Obj | None) -> Obj:
            if current is None:
                raise errors.not_found("pods", name)
            if opts.precondition_uid and opts.precondition_uid != uid_of(current):
                raise errors.conflict(
                    "pods",
                    name,
                    "",
                    f"the UID in the precondition ({opts.precondition_uid}) does not match "
                    f"the UID in record ({uid_of(current)}). The object might have been "
                    "deleted and then recreated",
                )
            if opts.precondition_rv and opts.precondition_rv != resource_version_of(current):
                raise errors.conflict(
                    "pods",
                    name,
                    "",
                    f"the ResourceVersion in the precondition ({opts.precondition_rv}) does not "
                    f"match the ResourceVersion in record ({resource_version_of(current)}). "
                    "The object might have been modified",
                )
            set_condition(
                current.setdefault("status", {}),
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": meta.now(),
                    "reason": "EvictionByEvictionAPI",
                    "message": "Eviction API: evicting",
                },
            )
            return current

        data, _ = await pods.update(namespace, name, mark, subresource="status")
        if opts.precondition_rv:
            # We changed the pod: the caller's precondition now means our version.
            opts.precondition_rv = resource_version_of(loads(data))
    await pods.delete(namespace, name, opts)


async def _delete_unchecked(
    pods: Registry, namespace: str | None, name: str, opts: DeleteOptions, pod: Obj
) -> bool:
    """Delete a pod that needs no budget; False when it changed meanwhile (retry)."""
    attempt = dataclasses.replace(opts)
    ours = not opts.precondition_rv and _needs_rv_precondition(pod)
    if ours:
        attempt.precondition_rv = resource_version_of(pod)
    try:
        await _add_condition_and_delete(pods, namespace, name, attempt)
    except errors.ApiError as e:
        if e.code == 409 and ours:
            return False
        raise
    return True


def _decode(req: Request, body: Any, name: str) -> Obj:
    if not isinstance(body, dict) or body.get("kind") not in (None, "Eviction"):
        raise errors.bad_request("the body of the request must be an Eviction")
    if body.get("apiVersion") not in (None, *EVICTION_API_VERSIONS):
        raise errors.bad_request(
            f"the API version in the data ({body.get('apiVersion')}) does not match the "
            "expected API version (policy/v1)"
        )
    if name_of(body) and name_of(body) != name:
        raise errors.bad_request("name in URL does not match name in Eviction object")
    return body


async def evict_pod(
    core: ApiCore, pods: Registry, req: Request, info: RequestInfo
) -> tuple[int, bytes]:
    """Answer an eviction: 201 Success, 429 when a budget forbids, 500 with two budgets."""
    assert info.name is not None
    name, namespace = info.name, info.namespace
    body = _decode(req, decode_body(req, await req.body()), name)
    opts = delete_options(req, body.get("deleteOptions") or None)
    pdb_reg = core.registries[("policy", "poddisruptionbudgets")]
    pod: Obj | None = None
    for _ in range(_RETRIES):
        pod = pods.get(namespace, name)
        if not can_ignore_budget(pod):
            break
        if await _delete_unchecked(pods, namespace, name, opts, pod):
            return 201, _status(201, "Success")
        await _pause()
    else:
        raise errors.conflict("pods", name)
    assert pod is not None
    prefix = pdb_reg.rt.prefix(namespace)
    budgets = budgets_for(loads(pdb_reg.cache.list(prefix)[0]), pod)
    if len(budgets) > 1:
        return 500, _status(500, "Failure", MULTIPLE_BUDGETS_MESSAGE)
    if budgets:
        pdb = budgets[0]
        if not is_pod_ready(pod):
            # An unhealthy pod counts for nothing: evict it without a budget decrement
            # when the policy allows (upstream's unhealthyPodEvictionPolicy).
            spec, status = pdb.get("spec") or {}, pdb.get("status") or {}
            desired = int(status.get("desiredHealthy") or 0)
            healthy_budget = int(status.get("currentHealthy") or 0) >= desired and desired > 0
            policy = spec.get("unhealthyPodEvictionPolicy") or "IfHealthyBudget"
            if policy == "AlwaysAllow" or healthy_budget:
                for _ in range(_RETRIES):
                    if await _delete_unchecked(pods, namespace, name, opts, pod):
                        return 201, _status(201, "Success")
                    await _pause()
                    pod = pods.get(namespace, name)
                raise errors.conflict("pods", name)
        now = meta.now()

        def take(current: Obj | None) -> Obj:
            if current is None:
                raise errors.not_found("poddisruptionbudgets", name_of(pdb), "policy")
            return take_disruption(current, name, now)

        if opts.dry_run:
            take_disruption(pdb, name, now)
        else:
            await pdb_reg.update(namespace, name_of(pdb), take, subresource="status")
    await _add_condition_and_delete(pods, namespace, name, opts)
    return 201, _status(201, "Success")
