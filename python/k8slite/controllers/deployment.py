"""The Deployment controller: roll a pod template out through ReplicaSets, one revision each."""

from __future__ import annotations

import contextlib
import copy
import logging

from k8slite._native import LabelSelector
from k8slite.client import (
    OWNER_UID_INDEX,
    AlreadyExists,
    ApiError,
    DeletedFinalStateUnknown,
    NotFound,
)
from k8slite.client.resource import DEPLOYMENTS, PODS, REPLICASETS
from k8slite.component.events import NORMAL, WARNING
from k8slite.component.objects import (
    Obj,
    annotations_of,
    controller_ref,
    generation_of,
    get_condition,
    is_deleting,
    labels_of,
    meta,
    resource_version_of,
    uid_of,
)
from k8slite.controllers import deploymentstatus as ds
from k8slite.controllers import deploymentutil as du
from k8slite.controllers import rollout
from k8slite.controllers.base import Controller, ControllerContext
from k8slite.controllers.ownerref import (
    ORPHAN_INDEX,
    RefManager,
    new_controller_ref,
    orphan_namespace_index,
    owned_and_orphans,
    resolve_controller_ref,
)
from k8slite.controllers.replicaset import is_namespace_terminating, replicas_of

log = logging.getLogger(__name__)


def _selector(d: Obj) -> LabelSelector:
    return LabelSelector.from_dict((d.get("spec") or {}).get("selector"))


def _strategy(d: Obj) -> str:
    return str(((d.get("spec") or {}).get("strategy") or {}).get("type") or "RollingUpdate")


def _set_min_ready(rs_spec: Obj, seconds: int) -> None:
    # Zero is left out, as upstream's omitempty leaves it out.
    if seconds:
        rs_spec["minReadySeconds"] = seconds
    else:
        rs_spec.pop("minReadySeconds", None)


