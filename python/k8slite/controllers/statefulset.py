"""The StatefulSet controller: pods with stable names and claims, created and removed in
ordinal order (or all at once), rolled by revision with a partition."""

from __future__ import annotations

import copy
import logging
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from k8slite._native import LabelSelector
from k8slite.client import (
    OWNER_UID_INDEX,
    AlreadyExists,
    ApiError,
    Conflict,
    DeletedFinalStateUnknown,
    NotFound,
)
from k8slite.client.resource import (
    CONTROLLERREVISIONS,
    PERSISTENTVOLUMECLAIMS,
    PODS,
    STATEFULSETS,
)
from k8slite.component.events import NORMAL, WARNING
from k8slite.component.objects import (
    Obj,
    controller_ref,
    generation_of,
    is_deleting,
    labels_of,
    meta,
    resource_version_of,
    uid_of,
)
from k8slite.controllers import history
from k8slite.controllers.base import Controller, ControllerContext
from k8slite.controllers.ownerref import (
    ORPHAN_INDEX,
    RefManager,
    new_controller_ref,
    orphan_namespace_index,
    owned_and_orphans,
)
from k8slite.controllers.podutil import is_pod_available, is_pod_ready, ready_since, utcnow

log = logging.getLogger(__name__)

KIND = "StatefulSet"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = "controller-revision-hash"
_ORDINAL_RE = re.compile(r"(.*)-([0-9]+)\Z")
# How soon to look again at a claim still being deleted (its informer has no handler).
CLAIM_RECHECK = 1.0


# ------------------------------------------------------------------ pure parts


def parent_and_ordinal(pod_name: str) -> tuple[str, int] | None:
    m = _ORDINAL_RE.match(pod_name)
    return (m.group(1), int(m.group(2))) if m else None


def start_ordinal(sts: Obj) -> int:
    return int(((sts.get("spec") or {}).get("ordinals") or {}).get("start") or 0)


