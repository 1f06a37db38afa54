"""The ReplicaSet and ReplicationController controllers: one reconcile keeps spec.replicas
pods of the template and reports status, for either kind (they differ in the selector's
shape only)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable
from typing import ClassVar

import trio

from k8slite._native import LabelSelector
from k8slite.client import (
    OWNER_UID_INDEX,
    AlreadyExists,
    ApiClient,
    ApiError,
    Conflict,
    DeletedFinalStateUnknown,
    NotFound,
    object_key,
)
from k8slite.client.resource import PODS, REPLICASETS, REPLICATIONCONTROLLERS, Resource
from k8slite.component.events import NORMAL, WARNING, EventRecorder
from k8slite.component.objects import (
    Obj,
    controller_ref,
    generation_of,
    get_condition,
    is_deleting,
    labels_of,
    meta,
    name_of,
    resource_version_of,
    uid_of,
)
from k8slite.controllers.base import Controller, ControllerContext
from k8slite.controllers.expectations import Expectations
from k8slite.controllers.ownerref import (
    ORPHAN_INDEX,
    RefManager,
    new_controller_ref,
    orphan_namespace_index,
    owned_and_orphans,
    resolve_controller_ref,
)
from k8slite.controllers.podutil import (
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    labels_match_all,
    utcnow,
)
from k8slite.controllers.ranking import pods_to_delete

log = logging.getLogger(__name__)

# At most this many creates or deletes per sync (upstream's burstReplicas).
BURST_REPLICAS = 500
NAMESPACE_TERMINATING = "NamespaceTerminating"


def selector_of(obj: Obj) -> LabelSelector:
    return LabelSelector.from_dict((obj.get("spec") or {}).get("selector"))


def rc_selector_of(obj: Obj) -> LabelSelector:
    """An RC's selector is a plain label map: all of its pairs must match."""
    selector = (obj.get("spec") or {}).get("selector") or {}
    return LabelSelector.from_dict({"matchLabels": selector} if selector else None)


def replicas_of(obj: Obj) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def is_namespace_terminating(error: ApiError) -> bool:
    """The create was refused because its namespace is going away (nothing to retry)."""
    causes = error.details.get("causes") or ()
    return any(c.get("reason") == NAMESPACE_TERMINATING for c in causes)


async def create_if_absent(client: ApiClient, res: Resource, body: Obj, namespace: str) -> None:
    """Create the object unless it exists already or its namespace is going away."""
    try:
        await client.create(res, body, namespace=namespace)
    except AlreadyExists:
        pass
    except ApiError as e:
        if not is_namespace_terminating(e):
            raise


