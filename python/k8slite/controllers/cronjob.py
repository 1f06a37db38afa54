"""The CronJob controller: a Job per scheduled time, concurrency policy, history limits."""

from __future__ import annotations

import copy
import datetime as dt
import logging
from collections.abc import Callable
from zoneinfo import ZoneInfo

from k8slite.api.cronschedule import Schedule, ScheduleError, count_runs, parse, zone_problem
from k8slite.api.meta import parse_time
from k8slite.client import (
    OWNER_UID_INDEX,
    AlreadyExists,
    ApiError,
    DeletedFinalStateUnknown,
    NotFound,
    object_key,
)
from k8slite.client.resource import CRONJOBS, JOBS
from k8slite.component.events import NORMAL, WARNING
from k8slite.component.objects import (
    Obj,
    controller_ref,
    is_deleting,
    meta,
    name_of,
    namespace_of,
    uid_of,
)
from k8slite.controllers.base import Controller, ControllerContext
from k8slite.controllers.ownerref import new_controller_ref
from k8slite.controllers.podutil import utcnow
from k8slite.controllers.replicaset import is_namespace_terminating

log = logging.getLogger(__name__)

SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
# More missed start times than this since the last one is worth a warning (upstream's 100).
TOO_MANY_MISSED = 100
# Requeue a little after the next start time, so that it has surely passed.
NEXT_SCHEDULE_DELTA = 0.1


def stamp(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339(t: dt.datetime) -> str:
    """Go's time.RFC3339 of t in its own zone: Z for UTC, else the offset."""
    text = t.replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def job_name(cj: Obj, scheduled: dt.datetime) -> str:
    """<cronjob>-<scheduled time in minutes since the epoch>: one name per start time."""
    return f"{name_of(cj)}-{int(scheduled.timestamp()) // 60}"


def finished_condition(job: Obj) -> str | None:
    """ "Complete" or "Failed" once the Job has finished, else None."""
    for cond in (job.get("status") or {}).get("conditions") or ():
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


def job_from_template(cj: Obj, scheduled: dt.datetime) -> Obj:
    """The Job for one scheduled time, owned by the CronJob."""
    spec = cj.get("spec") or {}
    template = spec.get("jobTemplate") or {}
    tmeta = template.get("metadata") or {}
    zone = spec.get("timeZone")
    local = scheduled.astimezone(ZoneInfo(zone) if zone else dt.UTC)
    annotations = {**(tmeta.get("annotations") or {}), SCHEDULED_TIMESTAMP: rfc3339(local)}
    job_meta: Obj = {
        "name": job_name(cj, scheduled),
        "namespace": namespace_of(cj),
        "annotations": annotations,
        "ownerReferences": [new_controller_ref(cj, "batch/v1", "CronJob")],
    }
    if tmeta.get("labels"):
        job_meta["labels"] = dict(tmeta["labels"])
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": job_meta,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def missed_runs(
    cj: Obj, schedule: Schedule, now: dt.datetime, with_deadline: bool
) -> tuple[dt.datetime | None, int]:
    """(the most recent start time not yet run, how many were missed up to the limit).

    Counting starts at lastScheduleTime (else the creation time), or at now minus
    startingDeadlineSeconds if that is later: older start times are past saving.
    """
    spec = cj.get("spec") or {}
    earliest = _earliest(cj)
    deadline = spec.get("startingDeadlineSeconds")
    if with_deadline and deadline is not None:
        earliest = max(earliest, now - dt.timedelta(seconds=int(deadline)))
    most_recent = schedule.most_recent(earliest, now)
    if most_recent is None:
        return None, 0
    return most_recent, count_runs(schedule, earliest, now, TOO_MANY_MISSED + 1)


def _earliest(cj: Obj) -> dt.datetime:
    """Where counting start times begins: the last one run, else the creation time."""
    status = cj.get("status") or {}
    return parse_time(status.get("lastScheduleTime") or meta(cj)["creationTimestamp"])


def job_ref(job: Obj) -> Obj:
    m = meta(job)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": m.get("name"),
        "namespace": m.get("namespace"),
        "uid": m.get("uid"),
        "resourceVersion": m.get("resourceVersion"),
    }


