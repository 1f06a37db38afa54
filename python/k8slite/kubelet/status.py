"""A pod's status as upstream's kubelet reports it, from what the pod worker knows of it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import trio

from k8slite.component.objects import Obj
from k8slite.kubelet.runtime.base import ContainerState, ContainerStatus

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
TERMINAL = (SUCCEEDED, FAILED)


@dataclass(eq=False)
class ContainerRecord:
    """One container of the pod spec: its latest and previous instances and the kubelet's view.

    `current` is the latest instance the runtime has, `previous` the one before it (reported
    as lastState); `waiting` is why the kubelet holds the container back (CrashLoopBackOff,
    ErrImagePull, CreateContainerConfigError, ...).
    """

    name: str
    init: bool = False
    sidecar: bool = False  # an init container with restartPolicy Always
    ephemeral: bool = False  # started once for debugging, never restarted, never ready
    current: ContainerStatus | None = None
    previous: ContainerStatus | None = None
    waiting: tuple[str, str] | None = None
    # CrashLoopBackOff: the delay before the next restart (0 for the first one).
    backoff: float = 0.0
    started: bool = False  # startup probe passed (or none)
    ready: bool = False  # readiness probe passed (or none)
    # A probe asked for the container to be killed and restarted: (probe kind, message).
    kill: tuple[str, str] | None = None
    probes: trio.CancelScope | None = field(default=None, repr=False)

    @property
    def state(self) -> ContainerState | None:
        return None if self.current is None else self.current.state

    @property
    def running(self) -> bool:
        return self.state is ContainerState.RUNNING

    @property
    def restart_count(self) -> int:
        return 0 if self.current is None else self.current.restart_count

    def exited_ok(self) -> bool:
        return (
            self.state is ContainerState.EXITED
            and self.current is not None
            and self.current.exit_code == 0
        )


def rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _terminated(cs: ContainerStatus, runtime: str) -> Obj:
    out: Obj = {
        "exitCode": cs.exit_code if cs.exit_code is not None else 0,
        "reason": cs.reason or ("Completed" if not cs.exit_code else "Error"),
    }
    if cs.message:
        out["message"] = cs.message
    out["startedAt"] = rfc3339(cs.started_at)
    out["finishedAt"] = rfc3339(cs.finished_at)
    out["containerID"] = f"{runtime}://{cs.id}"
    return out


def container_status(spec: Obj, rec: ContainerRecord, runtime: str, default_waiting: str) -> Obj:
    """One entry of containerStatuses / initContainerStatuses."""
    out: Obj = {
        "name": rec.name,
        "state": {},
        "lastState": {},
        "ready": False,
        "restartCount": rec.restart_count,
        "image": spec.get("image", ""),
        "imageID": "",
    }
    cur, prev = rec.current, rec.previous
    last = prev
    if cur is not None:
        out["imageID"] = cur.image_ref
        out["containerID"] = f"{runtime}://{cur.id}"
    out["started"] = False
    if cur is not None and cur.state is ContainerState.RUNNING:
        out["state"] = {"running": {"startedAt": rfc3339(cur.started_at)}}
        out["ready"] = rec.ready
        out["started"] = rec.started
    elif cur is not None and cur.state is ContainerState.EXITED:
        if rec.waiting is not None:
            # Waiting to be restarted: the exited instance is the last state.
            reason, message = rec.waiting
            out["state"] = {"waiting": _waiting(reason, message)}
            last = cur
        else:
            out["state"] = {"terminated": _terminated(cur, runtime)}
    else:
        reason, message = rec.waiting or (default_waiting, "")
        out["state"] = {"waiting": _waiting(reason, message)}
    if last is not None and last.state is ContainerState.EXITED:
        out["lastState"] = {"terminated": _terminated(last, runtime)}
    return out


def _waiting(reason: str, message: str) -> Obj:
    return {"reason": reason, "message": message} if message else {"reason": reason}


def phase(spec: Obj, records: dict[str, ContainerRecord]) -> str:
    """upstream's getPhase: Pending, Running, Succeeded or Failed from container states."""
    policy = spec.get("restartPolicy") or "Always"
    pending_init = failed_init = 0
    for c in spec.get("initContainers") or ():
        rec = records[c["name"]]
        if rec.sidecar:
            pending_init += 0 if rec.started and rec.running else 1
        elif rec.exited_ok():
            continue
        elif rec.state is ContainerState.EXITED:
            failed_init += 1
        else:
            pending_init += 1
    if failed_init and policy == "Never":
        return FAILED
    if pending_init or failed_init:
        return PENDING
    running = stopped = succeeded = waiting = 0
    for c in spec.get("containers") or ():
        rec = records[c["name"]]
        if rec.running:
            running += 1
        elif rec.state is ContainerState.EXITED:
            stopped += 1
            succeeded += rec.exited_ok()
        else:
            waiting += 1
    if waiting:
        return PENDING
    if running:
        return RUNNING
    if stopped:
        if policy == "Always":
            return RUNNING
        if stopped == succeeded:
            return SUCCEEDED
        return FAILED if policy == "Never" else RUNNING
    return PENDING


