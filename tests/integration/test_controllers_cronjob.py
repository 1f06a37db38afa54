"""CronJobs against a real API server: the controller runs in the test process with a clock
the test moves, so minutes pass at once; Jobs are finished by writing their status, as the
Job controller would. The real kubectl creates CronJobs and Jobs from them."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator

import pytest
import trio
from prometheus_client import CollectorRegistry

from k8slite.api.meta import parse_time
from k8slite.client import ApiClient, NotFound, SharedInformerFactory, load_kubeconfig
from k8slite.client.resource import CRONJOBS, EVENTS, JOBS
from k8slite.component.events import EventBroadcaster
from k8slite.component.objects import Obj
from k8slite.controllers.base import ControllerContext, ControllerOptions
from k8slite.controllers.cronjob import CronJobController
from tests.conftest import ServerHandle
from tests.integration.controller_harness import (
    admin_config,
    create_namespace,
    kubectl,
    manager_kubeconfig,
    start_controller_manager,
    wait_for,
)


class Clock:
    """The controller's now: starts at the real time, moves only when the test says."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


@dataclasses.dataclass
class Running:
    controller: CronJobController
    clock: Clock

    def reset(self) -> None:
        """Back to the real time, before a CronJob is made (its creation time is real)."""
        self.clock.now = dt.datetime.now(dt.UTC)

    def advance_to(self, t: dt.datetime, cj: Obj) -> None:
        """Move time on and look at the CronJob now (its timer was set for real time)."""
        self.clock.now = t
        self.controller.queue.add(f"{cj['metadata']['namespace']}/{cj['metadata']['name']}")


@pytest.fixture
async def kube(module_apiserver: ServerHandle) -> AsyncIterator[ApiClient]:
    async with ApiClient(admin_config(module_apiserver)) as client:
        yield client


@pytest.fixture
async def running(module_apiserver: ServerHandle, nursery: trio.Nursery) -> AsyncIterator[Running]:
    """The CronJob controller with the controller manager's identity and a test clock."""
    config = load_kubeconfig(manager_kubeconfig(module_apiserver))
    clients: list[ApiClient] = []

    def client_for(name: str) -> ApiClient:
        client = ApiClient(dataclasses.replace(config, qps=0, user_agent=f"test/{name}"))
        clients.append(client)
        return client

    factory = SharedInformerFactory(client_for("informers"))
    broadcaster = EventBroadcaster(client_for("events"), host="test")
    registry = CollectorRegistry()
    ctx = ControllerContext(client_for, factory, broadcaster, ControllerOptions(), registry)
    clock = Clock()
    controller = CronJobController(ctx, 2, clock=clock)
    async with trio.open_nursery() as inner:
        inner.start_soon(broadcaster.run)
        await factory.start(inner)
        await factory.wait_for_cache_sync()
        await inner.start(controller.run)
        yield Running(controller, clock)
        inner.cancel_scope.cancel()
    for client in clients:
        await client.aclose()


@pytest.fixture
async def ns(kube: ApiClient) -> str:
    return await create_namespace(kube, "cj")


def cronjob(name: str, schedule: str = "* * * * *", **spec: object) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {
                "metadata": {"labels": {"cron": name}},
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "c", "image": "busybox:1.35"}],
                        }
                    }
                },
            },
            **spec,
        },
    }


def minute_after(t: dt.datetime, minutes: int) -> dt.datetime:
    """A few seconds into the minute that is `minutes` after t's minute."""
    base = t.replace(second=0, microsecond=0)
    return base + dt.timedelta(minutes=minutes, seconds=5)


async def jobs(kube: ApiClient, ns: str) -> list[Obj]:
    items = (await kube.list(JOBS, namespace=ns))["items"]
    return sorted(
        (j for j in items if not j["metadata"].get("deletionTimestamp")),
        key=lambda j: j["metadata"]["name"],
    )


async def job_count(kube: ApiClient, ns: str, want: int) -> list[Obj] | None:
    got = await jobs(kube, ns)
    return got if len(got) == want else None


