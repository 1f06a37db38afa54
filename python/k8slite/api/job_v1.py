"""batch/v1 Job: defaults, the generated selector and pod labels, and validation."""

from __future__ import annotations

from typing import Any

from k8slite._native import LabelSelector, SelectorError
from k8slite.api.apps_v1 import go_map, go_selector
from k8slite.api.core_v1 import default_pod_spec, validate_pod_spec
from k8slite.api.strategy import Obj, Strategy, register
from k8slite.api.validation import FieldErrors, check_labels, check_non_negative
from k8slite.component.objects import labels_of, meta, uid_of

CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
LEGACY_CONTROLLER_UID_LABEL = "controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_JOB_NAME_LABEL = "job-name"
INT32_MAX = 2**31 - 1
# Upstream caps parallelism of Indexed Jobs and indexes with backoffLimitPerIndex.
MAX_PARALLELISM_INDEXED = 100_000
MAX_COMPLETIONS_PER_INDEX = 100_000
MAX_POD_FAILURE_POLICY_RULES = 20
MAX_EXIT_CODE_VALUES = 255
MAX_POD_CONDITION_PATTERNS = 20
MAX_SUCCESS_POLICY_RULES = 20
COMPLETION_MODES = ["NonIndexed", "Indexed"]
REPLACEMENT_POLICIES = ["Failed", "TerminatingOrFailed"]
FAILURE_ACTIONS = ["Count", "FailIndex", "FailJob", "Ignore"]
EXIT_CODE_OPERATORS = ["In", "NotIn"]


def _too_many(errs: FieldErrors, path: str, count: int, limit: int) -> None:
    errs.causes.append(
        {
            "reason": "FieldValueTooMany",
            "message": f"Too many: {count}: must have at most {limit} items",
            "field": path,
        }
    )


def default_job_spec(spec: Obj) -> None:
    """Upstream's SetDefaults_Job on a JobSpec (also a CronJob's job template)."""
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = INT32_MAX if spec.get("backoffLimitPerIndex") is not None else 6
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    policy = spec.get("podFailurePolicy")
    if isinstance(policy, dict):
        for rule in policy.get("rules") or ():
            for pattern in (rule or {}).get("onPodConditions") or ():
                if isinstance(pattern, dict) and not pattern.get("status"):
                    pattern["status"] = "True"
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = "Failed" if policy is not None else "TerminatingOrFailed"
    spec.setdefault("manualSelector", False)
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        default_pod_spec(template["spec"])


def generate_selector(job: Obj) -> None:
    """Select the job's own uid and label its pods with it and the job's name.

    Labels the user already set are kept: a conflicting one fails validation.
    """
    spec = job["spec"]
    template = spec.setdefault("template", {})
    tmeta = template.setdefault("metadata", {})
    labels = tmeta.get("labels")
    if not isinstance(labels, dict):
        labels = tmeta["labels"] = {}
    name, uid = meta(job).get("name") or "", uid_of(job)
    for key in (LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL):
        labels.setdefault(key, name)
    for key in (LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL):
        labels.setdefault(key, uid)
    selector = spec.get("selector")
    if not isinstance(selector, dict):
        selector = spec["selector"] = {}
    match = selector.get("matchLabels")
    if not isinstance(match, dict):
        match = selector["matchLabels"] = {}
    match.setdefault(CONTROLLER_UID_LABEL, uid)


def _manual(spec: Obj) -> bool:
    return spec.get("manualSelector") is True


def _validate_generated_selector(errs: FieldErrors, job: Obj) -> None:
    spec = job["spec"]
    if _manual(spec) or not isinstance(spec.get("selector"), dict):
        return
    uid = uid_of(job)
    if not uid:
        errs.required("metadata.uid")
    labels = labels_of(spec.get("template") or {})
    path = "spec.template.metadata.labels"
    for key, want in (
        (LEGACY_CONTROLLER_UID_LABEL, uid),
        (CONTROLLER_UID_LABEL, uid),
        (LEGACY_JOB_NAME_LABEL, meta(job).get("name")),
        (JOB_NAME_LABEL, meta(job).get("name")),
    ):
        if key not in labels:
            errs.required(f"{path}[{key}]", f"must be '{want}'")
        elif labels[key] != want:
            errs.invalid(f"{path}[{key}]", labels[key], f"must be '{want}'")
    try:
        selector = LabelSelector.from_dict(spec["selector"])
    except SelectorError:
        return  # reported by the selector check
    if not selector.matches({CONTROLLER_UID_LABEL: uid}):
        errs.invalid(
            "spec.selector", go_selector(spec["selector"]), "`selector` not auto-generated"
        )


