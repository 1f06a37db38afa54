"""batch/v1 CronJob: defaults and validation, with upstream's messages."""

from __future__ import annotations

from k8slite.api.core_v1 import default_pod_spec, validate_pod_spec
from k8slite.api.cronschedule import ScheduleError, parse, zone_problem
from k8slite.api.strategy import Obj, Strategy, register
from k8slite.api.validation import FieldErrors, check_non_negative

# A Job is named <cronjob>-<minutes since the epoch>: 11 characters of the 63 a label allows.
MAX_NAME = 52
CONCURRENCY_POLICIES = ["Allow", "Forbid", "Replace"]


def _pod_spec(obj: Obj) -> Obj | None:
    template = (((obj.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}).get(
        "template"
    )
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        return template["spec"]
    return None


@register("batch", "CronJob")
class CronJobStrategy(Strategy):
    tracks_generation = True

    def default(self, obj: Obj) -> None:
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        pod_spec = _pod_spec(obj)
        if pod_spec is not None:
            default_pod_spec(pod_spec)

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        name = (obj.get("metadata") or {}).get("name") or ""
        if len(name) > MAX_NAME:
            errs.invalid("metadata.name", name, f"must be no more than {MAX_NAME} characters")
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            errs.required("spec")
            return
        schedule = spec.get("schedule")
        zone = spec.get("timeZone")
        if not schedule:
            errs.required("spec.schedule")
        elif not isinstance(schedule, str):
            errs.invalid("spec.schedule", schedule, "must be a string")
        elif "TZ" in schedule:
            errs.invalid(
                "spec.schedule",
                schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            )
        else:
            try:
                parse(schedule)
            except ScheduleError as e:
                errs.invalid("spec.schedule", schedule, str(e))
        if zone is not None:
            problem = zone_problem(zone) if isinstance(zone, str) else "must be a string"
            if problem:
                errs.invalid("spec.timeZone", zone, problem)
        policy = spec.get("concurrencyPolicy")
        if policy not in CONCURRENCY_POLICIES:
            errs.not_supported("spec.concurrencyPolicy", policy, CONCURRENCY_POLICIES)
        for field in (
            "startingDeadlineSeconds",
            "successfulJobsHistoryLimit",
            "failedJobsHistoryLimit",
        ):
            check_non_negative(errs, f"spec.{field}", spec.get(field))
        job_spec = (spec.get("jobTemplate") or {}).get("spec")
        if not isinstance(job_spec, dict) or not isinstance(job_spec.get("template"), dict):
            errs.required("spec.jobTemplate.spec.template")
            return
        path = "spec.jobTemplate.spec.template.spec"
        pod_spec = job_spec["template"].get("spec")
        validate_pod_spec(errs, path, pod_spec)
        policy = (pod_spec or {}).get("restartPolicy")
        if policy not in ("OnFailure", "Never"):
            errs.not_supported(f"{path}.restartPolicy", policy, ["OnFailure", "Never"])