class DeploymentController(Controller):
    name = "deployment-controller"
    queue_name = "deployment"

    def __init__(self, ctx: ControllerContext, workers: int = 5) -> None:
        super().__init__(ctx, workers)
        self.d_informer = ctx.informers.informer(DEPLOYMENTS)
        self.rs_informer = ctx.informers.informer(
            REPLICASETS, indexers={ORPHAN_INDEX: orphan_namespace_index}
        )
        self.pod_informer = ctx.informers.informer(PODS)
        self.d_informer.add_event_handler(self.enqueue, lambda _o, n: self.enqueue(n), self.enqueue)
        self.rs_informer.add_event_handler(self._rs_added, self._rs_updated, self._rs_deleted)
        self.pod_informer.add_event_handler(on_delete=self._pod_deleted)

    # ---------------------------------------------------------------- handlers

    def _owner_of(self, obj: Obj, ref: Obj | None) -> Obj | None:
        return resolve_controller_ref(self.d_informer, "Deployment", obj, ref)

    def _selecting(self, rs: Obj) -> list[Obj]:
        labels = labels_of(rs)
        out = []
        for d in self.d_informer.list(meta(rs).get("namespace")):
            selector = _selector(d)
            if not selector.is_empty() and selector.matches(labels):
                out.append(d)
        return out

    def _rs_added(self, rs: Obj) -> None:
        if is_deleting(rs):
            self._rs_deleted(rs)
            return
        ref = controller_ref(rs)
        if ref is not None:
            d = self._owner_of(rs, ref)
            if d is not None:
                self.enqueue(d)
            return
        for d in self._selecting(rs):
            self.enqueue(d)

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        if resource_version_of(old) == resource_version_of(new):
            return
        old_ref, new_ref = controller_ref(old), controller_ref(new)
        if old_ref != new_ref and old_ref is not None:
            previous = self._owner_of(old, old_ref)
            if previous is not None:
                self.enqueue(previous)
        if new_ref is not None:
            d = self._owner_of(new, new_ref)
            if d is not None:
                self.enqueue(d)
            return
        if meta(old).get("labels") != meta(new).get("labels") or old_ref != new_ref:
            for d in self._selecting(new):
                self.enqueue(d)

    def _rs_deleted(self, rs: Obj | DeletedFinalStateUnknown) -> None:
        obj = rs.obj if isinstance(rs, DeletedFinalStateUnknown) else rs
        d = self._owner_of(obj, controller_ref(obj))
        if d is not None:
            self.enqueue(d)

    def _pod_deleted(self, pod: Obj | DeletedFinalStateUnknown) -> None:
        # Only Recreate waits for old pods to be gone before it starts the new ones.
        obj = pod.obj if isinstance(pod, DeletedFinalStateUnknown) else pod
        ref = controller_ref(obj)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.rs_informer.get(ref.get("name", ""), meta(obj).get("namespace"))
        if rs is None:
            return
        d = self._owner_of(rs, controller_ref(rs))
        if d is not None and _strategy(d) == "Recreate":
            self.enqueue(d)

    # -------------------------------------------------------------------- sync

    async def sync(self, key: str) -> float | None:
        namespace, name = key.split("/", 1)
        cached = self.d_informer.get(name, namespace)
        if cached is None:
            return None
        d = copy.deepcopy(cached)
        if _selector(d).is_empty():
            self.recorder.event(
                d,
                WARNING,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            )
            status = d.get("status") or {}
            if ds.count(status, "observedGeneration") < generation_of(d):
                status["observedGeneration"] = generation_of(d)
                await self._put_status(d, status)
            return None
        rs_list = await self._claim_replica_sets(d)
        if is_deleting(d):
            new_rs, old_rs = await self._get_all(d, rs_list, create=False)
            await self._sync_status(d, [*old_rs, new_rs], new_rs)
            return None
        await self._check_paused_conditions(d)
        if (d.get("spec") or {}).get("paused") or await self._is_scaling_event(d, rs_list):
            await self._sync_scale(d, rs_list)
            return None
        if _strategy(d) == "Recreate":
            return await self._rollout_recreate(d, rs_list)
        return await self._rollout_rolling(d, rs_list)

    async def _claim_replica_sets(self, d: Obj) -> list[Obj]:
        selector = _selector(d)
        manager = RefManager(
            self.client,
            REPLICASETS,
            d,
            DEPLOYMENTS,
            "Deployment",
            lambda rs: selector.matches(labels_of(rs)),
        )
        return await manager.claim(owned_and_orphans(self.rs_informer.indexer, d))

    # --------------------------------------------------- new RS and revisions

    async def _get_all(
        self, d: Obj, rs_list: list[Obj], create: bool
    ) -> tuple[Obj | None, list[Obj]]:
        """(new RS, old RSes); syncs revision annotations, and makes the new RS if asked."""
        template = (d.get("spec") or {}).get("template") or {}
        existing = next(
            (
                rs
                for rs in du.by_creation(rs_list)
                if du.equal_ignore_hash((rs.get("spec") or {}).get("template") or {}, template)
            ),
            None,
        )
        old_rs = [rs for rs in rs_list if existing is None or uid_of(rs) != uid_of(existing)]
        new_revision = du.max_revision(old_rs) + 1
        if existing is not None:
            new_rs = await self._sync_new_rs(d, existing, new_revision)
            # Later steps of this sync must not write from the copy we just replaced.
            rs_list[:] = [new_rs if uid_of(rs) == uid_of(new_rs) else rs for rs in rs_list]
            return new_rs, old_rs
        if not create:
            return None, old_rs
        return await self._create_new_rs(d, old_rs, new_revision), old_rs

    async def _sync_new_rs(self, d: Obj, existing: Obj, new_revision: int) -> Obj:
        rs = copy.deepcopy(existing)
        changed = du.set_new_rs_annotations(d, rs, new_revision, exists=True)
        min_ready = int((d.get("spec") or {}).get("minReadySeconds") or 0)
        if changed or int((rs.get("spec") or {}).get("minReadySeconds") or 0) != min_ready:
            _set_min_ready(rs["spec"], min_ready)
            return await self.client.update(REPLICASETS, rs)
        status = copy.deepcopy(d.get("status") or {})
        status_changed = False
        if du.progress_deadline(d) is not None and get_condition(status, ds.PROGRESSING) is None:
            du.set_condition(
                status,
                du.new_condition(
                    ds.PROGRESSING,
                    "True",
                    du.FOUND_NEW_RS_REASON,
                    f"Found new replica set {ds.quoted(meta(rs)['name'])}",
                    ds.now_text(),
                ),
            )
            status_changed = True
        await self._set_revision(d, str(du.revision_of(rs)))
        if status_changed:
            await self._put_status(d, status)
        return rs

    async def _create_new_rs(self, d: Obj, old_rs: list[Obj], new_revision: int) -> Obj:
        spec = d.get("spec") or {}
        template = copy.deepcopy(spec.get("template") or {})
        collisions = (d.get("status") or {}).get("collisionCount")
        pod_hash = du.compute_hash(template, collisions)
        template.setdefault("metadata", {}).setdefault("labels", {})[du.POD_TEMPLATE_HASH] = (
            pod_hash
        )
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[du.POD_TEMPLATE_HASH] = pod_hash
        name = f"{meta(d)['name']}-{pod_hash}"
        new_rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": meta(d).get("namespace"),
                "labels": dict(template["metadata"]["labels"]),
                "ownerReferences": [new_controller_ref(d, "apps/v1", "Deployment")],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
        }
        _set_min_ready(new_rs["spec"], int(spec.get("minReadySeconds") or 0))
        size = rollout.new_rs_replicas(d, [*old_rs, new_rs], new_rs)
        new_rs["spec"]["replicas"] = size
        du.set_new_rs_annotations(d, new_rs, new_revision, exists=False)
        status = copy.deepcopy(d.get("status") or {})
        try:
            created = await self.client.create(REPLICASETS, new_rs)
            already = False
        except AlreadyExists:
            created = await self._existing_new_rs(d, name, status)
            already = True
        except ApiError as e:
            if is_namespace_terminating(e):
                raise
            message = f"Failed to create new replica set {ds.quoted(name)}: {e.message}"
            if du.progress_deadline(d) is not None:
                du.set_condition(
                    status,
                    du.new_condition(
                        ds.PROGRESSING, "False", du.FAILED_RS_CREATE_REASON, message, ds.now_text()
                    ),
                )
                try:
                    await self._put_status(d, status)
                except ApiError:
                    pass  # the create error is the one worth reporting
            self.recorder.event(d, WARNING, du.FAILED_RS_CREATE_REASON, message)
            raise
        if not already and size > 0:
            self.recorder.event(
                d, NORMAL, "ScalingReplicaSet", f"Scaled up replica set {name} from 0 to {size}"
            )
        await self._set_revision(d, str(new_revision))
        if not already and du.progress_deadline(d) is not None:
            du.set_condition(
                status,
                du.new_condition(
                    ds.PROGRESSING,
                    "True",
                    du.NEW_RS_REASON,
                    f"Created new replica set {ds.quoted(name)}",
                    ds.now_text(),
                ),
            )
            await self._put_status(d, status)
        return created

    async def _existing_new_rs(self, d: Obj, name: str, status: Obj) -> Obj:
        """An RS of our name exists: ours (a slow cache), or a hash collision."""
        rs = self.rs_informer.get(name, meta(d).get("namespace"))
        if rs is None:
            rs = await self.client.get(REPLICASETS, name, namespace=meta(d).get("namespace"))
        ref = controller_ref(rs)
        template = (d.get("spec") or {}).get("template") or {}
        if (
            ref is not None
            and ref.get("uid") == uid_of(d)
            and du.equal_ignore_hash(template, (rs.get("spec") or {}).get("template") or {})
        ):
            return rs
        # Another template hashed to the same name: a new collision count gives a new hash.
        status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
        await self._put_status(d, status)
        raise AlreadyExists(
            {
                "reason": "AlreadyExists",
                "code": 409,
                "message": f"hash collision for replica set {name}; retrying",
            }
        )

    async def _set_revision(self, d: Obj, revision: str) -> None:
        """The Deployment's revision annotation follows its new RS."""
        if annotations_of(d).get(du.REVISION) == revision:
            return
        patch = {"metadata": {"annotations": {du.REVISION: revision}}}
        updated = await self.client.patch(
            DEPLOYMENTS, meta(d)["name"], patch, namespace=meta(d).get("namespace")
        )
        d["metadata"] = updated["metadata"]

    async def _put_status(self, d: Obj, status: Obj) -> None:
        body = copy.deepcopy(d)
        body["status"] = status
        updated = await self.client.update_status(DEPLOYMENTS, body)
        d["metadata"] = updated["metadata"]
        d["status"] = updated.get("status") or {}

    # ----------------------------------------------------------------- scaling

    async def _scale(self, rs: Obj, size: int, d: Obj, direction: str = "") -> tuple[bool, Obj]:
        """Resize an RS (and refresh its replicas annotations); True if the size changed."""
        old_size = du.spec_replicas(rs)
        desired, maximum = replicas_of(d), replicas_of(d) + du.max_surge(d)
        resize = old_size != size
        if not resize and not du.replicas_annotations_need_update(rs, desired, maximum):
            return False, rs
        body = copy.deepcopy(rs)
        body["spec"]["replicas"] = size
        du.set_replicas_annotations(body, desired, maximum)
        updated = await self.client.update(REPLICASETS, body)
        if resize:
            direction = direction or ("up" if old_size < size else "down")
            self.recorder.event(
                d,
                NORMAL,
                "ScalingReplicaSet",
                f"Scaled {direction} replica set {meta(rs)['name']} from {old_size} to {size}",
            )
        return resize, updated

    async def _scale_if_needed(self, rs: Obj, size: int, d: Obj) -> tuple[bool, Obj]:
        if du.spec_replicas(rs) == size:
            return False, rs
        return await self._scale(rs, size, d)

    async def _is_scaling_event(self, d: Obj, rs_list: list[Obj]) -> bool:
        """Some active RS was sized for a different spec.replicas than the current one."""
        new_rs, old_rs = await self._get_all(d, rs_list, create=False)
        for rs in du.active([*old_rs, new_rs]):
            desired = du.int_annotation(rs, du.DESIRED_REPLICAS)
            if desired is not None and desired != replicas_of(d):
                return True
        return False

    async def _sync_scale(self, d: Obj, rs_list: list[Obj]) -> None:
        """Paused or resized: scale what exists (no new RS), clean up, report status."""
        new_rs, old_rs = await self._get_all(d, rs_list, create=False)
        await self._scale_deployment(d, new_rs, old_rs)
        if (d.get("spec") or {}).get("paused"):
            await self._cleanup(d, old_rs)
        await self._sync_status(d, [*old_rs, new_rs], new_rs)

    async def _scale_deployment(self, d: Obj, new_rs: Obj | None, old_rs: list[Obj]) -> None:
        only = rollout.find_active_or_latest(new_rs, old_rs)
        if only is not None:
            await self._scale_if_needed(only, replicas_of(d), d)
            return
        if rollout.is_saturated(d, new_rs):
            for rs in du.active(old_rs):
                await self._scale_if_needed(rs, 0, d)
            return
        if du.is_rolling(d):
            plan, direction = rollout.proportional_plan(d, new_rs, old_rs)
            for rs, size in plan:
                await self._scale(rs, size, d, direction)

    async def _cleanup(self, d: Obj, old_rs: list[Obj]) -> None:
        """Delete the oldest empty RSes beyond revisionHistoryLimit."""
        limit = (d.get("spec") or {}).get("revisionHistoryLimit")
        if limit is None or int(limit) == du.NO_DEADLINE:
            return
        alive = [rs for rs in old_rs if not is_deleting(rs)]
        excess = len(alive) - int(limit)
        for rs in du.by_revision(alive)[: max(0, excess)]:
            if (
                du.status_count(rs, "replicas") != 0
                or du.spec_replicas(rs) != 0
                or generation_of(rs) > du.status_count(rs, "observedGeneration")
            ):
                continue
            with contextlib.suppress(NotFound):
                await self.client.delete(
                    REPLICASETS,
                    meta(rs)["name"],
                    namespace=meta(rs).get("namespace"),
                    preconditions={"uid": uid_of(rs)},
                )

    # ------------------------------------------------------------- strategies

    async def _rollout_rolling(self, d: Obj, rs_list: list[Obj]) -> float | None:
        new_rs, old_rs = await self._get_all(d, rs_list, create=True)
        assert new_rs is not None
        target = rollout.reconcile_new(d, [*old_rs, new_rs], new_rs)
        if target is not None:
            scaled, new_rs = await self._scale_if_needed(new_rs, target, d)
            if scaled:
                return await self._sync_rollout_status(d, [*old_rs, new_rs], new_rs)
        scaled_down = False
        for rs, size in rollout.reconcile_old(d, old_rs, new_rs):
            scaled, _ = await self._scale_if_needed(rs, size, d)
            scaled_down = scaled_down or scaled
        if scaled_down:
            return await self._sync_rollout_status(d, [*old_rs, new_rs], new_rs)
        if ds.deployment_complete(d, d.get("status") or {}):
            await self._cleanup(d, old_rs)
        return await self._sync_rollout_status(d, [*old_rs, new_rs], new_rs)

    async def _rollout_recreate(self, d: Obj, rs_list: list[Obj]) -> float | None:
        new_rs, old_rs = await self._get_all(d, rs_list, create=False)
        scaled_down = False
        for rs in du.active(old_rs):
            scaled, _ = await self._scale_if_needed(rs, 0, d)
            scaled_down = scaled_down or scaled
        if scaled_down or self._old_pods_running(new_rs, old_rs):
            return await self._sync_rollout_status(d, [*old_rs, new_rs], new_rs)
        if new_rs is None:
            new_rs, old_rs = await self._get_all(d, rs_list, create=True)
        assert new_rs is not None
        _, new_rs = await self._scale_if_needed(new_rs, replicas_of(d), d)
        if ds.deployment_complete(d, d.get("status") or {}):
            await self._cleanup(d, old_rs)
        return await self._sync_rollout_status(d, [*old_rs, new_rs], new_rs)

    def _old_pods_running(self, new_rs: Obj | None, old_rs: list[Obj]) -> bool:
        """Recreate starts new pods only once every old one has stopped (or is gone)."""
        if du.total(old_rs, "replicas") > 0:
            return True
        for rs in old_rs:
            if new_rs is not None and uid_of(rs) == uid_of(new_rs):
                continue
            for pod in self.pod_informer.indexer.by_index(OWNER_UID_INDEX, uid_of(rs)):
                if (controller_ref(pod) or {}).get("uid") != uid_of(rs):
                    continue
                if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    return True
        return False

    # ------------------------------------------------------------------ status

    async def _check_paused_conditions(self, d: Obj) -> None:
        if du.progress_deadline(d) is None:
            return
        status = copy.deepcopy(d.get("status") or {})
        cond = get_condition(status, ds.PROGRESSING)
        if cond is not None and cond.get("reason") == du.TIMED_OUT_REASON:
            return  # a reported lack of progress is not overwritten by a pause
        paused_reported = cond is not None and cond.get("reason") == du.PAUSED_REASON
        paused = bool((d.get("spec") or {}).get("paused"))
        if paused and not paused_reported:
            new = du.new_condition(
                ds.PROGRESSING, "Unknown", du.PAUSED_REASON, "Deployment is paused", ds.now_text()
            )
        elif not paused and paused_reported:
            new = du.new_condition(
                ds.PROGRESSING, "Unknown", du.RESUMED_REASON, "Deployment is resumed", ds.now_text()
            )
        else:
            return
        du.set_condition(status, new)
        await self._put_status(d, status)

    async def _sync_status(self, d: Obj, all_rs: list[Obj | None], new_rs: Obj | None) -> None:
        status = ds.calculate_status(d, all_rs, new_rs)
        if status != (d.get("status") or {}):
            await self._put_status(d, status)

    async def _sync_rollout_status(
        self, d: Obj, all_rs: list[Obj | None], new_rs: Obj | None
    ) -> float | None:
        """Write the rollout's status; returns when to check the progress deadline."""
        status = ds.rollout_status(d, all_rs, new_rs)
        if status == (d.get("status") or {}):
            return ds.recheck_after(d, status)
        await self._put_status(d, status)
        return None