def _validate_exit_codes(errs: FieldErrors, path: str, req: Any, containers: set[str]) -> None:
    if not isinstance(req, dict):
        return
    name = req.get("containerName")
    if name is not None and name not in containers:
        errs.invalid(
            f"{path}.containerName",
            name,
            "must be one of the container or initContainer names in the pod template",
        )
    operator = req.get("operator")
    if operator not in EXIT_CODE_OPERATORS:
        errs.not_supported(f"{path}.operator", operator, EXIT_CODE_OPERATORS)
    values = req.get("values")
    if not isinstance(values, list) or not values:
        errs.required(f"{path}.values")
        return
    if len(values) > MAX_EXIT_CODE_VALUES:
        _too_many(errs, f"{path}.values", len(values), MAX_EXIT_CODE_VALUES)
    previous: int | None = None
    seen: set[int] = set()
    for i, value in enumerate(values):
        if not isinstance(value, int):
            errs.invalid(f"{path}.values[{i}]", value, "must be an integer")
            continue
        if operator == "In" and value == 0:
            errs.invalid(
                f"{path}.values[{i}]",
                value,
                "must not be 0 for the In operator",
            )
        if value in seen:
            errs.duplicate(f"{path}.values[{i}]", value)
        if previous is not None and previous > value:
            errs.invalid(f"{path}.values[{i}]", value, "must be ordered")
        seen.add(value)
        previous = value


def _validate_pod_failure_policy(errs: FieldErrors, spec: Obj, containers: set[str]) -> None:
    policy = spec.get("podFailurePolicy")
    if policy is None:
        return
    rules = (policy or {}).get("rules")
    base = "spec.podFailurePolicy.rules"
    if not isinstance(rules, list):
        errs.required(base)
        return
    if len(rules) > MAX_POD_FAILURE_POLICY_RULES:
        _too_many(errs, base, len(rules), MAX_POD_FAILURE_POLICY_RULES)
    for i, rule in enumerate(rules):
        path = f"{base}[{i}]"
        rule = rule if isinstance(rule, dict) else {}
        action = rule.get("action")
        if action not in FAILURE_ACTIONS:
            errs.not_supported(f"{path}.action", action, FAILURE_ACTIONS)
        elif action == "FailIndex" and spec.get("backoffLimitPerIndex") is None:
            errs.forbidden(f"{path}.action", "requires the backoffLimitPerIndex to be set")
        exit_codes, conditions = rule.get("onExitCodes"), rule.get("onPodConditions")
        if exit_codes is not None and conditions:
            errs.invalid(
                path, "", "specifying both OnExitCodes and OnPodConditions is not supported"
            )
        elif exit_codes is None and not conditions:
            errs.invalid(path, "", "specifying one of OnExitCodes and OnPodConditions is required")
        if exit_codes is not None:
            _validate_exit_codes(errs, f"{path}.onExitCodes", exit_codes, containers)
        for j, pattern in enumerate(conditions or ()):
            pattern = pattern if isinstance(pattern, dict) else {}
            ppath = f"{path}.onPodConditions[{j}]"
            status = pattern.get("status")
            if status not in ("True", "False", "Unknown"):
                errs.not_supported(f"{ppath}.status", status, ["False", "True", "Unknown"])
            if not pattern.get("type"):
                errs.required(f"{ppath}.type")


