"""The namespace controller: empty a Terminating namespace, then finalize it away."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import logging
import time
from collections import Counter

from k8slite.api.meta import now as now_text
from k8slite.api.meta import parse_time
from k8slite.client import ApiError, MethodNotAllowed, NotFound
from k8slite.client.resource import NAMESPACES
from k8slite.component.objects import Obj, deletion_timestamp, is_deleting, meta
from k8slite.controllers.base import Controller, ControllerContext
from k8slite.controllers.discovery import ApiResource, server_resources
from k8slite.controllers.podutil import utcnow

log = logging.getLogger(__name__)

KUBERNETES_FINALIZER = "kubernetes"
# One discovery answer serves a burst of namespace deletions, yet is short-lived, since
# custom resource kinds come and go (upstream re-reads discovery on every attempt).
DISCOVERY_TTL = 2.0
# Waiting for content that is going away on its own (pods finishing their grace period).
MIN_REQUEUE, MAX_REQUEUE = 1.0, 15.0


def _conditions(
    discovery_error: str,
    content_errors: list[str],
    remaining: Counter[str],
    finalizers: Counter[str],
) -> list[Obj]:
    """Upstream's five deletion conditions, worded as upstream words them."""
    out = []
    if discovery_error:
        out.append(
            (
                "NamespaceDeletionDiscoveryFailure",
                "True",
                "DiscoveryFailed",
                f"Discovery failed for some groups: {discovery_error}",
            )
        )
    else:
        out.append(
            (
                "NamespaceDeletionDiscoveryFailure",
                "False",
                "ResourcesDiscovered",
                "All resources successfully discovered",
            )
        )
    out.append(
        (
            "NamespaceDeletionGroupVersionParsingFailure",
            "False",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        )
    )
    if content_errors:
        out.append(
            (
                "NamespaceDeletionContentFailure",
                "True",
                "ContentDeletionFailed",
                f"Failed to delete all resource types, {len(content_errors)} remaining: "
                + ", ".join(content_errors),
            )
        )
    else:
        out.append(
            (
                "NamespaceDeletionContentFailure",
                "False",
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization",
            )
        )
    if remaining:
        out.append(
            (
                "NamespaceContentRemaining",
                "True",
                "SomeResourcesRemain",
                "Some resources are remaining: "
                + ", ".join(
                    f"{res} has {n} resource instances" for res, n in sorted(remaining.items())
                ),
            )
        )
    else:
        out.append(
            (
                "NamespaceContentRemaining",
                "False",
                "ContentRemoved",
                "All content successfully removed",
            )
        )
    if finalizers:
        out.append(
            (
                "NamespaceFinalizersRemaining",
                "True",
                "SomeFinalizersRemain",
                "Some content in the namespace has finalizers remaining: "
                + ", ".join(
                    f"{f} in {n} resource instances" for f, n in sorted(finalizers.items())
                ),
            )
        )
    else:
        out.append(
            (
                "NamespaceFinalizersRemaining",
                "False",
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished",
            )
        )
    return [{"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in out]


def _merge_conditions(old: list[Obj], new: list[Obj]) -> list[Obj]:
    """New conditions, keeping lastTransitionTime where nothing about one changed."""
    by_type = {c.get("type"): c for c in old}
    stamp = now_text()
    merged = []
    for cond in new:
        prior = by_type.get(cond["type"])
        same = prior is not None and all(
            prior.get(k) == cond[k] for k in ("status", "reason", "message")
        )
        merged.append(
            {
                **cond,
                "lastTransitionTime": prior.get("lastTransitionTime") if same and prior else stamp,
            }
        )
    return merged


class NamespaceController(Controller):
    name = "namespace-controller"
    queue_name = "namespace"

    def __init__(self, ctx: ControllerContext, workers: int = 10) -> None:
        super().__init__(ctx, workers)
        self.namespaces = ctx.informers.informer(NAMESPACES)
        self.namespaces.add_event_handler(self._maybe, lambda _o, n: self._maybe(n))
        self._discovered: tuple[float, list[ApiResource]] | None = None

    def _maybe(self, ns: Obj) -> None:
        if is_deleting(ns):
            self.enqueue(ns)

    async def _resources(self) -> list[ApiResource]:
        now = time.monotonic()
        if self._discovered is None or now - self._discovered[0] > DISCOVERY_TTL:
            found = await server_resources(self.client)
            self._discovered = (
                now,
                [r for r in found if r.namespaced and r.supports("list", "delete")],
            )
        return self._discovered[1]

    async def sync(self, key: str) -> float | None:
        try:
            ns = await self.client.get(NAMESPACES, key)
        except NotFound:
            return None
        if not is_deleting(ns):
            return None
        finalizers = list((ns.get("spec") or {}).get("finalizers") or ())
        if KUBERNETES_FINALIZER not in finalizers:
            return None
        discovery_error = ""
        try:
            resources = await self._resources()
        except ApiError as e:
            discovery_error = e.message
            resources = []
        content_errors: list[str] = []
        for res in resources:
            error = await self._delete_all(res, key)
            if error:
                content_errors.append(error)
        remaining, finalizer_counts, estimate = await self._remaining(resources, key)
        conditions = _conditions(discovery_error, content_errors, remaining, finalizer_counts)
        ns = await self._set_conditions(ns, conditions)
        if discovery_error or content_errors:
            raise RuntimeError(f"namespace {key}: {discovery_error or content_errors[0]}")
        if remaining:
            return min(MAX_REQUEUE, max(MIN_REQUEUE, estimate))
        body = copy.deepcopy(ns)
        body["spec"]["finalizers"] = [f for f in finalizers if f != KUBERNETES_FINALIZER]
        await self.client.update(NAMESPACES, body, subresource="finalize")
        log.info("namespace %s finalized", key)
        return None

    async def _delete_all(self, res: ApiResource, namespace: str) -> str:
        """Delete everything of one resource in the namespace; an error text, or ""."""
        try:
            if res.supports("deletecollection"):
                try:
                    await self.client.delete_collection(res.resource, namespace=namespace)
                    return ""
                except MethodNotAllowed:
                    pass
            listed = await self.client.list(res.resource, namespace=namespace)
            for item in listed.get("items") or ():
                if is_deleting(item):
                    continue
                with contextlib.suppress(NotFound):
                    await self.client.delete(res.resource, meta(item)["name"], namespace=namespace)
        except NotFound:
            return ""
        except ApiError as e:
            return f"{res.resource.plural}.{res.group}: {e.message}"
        return ""

    async def _remaining(
        self, resources: list[ApiResource], namespace: str
    ) -> tuple[Counter[str], Counter[str], float]:
        """What is still there, which finalizers hold it, and a guess of how long it takes."""
        remaining: Counter[str] = Counter()
        finalizers: Counter[str] = Counter()
        estimate = 0.0
        now = utcnow()
        for res in resources:
            try:
                items = (await self.client.list(res.resource, namespace=namespace))["items"]
            except (NotFound, MethodNotAllowed):
                continue
            items = items or []
            if not items:
                continue
            remaining[f"{res.resource.plural}.{res.group}"] += len(items)
            for item in items:
                for f in meta(item).get("finalizers") or ():
                    finalizers[f] += 1
                stamp = deletion_timestamp(item)
                if stamp:
                    left = (parse_time(stamp) - now) / dt.timedelta(seconds=1)
                    estimate = max(estimate, left)
        return remaining, finalizers, estimate

    async def _set_conditions(self, ns: Obj, conditions: list[Obj]) -> Obj:
        status = ns.get("status") or {}
        merged = _merge_conditions(status.get("conditions") or [], conditions)
        if merged == (status.get("conditions") or []):
            return ns
        body = copy.deepcopy(ns)
        body.setdefault("status", {})["conditions"] = merged
        return await self.client.update_status(NAMESPACES, body)