def replicas_of(sts: Obj) -> int:
    value = (sts.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def pod_revision(pod: Obj) -> str:
    return labels_of(pod).get(REVISION_LABEL, "")


def is_running_and_ready(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_pod_ready(pod)


def is_failed(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded")


def is_healthy(pod: Obj, min_ready: int) -> bool:
    """Running, ready for minReadySeconds and not on its way out."""
    return (
        is_running_and_ready(pod)
        and not is_deleting(pod)
        and is_pod_available(pod, min_ready, utcnow())
    )


@dataclass
class Partition:
    """The pods of a set by place: replicas[i] holds ordinal start+i (None: not created);
    condemned are the pods outside the range, highest ordinal first."""

    replicas: list[Obj | None]
    condemned: list[Obj] = field(default_factory=list)


def split_pods(sts: Obj, pods: list[Obj]) -> Partition:
    start, count = start_ordinal(sts), replicas_of(sts)
    out = Partition([None] * count)
    for pod in pods:
        parsed = parent_and_ordinal(meta(pod)["name"])
        if parsed is None:
            continue
        ordinal = parsed[1]
        if start <= ordinal < start + count:
            out.replicas[ordinal - start] = pod
        else:
            out.condemned.append(pod)
    out.condemned.sort(key=lambda p: -(parent_and_ordinal(meta(p)["name"]) or ("", 0))[1])
    return out


def max_unavailable(sts: Obj) -> int:
    """updateStrategy.rollingUpdate.maxUnavailable scaled by replicas (rounded up), >= 1."""
    rolling = ((sts.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate") or {}
    value = rolling.get("maxUnavailable", 1)
    if isinstance(value, str) and value.endswith("%"):
        value = math.ceil(int(value[:-1]) * replicas_of(sts) / 100)
    return max(1, int(value))


def partition_of(sts: Obj) -> int:
    rolling = ((sts.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate") or {}
    return int(rolling.get("partition") or 0)


def pods_to_update(
    sts: Obj, replicas: list[Obj | None], update_revision: str, min_ready: int
) -> list[Obj]:
    """RollingUpdate: pods to delete now, highest ordinal first, none below the partition,
    at most maxUnavailable unhealthy at once (counting any replica already unhealthy, below
    the partition too, as upstream)."""
    floor = partition_of(sts)
    unavailable = sum(1 for p in replicas if p is None or not is_healthy(p, min_ready))
    budget = max_unavailable(sts) - unavailable
    out: list[Obj] = []
    for pod in reversed(replicas[floor:]):
        if budget <= len(out):
            break
        if pod is not None and pod_revision(pod) != update_revision and not is_deleting(pod):
            out.append(pod)
    return out


def identity_labels(pod_name: str, ordinal: int) -> dict[str, str]:
    return {POD_NAME_LABEL: pod_name, POD_INDEX_LABEL: str(ordinal)}


def identity_matches(pod: Obj, ordinal: int) -> bool:
    """The pod still carries its name and index labels (a user may have changed them)."""
    labels = labels_of(pod)
    return all(labels.get(k) == v for k, v in identity_labels(meta(pod)["name"], ordinal).items())


def claim_name(template: Obj, pod_name: str) -> str:
    return f"{meta(template).get('name')}-{pod_name}"


def new_pod(sts: Obj, template: Obj, ordinal: int, revision: str) -> Obj:
    """The pod of ordinal: stable name and hostname, its claims as volumes."""
    m, spec = meta(sts), sts.get("spec") or {}
    name = f"{m['name']}-{ordinal}"
    tmeta = meta(template)
    labels = dict(tmeta.get("labels") or {})
    labels.update({**identity_labels(name, ordinal), REVISION_LABEL: revision})
    pod_meta: Obj = {
        "name": name,
        "namespace": m.get("namespace"),
        "labels": labels,
        "ownerReferences": [new_controller_ref(sts, "apps/v1", KIND)],
    }
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    pod_spec = copy.deepcopy(template.get("spec") or {})
    pod_spec["hostname"] = name
    if spec.get("serviceName"):
        pod_spec["subdomain"] = spec["serviceName"]
    claims = spec.get("volumeClaimTemplates") or []
    if claims:
        names = {meta(c).get("name") for c in claims}
        volumes = [v for v in pod_spec.get("volumes") or () if v.get("name") not in names]
        for claim in claims:
            volumes.append(
                {
                    "name": meta(claim).get("name"),
                    "persistentVolumeClaim": {"claimName": claim_name(claim, name)},
                }
            )
        pod_spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": pod_spec}


def compute_status(
    sts: Obj, pods: list[Obj], current: str, update: str, collision: int, min_ready: int
) -> Obj:
    """Upstream's status counts; currentRevision catches up once a rolling update is done."""
    now = utcnow()
    counts = dict.fromkeys(
        ("replicas", "readyReplicas", "availableReplicas", "currentReplicas", "updatedReplicas"),
        0,
    )
    for pod in pods:
        counts["replicas"] += 1
        if is_running_and_ready(pod) and not is_deleting(pod):
            counts["readyReplicas"] += 1
            if is_pod_available(pod, min_ready, now):
                counts["availableReplicas"] += 1
        if not is_deleting(pod):
            if pod_revision(pod) == current:
                counts["currentReplicas"] += 1
            if pod_revision(pod) == update:
                counts["updatedReplicas"] += 1
    want = replicas_of(sts)
    strategy = ((sts.get("spec") or {}).get("updateStrategy") or {}).get("type")
    if (
        strategy == "RollingUpdate"
        and counts["updatedReplicas"] == want
        and counts["readyReplicas"] == want
        and counts["replicas"] == want
    ):
        current = update
        counts["currentReplicas"] = counts["updatedReplicas"]
    status: Obj = {
        "replicas": counts["replicas"],
        "availableReplicas": counts["availableReplicas"],
        "currentRevision": current,
        "updateRevision": update,
        "collisionCount": collision,
        "observedGeneration": generation_of(sts),
    }
    # readyReplicas, currentReplicas and updatedReplicas are omitempty upstream.
    for key in ("readyReplicas", "currentReplicas", "updatedReplicas"):
        if counts[key]:
            status[key] = counts[key]
    return status


def next_ready_check(pods: list[Obj | None], min_ready: int) -> float | None:
    """Seconds until the first ready-but-not-yet-available pod becomes available."""
    if min_ready <= 0:
        return None
    now, waits = utcnow(), []
    for pod in pods:
        if pod is None or not is_running_and_ready(pod):
            continue
        since = ready_since(pod)
        if since is not None:
            left = min_ready - (now - since).total_seconds()
            if left > 0:
                waits.append(left + 0.1)
    return min(waits) if waits else None


# ------------------------------------------------------------------ controller


class StatefulSetController(Controller):
    name = "statefulset-controller"
    queue_name = "statefulset"

    def __init__(self, ctx: ControllerContext, workers: int = 5) -> None:
        super().__init__(ctx, workers)
        self.sts_informer = ctx.informers.informer(STATEFULSETS)
        self.pod_informer = ctx.informers.informer(
            PODS, indexers={ORPHAN_INDEX: orphan_namespace_index}
        )
        self.revision_informer = ctx.informers.informer(
            CONTROLLERREVISIONS, indexers={ORPHAN_INDEX: orphan_namespace_index}
        )
        self.claim_informer = ctx.informers.informer(PERSISTENTVOLUMECLAIMS)
        self.sts_informer.add_event_handler(
            self.enqueue, lambda old, new: self.enqueue(new), self.enqueue
        )
        self.pod_informer.add_event_handler(self._pod_event, self._pod_updated, self._pod_event)
        self.revision_informer.add_event_handler(
            self._owned_event, lambda old, new: self._owned_event(new), self._owned_event
        )

    def _owner_key(self, obj: Obj | DeletedFinalStateUnknown) -> str | None:
        o = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        ref = controller_ref(o)
        if ref is None or ref.get("kind") != KIND:
            return None
        return f"{meta(o).get('namespace')}/{ref.get('name')}"

    def _owned_event(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        key = self._owner_key(obj)
        if key is not None:
            self.queue.add(key)

    def _pod_event(self, pod: Obj | DeletedFinalStateUnknown) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.queue.add(key)
            return
        o = pod.obj if isinstance(pod, DeletedFinalStateUnknown) else pod
        if controller_ref(o) is None:
            labels = labels_of(o)
            for sts in self.sts_informer.list(meta(o).get("namespace")):
                selector = LabelSelector.from_dict((sts.get("spec") or {}).get("selector"))
                if not selector.is_empty() and selector.matches(labels):
                    self.enqueue(sts)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if resource_version_of(old) == resource_version_of(new):
            return
        if controller_ref(old) != controller_ref(new):
            self._pod_event(old)
        self._pod_event(new)

    # -------------------------------------------------------------------- sync

    async def sync(self, key: str) -> float | None:
        namespace, name = key.split("/", 1)
        sts = self.sts_informer.get(name, namespace)
        if sts is None or is_deleting(sts):
            return None
        spec = sts.get("spec") or {}
        selector = LabelSelector.from_dict(spec.get("selector"))
        if selector.is_empty():
            return None  # matches everything: upstream refuses to act on it

        def is_member(pod: Obj) -> bool:
            parsed = parent_and_ordinal(meta(pod)["name"])
            return parsed is not None and parsed[0] == name and selector.matches(labels_of(pod))

        candidates = owned_and_orphans(self.pod_informer.indexer, sts)
        manager = RefManager(self.client, PODS, sts, STATEFULSETS, KIND, is_member)
        pods = await manager.claim(candidates)

        revisions = await history.claim_revisions(
            self.client, self.revision_informer.indexer, sts, STATEFULSETS, KIND, selector
        )
        status = sts.get("status") or {}
        collision = int(status.get("collisionCount") or 0)
        update_rev, collision = await self._update_revision(sts, revisions, collision)
        revisions = [r for r in revisions if meta(r)["name"] != meta(update_rev)["name"]]
        revisions.append(update_rev)
        by_name = {meta(r)["name"]: r for r in revisions}
        current_rev = by_name.get(status.get("currentRevision") or "", update_rev)

        min_ready = int(spec.get("minReadySeconds") or 0)
        delay = await self._manage(sts, pods, current_rev, update_rev, min_ready)

        live = {meta(current_rev)["name"], meta(update_rev)["name"]}
        live.update(pod_revision(p) for p in pods)
        await history.truncate_history(
            self.client, revisions, live, int(spec.get("revisionHistoryLimit", 10))
        )
        fresh = [
            p
            for p in self.pod_informer.indexer.by_index(OWNER_UID_INDEX, uid_of(sts))
            if (controller_ref(p) or {}).get("uid") == uid_of(sts)
        ]
        new_status = compute_status(
            sts, fresh, meta(current_rev)["name"], meta(update_rev)["name"], collision, min_ready
        )
        await self._update_status(sts, new_status)
        ready_delay = next_ready_check(list(fresh), min_ready)
        waits = [d for d in (delay, ready_delay) if d is not None]
        return min(waits) if waits else None

    async def _update_revision(
        self, sts: Obj, revisions: list[Obj], collision: int
    ) -> tuple[Obj, int]:
        """The revision of the current template: the newest equal one (renumbered to be the
        latest if it is older, as after an undo) or a new one."""
        template = (sts.get("spec") or {}).get("template") or {}
        data = history.template_patch(template)
        equal = [r for r in revisions if r.get("data") == data]
        number = history.next_revision_number(revisions)
        if equal:
            latest = equal[-1]
            if latest is revisions[-1]:
                return latest, collision
            body = copy.deepcopy(latest)
            body["revision"] = number
            return await self.client.update(CONTROLLERREVISIONS, body), collision
        ref = new_controller_ref(sts, "apps/v1", KIND)
        body = history.new_revision(sts, ref, labels_of(template), data, number, collision)
        stored, used = await history.create_revision(self.client, body, sts)
        return stored, max(collision, used)

    async def _manage(
        self, sts: Obj, pods: list[Obj], current_rev: Obj, update_rev: Obj, min_ready: int
    ) -> float | None:
        """One pass of upstream's UpdateStatefulSet: fix replicas, then condemned, then roll.
        Returns a delay to look again (a pod about to become available)."""
        spec = sts.get("spec") or {}
        ordered = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        part = split_pods(sts, pods)
        start = start_ordinal(sts)
        update_name, current_name = meta(update_rev)["name"], meta(current_rev)["name"]
        rolling = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
        floor = partition_of(sts) if rolling else 0
        delay: float | None = None

        def revision_for(index: int) -> Obj:
            # Below the partition new pods keep the current revision.
            return current_rev if rolling and index < floor else update_rev

        for pod in part.replicas:
            if pod is not None and not is_deleting(pod):
                await self._ensure_claim_refs(sts, meta(pod)["name"], uid_of(pod), False)
        await self._mark_condemned_claims(sts, part.condemned)

        creates: list[Callable[[], Awaitable[None]]] = []
        for index, pod in enumerate(part.replicas):
            ordinal = start + index
            if pod is not None and is_failed(pod) and not is_deleting(pod):
                await self._delete_pod(sts, pod)
                if ordered:
                    return None
                continue
            if pod is None:
                if self._claims_terminating(sts, f"{meta(sts)['name']}-{ordinal}"):
                    # A claim of a scaled-away pod is still going: wait, then make a new one.
                    if ordered:
                        return CLAIM_RECHECK
                    delay = CLAIM_RECHECK
                    continue
                rev = revision_for(index)
                creates.append(self._creator(sts, rev, ordinal))
                if ordered:
                    await creates.pop()()
                    return None
                continue
            if ordered and is_deleting(pod):
                return None  # wait for the old pod to go before anything else
            if not is_deleting(pod) and not identity_matches(pod, ordinal):
                await self._fix_identity(sts, pod, ordinal)
            if ordered and not is_healthy(pod, min_ready):
                return None
        if creates:
            async with trio.open_nursery() as nursery:
                for create in creates:
                    nursery.start_soon(create)

        first_unhealthy = next(
            (
                p
                # Replicas by ordinal, then condemned highest first, as upstream.
                for p in [*part.replicas, *part.condemned]
                if p is not None and not is_healthy(p, min_ready)
            ),
            None,
        )
        for pod in part.condemned:
            if is_deleting(pod):
                if ordered:
                    return delay
                continue
            if ordered and not is_healthy(pod, min_ready) and pod is not first_unhealthy:
                return delay
            await self._delete_pod(sts, pod)
            if ordered:
                return delay

        if not rolling:
            return delay  # OnDelete: users delete pods, recreation picks up the new revision
        if ordered and any(p is None or is_deleting(p) for p in part.replicas):
            return delay
        victims = pods_to_update(sts, part.replicas, update_name, min_ready)
        for pod in victims:
            log.debug("rolling %s (%s -> %s)", meta(pod)["name"], current_name, update_name)
            await self._delete_pod(sts, pod)
        return delay

    def _creator(self, sts: Obj, revision: Obj, ordinal: int) -> Callable[[], Awaitable[None]]:
        async def create() -> None:
            pod = new_pod(sts, history.template_of(revision), ordinal, meta(revision)["name"])
            await self._create_claims(sts, pod)
            name = meta(pod)["name"]
            try:
                await self.client.create(PODS, pod)
            except AlreadyExists:
                return  # our cache is behind: the pod is there
            except ApiError as e:
                self.recorder.event(
                    sts,
                    WARNING,
                    "FailedCreate",
                    f"create Pod {name} in StatefulSet {meta(sts)['name']} failed error: "
                    f"{e.message}",
                )
                raise
            self.recorder.event(
                sts,
                NORMAL,
                "SuccessfulCreate",
                f"create Pod {name} in StatefulSet {meta(sts)['name']} successful",
            )

        return create

    async def _fix_identity(self, sts: Obj, pod: Obj, ordinal: int) -> None:
        """Put a pod's identity labels back (upstream's updateStatefulPod)."""
        name = meta(pod)["name"]
        patch = {
            "metadata": {
                "labels": identity_labels(name, ordinal),
                "resourceVersion": resource_version_of(pod),
            }
        }
        try:
            await self.client.patch(PODS, name, patch, namespace=meta(pod).get("namespace"))
        except NotFound:
            return
        except ApiError as e:
            self.recorder.event(
                sts,
                WARNING,
                "FailedUpdate",
                f"update Pod {name} in StatefulSet {meta(sts)['name']} failed error: {e.message}",
            )
            raise
        self.recorder.event(
            sts,
            NORMAL,
            "SuccessfulUpdate",
            f"update Pod {name} in StatefulSet {meta(sts)['name']} successful",
        )

    async def _delete_pod(self, sts: Obj, pod: Obj) -> None:
        m = meta(pod)
        try:
            await self.client.delete(
                PODS, m["name"], namespace=m.get("namespace"), preconditions={"uid": uid_of(pod)}
            )
        except (NotFound, Conflict):
            return  # gone already, or a namesake we must not touch
        except ApiError as e:
            self.recorder.event(
                sts,
                WARNING,
                "FailedDelete",
                f"delete Pod {m['name']} in StatefulSet {meta(sts)['name']} failed error: "
                f"{e.message}",
            )
            raise
        self.recorder.event(
            sts,
            NORMAL,
            "SuccessfulDelete",
            f"delete Pod {m['name']} in StatefulSet {meta(sts)['name']} successful",
        )

    # ------------------------------------------------------------------ claims

    def _claim_refs(
        self, sts: Obj, claim: Obj, pod_name: str, pod_uid: str | None, condemned: bool
    ) -> list[Obj]:
        """A claim's owner references under the retention policy: the set's when whenDeleted
        is Delete, its pod's when the pod is scaled away and whenScaled is Delete."""
        policy = (sts.get("spec") or {}).get("persistentVolumeClaimRetentionPolicy") or {}
        # Ours: the set's, and any to a pod of this name (an earlier incarnation's too).
        refs = [
            r
            for r in meta(claim).get("ownerReferences") or ()
            if r.get("uid") != uid_of(sts) and (r.get("kind"), r.get("name")) != ("Pod", pod_name)
        ]
        if policy.get("whenDeleted") == "Delete":
            # Not blocking: a foreground delete of the set must not wait on its claims,
            # which the pvc-protection finalizer holds until the pods are gone.
            refs.append({**new_controller_ref(sts, "apps/v1", KIND), "blockOwnerDeletion": False})
        if condemned and pod_uid and policy.get("whenScaled") == "Delete":
            refs.append({"apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": pod_uid})
        return refs

    def _claims_terminating(self, sts: Obj, pod_name: str) -> bool:
        namespace = meta(sts).get("namespace")
        for template in (sts.get("spec") or {}).get("volumeClaimTemplates") or ():
            claim = self.claim_informer.get(claim_name(template, pod_name), namespace)
            if claim is not None and is_deleting(claim):
                return True
        return False

    async def _create_claims(self, sts: Obj, pod: Obj) -> None:
        pod_name = meta(pod)["name"]
        namespace = meta(sts).get("namespace")
        selector_labels = ((sts.get("spec") or {}).get("selector") or {}).get("matchLabels")
        for template in (sts.get("spec") or {}).get("volumeClaimTemplates") or ():
            name = claim_name(template, pod_name)
            if self.claim_informer.get(name, namespace) is not None:
                continue
            claim = copy.deepcopy(template)
            claim.pop("status", None)
            cmeta = claim.setdefault("metadata", {})
            cmeta.update({"name": name, "namespace": namespace})
            cmeta["labels"] = {**(cmeta.get("labels") or {}), **(selector_labels or {})}
            refs = self._claim_refs(sts, {"metadata": {}}, pod_name, None, False)
            if refs:
                cmeta["ownerReferences"] = refs
            try:
                await self.client.create(PERSISTENTVOLUMECLAIMS, claim)
            except AlreadyExists:
                continue
            except ApiError as e:
                self.recorder.event(
                    sts,
                    WARNING,
                    "FailedCreate",
                    f"create Claim {name} for Pod {pod_name} in StatefulSet "
                    f"{meta(sts)['name']} failed error: {e.message}",
                )
                raise
            self.recorder.event(
                sts,
                NORMAL,
                "SuccessfulCreate",
                f"create Claim {name} Pod {pod_name} in StatefulSet {meta(sts)['name']} success",
            )

    async def _ensure_claim_refs(
        self, sts: Obj, pod_name: str, pod_uid: str, condemned: bool
    ) -> None:
        namespace = meta(sts).get("namespace")
        for template in (sts.get("spec") or {}).get("volumeClaimTemplates") or ():
            claim = self.claim_informer.get(claim_name(template, pod_name), namespace)
            if claim is None or is_deleting(claim):
                continue
            refs = self._claim_refs(sts, claim, pod_name, pod_uid, condemned)
            if refs == (meta(claim).get("ownerReferences") or []):
                continue
            body = copy.deepcopy(claim)
            if refs:
                body["metadata"]["ownerReferences"] = refs
            else:
                body["metadata"].pop("ownerReferences", None)
            try:
                await self.client.update(PERSISTENTVOLUMECLAIMS, body)
            except NotFound:
                continue

    async def _mark_condemned_claims(self, sts: Obj, condemned: list[Obj]) -> None:
        """Before a scaled-away pod goes, its claims get the references the policy wants."""
        for pod in condemned:
            await self._ensure_claim_refs(sts, meta(pod)["name"], uid_of(pod), True)

    # ------------------------------------------------------------------ status

    async def _update_status(self, sts: Obj, status: Obj) -> None:
        current = {k: v for k, v in (sts.get("status") or {}).items() if k != "conditions"}
        if current == status:
            return
        body = copy.deepcopy(sts)
        body["status"] = {**(sts.get("status") or {}), **status}
        for key in ("readyReplicas", "currentReplicas", "updatedReplicas"):
            if key not in status:
                body["status"].pop(key, None)
        try:
            await self.client.update_status(STATEFULSETS, body)
        except NotFound:
            return