class CronJobController(Controller):
    name = "cronjob-controller"
    queue_name = "cronjob"

    def __init__(
        self,
        ctx: ControllerContext,
        workers: int = 5,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        super().__init__(ctx, workers)
        self.clock = clock
        self.cj_informer = ctx.informers.informer(CRONJOBS)
        self.job_informer = ctx.informers.informer(JOBS)
        self.cj_informer.add_event_handler(self.enqueue, lambda _o, n: self.enqueue(n), self._gone)
        self.job_informer.add_event_handler(
            self._job_changed, lambda _o, n: self._job_changed(n), self._job_changed
        )

    def _gone(self, cj: Obj | DeletedFinalStateUnknown) -> None:
        self.queue.add(object_key(cj))

    def _job_changed(self, job: Obj | DeletedFinalStateUnknown) -> None:
        obj = job.obj if isinstance(job, DeletedFinalStateUnknown) else job
        ref = controller_ref(obj)
        if ref is None or ref.get("kind") != "CronJob":
            return
        cj = self.cj_informer.get(ref.get("name", ""), namespace_of(obj))
        if cj is not None and uid_of(cj) == ref.get("uid"):
            self.enqueue(cj)

    def _jobs_of(self, cj: Obj) -> list[Obj]:
        uid = uid_of(cj)
        return [
            j
            for j in self.job_informer.indexer.by_index(OWNER_UID_INDEX, uid)
            if (controller_ref(j) or {}).get("uid") == uid
        ]

    # -------------------------------------------------------------------- sync

    async def sync(self, key: str) -> float | None:
        namespace, name = key.split("/", 1)
        cached = self.cj_informer.get(name, namespace)
        if cached is None:
            return None
        cj = copy.deepcopy(cached)
        jobs = self._jobs_of(cj)
        status = cj.setdefault("status", {})
        before = copy.deepcopy(status)
        requeue: float | None = None
        error: ApiError | None = None
        try:
            requeue = await self._sync_cronjob(cj, jobs)
        except ApiError as e:
            error = e
        await self._cleanup_finished(cj, jobs)
        if cj["status"] != before:
            await self._update_status(cj)
        if error is not None:
            raise error
        return requeue

    async def _reconcile_jobs(self, cj: Obj, jobs: list[Obj]) -> None:
        status = cj["status"]
        active = list(status.get("active") or ())
        active_uids = {a.get("uid") for a in active}
        children = set()
        for job in jobs:
            uid = uid_of(job)
            children.add(uid)
            finished = finished_condition(job)
            if uid not in active_uids and finished is None:
                if await self._live_active(cj, uid):
                    continue  # our cache had not yet seen the status that lists it
                self.recorder.event(
                    cj,
                    WARNING,
                    "UnexpectedJob",
                    f"Saw a job that the controller did not create or forgot: {name_of(job)}",
                )
            elif uid in active_uids and finished is not None:
                active = [a for a in active if a.get("uid") != uid]
                self.recorder.event(
                    cj,
                    NORMAL,
                    "SawCompletedJob",
                    f"Saw completed job: {name_of(job)}, condition: {finished}",
                )
            if finished == "Complete":
                done = (job.get("status") or {}).get("completionTime")
                last = status.get("lastSuccessfulTime")
                if done and (not last or parse_time(done) > parse_time(last)):
                    status["lastSuccessfulTime"] = done
        for ref in list(active):
            if ref.get("uid") in children:
                continue
            # Our cache may lag a create: ask the API server before dropping it.
            try:
                await self.client.get(JOBS, ref.get("name", ""), namespace=ref.get("namespace"))
            except NotFound:
                self.recorder.event(
                    cj, NORMAL, "MissingJob", f"Active job went missing: {ref.get('name')}"
                )
                active = [a for a in active if a.get("uid") != ref.get("uid")]
        if active:
            status["active"] = active
        else:
            status.pop("active", None)

    async def _live_active(self, cj: Obj, uid: str) -> bool:
        try:
            fresh = await self.client.get(CRONJOBS, name_of(cj), namespace=namespace_of(cj))
        except NotFound:
            return False
        return any(a.get("uid") == uid for a in (fresh.get("status") or {}).get("active") or ())

    async def _sync_cronjob(self, cj: Obj, jobs: list[Obj]) -> float | None:
        """Reconcile status.active, then start the Job of the most recent start time if
        one is due; returns when to look again."""
        await self._reconcile_jobs(cj, jobs)
        if is_deleting(cj):
            return None
        spec = cj.get("spec") or {}
        zone = spec.get("timeZone")
        if zone is not None:
            problem = zone_problem(zone)
            if problem:
                self.recorder.event(
                    cj, WARNING, "UnknownTimeZone", f"invalid timeZone: {zone!r}: {problem}"
                )
                return None
        if spec.get("suspend"):
            return None
        try:
            schedule = parse(spec.get("schedule", ""), zone)
        except ScheduleError as e:
            self.recorder.event(
                cj,
                WARNING,
                "UnparseableSchedule",
                f"unparseable schedule: {spec.get('schedule')!r} : {e}",
            )
            return None
        now = self.clock()
        scheduled, missed = missed_runs(cj, schedule, now, with_deadline=True)
        if scheduled is None:
            return self._until_next(cj, schedule, now)
        if missed > TOO_MANY_MISSED:
            self.recorder.event(
                cj,
                WARNING,
                "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds "
                "or check clock skew",
            )
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and scheduled + dt.timedelta(seconds=int(deadline)) < now:
            self.recorder.event(
                cj,
                WARNING,
                "MissSchedule",
                "Missed scheduled time to start a job: "
                + scheduled.astimezone(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000"),
            )
            return self._until_next(cj, schedule, now)
        status = cj["status"]
        name = job_name(cj, scheduled)
        if any(a.get("name") == name for a in status.get("active") or ()) or status.get(
            "lastScheduleTime"
        ) == stamp(scheduled):
            return self._until_next(cj, schedule, now)
        policy = spec.get("concurrencyPolicy") or "Allow"
        if policy == "Forbid" and status.get("active"):
            self.recorder.event(
                cj,
                NORMAL,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy "
                "is Forbid",
            )
            return self._until_next(cj, schedule, now)
        if policy == "Replace":
            for ref in list(status.get("active") or ()):
                await self._delete_job(cj, ref.get("name", ""))
        job = await self._create_job(cj, scheduled)
        if job is None:
            return None
        status.setdefault("active", []).append(job_ref(job))
        status["lastScheduleTime"] = stamp(scheduled)
        return self._until_next(cj, schedule, now)

    def _until_next(self, cj: Obj, schedule: Schedule, now: dt.datetime) -> float | None:
        """Seconds until the start time after the most recent one (upstream's
        nextScheduleTimeDuration, a little later so the time has surely come)."""
        recent, _ = missed_runs(cj, schedule, now, with_deadline=False)
        following = schedule.next(recent or _earliest(cj))
        if following is None:
            return None
        return max(0.0, (following - now).total_seconds()) + NEXT_SCHEDULE_DELTA

    async def _create_job(self, cj: Obj, scheduled: dt.datetime) -> Obj | None:
        body = job_from_template(cj, scheduled)
        try:
            job = await self.client.create(JOBS, body, namespace=namespace_of(cj))
        except AlreadyExists:
            job = await self.client.get(JOBS, body["metadata"]["name"], namespace=namespace_of(cj))
            # Made by us before a crash, before the status said so: adopt it as active.
            ours = (controller_ref(job) or {}).get("uid") == uid_of(cj)
            active = {a.get("uid") for a in cj["status"].get("active") or ()}
            return job if ours and uid_of(job) not in active else None
        except ApiError as e:
            if not is_namespace_terminating(e):
                self.recorder.event(cj, WARNING, "FailedCreate", f"Error creating job: {e.message}")
            raise
        self.recorder.event(cj, NORMAL, "SuccessfulCreate", f"Created job {name_of(job)}")
        return job

    async def _delete_job(self, cj: Obj, name: str) -> None:
        """Delete a Job and its pods (background propagation), and forget it as active."""
        try:
            await self.client.delete(
                JOBS, name, namespace=namespace_of(cj), propagation_policy="Background"
            )
        except NotFound:
            pass
        except ApiError as e:
            self.recorder.event(cj, WARNING, "FailedDelete", f"Deleted job: {e.message}")
            raise
        else:
            self.recorder.event(cj, NORMAL, "SuccessfulDelete", f"Deleted job {name}")
        status = cj["status"]
        active = [a for a in status.get("active") or () if a.get("name") != name]
        if active:
            status["active"] = active
        else:
            status.pop("active", None)

    async def _cleanup_finished(self, cj: Obj, jobs: list[Obj]) -> None:
        """Keep successfulJobsHistoryLimit Complete and failedJobsHistoryLimit Failed Jobs."""
        spec = cj.get("spec") or {}
        for outcome, field in (
            ("Complete", "successfulJobsHistoryLimit"),
            ("Failed", "failedJobsHistoryLimit"),
        ):
            limit = spec.get(field)
            if limit is None:
                continue
            done = [j for j in jobs if finished_condition(j) == outcome and not is_deleting(j)]
            done.sort(key=_start_key)
            for job in done[: max(0, len(done) - int(limit))]:
                await self._delete_job(cj, name_of(job))

    async def _update_status(self, cj: Obj) -> None:
        # A conflict is raised: the sync reruns on a fresher cache rather than overwrite
        # an active list it has not seen.
        try:
            await self.client.update_status(CRONJOBS, cj)
        except NotFound:
            pass


def _start_key(job: Obj) -> tuple[str, str]:
    started = (job.get("status") or {}).get("startTime") or meta(job).get("creationTimestamp")
    return str(started or ""), name_of(job)