def _validate_success_policy(errs: FieldErrors, spec: Obj) -> None:
    policy = spec.get("successPolicy")
    if policy is None:
        return
    base = "spec.successPolicy"
    if spec.get("completionMode") != "Indexed":
        errs.invalid(
            "spec.completionMode", spec.get("completionMode"), "requires indexed completion mode"
        )
    rules = (policy or {}).get("rules")
    if not isinstance(rules, list) or not rules:
        errs.required(f"{base}.rules")
        return
    if len(rules) > MAX_SUCCESS_POLICY_RULES:
        _too_many(errs, f"{base}.rules", len(rules), MAX_SUCCESS_POLICY_RULES)
    completions = spec.get("completions")
    for i, rule in enumerate(rules):
        rule = rule if isinstance(rule, dict) else {}
        path = f"{base}.rules[{i}]"
        indexes, count = rule.get("succeededIndexes"), rule.get("succeededCount")
        if indexes is None and count is None:
            errs.required(
                path, "at least one of succeededCount or succeededIndexes must be specified"
            )
        parsed: list[int] | None = None
        if indexes is not None:
            try:
                parsed = parse_indexes(str(indexes), completions)
            except ValueError as e:
                errs.invalid(
                    f"{path}.succeededIndexes", indexes, f"error parsing succeededIndexes: {e}"
                )
        if count is not None:
            if not isinstance(count, int) or count < 0:
                errs.invalid(f"{path}.succeededCount", count, "must be greater than or equal to 0")
            elif isinstance(completions, int) and count > completions:
                errs.invalid(
                    f"{path}.succeededCount",
                    count,
                    f"must be less than or equal to {completions} (the number of "
                    "specified completions)",
                )
            elif parsed is not None and count > len(parsed):
                errs.invalid(
                    f"{path}.succeededCount",
                    count,
                    f"must be less than or equal to {len(parsed)} (the number of "
                    "indexes in the specified succeededIndexes field)",
                )


def parse_indexes(text: str, completions: Any) -> list[int]:
    """Indexes of an interval string such as "0,2-4" (sorted, no overlap); ValueError if bad."""
    out: list[int] = []
    if not text:
        return out
    last = -1
    for part in text.split(","):
        lo_text, _, hi_text = part.partition("-")
        try:
            lo = int(lo_text)
            hi = int(hi_text) if hi_text else lo
        except ValueError:
            raise ValueError(f'cannot convert string to integer for index: "{part}"') from None
        if lo > hi:
            raise ValueError(f"first index must be less than or equal to the last index: {part}")
        if lo <= last:
            raise ValueError(f"overlapping or out-of-order intervals: {part}")
        if isinstance(completions, int) and hi >= completions:
            raise ValueError(f"too large index: {hi}")
        out.extend(range(lo, hi + 1))
        last = hi
    return out


def validate_job_spec(errs: FieldErrors, spec: Obj, kind_selector_required: bool = True) -> None:
    for name in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit"):
        check_non_negative(errs, f"spec.{name}", spec.get(name))
    check_non_negative(errs, "spec.ttlSecondsAfterFinished", spec.get("ttlSecondsAfterFinished"))
    mode = spec.get("completionMode")
    if mode not in COMPLETION_MODES:
        errs.not_supported("spec.completionMode", mode, COMPLETION_MODES)
    indexed = mode == "Indexed"
    completions, parallelism = spec.get("completions"), spec.get("parallelism")
    if indexed:
        if completions is None:
            errs.required("spec.completions", "when completion mode is Indexed")
        if isinstance(parallelism, int) and parallelism > MAX_PARALLELISM_INDEXED:
            errs.invalid(
                "spec.parallelism",
                parallelism,
                f"must be less than or equal to {MAX_PARALLELISM_INDEXED} when completion "
                "mode is Indexed",
            )
    per_index, max_failed = spec.get("backoffLimitPerIndex"), spec.get("maxFailedIndexes")
    if per_index is not None:
        check_non_negative(errs, "spec.backoffLimitPerIndex", per_index)
        if not indexed:
            errs.required(
                "spec.completionMode",
                'when backoffLimitPerIndex is specified, completionMode must be "Indexed"',
            )
    if max_failed is not None:
        check_non_negative(errs, "spec.maxFailedIndexes", max_failed)
        if per_index is None:
            errs.required("spec.backoffLimitPerIndex", "when maxFailedIndexes is specified")
        elif (
            isinstance(completions, int)
            and isinstance(max_failed, int)
            and max_failed > completions
        ):
            errs.invalid(
                "spec.maxFailedIndexes", max_failed, "must be less than or equal to completions"
            )
    replacement = spec.get("podReplacementPolicy")
    if replacement not in REPLACEMENT_POLICIES:
        errs.not_supported("spec.podReplacementPolicy", replacement, REPLACEMENT_POLICIES)
    elif spec.get("podFailurePolicy") is not None and replacement != "Failed":
        errs.not_supported("spec.podReplacementPolicy", replacement, ["Failed"])
    selector = spec.get("selector")
    template = spec.get("template")
    if not isinstance(selector, dict):
        if kind_selector_required:
            errs.required("spec.selector")
    else:
        check_labels(errs, "spec.selector.matchLabels", selector.get("matchLabels"))
        try:
            parsed = LabelSelector.from_dict(selector)
        except SelectorError as e:
            errs.invalid("spec.selector", go_selector(selector), str(e))
        else:
            labels = labels_of(template or {})
            if not parsed.is_empty() and not parsed.matches(labels):
                errs.invalid(
                    "spec.template.metadata.labels",
                    go_map(labels),
                    "`selector` does not match template `labels`",
                )
    if not isinstance(template, dict):
        errs.required("spec.template")
        return
    check_labels(errs, "spec.template.metadata.labels", labels_of(template))
    pod_spec = template.get("spec")
    validate_pod_spec(errs, "spec.template.spec", pod_spec)
    pod_spec = pod_spec if isinstance(pod_spec, dict) else {}
    restart = pod_spec.get("restartPolicy")
    if restart not in ("OnFailure", "Never"):
        errs.not_supported("spec.template.spec.restartPolicy", restart, ["OnFailure", "Never"])
    elif restart != "Never" and spec.get("podFailurePolicy") is not None:
        errs.invalid(
            "spec.template.spec.restartPolicy",
            restart,
            'only "Never" is supported when podFailurePolicy is specified',
        )
    containers = {
        str(c.get("name"))
        for key in ("containers", "initContainers")
        for c in pod_spec.get(key) or ()
        if isinstance(c, dict)
    }
    _validate_pod_failure_policy(errs, spec, containers)
    _validate_success_policy(errs, spec)


