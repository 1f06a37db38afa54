"""The TTL-after-finished controller: delete finished Jobs ttlSecondsAfterFinished later."""

from __future__ import annotations

import datetime as dt
import logging

from k8slite.api.meta import parse_time
from k8slite.client import NotFound
from k8slite.client.resource import JOBS
from k8slite.component.objects import Obj, get_condition, is_deleting, meta, uid_of
from k8slite.controllers.base import Controller, ControllerContext
from k8slite.controllers.podutil import utcnow

log = logging.getLogger(__name__)


def finish_time(job: Obj) -> dt.datetime | None:
    """When the job finished: its Complete or Failed condition's transition (None if not)."""
    for ctype in ("Complete", "Failed"):
        cond = get_condition(job.get("status"), ctype)
        if cond is not None and cond.get("status") == "True" and cond.get("lastTransitionTime"):
            return parse_time(cond["lastTransitionTime"])
    return None


def time_left(job: Obj, now: dt.datetime) -> float | None:
    """Seconds until the job expires (<= 0: expired); None if it never does (yet)."""
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    if ttl is None or is_deleting(job):
        return None
    finished = finish_time(job)
    if finished is None:
        return None
    return (finished + dt.timedelta(seconds=int(ttl)) - now).total_seconds()


class TTLAfterFinishedController(Controller):
    name = "ttl-after-finished-controller"
    queue_name = "ttl_jobs_to_delete"

    def __init__(self, ctx: ControllerContext, workers: int = 5) -> None:
        super().__init__(ctx, workers)
        self.job_informer = ctx.informers.informer(JOBS)
        self.job_informer.add_event_handler(self._job_changed, self._job_updated, None)

    def _job_changed(self, job: Obj) -> None:
        if time_left(job, utcnow()) is not None:
            self.enqueue(job)

    def _job_updated(self, old: Obj, new: Obj) -> None:
        self._job_changed(new)

    async def sync(self, key: str) -> float | None:
        namespace, name = key.split("/", 1)
        job = self.job_informer.get(name, namespace)
        if job is None:
            return None
        left = time_left(job, utcnow())
        if left is None:
            return None
        if left > 0:
            return left
        # The cache may be old: the TTL may have been changed or the job restarted.
        try:
            fresh = await self.client.get(JOBS, name, namespace=namespace)
        except NotFound:
            return None
        left = time_left(fresh, utcnow())
        if left is None:
            return None
        if left > 0:
            return left
        log.info("deleting job %s: its TTL after finishing expired", key)
        # As upstream: in the foreground, so the job goes only after its pods.
        try:
            await self.client.delete(
                JOBS,
                name,
                namespace=namespace,
                propagation_policy="Foreground",
                preconditions={
                    "uid": uid_of(fresh),
                    "resourceVersion": meta(fresh)["resourceVersion"],
                },
            )
        except NotFound:
            pass
        return None