def _condition(type_: str, ok: bool, reason: str = "", message: str = "") -> Obj:
    out: Obj = {"type": type_, "status": "True" if ok else "False", "lastProbeTime": None}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def conditions(
    spec: Obj,
    records: dict[str, ContainerRecord],
    pod_phase: str,
    sandbox_ready: bool,
    previous: list[Obj],
) -> list[Obj]:
    """PodReadyToStartContainers, Initialized, Ready, ContainersReady, PodScheduled (and any
    other condition someone else set), lastTransitionTime kept where the status held."""
    old = {c.get("type"): c for c in previous}
    done = pod_phase == SUCCEEDED
    init_names = [c["name"] for c in spec.get("initContainers") or ()]
    incomplete = [
        n
        for n in init_names
        if not (
            records[n].exited_ok()
            if not records[n].sidecar
            else records[n].started and records[n].running
        )
    ]
    names = [c["name"] for c in spec.get("containers") or ()]
    names += [n for n in init_names if records[n].sidecar]
    unready = [n for n in names if not (records[n].running and records[n].ready)]
    out = [_condition("PodReadyToStartContainers", sandbox_ready)]
    if done:
        out.append(_condition("Initialized", True, "PodCompleted"))
    elif incomplete:
        out.append(
            _condition(
                "Initialized",
                False,
                "ContainersNotInitialized",
                f"containers with incomplete status: [{' '.join(incomplete)}]",
            )
        )
    else:
        out.append(_condition("Initialized", True))
    if done or pod_phase == FAILED:
        ready_cond = _condition("ContainersReady", False, "PodCompleted")
    elif unready:
        ready_cond = _condition(
            "ContainersReady",
            False,
            "ContainersNotReady",
            f"containers with unready status: [{' '.join(unready)}]",
        )
    else:
        ready_cond = _condition("ContainersReady", True)
    ready = dict(ready_cond, type="Ready")
    gates = [g.get("conditionType") for g in spec.get("readinessGates") or ()]
    if ready["status"] == "True" and gates:
        missing = [g for g in gates if (old.get(g) or {}).get("status") != "True"]
        if missing:
            ready = _condition(
                "Ready",
                False,
                "ReadinessGatesNotReady",
                f'corresponding condition of pod readiness gate "{missing[0]}" does not exist.'
                if missing[0] not in old
                else f'the status of pod readiness gate "{missing[0]}" is '
                f'not "True", but {old[missing[0]].get("status")}',
            )
    out += [ready, ready_cond]
    ours = {c["type"] for c in out}
    out.append(old.get("PodScheduled") or _condition("PodScheduled", True))
    out += [c for t, c in old.items() if t not in ours and t != "PodScheduled"]
    now = rfc3339(dt.datetime.now(dt.UTC).timestamp())
    for c in out:
        prev = old.get(c["type"])
        if (
            prev is not None
            and prev.get("status") == c["status"]
            and prev.get("lastTransitionTime")
        ):
            c["lastTransitionTime"] = prev["lastTransitionTime"]
        elif "lastTransitionTime" not in c:
            c["lastTransitionTime"] = now
    return out


@dataclass
class PodView:
    """What the worker knows beyond the containers: addresses, times, terminal state."""

    runtime: str
    host_ip: str
    pod_ips: list[str]
    sandbox_ready: bool
    start_time: str | None
    phase: str | None = None  # latched once terminal
    reason: str = ""
    message: str = ""
    # Conditions the kubelet itself adds (DisruptionTarget when it evicts the pod).
    extra_conditions: list[Obj] = field(default_factory=list)


def pod_status(
    pod: Obj, records: dict[str, ContainerRecord], view: PodView, previous_conditions: list[Obj]
) -> Obj:
    """The whole status the kubelet reports (qosClass and nominatedNodeName stay the server's).

    previous_conditions are the conditions as last reported, for their transition times.
    """
    spec = pod.get("spec") or {}
    pod_phase = view.phase or phase(spec, records)
    init_specs = spec.get("initContainers") or []
    init_pending = any(
        not (records[c["name"]].exited_ok() or records[c["name"]].sidecar) for c in init_specs
    )
    status: Obj = {
        "phase": pod_phase,
        "conditions": conditions(
            spec,
            records,
            pod_phase,
            view.sandbox_ready,
            [*previous_conditions, *view.extra_conditions],
        ),
    }
    if view.reason:
        status["reason"] = view.reason
    if view.message:
        status["message"] = view.message
    status["hostIP"] = view.host_ip
    status["hostIPs"] = [{"ip": view.host_ip}]
    if view.pod_ips:
        status["podIP"] = view.pod_ips[0]
        status["podIPs"] = [{"ip": ip} for ip in view.pod_ips]
    if view.start_time:
        status["startTime"] = view.start_time
    if init_specs:
        status["initContainerStatuses"] = [
            container_status(c, records[c["name"]], view.runtime, "PodInitializing")
            for c in init_specs
        ]
    default = "PodInitializing" if init_pending else "ContainerCreating"
    status["containerStatuses"] = [
        container_status(c, records[c["name"]], view.runtime, default)
        for c in spec.get("containers") or ()
    ]
    ephemeral = [c for c in spec.get("ephemeralContainers") or () if c["name"] in records]
    if ephemeral:
        status["ephemeralContainerStatuses"] = [
            container_status(c, records[c["name"]], view.runtime, "ContainerCreating")
            for c in ephemeral
        ]
    return status


def status_patch(old: Obj, new: Obj) -> Obj | None:
    """The merge patch that turns status old into new; None when they are equal."""
    patch: Obj = {}
    for key, value in new.items():
        if old.get(key) != value:
            patch[key] = value
    for key in old:
        if key not in new and key not in ("qosClass", "nominatedNodeName", "resize"):
            patch[key] = None
    return patch or None