def pod_from_template(owner: Obj, template: Obj, owner_ref: Obj) -> Obj:
    """A new pod of the template, named after its owner and owned by it."""
    tmeta = meta(template)
    pod_meta: Obj = {
        "generateName": f"{meta(owner)['name']}-",
        "namespace": meta(owner).get("namespace"),
        "labels": dict(tmeta.get("labels") or {}),
        "ownerReferences": [owner_ref],
    }
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        pod_meta["finalizers"] = list(tmeta["finalizers"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": pod_meta,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


async def create_controlled_pod(
    client: ApiClient, recorder: EventRecorder, owner: Obj, body: Obj
) -> None:
    """Create one of the owner's pods, with upstream's SuccessfulCreate/FailedCreate events.

    A terminating namespace is not an error: every create there fails while the namespace
    controller is at work.
    """
    try:
        pod = await client.create(PODS, body)
    except ApiError as e:
        if is_namespace_terminating(e):
            return
        recorder.event(owner, WARNING, "FailedCreate", f"Error creating: {e.message}")
        raise
    recorder.event(owner, NORMAL, "SuccessfulCreate", f"Created pod: {name_of(pod)}")


async def _collect_errors(fn: Callable[[], Awaitable[None]], errors: list[Exception]) -> None:
    try:
        await fn()
    except Exception as e:  # noqa: BLE001 - reported by slow_start_batch's caller
        errors.append(e)


async def slow_start_batch(
    count: int, fn: Callable[[], Awaitable[None]]
) -> tuple[int, Exception | None]:
    """Call fn() count times in batches of 1, 2, 4, ...; stop after a batch with a failure.

    A quota or admission error then costs one request, not hundreds. Returns how many calls
    succeeded and the first error.
    """
    done = 0
    batch = 1
    while done < count:
        size = min(batch, count - done)
        errors: list[Exception] = []

        async with trio.open_nursery() as nursery:
            for _ in range(size):
                nursery.start_soon(_collect_errors, fn, errors)
        done += size - len(errors)
        if errors:
            return done, errors[0]
        batch *= 2
    return done, None


class ReplicaSetController(Controller):
    name = "replicaset-controller"
    queue_name = "replicaset"
    # The owner kind this controller serves; the ReplicationController controller below
    # changes these and nothing else.
    kind: ClassVar[str] = "ReplicaSet"
    resource: ClassVar[Resource] = REPLICASETS

    def __init__(self, ctx: ControllerContext, workers: int = 5) -> None:
        super().__init__(ctx, workers)
        self.expectations = Expectations()
        self.rs_informer = ctx.informers.informer(self.resource)
        self.pod_informer = ctx.informers.informer(
            PODS, indexers={ORPHAN_INDEX: orphan_namespace_index}
        )
        self.rs_informer.add_event_handler(self.enqueue, self._rs_updated, self._rs_deleted)
        self.pod_informer.add_event_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    # ---------------------------------------------------------------- handlers

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        self.enqueue(new)

    def _rs_deleted(self, rs: Obj | DeletedFinalStateUnknown) -> None:
        key = object_key(rs)
        self.expectations.delete(key)
        self.queue.add(key)

    def _owner_of(self, pod: Obj, ref: Obj | None) -> Obj | None:
        """The ReplicaSet a pod's controller ref names, if it is one we know (same uid)."""
        return resolve_controller_ref(self.rs_informer, self.kind, pod, ref)

    def _selecting(self, pod: Obj) -> list[Obj]:
        """ReplicaSets of the pod's namespace whose selector matches it (for orphans)."""
        labels = labels_of(pod)
        out = []
        for rs in self.rs_informer.list(meta(pod).get("namespace")):
            selector = self.selector(rs)
            if not selector.is_empty() and selector.matches(labels):
                out.append(rs)
        return out

    def _pod_added(self, pod: Obj) -> None:
        if is_deleting(pod):
            # Seen for the first time already terminating (say, after a relist): that is
            # a deletion as far as expectations go.
            self._pod_deleted(pod)
            return
        rs = self._owner_of(pod, controller_ref(pod))
        if rs is not None:
            self.expectations.creation_observed(object_key(rs))
            self.enqueue(rs)
            return
        if controller_ref(pod) is None:
            for rs in self._selecting(pod):
                self.enqueue(rs)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if resource_version_of(old) == resource_version_of(new):
            return
        labels_changed = meta(old).get("labels") != meta(new).get("labels")
        if is_deleting(new):
            self._pod_deleted(new)
            if labels_changed:
                self._pod_deleted(old)
            return
        old_ref, new_ref = controller_ref(old), controller_ref(new)
        if old_ref != new_ref and old_ref is not None:
            previous = self._owner_of(old, old_ref)
            if previous is not None:
                self.enqueue(previous)
        rs = self._owner_of(new, new_ref)
        if rs is not None:
            self.enqueue(rs)
            min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
            if min_ready > 0 and not is_pod_ready(old) and is_pod_ready(new):
                # Available only once it has been ready long enough: look again then.
                self.enqueue_after(rs, min_ready + 1.0)
            return
        if new_ref is None and (labels_changed or old_ref != new_ref):
            for rs in self._selecting(new):
                self.enqueue(rs)

    def _pod_deleted(self, pod: Obj | DeletedFinalStateUnknown) -> None:
        obj = pod.obj if isinstance(pod, DeletedFinalStateUnknown) else pod
        rs = self._owner_of(obj, controller_ref(obj))
        if rs is None:
            return
        key = object_key(rs)
        self.expectations.deletion_observed(key, object_key(obj))
        self.queue.add(key)

    def selector(self, owner: Obj) -> LabelSelector:
        return selector_of(owner)

    # -------------------------------------------------------------------- sync

    async def sync(self, key: str) -> float | None:
        namespace, name = key.split("/", 1)
        rs = self.rs_informer.get(name, namespace)
        if rs is None:
            self.expectations.delete(key)
            return None
        needs_sync = self.expectations.satisfied(key)
        selector = self.selector(rs)
        candidates = [
            p for p in owned_and_orphans(self.pod_informer.indexer, rs) if is_pod_active(p)
        ]
        manager = RefManager(
            self.client,
            PODS,
            rs,
            self.resource,
            self.kind,
            lambda p: selector.matches(labels_of(p)),
        )
        pods = await manager.claim(candidates)
        manage_error: Exception | None = None
        if needs_sync and not is_deleting(rs):
            try:
                await self._manage_replicas(key, rs, pods)
            except ApiError as e:
                manage_error = e
        status = calculate_status(rs, pods, manage_error)
        rs = await self._update_status(rs, status)
        if manage_error is not None:
            raise manage_error
        min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
        if (
            min_ready > 0
            and status.get("readyReplicas", 0) == replicas_of(rs)
            and status.get("availableReplicas", 0) != replicas_of(rs)
        ):
            return float(min_ready)
        return None

    async def _manage_replicas(self, key: str, rs: Obj, pods: list[Obj]) -> None:
        diff = len(pods) - replicas_of(rs)
        if diff < 0:
            await self._create_pods(key, rs, min(-diff, BURST_REPLICAS))
        elif diff > 0:
            await self._delete_pods(key, rs, pods, min(diff, BURST_REPLICAS))

    async def _create_pods(self, key: str, rs: Obj, count: int) -> None:
        # Expect them all before the first create: the informer may show a new pod before
        # the create call even returns.
        self.expectations.expect_creations(key, count)
        template = (rs.get("spec") or {}).get("template") or {}
        owner_ref = new_controller_ref(rs, self.resource.api_version, self.kind)

        async def create() -> None:
            body = pod_from_template(rs, template, owner_ref)
            await create_controlled_pod(self.client, self.recorder, rs, body)

        created, error = await slow_start_batch(count, create)
        # The pods never made will never be observed: stop waiting for them.
        for _ in range(count - created):
            self.expectations.creation_observed(key)
        if error is not None:
            raise error

    async def _delete_pods(self, key: str, rs: Obj, pods: list[Obj], count: int) -> None:
        victims = pods_to_delete(pods, self._related_pods(rs), count, utcnow())
        self.expectations.expect_deletions(key, [object_key(p) for p in victims])
        errors: list[ApiError] = []

        async def delete(pod: Obj) -> None:
            m = meta(pod)
            try:
                await self.client.delete(
                    PODS,
                    m["name"],
                    namespace=m.get("namespace"),
                    preconditions={"uid": str(m.get("uid"))},
                )
            except ApiError as e:
                # This deletion will never be observed: stop waiting for it.
                self.expectations.deletion_observed(key, object_key(pod))
                if isinstance(e, (NotFound, Conflict)):
                    return  # already gone (or replaced by a namesake we must not touch)
                self.recorder.event(rs, WARNING, "FailedDelete", f"Error deleting: {e.message}")
                errors.append(e)
                return
            self.recorder.event(rs, NORMAL, "SuccessfulDelete", f"Deleted pod: {m.get('name')}")

        async with trio.open_nursery() as nursery:
            for pod in victims:
                nursery.start_soon(delete, pod)
        if errors:
            raise errors[0]

    def _related_pods(self, rs: Obj) -> list[Obj]:
        """Pods of every ReplicaSet sharing rs's controller (a Deployment's whole family)."""
        ref = controller_ref(rs)
        family = [rs]
        if ref is not None:
            family = [
                s
                for s in self.rs_informer.indexer.by_index(OWNER_UID_INDEX, ref["uid"])
                if (controller_ref(s) or {}).get("uid") == ref["uid"]
            ]
        pods: list[Obj] = []
        for member in family:
            member_uid = uid_of(member)
            pods.extend(
                p
                for p in self.pod_informer.indexer.by_index(OWNER_UID_INDEX, member_uid)
                if (controller_ref(p) or {}).get("uid") == member_uid
            )
        return pods

    async def _update_status(self, rs: Obj, status: Obj) -> Obj:
        """Write status if it changed; one retry on a fresh copy if ours was stale."""
        current = rs.get("status") or {}
        generation = generation_of(rs)
        status = {**status, "observedGeneration": generation}
        if _status_equal(current, status):
            return rs
        body = copy.deepcopy(rs)
        body["status"] = status
        try:
            return await self.client.update_status(self.resource, body)
        except Conflict:
            fresh = await self.client.get(
                self.resource, meta(rs)["name"], namespace=meta(rs).get("namespace")
            )
            status["observedGeneration"] = generation_of(fresh)
            fresh["status"] = status
            return await self.client.update_status(self.resource, fresh)
        except NotFound:
            return rs


class ReplicationControllerController(ReplicaSetController):
    """Upstream's ReplicationManager: the ReplicaSet controller over core/v1 RCs."""

    name = "replicationcontroller-controller"
    queue_name = "replicationmanager"
    event_source = "replication-controller"
    kind = "ReplicationController"
    resource = REPLICATIONCONTROLLERS

    def selector(self, owner: Obj) -> LabelSelector:
        return rc_selector_of(owner)


_STATUS_FIELDS = (
    "replicas",
    "fullyLabeledReplicas",
    "readyReplicas",
    "availableReplicas",
    "observedGeneration",
)


def _status_equal(a: Obj, b: Obj) -> bool:
    return all(int(a.get(f) or 0) == int(b.get(f) or 0) for f in _STATUS_FIELDS) and (
        a.get("conditions") or []
    ) == (b.get("conditions") or [])


def calculate_status(rs: Obj, pods: list[Obj], manage_error: Exception | None) -> Obj:
    """replicas, fullyLabeledReplicas, readyReplicas, availableReplicas and ReplicaFailure."""
    spec = rs.get("spec") or {}
    template_labels = labels_of(spec.get("template") or {})
    min_ready = int(spec.get("minReadySeconds") or 0)
    now = utcnow()
    status: Obj = {"replicas": len(pods)}
    counts = {
        "fullyLabeledReplicas": sum(
            1 for p in pods if labels_match_all(meta(p).get("labels"), template_labels)
        ),
        "readyReplicas": sum(1 for p in pods if is_pod_ready(p)),
        "availableReplicas": sum(1 for p in pods if is_pod_available(p, min_ready, now)),
    }
    # Upstream omits zero counts (omitempty); only replicas is always there.
    status.update({k: v for k, v in counts.items() if v})
    conditions = [dict(c) for c in (rs.get("status") or {}).get("conditions") or ()]
    failure = get_condition(rs.get("status"), "ReplicaFailure")
    if manage_error is not None and failure is None:
        diff = len(pods) - replicas_of(rs)
        reason = "FailedCreate" if diff < 0 else "FailedDelete"
        message = getattr(manage_error, "message", "") or str(manage_error)
        conditions.append(
            {
                "type": "ReplicaFailure",
                "status": "True",
                "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "reason": reason,
                "message": message,
            }
        )
    elif manage_error is None and failure is not None:
        conditions = [c for c in conditions if c.get("type") != "ReplicaFailure"]
    if conditions:
        status["conditions"] = conditions
    return status
