"""Pod status as the kubelet computes it: phase, container states, conditions, patches."""

from __future__ import annotations

from typing import Any

from k8slite.kubelet import status
from k8slite.kubelet.probes import Prober, ProbeResult
from k8slite.kubelet.runtime.base import ContainerState, ContainerStatus
from k8slite.kubelet.status import ContainerRecord, PodView


def cs(
    name: str,
    state: ContainerState,
    exit_code: int | None = None,
    restart: int = 0,
    cid: str = "c1",
) -> ContainerStatus:
    return ContainerStatus(
        id=cid,
        name=name,
        restart_count=restart,
        state=state,
        image="img",
        image_ref="sha256:1",
        created_at=1.0,
        started_at=10.0,
        finished_at=20.0 if state is ContainerState.EXITED else None,
        exit_code=exit_code,
        reason="" if exit_code is None else ("Completed" if exit_code == 0 else "Error"),
    )


def pod(
    policy: str = "Always",
    inits: tuple[str, ...] = (),
    names: tuple[str, ...] = ("a",),
    **extra: Any,
) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "spec": {
            "restartPolicy": policy,
            "initContainers": [{"name": n, "image": "img"} for n in inits],
            "containers": [{"name": n, "image": "img"} for n in names],
            **extra,
        },
    }


def records(p: dict[str, Any], **current: ContainerStatus | None) -> dict[str, ContainerRecord]:
    out = {}
    for c in p["spec"]["initContainers"]:
        out[c["name"]] = ContainerRecord(c["name"], init=True, current=current.get(c["name"]))
    for c in p["spec"]["containers"]:
        out[c["name"]] = ContainerRecord(c["name"], current=current.get(c["name"]))
    return out


def test_phase_follows_upstream_rules() -> None:
    p = pod()
    assert status.phase(p["spec"], records(p)) == "Pending"
    assert status.phase(p["spec"], records(p, a=cs("a", ContainerState.RUNNING))) == "Running"
    done = records(p, a=cs("a", ContainerState.EXITED, 0))
    assert status.phase(p["spec"], done) == "Running"  # Always restarts it
    assert status.phase(pod("Never")["spec"], done) == "Succeeded"
    failed = records(p, a=cs("a", ContainerState.EXITED, 2))
    assert status.phase(pod("Never")["spec"], failed) == "Failed"
    assert status.phase(pod("OnFailure")["spec"], failed) == "Running"
    assert status.phase(pod("OnFailure")["spec"], done) == "Succeeded"
    two = pod("Never", names=("a", "b"))
    assert (
        status.phase(
            two["spec"],
            records(two, a=cs("a", ContainerState.EXITED, 0), b=cs("b", ContainerState.RUNNING)),
        )
        == "Running"
    )


def test_phase_with_init_containers() -> None:
    p = pod("Never", inits=("i",))
    assert status.phase(p["spec"], records(p, i=cs("i", ContainerState.RUNNING))) == "Pending"
    assert status.phase(p["spec"], records(p, i=cs("i", ContainerState.EXITED, 1))) == "Failed"
    p = pod("Always", inits=("i",))
    assert status.phase(p["spec"], records(p, i=cs("i", ContainerState.EXITED, 1))) == "Pending"
    ok = records(p, i=cs("i", ContainerState.EXITED, 0), a=cs("a", ContainerState.RUNNING))
    assert status.phase(p["spec"], ok) == "Running"


def test_container_status_states() -> None:
    spec = {"name": "a", "image": "busybox:1.35"}
    rec = ContainerRecord("a")
    assert status.container_status(spec, rec, "docker", "ContainerCreating")["state"] == {
        "waiting": {"reason": "ContainerCreating"}
    }
    rec.current = cs("a", ContainerState.EXITED, 1, restart=2, cid="new")
    rec.previous = cs("a", ContainerState.EXITED, 1, restart=1, cid="old")
    out = status.container_status(spec, rec, "docker", "ContainerCreating")
    assert out["state"]["terminated"]["containerID"] == "docker://new"
    assert out["lastState"]["terminated"]["containerID"] == "docker://old"
    assert out["restartCount"] == 2 and out["image"] == "busybox:1.35"
    # Held back by a back-off: waiting, and the exited instance is the last state.
    rec.waiting = ("CrashLoopBackOff", "back-off 10s restarting failed container=a")
    out = status.container_status(spec, rec, "docker", "ContainerCreating")
    assert out["state"] == {
        "waiting": {
            "reason": "CrashLoopBackOff",
            "message": "back-off 10s restarting failed container=a",
        }
    }
    assert out["lastState"]["terminated"]["containerID"] == "docker://new"
    assert out["lastState"]["terminated"]["startedAt"] == "1970-01-01T00:00:10Z"
    assert list(out) == [
        "name",
        "state",
        "lastState",
        "ready",
        "restartCount",
        "image",
        "imageID",
        "containerID",
        "started",
    ]


def test_conditions_keep_transition_times_and_foreign_conditions() -> None:
    p = pod(names=("a", "b"), readinessGates=[{"conditionType": "example.com/gate"}])
    recs = records(
        p, a=cs("a", ContainerState.RUNNING), b=cs("b", ContainerState.RUNNING, cid="c2")
    )
    recs["a"].ready = True
    previous = [
        {
            "type": "ContainersReady",
            "status": "False",
            "lastTransitionTime": "2020-01-01T00:00:00Z",
        },
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2019-01-01T00:00:00Z"},
        {"type": "example.com/gate", "status": "True"},
    ]
    conds = {c["type"]: c for c in status.conditions(p["spec"], recs, "Running", True, previous)}
    assert conds["ContainersReady"]["message"] == "containers with unready status: [b]"
    assert conds["ContainersReady"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert conds["PodScheduled"]["lastTransitionTime"] == "2019-01-01T00:00:00Z"
    assert conds["example.com/gate"]["status"] == "True"
    recs["b"].ready = True
    conds = {c["type"]: c for c in status.conditions(p["spec"], recs, "Running", True, previous)}
    assert conds["Ready"]["status"] == "True"
    previous[2]["status"] = "False"
    conds = {c["type"]: c for c in status.conditions(p["spec"], recs, "Running", True, previous)}
    assert conds["Ready"]["status"] == "False"
    assert conds["Ready"]["reason"] == "ReadinessGatesNotReady"


def test_pod_status_and_patch() -> None:
    p = pod(inits=("i",))
    recs = records(p)
    view = PodView("docker", "127.0.0.1", ["10.244.0.5"], True, "2024-01-01T00:00:00Z")
    st = status.pod_status(p, recs, view, [])
    assert st["phase"] == "Pending"
    assert st["podIP"] == "10.244.0.5" and st["hostIPs"] == [{"ip": "127.0.0.1"}]
    assert st["initContainerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    old = {"phase": "Pending", "qosClass": "BestEffort", "message": "stale"}
    patch = status.status_patch(old, st)
    assert patch is not None and "phase" not in patch and patch["message"] is None
    assert "qosClass" not in patch
    assert status.status_patch(st, st) is None


async def _fail() -> ProbeResult:
    return ProbeResult(False, "nope")


async def test_startup_prober_reports_its_failure() -> None:
    prober = Prober("startup", {"failureThreshold": 2, "periodSeconds": 0.01}, _fail)
    assert not prober.observe(ProbeResult(False, "1"))
    assert prober.observe(ProbeResult(False, "2")) and prober.failed and not prober.healthy
    again = Prober("startup", {"failureThreshold": 3, "periodSeconds": 0.01}, _fail)
    await again.run(lambda p: None)  # returns once it failed
    assert again.failed and again.last == ProbeResult(False, "nope")
