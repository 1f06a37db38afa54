"""The Job controller: run pods to completion, count every outcome once, finish the Job."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import trio

from k8slite._native import LabelSelector
from k8slite.api.meta import clone, format_time, parse_time
from k8slite.client import ApiError, Conflict, DeletedFinalStateUnknown, NotFound, object_key
from k8slite.client.resource import JOBS, PODS
from k8slite.component.events import NORMAL, WARNING
from k8slite.component.objects import (
    Obj,
    controller_ref,
    get_condition,
    is_deleting,
    labels_of,
    meta,
    resource_version_of,
    uid_of,
)
from k8slite.controllers.base import Controller, ControllerContext
from k8slite.controllers.expectations import Expectations
from k8slite.controllers.jobutil import (
    JOB_TRACKING_FINALIZER,
    backoff_delay,
    completion_index,
    format_indexes,
    has_tracking_finalizer,
    index_failure_count,
    is_pod_failed,
    match_pod_failure_policy,
    only_replace_failed,
    parse_indexes,
    pod_for_job,
    restarts_of,
    success_policy_rule,
)
from k8slite.controllers.ownerref import (
    ORPHAN_INDEX,
    RefManager,
    new_controller_ref,
    orphan_namespace_index,
    owned_and_orphans,
    resolve_controller_ref,
)
from k8slite.controllers.podutil import is_pod_active, is_pod_ready, utcnow
from k8slite.controllers.ranking import pods_to_delete
from k8slite.controllers.replicaset import (
    create_controlled_pod,
    slow_start_batch,
)

log = logging.getLogger(__name__)

# At most this many creates or deletes per sync (upstream's MaxPodCreateDeletePerSync).
MAX_POD_CHANGES_PER_SYNC = 500
# spec.managedBy of jobs this controller runs (unset means the same).
JOB_CONTROLLER_NAME = "kubernetes.io/job-controller"

MSG_BACKOFF = "Job has reached the specified backoff limit"
MSG_DEADLINE = "Job was active longer than specified deadline"
MSG_MAX_FAILED_INDEXES = "Job has exceeded the specified maximal number of failed indexes"
MSG_FAILED_INDEXES = "Job has failed indexes"
MSG_COMPLETIONS = "Reached expected number of succeeded pods"


@dataclass
class _Backoff:
    """Failures since the last success, and when the last one was seen."""

    failures: int = 0
    last_failure: float = 0.0


@dataclass
class _Outcome:
    """What one look at a job's pods found that its status does not say yet."""

    succeeded: set[str] = field(default_factory=set)  # uncounted succeeded uids
    failed: set[str] = field(default_factory=set)  # uncounted failed uids
    completed: set[int] = field(default_factory=set)  # succeeded indexes
    failed_indexes: set[int] = field(default_factory=set)
    to_release: list[Obj] = field(default_factory=list)  # finished pods with our finalizer
    new_failures: int = 0
    new_successes: int = 0
    failure: tuple[str, str] | None = None  # a FailJob rule matched: (reason, message)


def is_finished(job: Obj) -> bool:
    for ctype in ("Complete", "Failed"):
        cond = get_condition(job.get("status"), ctype)
        if cond is not None and cond.get("status") == "True":
            return True
    return False


