"""Jobs end to end: a real API server, controller manager and kubelet (process runtime), and
the real kubectl. Pods are bound to the kubelet's node by their template (no scheduler)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from k8slite.client import ApiClient, NotFound
from k8slite.client.resource import EVENTS, JOBS, PODS
from k8slite.component.objects import Obj
from tests.conftest import ServerHandle
from tests.integration.controller_harness import (
    ManagerHandle,
    admin_config,
    create_namespace,
    kubectl,
    start_controller_manager,
    wait_for,
)
from tests.integration.kubelet_harness import (
    BUSYBOX,
    KubeletProcess,
    remove_process_leftovers,
    retire_node,
    unique_node,
    wait_idle,
)

TRACKING = "batch.kubernetes.io/job-tracking"


@pytest.fixture(scope="module")
def manager(module_apiserver: ServerHandle) -> Iterator[ManagerHandle]:
    handle = start_controller_manager(
        module_apiserver,
        "--job-pod-failure-backoff=50ms",
        "--controllers=*,-pod-garbage-collector-controller",
    )
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def node(module_apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    name = unique_node("job-proc")
    workdir: Path = tmp_path_factory.mktemp(name)
    proc = KubeletProcess(module_apiserver, name, "process", workdir)
    try:
        proc.start()
        yield name
    finally:
        if proc.proc is not None:
            retire_node(module_apiserver, name)
            wait_idle(proc)
        proc.stop()
        remove_process_leftovers(workdir)


@pytest.fixture
async def kube(
    module_apiserver: ServerHandle, manager: ManagerHandle, node: str
) -> AsyncIterator[ApiClient]:
    async with ApiClient(admin_config(module_apiserver)) as client:
        yield client


@pytest.fixture
async def ns(kube: ApiClient) -> str:
    return await create_namespace(kube, "job")


def job(name: str, node: str, script: str, **spec: Any) -> Obj:
    pod_spec = spec.pop("pod_spec", {})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "nodeName": node,
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {"name": "main", "image": BUSYBOX, "command": ["sh", "-c", script]}
                    ],
                    **pod_spec,
                }
            },
            **spec,
        },
    }


def condition(obj: Obj, ctype: str) -> Obj | None:
    for cond in (obj.get("status") or {}).get("conditions") or ():
        if cond["type"] == ctype and cond["status"] == "True":
            return cond  # type: ignore[no-any-return]
    return None


async def finished(kube: ApiClient, ns: str, name: str, ctype: str) -> Obj:
    async def done() -> Obj | None:
        j = await kube.get(JOBS, name, namespace=ns)
        return j if condition(j, ctype) else None

    result: Obj = await wait_for(done, timeout=60, interval=0.2, message=f"job {name} {ctype}")
    return result


async def job_pods(kube: ApiClient, ns: str) -> list[Obj]:
    return list((await kube.list(PODS, namespace=ns))["items"])


async def reasons(kube: ApiClient, ns: str, name: str) -> list[str]:
    events = await kube.list(EVENTS, namespace=ns, field_selector=f"involvedObject.name={name}")
    return [e["reason"] for e in events["items"]]


async def test_parallel_job_completes_and_kubectl_shows_it(
    kube: ApiClient, ns: str, node: str, module_apiserver: ServerHandle
) -> None:
    await kube.create(
        JOBS, job("five", node, "echo done", completions=5, parallelism=2), namespace=ns
    )
    seen_active: set[int] = set()

    async def complete() -> Obj | None:
        j = await kube.get(JOBS, "five", namespace=ns)
        seen_active.add(int(j["status"].get("active") or 0))
        return j if condition(j, "Complete") else None

    done = await wait_for(complete, timeout=60, interval=0.1, message="job complete")
    status = done["status"]
    assert status["succeeded"] == 5 and status.get("failed", 0) == 0
    assert max(seen_active) <= 2
    assert status["completionTime"] and status["startTime"]
    assert condition(done, "SuccessCriteriaMet")["reason"] == "CompletionsReached"  # type: ignore[index]
    assert condition(done, "Complete")["message"] == "Reached expected number of succeeded pods"  # type: ignore[index]
    assert status["uncountedTerminatedPods"] == {}
    pods = await job_pods(kube, ns)
    assert len(pods) == 5
    assert all(TRACKING not in (p["metadata"].get("finalizers") or ()) for p in pods)
    labels = pods[0]["metadata"]["labels"]
    assert labels["batch.kubernetes.io/job-name"] == "five" == labels["job-name"]
    assert labels["batch.kubernetes.io/controller-uid"] == done["metadata"]["uid"]
    # The real kubectl: wait, get (1.35's columns), logs of a job.
    out = await kubectl(
        module_apiserver, "wait", "--for=condition=complete", "job/five", "-n", ns, "--timeout=30s"
    )
    assert "job.batch/five condition met" in out
    table = await kubectl(module_apiserver, "get", "jobs", "-n", ns)
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert row.split()[:3] == ["five", "Complete", "5/5"]
    logs = await kubectl(module_apiserver, "logs", "job/five", "-n", ns)
    assert logs.strip() == "done"
    assert "Completed" in await reasons(kube, ns, "five")


async def test_indexed_job_pods_see_their_index(
    kube: ApiClient, ns: str, node: str, module_apiserver: ServerHandle
) -> None:
    spec = job(
        "idx",
        node,
        'echo "$JOB_COMPLETION_INDEX $(hostname)"',
        completions=3,
        parallelism=3,
        completionMode="Indexed",
    )
    await kube.create(JOBS, spec, namespace=ns)
    done = await finished(kube, ns, "idx", "Complete")
    assert done["status"]["completedIndexes"] == "0-2"
    assert done["status"]["succeeded"] == 3
    by_index = {}
    for pod in await job_pods(kube, ns):
        index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        assert pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == index
        assert pod["spec"]["hostname"] == f"idx-{index}"
        assert pod["metadata"]["name"].startswith(f"idx-{index}-")
        by_index[index] = pod["metadata"]["name"]
    assert sorted(by_index) == ["0", "1", "2"]
    for index, pod_name in by_index.items():
        logs = await kubectl(module_apiserver, "logs", pod_name, "-n", ns)
        assert logs.split()[0] == index


async def test_failing_job_stops_at_backoff_limit(kube: ApiClient, ns: str, node: str) -> None:
    await kube.create(JOBS, job("fail", node, "exit 1", backoffLimit=2), namespace=ns)
    done = await finished(kube, ns, "fail", "Failed")
    cond = condition(done, "Failed")
    assert cond is not None
    assert cond["reason"] == "BackoffLimitExceeded"
    assert cond["message"] == "Job has reached the specified backoff limit"
    assert condition(done, "FailureTarget") is not None
    assert done["status"]["failed"] == 3
    assert len(await job_pods(kube, ns)) == 3
    assert "BackoffLimitExceeded" in await reasons(kube, ns, "fail")


async def test_pod_failure_policy_ignore_and_fail_job(kube: ApiClient, ns: str, node: str) -> None:
    # The first pod exits 3 (ignored: not counted, replaced); the second exits 42: FailJob.
    script = "if [ -e /tmp/$MARK ]; then rm /tmp/$MARK; exit 42; fi; touch /tmp/$MARK; exit 3"
    spec = job(
        "pfp",
        node,
        script,
        backoffLimit=0,
        podFailurePolicy={
            "rules": [
                {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
                {
                    "action": "FailJob",
                    "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]},
                },
            ]
        },
    )
    spec["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "MARK", "value": f"k8slite-pfp-{ns}"}
    ]
    created = await kube.create(JOBS, spec, namespace=ns)
    assert created["spec"]["podReplacementPolicy"] == "Failed"
    done = await finished(kube, ns, "pfp", "Failed")
    cond = condition(done, "Failed")
    assert cond is not None and cond["reason"] == "PodFailurePolicy"
    assert cond["message"].startswith("Container main for pod ")
    assert cond["message"].endswith("failed with exit code 42 matching FailJob rule at index 1")
    # The ignored failure is not counted; the FailJob one is.
    assert done["status"]["failed"] == 1
    assert len(await job_pods(kube, ns)) == 2


async def test_ttl_after_finished_deletes_the_job(kube: ApiClient, ns: str, node: str) -> None:
    await kube.create(JOBS, job("ttl", node, "true", ttlSecondsAfterFinished=1), namespace=ns)
    # Not waiting to see it Complete: a second later it may be gone already. The TTL
    # controller deletes finished Jobs only, so its going proves both.

    async def gone() -> bool:
        try:
            await kube.get(JOBS, "ttl", namespace=ns)
        except NotFound:
            return not await job_pods(kube, ns)
        return False

    await wait_for(gone, timeout=60, interval=0.2, message="the job and its pods gone")


async def test_suspend_and_resume(
    kube: ApiClient, ns: str, node: str, module_apiserver: ServerHandle
) -> None:
    await kube.create(
        JOBS, job("sus", node, "sleep 30", parallelism=2, completions=2), namespace=ns
    )

    async def running() -> bool:
        j = await kube.get(JOBS, "sus", namespace=ns)
        return int(j["status"].get("active") or 0) == 2

    await wait_for(running, timeout=30, message="two active pods")
    await kubectl(
        module_apiserver, "patch", "job", "sus", "-n", ns, "-p", '{"spec":{"suspend":true}}'
    )

    async def suspended() -> Obj | None:
        j = await kube.get(JOBS, "sus", namespace=ns)
        active = int(j["status"].get("active") or 0)
        pods = [p for p in await job_pods(kube, ns) if p["status"].get("phase") == "Running"]
        return j if condition(j, "Suspended") and active == 0 and not pods else None

    j = await wait_for(suspended, timeout=60, interval=0.2, message="suspended with no pods")
    cond = condition(j, "Suspended")
    assert cond is not None and cond["reason"] == "JobSuspended"
    table = await kubectl(module_apiserver, "get", "job", "sus", "-n", ns, "--no-headers")
    assert table.split()[1] == "Suspended"
    # Resume with a job that finishes quickly now: the template may not change, so patch
    # parallelism back and let the pods run; they sleep, so just see them come back.
    await kubectl(
        module_apiserver, "patch", "job", "sus", "-n", ns, "-p", '{"spec":{"suspend":false}}'
    )

    async def resumed() -> Obj | None:
        j = await kube.get(JOBS, "sus", namespace=ns)
        cond = next(c for c in j["status"]["conditions"] if c["type"] == "Suspended")
        return j if cond["status"] == "False" and j["status"].get("active") == 2 else None

    j = await wait_for(resumed, timeout=60, interval=0.2, message="resumed with two pods")
    cond = next(c for c in j["status"]["conditions"] if c["type"] == "Suspended")
    assert cond["reason"] == "JobResumed"
    assert {"Suspended", "Resumed"} <= set(await reasons(kube, ns, "sus"))
    await kube.delete(JOBS, "sus", namespace=ns, propagation_policy="Background")


async def test_pod_deleted_early_is_still_counted(kube: ApiClient, ns: str, node: str) -> None:
    await kube.create(JOBS, job("early", node, "sleep 30", backoffLimit=3), namespace=ns)

    async def first_pod() -> Obj | None:
        pods = await job_pods(kube, ns)
        return pods[0] if pods and pods[0]["status"].get("phase") == "Running" else None

    pod = await wait_for(first_pod, timeout=30, message="a running pod")
    assert TRACKING in pod["metadata"]["finalizers"]
    name = pod["metadata"]["name"]
    await kube.delete(PODS, name, namespace=ns, grace_period_seconds=0)

    async def counted() -> Obj | None:
        j = await kube.get(JOBS, "early", namespace=ns)
        return j if j["status"].get("failed") == 1 else None

    await wait_for(counted, timeout=30, message="the deleted pod counted as failed")

    async def released() -> bool:
        try:
            await kube.get(PODS, name, namespace=ns)
        except NotFound:
            return True
        return False

    await wait_for(released, timeout=30, message="the pod gone once counted")
    j = await kube.get(JOBS, "early", namespace=ns)
    assert j["status"]["uncountedTerminatedPods"] == {}
    await kube.delete(JOBS, "early", namespace=ns, propagation_policy="Background")


async def test_validation_and_defaults(
    kube: ApiClient, ns: str, node: str, module_apiserver: ServerHandle, tmp_path: Path
) -> None:
    created = await kube.create(JOBS, job("defaults", node, "true", suspend=True), namespace=ns)
    spec = created["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert spec["completionMode"] == "NonIndexed" and spec["manualSelector"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    uid = created["metadata"]["uid"]
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert created["metadata"]["labels"]["job-name"] == "defaults"
    bad = job("bad", node, "true")
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    manifest = tmp_path / "bad.json"
    manifest.write_text(json.dumps(bad))
    out = await kubectl(module_apiserver, "create", "-n", ns, "-f", str(manifest), check=False)
    assert (
        'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: '
        '"OnFailure", "Never"' in out
    )
    explain = await kubectl(module_apiserver, "explain", "job.spec.podFailurePolicy")
    assert "rules" in explain


async def test_active_deadline_fails_the_job(kube: ApiClient, ns: str, node: str) -> None:
    await kube.create(JOBS, job("late", node, "sleep 30", activeDeadlineSeconds=2), namespace=ns)
    done = await finished(kube, ns, "late", "Failed")
    cond = condition(done, "Failed")
    assert cond is not None and cond["reason"] == "DeadlineExceeded"
    assert cond["message"] == "Job was active longer than specified deadline"
    assert done["status"]["active"] == 0
    assert "DeadlineExceeded" in await reasons(kube, ns, "late")


async def test_backoff_limit_per_index(kube: ApiClient, ns: str, node: str) -> None:
    spec = job(
        "per-index",
        node,
        '[ "$JOB_COMPLETION_INDEX" = 1 ] && exit 1; exit 0',
        completions=3,
        parallelism=3,
        completionMode="Indexed",
        backoffLimitPerIndex=1,
    )
    created = await kube.create(JOBS, spec, namespace=ns)
    assert created["spec"]["backoffLimit"] == 2**31 - 1
    done = await finished(kube, ns, "per-index", "Failed")
    status = done["status"]
    assert condition(done, "Failed")["reason"] == "FailedIndexes"  # type: ignore[index]
    assert (status["completedIndexes"], status["failedIndexes"]) == ("0,2", "1")
    assert status["failed"] == 2 and status["succeeded"] == 2
    retried = [
        p
        for p in await job_pods(kube, ns)
        if p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "1"
    ]
    counts = sorted(
        p["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"] for p in retried
    )
    assert counts == ["0", "1"]


async def test_success_policy_ends_the_job_early(kube: ApiClient, ns: str, node: str) -> None:
    spec = job(
        "leader",
        node,
        '[ "$JOB_COMPLETION_INDEX" = 0 ] && exit 0; sleep 30',
        completions=3,
        parallelism=3,
        completionMode="Indexed",
        successPolicy={"rules": [{"succeededIndexes": "0"}]},
    )
    await kube.create(JOBS, spec, namespace=ns)
    done = await finished(kube, ns, "leader", "Complete")
    for ctype in ("SuccessCriteriaMet", "Complete"):
        cond = condition(done, ctype)
        assert cond is not None and cond["reason"] == "SuccessPolicy"
        assert cond["message"] == "Matched rules at index 0"
    assert done["status"]["completedIndexes"] == "0"
    assert done["status"]["active"] == 0
