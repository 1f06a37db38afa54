"""The Job, TTL-after-finished and pod GC controllers' pure logic, and Job validation."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from k8slite.api.job_v1 import JobStrategy
from k8slite.api.validation import FieldErrors
from k8slite.component.objects import Obj
from k8slite.controllers.jobutil import (
    backoff_delay,
    completion_index,
    format_indexes,
    is_pod_failed,
    match_pod_failure_policy,
    parse_indexes,
    pod_for_job,
    success_policy_rule,
)
from k8slite.controllers.podgc import failed_status_patch, terminated_to_delete
from k8slite.controllers.ttlafterfinished import time_left


@pytest.mark.parametrize(
    ("indexes", "text"),
    [([], ""), ([0], "0"), ([1, 3, 4, 5], "1,3-5"), ([5, 4, 0, 1, 2, 9], "0-2,4-5,9")],
)
def test_index_intervals_round_trip(indexes: list[int], text: str) -> None:
    assert format_indexes(indexes) == text
    assert parse_indexes(text) == set(indexes)


def test_parse_indexes_drops_out_of_range_and_garbage() -> None:
    assert parse_indexes("0-3,7,x,9-12", limit=10) == {0, 1, 2, 3, 7, 9}


def failed_pod(code: int, container: str = "main", conditions: Any = ()) -> Obj:
    return {
        "metadata": {"name": "p", "namespace": "ns"},
        "status": {
            "phase": "Failed",
            "conditions": list(conditions),
            "containerStatuses": [
                {"name": container, "state": {"terminated": {"exitCode": code}}},
                {"name": "side", "state": {"terminated": {"exitCode": 0}}},
            ],
        },
    }


POLICY_JOB: Obj = {
    "spec": {
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "Ignore",
                    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                },
                {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
                {
                    "action": "FailJob",
                    "onExitCodes": {"containerName": "main", "operator": "NotIn", "values": [1, 3]},
                },
                {"action": "Count", "onExitCodes": {"operator": "In", "values": [1]}},
            ]
        }
    }
}


def test_failure_policy_matches_rules_in_order() -> None:
    assert match_pod_failure_policy(POLICY_JOB, failed_pod(3)).action == "Ignore"  # type: ignore[union-attr]
    fail = match_pod_failure_policy(POLICY_JOB, failed_pod(42))
    assert fail is not None and fail.action == "FailJob"
    assert fail.message == (
        "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 2"
    )
    assert match_pod_failure_policy(POLICY_JOB, failed_pod(1)).action == "Count"  # type: ignore[union-attr]
    # NotIn names a container: another container's exit code does not match it.
    assert match_pod_failure_policy(POLICY_JOB, failed_pod(42, container="other")) is None
    disrupted = failed_pod(1, conditions=[{"type": "DisruptionTarget", "status": "True"}])
    match = match_pod_failure_policy(POLICY_JOB, disrupted)
    assert match is not None and match.action == "Ignore"
    assert (
        match.message == "Pod ns/p has condition DisruptionTarget matching Ignore rule at index 0"
    )


def test_failure_policy_only_judges_failed_pods() -> None:
    pod = failed_pod(42)
    pod["status"]["phase"] = "Running"
    assert match_pod_failure_policy(POLICY_JOB, pod) is None


def test_deleted_pods_count_as_failed_unless_only_failed_are_replaced() -> None:
    pod: Obj = {
        "metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"},
        "status": {"phase": "Running"},
    }
    assert is_pod_failed(pod, {"spec": {"podReplacementPolicy": "TerminatingOrFailed"}})
    assert not is_pod_failed(pod, {"spec": {"podReplacementPolicy": "Failed"}})
    pod["status"]["phase"] = "Succeeded"
    assert not is_pod_failed(pod, {"spec": {}})


def test_backoff_doubles_from_ten_seconds_up_to_six_minutes() -> None:
    assert [backoff_delay(n) for n in range(0, 8)] == [0, 10, 20, 40, 80, 160, 320, 360]
    assert backoff_delay(1000) == 360


def test_indexed_pod_carries_its_index() -> None:
    job: Obj = {
        "metadata": {"name": "work", "namespace": "ns", "uid": "u"},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "w"}},
                "spec": {"subdomain": "svc", "containers": [{"name": "c", "image": "i"}]},
            }
        },
    }
    pod = pod_for_job(job, {"uid": "u"}, 4, 2)
    m = pod["metadata"]
    assert m["generateName"] == "work-4-"
    assert m["annotations"]["batch.kubernetes.io/job-completion-index"] == "4"
    assert m["annotations"]["batch.kubernetes.io/job-index-failure-count"] == "2"
    assert m["labels"] == {"app": "w", "batch.kubernetes.io/job-completion-index": "4"}
    assert m["finalizers"] == ["batch.kubernetes.io/job-tracking"]
    assert pod["spec"]["hostname"] == "work-4" and pod["spec"]["subdomain"] == "svc"
    env = pod["spec"]["containers"][0]["env"]
    assert env[0]["name"] == "JOB_COMPLETION_INDEX"
    assert completion_index(pod) == 4
    plain = pod_for_job(job, {"uid": "u"}, None, None)
    assert plain["metadata"]["generateName"] == "work-"
    assert "annotations" not in plain["metadata"] and "hostname" not in plain["spec"]
    assert completion_index(plain) is None


def test_success_policy_rules() -> None:
    job: Obj = {
        "spec": {
            "completions": 10,
            "successPolicy": {
                "rules": [
                    {"succeededIndexes": "0,2"},
                    {"succeededIndexes": "5-9", "succeededCount": 2},
                ]
            },
        }
    }
    assert success_policy_rule(job, {0}) is None
    assert success_policy_rule(job, {0, 2}) == 0
    assert success_policy_rule(job, {1, 5, 9}) == 1
    assert success_policy_rule({"spec": {}}, {0}) is None


def test_ttl_counts_from_the_finish() -> None:
    job: Obj = {
        "metadata": {},
        "spec": {"ttlSecondsAfterFinished": 100},
        "status": {
            "conditions": [
                {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ]
        },
    }
    now = dt.datetime(2026, 1, 1, 0, 1, tzinfo=dt.UTC)
    assert time_left(job, now) == 40
    job["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:30Z"
    assert time_left(job, now) is None
    assert time_left({"metadata": {}, "spec": {"ttlSecondsAfterFinished": 1}}, now) is None


def _pod(name: str, created: str, phase: str) -> Obj:
    return {"metadata": {"name": name, "creationTimestamp": created}, "status": {"phase": phase}}


def test_pod_gc_deletes_the_oldest_terminated_beyond_the_threshold() -> None:
    pods = [
        _pod("new", "2026-01-03T00:00:00Z", "Succeeded"),
        _pod("run", "2026-01-01T00:00:00Z", "Running"),
        _pod("old", "2026-01-01T00:00:00Z", "Failed"),
        _pod("mid", "2026-01-02T00:00:00Z", "Succeeded"),
    ]
    assert [p["metadata"]["name"] for p in terminated_to_delete(pods, 1)] == ["old", "mid"]
    assert terminated_to_delete(pods, 3) == []
    assert terminated_to_delete(pods, 0) == []


def test_pod_gc_marks_running_pods_failed_with_disruption_target() -> None:
    patch = failed_status_patch(_pod("p", "", "Running"), "PodGC: node no longer exists")
    assert patch is not None and patch["status"]["phase"] == "Failed"
    cond = patch["status"]["conditions"][-1]
    assert (cond["type"], cond["reason"]) == ("DisruptionTarget", "DeletionByPodGC")
    assert failed_status_patch(_pod("p", "", "Succeeded"), "x") is None


def new_job(**spec: Any) -> Obj:
    job: Obj = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j", "namespace": "ns", "uid": "1234"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox"}],
                }
            },
            **spec,
        },
    }
    strategy = JobStrategy()
    strategy.default(job)
    strategy.prepare_create(job)
    return job


def messages(job: Obj) -> list[str]:
    errs = FieldErrors()
    JobStrategy().validate(job, errs, True)
    return [f"{c['field']}: {c['message']}" for c in errs.causes]


def test_job_defaults_and_generated_selector() -> None:
    job = new_job()
    spec = job["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "1234"}}
    assert spec["template"]["metadata"]["labels"] == {
        "batch.kubernetes.io/controller-uid": "1234",
        "batch.kubernetes.io/job-name": "j",
        "controller-uid": "1234",
        "job-name": "j",
    }
    assert job["metadata"]["labels"] == spec["template"]["metadata"]["labels"]
    assert messages(job) == []
    per_index = new_job(completionMode="Indexed", completions=3, backoffLimitPerIndex=1)
    assert per_index["spec"]["backoffLimit"] == 2**31 - 1
    assert new_job(parallelism=3)["spec"].get("completions") is None


def test_job_validation_messages() -> None:
    job = new_job(completionMode="Indexed", backoffLimit=-1)
    job["spec"].pop("completions")
    job["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    assert messages(job) == [
        "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0",
        "spec.completions: Required value: when completion mode is Indexed",
        'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: '
        '"OnFailure", "Never"',
    ]
    wrong = new_job(maxFailedIndexes=1)
    assert messages(wrong) == [
        "spec.backoffLimitPerIndex: Required value: when maxFailedIndexes is specified"
    ]
    stolen = new_job()
    stolen["spec"]["template"]["metadata"]["labels"]["controller-uid"] = "other"
    assert messages(stolen) == [
        "spec.template.metadata.labels[controller-uid]: Invalid value: \"other\": must be '1234'"
    ]


def test_job_update_keeps_selector_and_completions() -> None:
    old = new_job()
    new = new_job(completions=2)
    new["spec"]["selector"] = {"matchLabels": {"x": "y"}}
    errs = FieldErrors()
    JobStrategy().validate_update(new, old, errs, True)
    fields = [c["field"] for c in errs.causes]
    assert "spec.selector" in fields and "spec.completions" in fields