async def finish(kube: ApiClient, job: Obj, outcome: str) -> None:
    """Write what the Job controller writes when a Job ends."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    first = "SuccessCriteriaMet" if outcome == "Complete" else "FailureTarget"
    status: Obj = {
        "startTime": now,
        "conditions": [
            {"type": first, "status": "True", "lastTransitionTime": now},
            {"type": outcome, "status": "True", "lastTransitionTime": now},
        ],
    }
    if outcome == "Complete":
        status.update(succeeded=1, completionTime=now)
    else:
        status.update(failed=1)
    fresh = await kube.get(JOBS, job["metadata"]["name"], namespace=job["metadata"]["namespace"])
    fresh["status"] = status
    await kube.update_status(JOBS, fresh)


async def status_of(kube: ApiClient, ns: str, name: str) -> Obj:
    return (await kube.get(CRONJOBS, name, namespace=ns)).get("status") or {}


async def reasons(kube: ApiClient, ns: str, name: str) -> list[str]:
    listed = await kube.list(EVENTS, namespace=ns, field_selector=f"involvedObject.name={name}")
    return [e["reason"] for e in listed["items"]]


# ------------------------------------------------------------------- tests


async def test_jobs_per_schedule_and_history_limits(
    kube: ApiClient, ns: str, running: Running
) -> None:
    cj = await kube.create(
        CRONJOBS,
        cronjob("report", successfulJobsHistoryLimit=2, failedJobsHistoryLimit=1),
        namespace=ns,
    )
    assert cj["spec"]["concurrencyPolicy"] == "Allow" and cj["spec"]["suspend"] is False
    created = parse_time(cj["metadata"]["creationTimestamp"])
    t = minute_after(created, 1)
    running.advance_to(t, cj)
    [job] = await wait_for(lambda: job_count(kube, ns, 1), message="the first Job")
    scheduled = t.replace(second=0)
    assert job["metadata"]["name"] == f"report-{int(scheduled.timestamp()) // 60}"
    assert job["metadata"]["labels"]["cron"] == "report"
    assert job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] == (
        scheduled.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    ref = job["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["controller"]) == ("CronJob", "report", True)

    async def active_is(names: list[str]) -> Obj | None:
        status = await status_of(kube, ns, "report")
        got = [a["name"] for a in status.get("active") or ()]
        return status if got == names else None

    status = await wait_for(lambda: active_is([job["metadata"]["name"]]), message="active")
    assert status["lastScheduleTime"] == scheduled.strftime("%Y-%m-%dT%H:%M:%SZ")
    await finish(kube, job, "Complete")
    status = await wait_for(lambda: active_is([]), message="the Job seen complete")
    assert "lastSuccessfulTime" in status

    # Two more successes: only the newest two are kept.
    for i in (2, 3):
        t = minute_after(created, i)
        running.advance_to(t, cj)
        got = await wait_for(lambda i=i: job_count(kube, ns, i), message=f"Job {i}")  # type: ignore[misc]
        newest = max(got, key=lambda j: j["metadata"]["name"])
        await finish(kube, newest, "Complete")
        await wait_for(lambda: active_is([]), message=f"Job {i} complete")
    remaining = await wait_for(lambda: job_count(kube, ns, 2), message="history pruned to 2")
    assert job["metadata"]["name"] not in {j["metadata"]["name"] for j in remaining}

    # Two failures: one is kept.
    for i in (4, 5):
        running.advance_to(minute_after(created, i), cj)
        expected = [f"report-{int(scheduled.timestamp()) // 60 + i - 1}"]
        await wait_for(lambda expected=expected: active_is(expected), message=f"Job {i}")  # type: ignore[misc]
        active = (await status_of(kube, ns, "report"))["active"][0]["name"]
        await finish(kube, await kube.get(JOBS, active, namespace=ns), "Failed")
        await wait_for(lambda: active_is([]), message=f"Job {i} failed")

    async def failed_left() -> bool:
        current = await jobs(kube, ns)
        failed = [j for j in current if j["status"].get("failed")]
        return len(failed) == 1 and len(current) == 3

    await wait_for(failed_left, message="one failed Job kept")
    got = set(await reasons(kube, ns, "report"))
    assert {"SuccessfulCreate", "SawCompletedJob", "SuccessfulDelete"} <= got


async def test_forbid_replace_suspend_and_missed_runs(
    kube: ApiClient, ns: str, running: Running
) -> None:
    forbid = await kube.create(
        CRONJOBS, cronjob("forbid", concurrencyPolicy="Forbid"), namespace=ns
    )
    created = parse_time(forbid["metadata"]["creationTimestamp"])
    running.advance_to(minute_after(created, 1), forbid)
    [first] = await wait_for(lambda: job_count(kube, ns, 1), message="forbid's first Job")
    running.advance_to(minute_after(created, 2), forbid)

    async def skipped() -> bool:
        return "JobAlreadyActive" in await reasons(kube, ns, "forbid")

    await wait_for(skipped, message="JobAlreadyActive")
    assert [j["metadata"]["name"] for j in await jobs(kube, ns)] == [first["metadata"]["name"]]
    await kube.delete(CRONJOBS, "forbid", namespace=ns)
    await kube.delete(JOBS, first["metadata"]["name"], namespace=ns)

    async def none_left() -> bool:
        return not await jobs(kube, ns)

    await wait_for(none_left, message="forbid's Job gone")

    running.reset()
    replace = await kube.create(
        CRONJOBS, cronjob("replace", concurrencyPolicy="Replace"), namespace=ns
    )
    created = parse_time(replace["metadata"]["creationTimestamp"])
    running.advance_to(minute_after(created, 1), replace)
    [old] = await wait_for(lambda: job_count(kube, ns, 1), message="replace's first Job")
    running.advance_to(minute_after(created, 2), replace)

    async def replaced() -> Obj | None:
        current = await jobs(kube, ns)
        names = [j["metadata"]["name"] for j in current]
        return current[0] if len(names) == 1 and names != [old["metadata"]["name"]] else None

    new = await wait_for(replaced, message="the running Job replaced")
    status = await status_of(kube, ns, "replace")
    assert [a["name"] for a in status["active"]] == [new["metadata"]["name"]]

    # Suspended: time passes, nothing starts.
    replace = await kube.get(CRONJOBS, "replace", namespace=ns)
    replace["spec"]["suspend"] = True
    await kube.update(CRONJOBS, replace)
    running.advance_to(minute_after(created, 3), replace)
    await trio.sleep(1.0)
    assert len(await jobs(kube, ns)) == 1
    await kube.delete(CRONJOBS, "replace", namespace=ns, propagation_policy="Background")

    # Down for three hours: one catch-up run, for the latest time, and a warning.
    running.reset()
    late = await kube.create(CRONJOBS, cronjob("late"), namespace=ns)
    created = parse_time(late["metadata"]["creationTimestamp"])
    running.advance_to(minute_after(created, 180), late)

    async def late_jobs() -> list[Obj] | None:
        mine = [j for j in await jobs(kube, ns) if j["metadata"]["name"].startswith("late-")]
        return mine or None

    [catch_up] = await wait_for(late_jobs, message="the catch-up Job")
    latest = minute_after(created, 180).replace(second=0)
    assert catch_up["metadata"]["name"] == f"late-{int(latest.timestamp()) // 60}"

    async def warned() -> bool:
        return "TooManyMissedTimes" in await reasons(kube, ns, "late")

    await wait_for(warned, message="TooManyMissedTimes")

    # A starting deadline too short for the time that passed: the run is missed.
    running.reset()
    strict = await kube.create(
        CRONJOBS, cronjob("strict", "*/30 * * * *", startingDeadlineSeconds=10), namespace=ns
    )
    created = parse_time(strict["metadata"]["creationTimestamp"])
    # Five minutes past a half hour, two hours on: the last start is older than 10 s.
    half_hour = created.replace(minute=created.minute // 30 * 30, second=0, microsecond=0)
    running.advance_to(half_hour + dt.timedelta(hours=2, minutes=5), strict)
    await trio.sleep(1.0)
    assert not [j for j in await jobs(kube, ns) if j["metadata"]["name"].startswith("strict-")]


async def test_validation_and_kubectl(
    kube: ApiClient, ns: str, module_apiserver: ServerHandle
) -> None:
    path = f"/apis/batch/v1/namespaces/{ns}/cronjobs"
    with module_apiserver.client() as http:
        bad = cronjob("bad", "61 * * * *", timeZone="Mars/Olympus", concurrencyPolicy="Often")
        r = http.post(path, json=bad)
        assert r.status_code == 422, r.text
        causes = {c["field"]: c["message"] for c in r.json()["details"]["causes"]}
        assert causes["spec.schedule"] == (
            'Invalid value: "61 * * * *": end of range (61) above maximum (59): 61'
        )
        assert causes["spec.timeZone"] == (
            'Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus'
        )
        assert causes["spec.concurrencyPolicy"].startswith('Unsupported value: "Often"')
        r = http.post(path, json=cronjob("x" * 53))
        assert r.status_code == 422
        assert "must be no more than 52 characters" in r.text

    out = await kubectl(
        module_apiserver,
        "-n",
        ns,
        "create",
        "cronjob",
        "nightly",
        "--image=busybox:1.35",
        "--schedule=0 3 * * *",
        "--",
        "true",
    )
    assert out.strip() == "cronjob.batch/nightly created"
    cj = await kube.get(CRONJOBS, "nightly", namespace=ns)
    tz_cj = cronjob("zoned", "@daily", timeZone="Europe/Paris")
    await kube.create(CRONJOBS, tz_cj, namespace=ns)
    lines = (await kubectl(module_apiserver, "-n", ns, "get", "cronjobs")).splitlines()
    assert lines[0].split() == [
        "NAME",
        "SCHEDULE",
        "TIMEZONE",
        "SUSPEND",
        "ACTIVE",
        "LAST",
        "SCHEDULE",
        "AGE",
    ]
    rows = {line.split()[0]: line for line in lines[1:]}
    nightly = ["0", "3", "*", "*", "*", "<none>", "False", "0", "<none>"]
    assert rows["nightly"].split()[1:10] == nightly
    assert rows["zoned"].split()[1:6] == ["@daily", "Europe/Paris", "False", "0", "<none>"]

    out = await kubectl(
        module_apiserver, "-n", ns, "create", "job", "by-hand", "--from=cronjob/nightly"
    )
    assert out.strip() == "job.batch/by-hand created"
    job = await kube.get(JOBS, "by-hand", namespace=ns)
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job["metadata"]["ownerReferences"][0]["uid"] == cj["metadata"]["uid"]
    with pytest.raises(NotFound):
        await kube.get(CRONJOBS, "bad", namespace=ns)


async def test_controller_manager_runs_cronjobs(fresh_apiserver: ServerHandle) -> None:
    """The controller manager's own cronjob controller, on the real clock: a CronJob whose
    last run was minutes ago starts the Job of the current minute at once."""
    manager = start_controller_manager(fresh_apiserver, "--controllers=cronjob")
    try:
        async with ApiClient(admin_config(fresh_apiserver)) as kube:
            ns = await create_namespace(kube, "cjm")
            # Suspended until its status says it last ran long ago.
            cj = await kube.create(CRONJOBS, cronjob("tick", suspend=True), namespace=ns)
            past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
            cj["status"] = {"lastScheduleTime": past.strftime("%Y-%m-%dT%H:%M:%SZ")}
            cj = await kube.update_status(CRONJOBS, cj)
            cj["spec"]["suspend"] = False
            await kube.update(CRONJOBS, cj)
            [job] = await wait_for(lambda: job_count(kube, ns, 1), message="a Job at once")
            minute = int(dt.datetime.now(dt.UTC).timestamp()) // 60
            assert job["metadata"]["name"] in (f"tick-{minute}", f"tick-{minute - 1}")

            async def one_active() -> bool:
                out = await kubectl(fresh_apiserver, "-n", ns, "get", "cronjob", "tick")
                return out.splitlines()[1].split()[7:9] == ["False", "1"]  # SUSPEND ACTIVE

            await wait_for(one_active, message="ACTIVE 1")
            out = await kubectl(fresh_apiserver, "-n", ns, "describe", "cronjob", "tick")
            assert "SuccessfulCreate" in out
    finally:
        manager.stop()