# Fields of a JobSpec that never change once set (upstream's ValidateJobSpecUpdate).
_IMMUTABLE = (
    "selector",
    "completionMode",
    "podFailurePolicy",
    "backoffLimitPerIndex",
    "managedBy",
)


@register("batch", "Job")
class JobStrategy(Strategy):
    tracks_generation = True

    def default(self, obj: Obj) -> None:
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            default_job_spec(spec)

    def prepare_create(self, obj: Obj) -> None:
        super().prepare_create(obj)
        spec = obj.get("spec")
        if isinstance(spec, dict) and not _manual(spec):
            generate_selector(obj)
        # Upstream defaults the job's labels to its template's (the generated ones too).
        template_labels = labels_of((spec or {}).get("template") or {})
        if template_labels and not labels_of(obj):
            obj["metadata"]["labels"] = dict(template_labels)

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            errs.required("spec")
            return
        validate_job_spec(errs, spec)
        _validate_generated_selector(errs, obj)

    def validate_update(self, new: Obj, old: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate_update(new, old, errs, namespaced)
        spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
        for name in _IMMUTABLE:
            if spec.get(name) != old_spec.get(name):
                errs.immutable(f"spec.{name}", _shown(spec.get(name)))
        completions = spec.get("completions")
        if completions != old_spec.get("completions"):
            # Elastic Indexed Jobs scale completions together with parallelism.
            elastic = spec.get("completionMode") == "Indexed" and completions == spec.get(
                "parallelism"
            )
            if not elastic:
                errs.immutable("spec.completions", completions)
        if spec.get("template") != old_spec.get("template") and not _template_mutable(old):
            errs.immutable("spec.template", _shown(spec.get("template")))

    def validate_status(self, new: Obj, old: Obj, errs: FieldErrors) -> None:
        status = new.get("status") or {}
        for name in ("active", "succeeded", "failed", "ready", "terminating"):
            check_non_negative(errs, f"status.{name}", status.get(name))


def _template_mutable(old: Obj) -> bool:
    """A suspended Job that never started may change its template's scheduling directives."""
    status = old.get("status") or {}
    return bool((old.get("spec") or {}).get("suspend")) and not status.get("startTime")


def _shown(value: Any) -> Any:
    """How a struct appears in an "is immutable" message (upstream prints a Go struct)."""
    return value if isinstance(value, (str, int)) or value is None else "{...}"