def new_condition(ctype: str, status: str, reason: str, message: str, now: str) -> Obj:
    return {
        "type": ctype,
        "status": status,
        "lastProbeTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def _put_condition(status: Obj, cond: Obj) -> None:
    """Replace the condition of cond's type if its status changed; append it if absent."""
    conditions: list[Obj] = status.setdefault("conditions", [])
    for i, current in enumerate(conditions):
        if current.get("type") == cond["type"]:
            if current.get("status") != cond["status"]:
                conditions[i] = cond
            return
    conditions.append(cond)


def _condition_true(status: Obj, ctype: str) -> Obj | None:
    cond = get_condition(status, ctype)
    return cond if cond is not None and cond.get("status") == "True" else None


class JobController(Controller):
    name = "job-controller"
    queue_name = "job"

    def __init__(self, ctx: ControllerContext, workers: int = 5) -> None:
        super().__init__(ctx, workers)
        self.expectations = Expectations()
        # Pods whose finalizer we removed, by job key, until the informer shows it gone:
        # until then a stale cache would show them finished and uncounted again.
        self.releasing: dict[str, set[str]] = {}
        self.backoff: dict[str, _Backoff] = {}
        # The resourceVersion of our last status write per job: counting from an older
        # copy could count a pod whose finalizer is already gone a second time.
        self.written: dict[str, str] = {}
        self.backoff_base = ctx.options.job_pod_failure_backoff
        self.batch_period = ctx.options.job_sync_batch_period
        self.backoff_cap = ctx.options.job_pod_failure_max_backoff
        self.job_informer = ctx.informers.informer(JOBS)
        self.pod_informer = ctx.informers.informer(
            PODS, indexers={ORPHAN_INDEX: orphan_namespace_index}
        )
        self.job_informer.add_event_handler(self.enqueue, self._job_updated, self._job_deleted)
        self.pod_informer.add_event_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    # ---------------------------------------------------------------- handlers

    def _job_updated(self, old: Obj, new: Obj) -> None:
        self.enqueue(new)

    def _job_deleted(self, job: Obj | DeletedFinalStateUnknown) -> None:
        key = object_key(job)
        self.expectations.delete(key)
        self.queue.add(key)
        # Its pods keep our finalizer until we take it off.
        obj = job.obj if isinstance(job, DeletedFinalStateUnknown) else job
        for pod in self.pod_informer.indexer.by_index("ownerUID", uid_of(obj)):
            if has_tracking_finalizer(pod):
                self.queue.add(self._orphan_key(pod))

    @staticmethod
    def _orphan_key(pod: Obj) -> str:
        return f"pod:{object_key(pod)}"

    def _owner_of(self, pod: Obj) -> Obj | None:
        return resolve_controller_ref(self.job_informer, "Job", pod, controller_ref(pod))

    def _orphaned_with_finalizer(self, pod: Obj) -> bool:
        ref = controller_ref(pod)
        return (
            has_tracking_finalizer(pod)
            and ref is not None
            and ref.get("kind") == "Job"
            and self._owner_of(pod) is None
        )

    def _pod_added(self, pod: Obj) -> None:
        job = self._owner_of(pod)
        if job is not None:
            key = object_key(job)
            if is_deleting(pod):
                # Seen first already terminating (a relist): a deletion to expectations.
                self.expectations.deletion_observed(key, object_key(pod))
            else:
                self.expectations.creation_observed(key)
            self.queue.add_after(key, self.batch_period)
        elif self._orphaned_with_finalizer(pod):
            self.queue.add(self._orphan_key(pod))

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if resource_version_of(old) == resource_version_of(new):
            return
        job = self._owner_of(new)
        if job is None:
            if self._orphaned_with_finalizer(new):
                self.queue.add(self._orphan_key(new))
            return
        key = object_key(job)
        if not has_tracking_finalizer(new):
            self.releasing.get(key, set()).discard(uid_of(new))
        if is_deleting(new):
            self.expectations.deletion_observed(key, object_key(new))
        self.queue.add_after(key, self.batch_period)

    def _pod_deleted(self, pod: Obj | DeletedFinalStateUnknown) -> None:
        obj = pod.obj if isinstance(pod, DeletedFinalStateUnknown) else pod
        job = self._owner_of(obj)
        if job is None:
            return
        key = object_key(job)
        self.expectations.deletion_observed(key, object_key(obj))
        self.releasing.get(key, set()).discard(uid_of(obj))
        self.queue.add_after(key, self.batch_period)

    # -------------------------------------------------------------------- sync

    async def sync(self, key: str) -> float | None:
        if key.startswith("pod:"):
            await self._release_orphan(key[4:])
            return None
        namespace, name = key.split("/", 1)
        job = self.job_informer.get(name, namespace)
        if job is None:
            self.expectations.delete(key)
            self.releasing.pop(key, None)
            self.backoff.pop(key, None)
            self.written.pop(key, None)
            return None
        managed_by = (job.get("spec") or {}).get("managedBy")
        if managed_by not in (None, JOB_CONTROLLER_NAME):
            return None  # another controller runs this job (upstream's spec.managedBy)
        pods = await self._claim(job)
        if _older(job, self.written.get(key)):
            # Our last status write has not reached the cache yet; its update event will
            # queue the job again (a timer here would spin while the informer lags).
            return None
        if is_finished(job):
            await self._release(key, [p for p in pods if has_tracking_finalizer(p)])
            return None
        return await self._sync_job(key, job, pods)

    async def _claim(self, job: Obj) -> list[Obj]:
        selector = LabelSelector.from_dict((job.get("spec") or {}).get("selector"))
        manager = RefManager(
            self.client, PODS, job, JOBS, "Job", lambda p: selector.matches(labels_of(p))
        )
        candidates = owned_and_orphans(self.pod_informer.indexer, job)
        if is_finished(job) or is_deleting(job):
            # A finished or deleted job adopts nothing.
            uid = uid_of(job)
            return [p for p in candidates if (controller_ref(p) or {}).get("uid") == uid]
        return await manager.claim(candidates)

    async def _release_orphan(self, pod_key: str) -> None:
        """Take our finalizer off a pod whose Job is gone (checked live, not in the cache)."""
        namespace, name = pod_key.split("/", 1)
        pod = self.pod_informer.get(name, namespace)
        if pod is None or not has_tracking_finalizer(pod):
            return
        ref = controller_ref(pod) or {}
        try:
            job = await self.client.get(JOBS, ref.get("name", ""), namespace=namespace)
        except NotFound:
            job = None
        if job is not None and uid_of(job) == ref.get("uid") and not is_finished(job):
            return  # the job lives: its own sync counts the pod first
        await self._remove_finalizer(pod)

    async def _remove_finalizer(self, pod: Obj) -> bool:
        """JSON-patch our finalizer away; False if the pod changed under us or is gone."""
        finalizers = list(meta(pod).get("finalizers") or ())
        if JOB_TRACKING_FINALIZER not in finalizers:
            return True
        index = finalizers.index(JOB_TRACKING_FINALIZER)
        patch = [
            {
                "op": "test",
                "path": f"/metadata/finalizers/{index}",
                "value": JOB_TRACKING_FINALIZER,
            },
            {"op": "remove", "path": f"/metadata/finalizers/{index}"},
        ]
        m = meta(pod)
        try:
            await self.client.patch(
                PODS, m["name"], patch, namespace=m.get("namespace"), patch_type="json"
            )
        except NotFound:
            return True
        except ApiError as e:
            if e.code == 422:  # the test op failed: our cached finalizers were stale
                return False
            raise
        return True

    async def _release(self, key: str, pods: list[Obj]) -> set[str]:
        """Remove our finalizer from pods; the uids done (or gone) are returned."""
        releasing = self.releasing.setdefault(key, set())
        done: set[str] = set()
        errors: list[Exception] = []

        async def one(pod: Obj) -> None:
            try:
                if await self._remove_finalizer(pod):
                    done.add(uid_of(pod))
                    releasing.add(uid_of(pod))
            except Exception as e:  # noqa: BLE001 - the first is raised below
                errors.append(e)

        async with trio.open_nursery() as nursery:
            for pod in pods:
                nursery.start_soon(one, pod)
        if errors:
            raise errors[0]
        return done

    def _observe_finished(self, key: str, job: Obj, pods: list[Obj], status: Obj) -> _Outcome:
        spec = job.get("spec") or {}
        indexed = spec.get("completionMode") == "Indexed"
        completions = spec.get("completions")
        per_index = spec.get("backoffLimitPerIndex")
        uncounted = status.get("uncountedTerminatedPods") or {}
        out = _Outcome(
            succeeded=set(uncounted.get("succeeded") or ()),
            failed=set(uncounted.get("failed") or ()),
        )
        if indexed:
            out.completed = parse_indexes(status.get("completedIndexes"), completions)
            out.failed_indexes = parse_indexes(status.get("failedIndexes"), completions)
        releasing = self.releasing.get(key, set())
        for pod in pods:
            uid = uid_of(pod)
            if not has_tracking_finalizer(pod) or uid in releasing:
                continue
            if uid in out.succeeded or uid in out.failed:
                out.to_release.append(pod)
                continue
            phase = (pod.get("status") or {}).get("phase")
            index = completion_index(pod) if indexed else None
            valid_index = index is not None and isinstance(completions, int) and index < completions
            if phase == "Succeeded":
                out.to_release.append(pod)
                if indexed:
                    if (
                        index is not None
                        and valid_index
                        and index not in out.failed_indexes | out.completed
                    ):
                        out.new_successes += 1
                        out.completed.add(index)
                else:
                    out.succeeded.add(uid)
                    out.new_successes += 1
            elif is_pod_failed(pod, job):
                out.to_release.append(pod)
                match = match_pod_failure_policy(job, pod)
                action = match.action if match is not None else "Count"
                if action == "Ignore":
                    continue
                if action == "FailJob" and match is not None and out.failure is None:
                    out.failure = ("PodFailurePolicy", match.message)
                if (
                    per_index is not None
                    and index is not None
                    and valid_index
                    and (action == "FailIndex" or index_failure_count(pod) + 1 > per_index)
                ):
                    out.failed_indexes.add(index)
                out.failed.add(uid)
                out.new_failures += 1
        return out

    async def _sync_job(self, key: str, job: Obj, pods: list[Obj]) -> float | None:
        spec = job.get("spec") or {}
        status: Obj = clone(job.get("status") or {})
        now = utcnow()
        stamp = format_time(now)
        indexed = spec.get("completionMode") == "Indexed"
        per_index = spec.get("backoffLimitPerIndex")
        needs_sync = self.expectations.satisfied(key)

        out = self._observe_finished(key, job, pods, status)
        self._record_backoff(key, out)
        active = [p for p in pods if is_pod_active(p)]
        terminating = [
            p
            for p in pods
            if is_deleting(p)
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        succeeded = (
            len(out.completed)
            if indexed
            else int(status.get("succeeded") or 0) + len(out.succeeded)
        )
        failed = int(status.get("failed") or 0) + len(out.failed)
        suspended = bool(spec.get("suspend"))
        requeue: float | None = None

        # Resume and suspend first: a resumed job's deadline counts from now.
        suspended_cond = get_condition(status, "Suspended")
        if suspended and not _condition_true(status, "Suspended"):
            _put_condition(
                status, new_condition("Suspended", "True", "JobSuspended", "Job suspended", stamp)
            )
            self.recorder.event(job, NORMAL, "Suspended", "Job suspended")
        elif (
            not suspended and suspended_cond is not None and suspended_cond.get("status") == "True"
        ):
            _put_condition(
                status, new_condition("Suspended", "False", "JobResumed", "Job resumed", stamp)
            )
            self.recorder.event(job, NORMAL, "Resumed", "Job resumed")
            status["startTime"] = stamp
        if not suspended and not status.get("startTime"):
            status["startTime"] = stamp

        failure = self._failure(job, status, out, active, failed)
        success = None if failure else self._success(job, status, out, active, succeeded)
        if failure is not None and not _condition_true(status, "FailureTarget"):
            _put_condition(status, new_condition("FailureTarget", "True", *failure, stamp))
        if success is not None and not _condition_true(status, "SuccessCriteriaMet"):
            _put_condition(status, new_condition("SuccessCriteriaMet", "True", *success, stamp))

        # Pods: none while finishing or suspended; otherwise as many as parallelism allows.
        deleted: list[Obj] = []
        manage_error: Exception | None = None
        try:
            if failure is not None or success is not None or suspended:
                deleted = await self._delete_pods(key, job, active, len(active))
                active = []
            elif needs_sync:
                active, deleted, requeue = await self._manage(
                    key, job, active, terminating, out, succeeded
                )
        except ApiError as e:
            manage_error = e

        status["active"] = len(active)
        status["ready"] = sum(1 for p in active if is_pod_ready(p))
        status["terminating"] = len(terminating) + len(deleted)
        status["failed"] = int(status.get("failed") or 0)
        status["succeeded"] = int(status.get("succeeded") or 0)
        if indexed:
            status["completedIndexes"] = format_indexes(out.completed)
            status["succeeded"] = len(out.completed)
            if per_index is not None:
                status["failedIndexes"] = format_indexes(out.failed_indexes)
        status["uncountedTerminatedPods"] = _uncounted(out.succeeded, out.failed)

        # Record outcomes before the finalizers go, so that none is lost; then count them.
        if out.to_release:
            job = await self._write_status(job, status)
            status = clone(job.get("status") or {})
            done = await self._release(key, out.to_release)
            pods_by_uid = {uid_of(p): p for p in pods}
            releasing = self.releasing.get(key, set())

            def counted(uid: str) -> bool:
                pod = pods_by_uid.get(uid)
                return (
                    pod is None
                    or uid in done
                    or uid in releasing
                    or not has_tracking_finalizer(pod)
                )

            moved_s = {u for u in out.succeeded if counted(u)}
            moved_f = {u for u in out.failed if counted(u)}
            status["succeeded"] = int(status.get("succeeded") or 0) + (
                0 if indexed else len(moved_s)
            )
            status["failed"] = int(status.get("failed") or 0) + len(moved_f)
            out.succeeded -= moved_s
            out.failed -= moved_f
            status["uncountedTerminatedPods"] = _uncounted(out.succeeded, out.failed)

        # Finish once every pod is gone or terminal and every outcome is counted.
        settled = (
            not active and not terminating and not deleted and not out.succeeded and not out.failed
        )
        if settled and failure is not None:
            _put_condition(status, new_condition("Failed", "True", *failure, stamp))
            self.recorder.event(job, WARNING, failure[0], failure[1])
        elif settled and success is not None:
            _put_condition(status, new_condition("Complete", "True", *success, stamp))
            status["completionTime"] = stamp
            self.recorder.event(job, NORMAL, "Completed", "Job completed")
        await self._write_status(job, status)
        if manage_error is not None:
            raise manage_error
        if out.to_release and (out.succeeded or out.failed):
            return 1.0  # some finalizers are still on: look again
        return self._next_look(job, status, requeue, failure or success)

    def _record_backoff(self, key: str, out: _Outcome) -> None:
        record = self.backoff.setdefault(key, _Backoff())
        if out.new_failures:
            record.failures += out.new_failures
            record.last_failure = time.monotonic()
        elif out.new_successes:
            record.failures = 0

    def _failure(
        self, job: Obj, status: Obj, out: _Outcome, active: list[Obj], failed: int
    ) -> tuple[str, str] | None:
        """Why the job fails, if it does: (reason, message)."""
        current = _condition_true(status, "FailureTarget")
        if current is not None:
            return current.get("reason", ""), current.get("message", "")
        if out.failure is not None:
            return out.failure
        spec = job.get("spec") or {}
        limit = spec.get("backoffLimit")
        limit = 6 if limit is None else int(limit)
        if failed > limit:
            return "BackoffLimitExceeded", MSG_BACKOFF
        template_spec = (spec.get("template") or {}).get("spec") or {}
        if template_spec.get("restartPolicy") == "OnFailure":
            restarts = sum(restarts_of(p) for p in active)
            if (limit == 0 and restarts > 0) or (limit > 0 and restarts >= limit):
                return "BackoffLimitExceeded", MSG_BACKOFF
        max_failed = spec.get("maxFailedIndexes")
        if max_failed is not None and len(out.failed_indexes) > max_failed:
            return "MaxFailedIndexesExceeded", MSG_MAX_FAILED_INDEXES
        deadline = spec.get("activeDeadlineSeconds")
        start = status.get("startTime")
        if (
            deadline is not None
            and start
            and not spec.get("suspend")
            and (utcnow() - parse_time(start)).total_seconds() >= deadline
        ):
            return "DeadlineExceeded", MSG_DEADLINE
        completions = spec.get("completions")
        if (
            spec.get("backoffLimitPerIndex") is not None
            and out.failed_indexes
            and isinstance(completions, int)
            and len(out.completed | out.failed_indexes) >= completions
        ):
            return "FailedIndexes", MSG_FAILED_INDEXES
        return None

    def _success(
        self, job: Obj, status: Obj, out: _Outcome, active: list[Obj], succeeded: int
    ) -> tuple[str, str] | None:
        current = _condition_true(status, "SuccessCriteriaMet")
        if current is not None:
            return current.get("reason", ""), current.get("message", "")
        spec = job.get("spec") or {}
        completions = spec.get("completions")
        if spec.get("completionMode") == "Indexed":
            rule = success_policy_rule(job, out.completed)
            if rule is not None:
                return "SuccessPolicy", f"Matched rules at index {rule}"
        if completions is None:
            # A work queue: done when one pod succeeded and none still runs.
            if succeeded > 0 and not active:
                return "CompletionsReached", MSG_COMPLETIONS
            return None
        if succeeded >= completions:
            return "CompletionsReached", MSG_COMPLETIONS
        return None

    async def _manage(
        self,
        key: str,
        job: Obj,
        active: list[Obj],
        terminating: list[Obj],
        out: _Outcome,
        succeeded: int,
    ) -> tuple[list[Obj], list[Obj], float | None]:
        """Create or delete pods towards min(parallelism, completions left)."""
        spec = job.get("spec") or {}
        parallelism = int(spec.get("parallelism") or 0)
        completions = spec.get("completions")
        indexed = spec.get("completionMode") == "Indexed"
        deleted: list[Obj] = []
        if indexed:
            # Pods of indexes done, failed or out of range, and duplicates, go.
            keep: dict[int, Obj] = {}
            extra: list[Obj] = []
            for pod in active:
                index = completion_index(pod)
                if (
                    index is None
                    or index >= int(completions or 0)
                    or index in out.completed
                    or index in out.failed_indexes
                    or index in keep
                ):
                    extra.append(pod)
                else:
                    keep[index] = pod
            if extra:
                deleted += await self._delete_pods(key, job, extra, len(extra))
                active = list(keep.values())
        if completions is None:
            want = len(active) if succeeded > 0 else parallelism
        else:
            want = max(min(int(completions) - succeeded, parallelism), 0)
        if len(active) > want:
            victims = pods_to_delete(active, active, len(active) - want, utcnow())
            deleted += await self._delete_pods(key, job, victims, len(victims))
            gone = {uid_of(p) for p in deleted}
            return [p for p in active if uid_of(p) not in gone], deleted, None
        missing = want - len(active)
        if only_replace_failed(job):
            missing -= len(terminating)
        if missing <= 0:
            return active, deleted, None
        record = self.backoff.get(key)
        if record is not None and record.failures:
            delay = backoff_delay(record.failures, self.backoff_base, self.backoff_cap)
            remaining = record.last_failure + delay - time.monotonic()
            if remaining > 0:
                return active, deleted, remaining
        missing = min(missing, MAX_POD_CHANGES_PER_SYNC)
        indexes: list[int | None] = [None] * missing
        if indexed:
            taken = set(out.completed) | set(out.failed_indexes)
            taken |= {i for p in active if (i := completion_index(p)) is not None}
            taken |= {i for p in terminating if (i := completion_index(p)) is not None}
            free = (i for i in range(int(completions or 0)) if i not in taken)
            indexes = [i for _, i in zip(range(missing), free, strict=False)]
        await self._create_pods(key, job, indexes)
        return active, deleted, None

    def _failures_of_index(self, job: Obj, index: int) -> int:
        """Counted failures of an index so far: the most any of its failed pods carries + 1."""
        count = 0
        uid = uid_of(job)
        for pod in self.pod_informer.indexer.by_index("ownerUID", uid):
            if completion_index(pod) != index or not is_pod_failed(pod, job):
                continue
            match = match_pod_failure_policy(job, pod)
            if match is not None and match.action == "Ignore":
                continue
            count = max(count, index_failure_count(pod) + 1)
        return count

    async def _create_pods(self, key: str, job: Obj, indexes: list[int | None]) -> None:
        if not indexes:
            return
        self.expectations.expect_creations(key, len(indexes))
        owner_ref = new_controller_ref(job, "batch/v1", "Job")
        per_index = (job.get("spec") or {}).get("backoffLimitPerIndex") is not None
        pending = list(indexes)

        async def create() -> None:
            index = pending.pop(0)
            failures = (
                self._failures_of_index(job, index) if per_index and index is not None else None
            )
            body = pod_for_job(job, owner_ref, index, failures)
            await create_controlled_pod(self.client, self.recorder, job, body)

        created, error = await slow_start_batch(len(indexes), create)
        for _ in range(len(indexes) - created):
            self.expectations.creation_observed(key)
        if error is not None:
            raise error

    async def _delete_pods(self, key: str, job: Obj, pods: list[Obj], count: int) -> list[Obj]:
        """Delete up to count pods; returns those deleted."""
        victims = [p for p in pods if not is_deleting(p)][: min(count, MAX_POD_CHANGES_PER_SYNC)]
        if not victims:
            return []
        self.expectations.expect_deletions(key, [object_key(p) for p in victims])
        deleted: list[Obj] = []
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
                self.expectations.deletion_observed(key, object_key(pod))
                if isinstance(e, (NotFound, Conflict)):
                    return
                self.recorder.event(job, WARNING, "FailedDelete", f"Error deleting: {e.message}")
                errors.append(e)
                return
            deleted.append(pod)
            self.recorder.event(job, NORMAL, "SuccessfulDelete", f"Deleted pod: {m.get('name')}")

        async with trio.open_nursery() as nursery:
            for pod in victims:
                nursery.start_soon(delete, pod)
        if errors:
            raise errors[0]
        return deleted

    async def _write_status(self, job: Obj, status: Obj) -> Obj:
        """Write status if it changed. A conflict is raised: the sync runs again on a fresh
        copy, since counting on a stale one could count a pod twice."""
        if status == (job.get("status") or {}):
            return job
        body = dict(job)
        body["status"] = status
        try:
            fresh = await self.client.update_status(JOBS, body)
        except NotFound:
            return job
        self.written[object_key(job)] = resource_version_of(fresh)
        return fresh

    def _next_look(
        self,
        job: Obj,
        status: Obj,
        requeue: float | None,
        finishing: tuple[str, str] | None,
    ) -> float | None:
        """When to look again without an event: a back-off ending, or a deadline."""
        delays = [] if requeue is None else [requeue]
        spec = job.get("spec") or {}
        deadline = spec.get("activeDeadlineSeconds")
        start = status.get("startTime")
        if deadline is not None and start and finishing is None and not spec.get("suspend"):
            left = deadline - (utcnow() - parse_time(start)).total_seconds()
            delays.append(max(left, 0.0) + 0.05)
        return min(delays) if delays else None


def _older(job: Obj, written: str | None) -> bool:
    """Whether the cached job predates our last write (resourceVersions are revisions)."""
    if not written:
        return False
    try:
        return int(resource_version_of(job)) < int(written)
    except ValueError:
        return False


def _uncounted(succeeded: set[str], failed: set[str]) -> Obj:
    out: Obj = {}
    if succeeded:
        out["succeeded"] = sorted(succeeded)
    if failed:
        out["failed"] = sorted(failed)
    return out
