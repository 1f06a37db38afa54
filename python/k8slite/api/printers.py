"""Table columns and cells per kind, as upstream's printers compute them for `kubectl get`.

Cells always include the wide (priority 1) columns; kubectl hides them unless -o wide.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from k8slite.api import meta
from k8slite.component.objects import Obj

Cell = str | int | bool


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "string"
    description: str = ""
    priority: int = 0
    format: str = ""

    def definition(self) -> Obj:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


NAME_DOC = (
    "Name must be unique within a namespace. Is required when creating resources, "
    "although some resources may allow a client to request the generation of an "
    "appropriate name automatically. Name is primarily intended for creation "
    "idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
AGE_DOC = (
    "CreationTimestamp is a timestamp representing the server time when this object "
    "was created. It is not guaranteed to be set in happens-before order across "
    "separate operations. Clients may not set this value. It is represented in "
    "RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for "
    "lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture"
    "/api-conventions.md#metadata"
)
NAME = Column("Name", format="name", description=NAME_DOC)
AGE = Column("Age", description=AGE_DOC)
CONTAINERS = Column(
    "Containers", priority=1, description="Names of each container in the template."
)
IMAGES = Column(
    "Images", priority=1, description="Images referenced by each container in the template."
)
SELECTOR = Column("Selector", priority=1, description="A label query over pods.")


# --------------------------------------------------------------------- helpers


def human_duration(seconds: float) -> str:
    """Upstream's HumanDuration: two or three significant figures."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y{rest}d" if rest else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def short_human_duration(seconds: float) -> str:
    """Upstream's ShortHumanDuration (one unit), which kubeadm's token list prints."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    hours = s // 3600
    if hours < 24:
        return f"{hours}h"
    if hours < 24 * 365:
        return f"{hours // 24}d"
    return f"{hours // 24 // 365}y"


def since(timestamp: Any, now: dt.datetime) -> str:
    if not timestamp or not isinstance(timestamp, str):
        return "<unknown>"
    try:
        then = meta.parse_time(timestamp)
    except ValueError:
        return "<unknown>"
    return human_duration((now - then).total_seconds())


def age(obj: Obj, now: dt.datetime) -> str:
    return since(obj.get("metadata", {}).get("creationTimestamp"), now)


def go_labels(labels: Any) -> str:
    """labels.FormatLabels: sorted k=v pairs, or <none>."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def go_selector(sel: Any) -> str:
    """metav1.FormatLabelSelector."""
    if not isinstance(sel, dict):
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for expr in sel.get("matchExpressions") or ():
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    text = ",".join(parts)
    return text if text else "<none>"


def containers_and_images(spec: Any) -> tuple[str, str]:
    containers = (spec or {}).get("containers") or []
    return (
        ",".join(str(c.get("name", "")) for c in containers),
        ",".join(str(c.get("image", "")) for c in containers),
    )


def _template_spec(obj: Obj) -> Obj:
    return ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}


# ------------------------------------------------------------------------ pods


def _condition_true(conditions: Any, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions or ())


def _restartable(container: Any) -> bool:
    return isinstance(container, dict) and container.get("restartPolicy") == "Always"


def _later(a: str, b: Any) -> str:
    return b if isinstance(b, str) and b > a else a


def pod_status(pod: Obj) -> tuple[str, int, str, int, int]:
    """(reason, restarts, last restart time, ready containers, total containers)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for cond in status.get("conditions") or ():
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or ()}
    total = len(spec.get("containers") or ()) + sum(
        1 for c in init_specs.values() if _restartable(c)
    )
    restarts = sidecar_restarts = ready = 0
    last = sidecar_last = ""
    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    for i, cs in enumerate(init_statuses):
        restarts += int(cs.get("restartCount") or 0)
        finished = ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        last = _later(last, finished)
        sidecar = _restartable(init_specs.get(cs.get("name")))
        if sidecar:
            sidecar_restarts += int(cs.get("restartCount") or 0)
            sidecar_last = _later(sidecar_last, finished)
        state = cs.get("state") or {}
        term, waiting = state.get("terminated"), state.get("waiting")
        if term and term.get("exitCode") == 0:
            continue
        if sidecar and cs.get("started"):
            ready += 1 if cs.get("ready") else 0
            continue
        if term:
            if term.get("reason"):
                reason = "Init:" + term["reason"]
            elif term.get("signal"):
                reason = f"Init:Signal:{term['signal']}"
            else:
                reason = f"Init:ExitCode:{term.get('exitCode', 0)}"
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break
    if not initializing or _condition_true(status.get("conditions"), "Initialized"):
        restarts, last = sidecar_restarts, sidecar_last
        running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += int(cs.get("restartCount") or 0)
            last = _later(
                last, ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
            )
            state = cs.get("state") or {}
            term, waiting = state.get("terminated"), state.get("waiting")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif term and term.get("reason"):
                reason = term["reason"]
            elif term:
                reason = (
                    f"Signal:{term['signal']}"
                    if term.get("signal")
                    else f"ExitCode:{term.get('exitCode', 0)}"
                )
            elif cs.get("ready") and state.get("running") is not None:
                running = True
                ready += 1
        if reason == "Completed" and running:
            reason = "Running" if _condition_true(status.get("conditions"), "Ready") else "NotReady"
    deleting = pod.get("metadata", {}).get("deletionTimestamp")
    if deleting and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif deleting and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return reason, restarts, last, ready, total


def pod_row(pod: Obj, now: dt.datetime) -> list[Cell]:
    reason, restarts, last, ready, total = pod_status(pod)
    restarts_cell = str(restarts)
    if restarts and last:
        restarts_cell = f"{restarts} ({since(last, now)} ago)"
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    ips = status.get("podIPs") or []
    ip = (ips[0].get("ip") if ips else "") or status.get("podIP") or "<none>"
    gates = spec.get("readinessGates") or []
    gates_cell = "<none>"
    if gates:
        conds = {c.get("type"): c.get("status") for c in status.get("conditions") or ()}
        true = sum(1 for g in gates if conds.get(g.get("conditionType")) == "True")
        gates_cell = f"{true}/{len(gates)}"
    return [
        pod["metadata"].get("name", ""),
        f"{ready}/{total}",
        reason,
        restarts_cell,
        age(pod, now),
        ip,
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_cell,
    ]


def pod_conditions(pod: Obj) -> list[Obj] | None:
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Succeeded":
        return [
            {
                "type": "Completed",
                "status": "True",
                "reason": "Succeeded",
                "message": "The pod has completed successfully.",
            }
        ]
    if phase == "Failed":
        return [
            {
                "type": "Completed",
                "status": "True",
                "reason": "Failed",
                "message": "The pod failed.",
            }
        ]
    return None


# ---------------------------------------------------------------- other kinds


def deployment_row(d: Obj, now: dt.datetime) -> list[Cell]:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    names, images = containers_and_images(_template_spec(d))
    return [
        d["metadata"].get("name", ""),
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        age(d, now),
        names,
        images,
        go_selector(spec.get("selector")),
    ]


def replicaset_row(rs: Obj, now: dt.datetime) -> list[Cell]:
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    names, images = containers_and_images(_template_spec(rs))
    return [
        rs["metadata"].get("name", ""),
        spec.get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        age(rs, now),
        names,
        images,
        go_selector(spec.get("selector")),
    ]


def statefulset_row(sts: Obj, now: dt.datetime) -> list[Cell]:
    spec, status = sts.get("spec") or {}, sts.get("status") or {}
    names, images = containers_and_images(_template_spec(sts))
    return [
        sts["metadata"].get("name", ""),
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        age(sts, now),
        names,
        images,
    ]


def replicationcontroller_row(rc: Obj, now: dt.datetime) -> list[Cell]:
    spec, status = rc.get("spec") or {}, rc.get("status") or {}
    names, images = containers_and_images(_template_spec(rc))
    return [
        rc["metadata"].get("name", ""),
        spec.get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        age(rc, now),
        names,
        images,
        go_labels(spec.get("selector")),
    ]


def pdb_row(pdb: Obj, now: dt.datetime) -> list[Cell]:
    spec, status = pdb.get("spec") or {}, pdb.get("status") or {}
    min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
    return [
        pdb["metadata"].get("name", ""),
        "N/A" if min_available is None else str(min_available),
        "N/A" if max_unavailable is None else str(max_unavailable),
        int(status.get("disruptionsAllowed") or 0),
        age(pdb, now),
    ]


def csr_condition(csr: Obj) -> str:
    """Upstream's extractCSRStatus: Denied, Approved or Pending, then Failed and Issued."""
    status = csr.get("status") or {}
    kinds = {c.get("type") for c in status.get("conditions") or () if isinstance(c, dict)}
    out = "Denied" if "Denied" in kinds else "Approved" if "Approved" in kinds else "Pending"
    if "Failed" in kinds:
        out += ",Failed"
    if status.get("certificate"):
        out += ",Issued"
    return out


def csr_row(csr: Obj, now: dt.datetime) -> list[Cell]:
    spec = csr.get("spec") or {}
    seconds = spec.get("expirationSeconds")
    return [
        csr["metadata"].get("name", ""),
        age(csr, now),
        spec.get("signerName") or "<none>",
        spec.get("username", ""),
        human_duration(seconds) if isinstance(seconds, int) else "<none>",
        csr_condition(csr),
    ]


def daemonset_row(ds: Obj, now: dt.datetime) -> list[Cell]:
    spec, status = ds.get("spec") or {}, ds.get("status") or {}
    template_spec = _template_spec(ds)
    names, images = containers_and_images(template_spec)
    return [
        ds["metadata"].get("name", ""),
        status.get("desiredNumberScheduled", 0),
        status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0),
        status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0),
        go_labels(template_spec.get("nodeSelector")),
        age(ds, now),
        names,
        images,
        go_selector(spec.get("selector")),
    ]


def cronjob_row(cj: Obj, now: dt.datetime) -> list[Cell]:
    spec, status = cj.get("spec") or {}, cj.get("status") or {}
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    names, images = containers_and_images((job_spec.get("template") or {}).get("spec"))
    suspend = spec.get("suspend")
    last = status.get("lastScheduleTime")
    return [
        cj["metadata"].get("name", ""),
        spec.get("schedule", ""),
        spec.get("timeZone") or "<none>",
        "<unset>" if suspend is None else ("True" if suspend else "False"),
        len(status.get("active") or ()),
        since(last, now) if last else "<none>",
        age(cj, now),
        names,
        images,
        go_selector(job_spec.get("selector")),
    ]


def _hpa_metric(spec: Obj, status: Obj | None) -> str:
    """One metric as formatHPAMetrics shows it: "cpu: 45%/50%", "<unknown>/10 (avg)"."""
    stype = spec.get("type")
    field = {
        "Resource": "resource",
        "ContainerResource": "containerResource",
        "Pods": "pods",
        "Object": "object",
        "External": "external",
    }.get(stype or "")
    if field is None:
        return "<unknown type>"
    source = spec.get(field) or {}
    target = source.get("target") or {}
    current = ((status or {}).get(field) or {}).get("current") or {} if status else {}
    if field in ("resource", "containerResource"):
        name = source.get("name", "")
        if target.get("averageValue") is not None:
            return f"{name}: {current.get('averageValue', '<unknown>')}/{target['averageValue']}"
        now = current.get("averageUtilization")
        shown = f"{now}%" if now is not None else "<unknown>"
        wanted = target.get("averageUtilization")
        return f"{name}: {shown}/{f'{wanted}%' if wanted is not None else '<auto>'}"
    if field == "pods":
        return f"{current.get('averageValue', '<unknown>')}/{target.get('averageValue', '')}"
    if target.get("averageValue") is not None:
        return f"{current.get('averageValue', '<unknown>')}/{target['averageValue']} (avg)"
    return f"{current.get('value', '<unknown>')}/{target.get('value', '')}"


def _hpa_v1_as_v2(spec: Obj, status: Obj) -> tuple[Obj, Obj]:
    """v1's CPU target and utilization as the v2 metric they stand for."""
    target, current = (
        spec.get("targetCPUUtilizationPercentage"),
        status.get("currentCPUUtilizationPercentage"),
    )
    cpu = {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}
    metrics = [{"type": "Resource", "resource": cpu}] if target is not None else []
    now = (
        [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "current": {"averageUtilization": current}},
            }
        ]
        if current is not None
        else []
    )
    return {**spec, "metrics": metrics}, {**status, "currentMetrics": now}


def hpa_targets(specs: Any, statuses: Any) -> str:
    """The Targets column: the first two metrics, then how many more."""
    if not specs:
        return "<none>"
    statuses = statuses if isinstance(statuses, list) else []
    shown = [
        _hpa_metric(spec, statuses[i] if i < len(statuses) else None)
        for i, spec in enumerate(specs)
        if isinstance(spec, dict)
    ]
    if len(shown) > 2:
        return f"{', '.join(shown[:2])} + {len(shown) - 2} more..."
    return ", ".join(shown)


def hpa_row(hpa: Obj, now: dt.datetime) -> list[Cell]:
    spec, status = hpa.get("spec") or {}, hpa.get("status") or {}
    if hpa.get("apiVersion") == "autoscaling/v1":
        spec, status = _hpa_v1_as_v2(spec, status)
    ref = spec.get("scaleTargetRef") or {}
    lowest = spec.get("minReplicas")
    return [
        hpa["metadata"].get("name", ""),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        hpa_targets(spec.get("metrics"), status.get("currentMetrics")),
        "<unset>" if lowest is None else str(lowest),
        spec.get("maxReplicas", 0),
        status.get("currentReplicas", 0),
        age(hpa, now),
    ]


def controllerrevision_row(cr: Obj, now: dt.datetime) -> list[Cell]:
    """CONTROLLER is the controller's lowercased Kind.group/name, or <none>."""
    controller = "<none>"
    for ref in cr["metadata"].get("ownerReferences") or ():
        if ref.get("controller"):
            group = str(ref.get("apiVersion", "")).rpartition("/")[0]
            kind = str(ref.get("kind", "")) + (f".{group}" if group else "")
            controller = f"{kind.lower()}/{ref.get('name', '')}"
    return [cr["metadata"].get("name", ""), controller, cr.get("revision", 0), age(cr, now)]


_MODE_ABBREVIATIONS = (
    ("ReadWriteOnce", "RWO"),
    ("ReadOnlyMany", "ROX"),
    ("ReadWriteMany", "RWX"),
    ("ReadWriteOncePod", "RWOP"),
)


def access_modes(modes: Any) -> str:
    """Upstream's GetAccessModesAsString: abbreviations in a fixed order."""
    present = set(modes or ())
    return ",".join(short for mode, short in _MODE_ABBREVIATIONS if mode in present)


def _phase_or_terminating(obj: Obj) -> str:
    if obj["metadata"].get("deletionTimestamp"):
        return "Terminating"
    return str((obj.get("status") or {}).get("phase", ""))


def pv_row(pv: Obj, now: dt.datetime) -> list[Cell]:
    spec, status = pv.get("spec") or {}, pv.get("status") or {}
    ref = spec.get("claimRef") or {}
    claim = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else ""
    return [
        pv["metadata"].get("name", ""),
        str((spec.get("capacity") or {}).get("storage", "")),
        access_modes(spec.get("accessModes")),
        str(spec.get("persistentVolumeReclaimPolicy", "")),
        _phase_or_terminating(pv),
        claim,
        str(spec.get("storageClassName") or ""),
        str(spec.get("volumeAttributesClassName") or "<unset>"),
        str(status.get("reason", "")),
        age(pv, now),
        str(spec.get("volumeMode", "")),
    ]


def pvc_row(pvc: Obj, now: dt.datetime) -> list[Cell]:
    spec, status = pvc.get("spec") or {}, pvc.get("status") or {}
    capacity, modes = "", ""
    if spec.get("volumeName"):
        capacity = str((status.get("capacity") or {}).get("storage", ""))
        modes = access_modes(status.get("accessModes"))
    return [
        pvc["metadata"].get("name", ""),
        _phase_or_terminating(pvc),
        str(spec.get("volumeName") or ""),
        capacity,
        modes,
        str(spec.get("storageClassName") or ""),
        str(status.get("currentVolumeAttributesClassName") or "<unset>"),
        age(pvc, now),
        str(spec.get("volumeMode", "")),
    ]


def storageclass_row(sc: Obj, now: dt.datetime) -> list[Cell]:
    name = sc["metadata"].get("name", "")
    annotations = sc["metadata"].get("annotations") or {}
    if "true" in (
        annotations.get("storageclass.kubernetes.io/is-default-class"),
        annotations.get("storageclass.beta.kubernetes.io/is-default-class"),
    ):
        name += " (default)"
    return [
        name,
        str(sc.get("provisioner", "")),
        str(sc.get("reclaimPolicy") or "Delete"),
        str(sc.get("volumeBindingMode") or "Immediate"),
        bool(sc.get("allowVolumeExpansion") or False),
        age(sc, now),
    ]


def _job_status(job: Obj) -> str:
    """The STATUS column of `kubectl get jobs` (the first that applies, in upstream's order)."""
    conditions = (job.get("status") or {}).get("conditions")
    for ctype in ("Complete", "Failed"):
        if _condition_true(conditions, ctype):
            return ctype
    if job["metadata"].get("deletionTimestamp"):
        return "Terminating"
    for ctype in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if _condition_true(conditions, ctype):
            return ctype
    return "Running"


def job_row(job: Obj, now: dt.datetime) -> list[Cell]:
    spec, status = job.get("spec") or {}, job.get("status") or {}
    succeeded = status.get("succeeded", 0)
    parallelism = spec.get("parallelism")
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif isinstance(parallelism, int) and parallelism > 1:
        completions = f"{succeeded}/1 of {parallelism}"
    else:
        completions = f"{succeeded}/1"
    duration = ""
    start, end = status.get("startTime"), status.get("completionTime")
    if start:
        finish = meta.parse_time(end) if end else now
        duration = human_duration((finish - meta.parse_time(start)).total_seconds())
    names, images = containers_and_images(_template_spec(job))
    return [
        job["metadata"].get("name", ""),
        _job_status(job),
        completions,
        duration,
        age(job, now),
        names,
        images,
        go_selector(spec.get("selector")),
    ]


def node_row(node: Obj, now: dt.datetime) -> list[Cell]:
    spec, status = node.get("spec") or {}, node.get("status") or {}
    states = []
    for cond in status.get("conditions") or ():
        if cond.get("type") == "Ready":
            states = ["Ready" if cond.get("status") == "True" else "NotReady"]
    if not states:
        states = ["Unknown"]
    if spec.get("unschedulable"):
        states.append("SchedulingDisabled")
    roles = set()
    for k, v in (node["metadata"].get("labels") or {}).items():
        if k.startswith("node-role.kubernetes.io/") and k[len("node-role.kubernetes.io/") :]:
            roles.add(k[len("node-role.kubernetes.io/") :])
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    info = status.get("nodeInfo") or {}
    addresses = status.get("addresses") or []

    def address(kind: str) -> str:
        return next((a.get("address", "") for a in addresses if a.get("type") == kind), "<none>")

    return [
        node["metadata"].get("name", ""),
        ",".join(states),
        ",".join(sorted(roles)) or "<none>",
        age(node, now),
        info.get("kubeletVersion", ""),
        address("InternalIP"),
        address("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def _external_ip(spec: Obj, status: Obj) -> str:
    kind = spec.get("type") or "ClusterIP"
    external = spec.get("externalIPs") or []
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if kind == "LoadBalancer":
        ingress = sorted(
            {
                i.get("ip") or i.get("hostname")
                for i in (status.get("loadBalancer") or {}).get("ingress") or ()
                if i.get("ip") or i.get("hostname")
            }
        )
        results = ingress + external
        return ",".join(results) if results else "<pending>"
    if kind == "ExternalName":
        return str(spec.get("externalName", ""))
    return "<unknown>"


def service_row(svc: Obj, now: dt.datetime) -> list[Cell]:
    spec, status = svc.get("spec") or {}, svc.get("status") or {}
    ips = spec.get("clusterIPs") or []
    ports = []
    for p in spec.get("ports") or ():
        proto = p.get("protocol", "TCP")
        if p.get("nodePort"):
            ports.append(f"{p.get('port')}:{p['nodePort']}/{proto}")
        else:
            ports.append(f"{p.get('port')}/{proto}")
    return [
        svc["metadata"].get("name", ""),
        spec.get("type") or "ClusterIP",
        ips[0] if ips else (spec.get("clusterIP") or "<none>"),
        _external_ip(spec, status),
        ",".join(ports) or "<none>",
        age(svc, now),
        go_labels(spec.get("selector")),
    ]


def _with_more(items: list[str], count: int, limit: int = 3, empty: str = "<unset>") -> str:
    text = ",".join(items[:limit])
    if count > limit:
        return f"{text} + {count - limit} more..."
    return text or empty


def endpoints_row(ep: Obj, now: dt.datetime) -> list[Cell]:
    found: list[str] = []
    count = 0
    for subset in ep.get("subsets") or ():
        addresses = subset.get("addresses") or []
        ports = subset.get("ports") or []
        if not ports:
            count += len(addresses)
            found.extend(a.get("ip", "") for a in addresses)
            continue
        for port in ports:
            count += len(addresses)
            for a in addresses:
                ip = a.get("ip", "")
                host = f"[{ip}]" if ":" in ip else ip
                found.append(f"{host}:{port.get('port')}")
    text = _with_more(found, count, empty="<none>") if ep.get("subsets") else "<none>"
    return [ep["metadata"].get("name", ""), text, age(ep, now)]


def endpointslice_row(es: Obj, now: dt.datetime) -> list[Cell]:
    ports = es.get("ports") or []
    port_cells = [
        str(p.get("port") if p.get("port") is not None else p.get("name") or "*") for p in ports
    ]
    addresses = [a for e in es.get("endpoints") or () for a in e.get("addresses") or ()]
    return [
        es["metadata"].get("name", ""),
        es.get("addressType", ""),
        _with_more(port_cells, len(port_cells)),
        _with_more(addresses, len(addresses)),
        age(es, now),
    ]


def event_row(ev: Obj, now: dt.datetime) -> list[Cell]:
    first = (
        since(ev.get("firstTimestamp"), now)
        if ev.get("firstTimestamp")
        else since(ev.get("eventTime"), now)
    )
    last = since(ev.get("lastTimestamp"), now) if ev.get("lastTimestamp") else first
    count = ev.get("count") or 0
    series = ev.get("series")
    if series:
        last = since(series.get("lastObservedTime"), now)
        count = series.get("count", 0)
    elif not count:
        count = 1
    involved = ev.get("involvedObject") or {}
    kind = str(involved.get("kind", "")).lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = ev.get("source") or {}
    component = source.get("component") or ev.get("reportingComponent") or ""
    host = source.get("host") or ev.get("reportingInstance") or ""
    return [
        last,
        ev.get("type", ""),
        ev.get("reason", ""),
        target,
        involved.get("fieldPath", ""),
        f"{component}, {host}" if host else component,
        str(ev.get("message", "")).strip(),
        first,
        count,
        ev["metadata"].get("name", ""),
    ]


def _simple(*fields: Callable[[Obj], Cell]) -> Callable[[Obj, dt.datetime], list[Cell]]:
    def row(obj: Obj, now: dt.datetime) -> list[Cell]:
        cells: list[Cell] = [obj["metadata"].get("name", "")]
        cells.extend(f(obj) for f in fields)
        cells.append(age(obj, now))
        return cells

    return row


def _dangling(obj: Obj) -> str:
    """MissingPL: the Dangling condition's status, "?" before the server has set one."""
    for cond in (obj.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Dangling":
            return str(cond.get("status", "?"))
    return "?"


def _limits(obj: Obj) -> list[Cell]:
    """A priority level's shares and queuing; <none> where it has none (exempt, Reject)."""
    limited = obj["spec"].get("limited")
    if not limited:
        return ["<none>"] * 4
    queuing = (limited.get("limitResponse") or {}).get("queuing")
    shares: Cell = limited.get("nominalConcurrencyShares", 0)
    if not queuing:
        return [shares, "<none>", "<none>", "<none>"]
    return [shares, queuing["queues"], queuing["handSize"], queuing["queueLengthLimit"]]


@dataclass(frozen=True)
class Printer:
    columns: tuple[Column, ...]
    row: Callable[[Obj, dt.datetime], list[Cell]]
    conditions: Callable[[Obj], list[Obj] | None] | None = None


def _ready_doc(what: str) -> str:
    return f"The aggregate readiness state of this {what} for accepting traffic."


def _param_kind(kind: Obj | None) -> str:
    if not kind:
        return "<unset>"
    return f"{kind.get('apiVersion', '')}/{kind.get('kind', '')}"


def _param_ref(ref: Obj | None) -> str:
    if not ref:
        return "<unset>"
    name = ref.get("name") or "*"
    return f"{ref['namespace']}/{name}" if ref.get("namespace") else f"*/{name}"


_WEBHOOKS = Column(
    "Webhooks",
    type="integer",
    description="Webhooks is a list of webhooks and the affected resources and operations.",
)

PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "Pod"): Printer(
        (
            NAME,
            Column("Ready", description=_ready_doc("pod")),
            Column("Status", description="The aggregate status of the containers in this pod."),
            Column(
                "Restarts",
                description="The number of times the containers in this pod have "
                "been restarted and when the last container in this pod has restarted.",
            ),
            AGE,
            Column("IP", priority=1, description="podIP address allocated to the pod."),
            Column(
                "Node",
                priority=1,
                description="NodeName indicates in which node this pod is scheduled.",
            ),
            Column(
                "Nominated Node",
                priority=1,
                description="nominatedNodeName is set only when "
                "this pod preempts other pods on the node.",
            ),
            Column(
                "Readiness Gates",
                priority=1,
                description="If specified, all readiness gates "
                "will be evaluated for pod readiness.",
            ),
        ),
        pod_row,
        pod_conditions,
    ),
    ("autoscaling", "HorizontalPodAutoscaler"): Printer(
        (
            NAME,
            Column(
                "Reference",
                description="scaleTargetRef points to the target resource to scale, and is used "
                "to the pods for which metrics should be collected, as well as to actually "
                "change the replica count.",
            ),
            Column(
                "Targets",
                description="metrics contains the specifications for which to use to calculate "
                "the desired replica count (the maximum replica count across all metrics will "
                "be used).",
            ),
            Column(
                "MinPods",
                description="minReplicas is the lower limit for the number of replicas to which "
                "the autoscaler can scale down.  It defaults to 1 pod.",
            ),
            Column(
                "MaxPods",
                description="maxReplicas is the upper limit for the number of replicas to "
                "which the autoscaler can scale up. It cannot be less that minReplicas.",
            ),
            Column(
                "Replicas",
                description="currentReplicas is current number of replicas of pods managed by "
                "this autoscaler, as last seen by the autoscaler.",
            ),
            AGE,
        ),
        hpa_row,
    ),
    ("apps", "Deployment"): Printer(
        (
            NAME,
            Column("Ready", description="Number of the pod with ready state"),
            Column(
                "Up-to-date",
                description="Total number of non-terminating pods targeted by "
                "this deployment that have the desired template spec.",
            ),
            Column(
                "Available",
                description="Total number of available non-terminating pods "
                "(ready for at least minReadySeconds) targeted by this deployment.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ),
        deployment_row,
    ),
    ("apps", "ReplicaSet"): Printer(
        (
            NAME,
            Column("Desired", "integer", "Replicas is the number of desired replicas."),
            Column(
                "Current", "integer", "Replicas is the most recently observed number of replicas."
            ),
            Column("Ready", "integer", "The number of ready replicas for this replica set."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ),
        replicaset_row,
    ),
    ("apps", "StatefulSet"): Printer(
        (
            NAME,
            Column("Ready", description="Number of the pod with ready state"),
            AGE,
            CONTAINERS,
            IMAGES,
        ),
        statefulset_row,
    ),
    ("", "ReplicationController"): Printer(
        (
            NAME,
            Column("Desired", "integer", "Number of desired pods."),
            Column("Current", "integer", "Number of actual pods."),
            Column("Ready", "integer", "Number of ready pods."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ),
        replicationcontroller_row,
    ),
    ("policy", "PodDisruptionBudget"): Printer(
        (
            NAME,
            Column(
                "Min Available",
                description="The minimum number of pods that must be available "
                "simultaneously. This can be either an integer or a string specifying a "
                'percentage, e.g. "28%".',
            ),
            Column(
                "Max Unavailable",
                description="The maximum number of pods that may be unavailable "
                "simultaneously. This can be either an integer or a string specifying a "
                'percentage, e.g. "28%".',
            ),
            Column(
                "Allowed Disruptions",
                "integer",
                "Calculated number of pods that may be disrupted at this time.",
            ),
            AGE,
        ),
        pdb_row,
    ),
    ("apps", "DaemonSet"): Printer(
        (
            NAME,
            Column(
                "Desired",
                "integer",
                "The total number of nodes that should be running the daemon pod "
                "(including nodes correctly running the daemon pod).",
            ),
            Column(
                "Current",
                "integer",
                "The number of nodes that are running at least 1 daemon pod and are "
                "supposed to run the daemon pod.",
            ),
            Column(
                "Ready",
                "integer",
                "The number of nodes that should be running the daemon pod and have one "
                "or more of the daemon pod running with a Ready Condition.",
            ),
            Column(
                "Up-to-date",
                "integer",
                "The total number of nodes that are running updated daemon pod",
            ),
            Column(
                "Available",
                "integer",
                "The number of nodes that should be running the daemon pod and have one "
                "or more of the daemon pod running and available (ready for at least "
                "spec.minReadySeconds)",
            ),
            Column(
                "Node Selector",
                description="NodeSelector is a selector which must be true for the pod to "
                "fit on a node. Selector which must match a node's labels for the pod to be "
                "scheduled on that node.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ),
        daemonset_row,
    ),
    ("batch", "CronJob"): Printer(
        (
            NAME,
            Column(
                "Schedule",
                description="The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
            ),
            Column(
                "Timezone",
                description="The time zone name for the given schedule, see "
                "https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
            ),
            Column(
                "Suspend",
                "boolean",
                "This flag tells the controller to suspend "
                "subsequent executions, it does not apply to already started executions.",
            ),
            Column("Active", "integer", "A list of pointers to currently running jobs."),
            Column(
                "Last Schedule",
                description="Information when was the last time the job "
                "was successfully scheduled.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ),
        cronjob_row,
    ),
    ("apps", "ControllerRevision"): Printer(
        (
            NAME,
            Column("Controller", description="Controller of the object"),
            Column(
                "Revision",
                "integer",
                "Revision indicates the revision of the state represented by Data.",
            ),
            AGE,
        ),
        controllerrevision_row,
    ),
    ("batch", "Job"): Printer(
        (
            NAME,
            Column("Status", description="Status of the job."),
            Column("Completions", description="The completion status of the job."),
            Column("Duration", description="Time required to complete the job."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ),
        job_row,
    ),
    ("", "Node"): Printer(
        (
            NAME,
            Column("Status", description="The status of the node"),
            Column("Roles", description="The roles of the node"),
            AGE,
            Column("Version", description="Kubelet Version reported by the node."),
            Column(
                "Internal-IP", priority=1, description="List of addresses reachable to the node."
            ),
            Column(
                "External-IP", priority=1, description="List of addresses reachable to the node."
            ),
            Column(
                "OS-Image",
                priority=1,
                description="OS Image reported by the node from "
                "/etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            ),
            Column(
                "Kernel-Version",
                priority=1,
                description="Kernel Version reported by the "
                "node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            ),
            Column(
                "Container-Runtime",
                priority=1,
                description="ContainerRuntime Version "
                "reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            ),
        ),
        node_row,
    ),
    ("", "Service"): Printer(
        (
            NAME,
            Column("Type", description="type determines how the Service is exposed."),
            Column("Cluster-IP", description="clusterIP is the IP address of the service."),
            Column(
                "External-IP",
                description="externalIPs is a list of IP addresses for which "
                "nodes in the cluster will also accept traffic for this service.",
            ),
            Column("Port(s)", description="The list of ports that are exposed by this service."),
            AGE,
            Column(
                "Selector",
                priority=1,
                description="Route service traffic to pods with "
                "label keys and values matching this selector.",
            ),
        ),
        service_row,
    ),
    ("", "Endpoints"): Printer(
        (
            NAME,
            Column(
                "Endpoints", description="The set of all endpoints is the union of all subsets."
            ),
            AGE,
        ),
        endpoints_row,
    ),
    ("discovery.k8s.io", "EndpointSlice"): Printer(
        (
            NAME,
            Column(
                "AddressType",
                description="addressType specifies the type of address "
                "carried by this EndpointSlice.",
            ),
            Column(
                "Ports",
                description="ports specifies the list of network ports exposed by "
                "each endpoint in this slice.",
            ),
            Column(
                "Endpoints", description="endpoints is a list of unique endpoints in this slice."
            ),
            AGE,
        ),
        endpointslice_row,
    ),
    ("", "Namespace"): Printer(
        (NAME, Column("Status", description="The status of the namespace"), AGE),
        _simple(lambda o: (o.get("status") or {}).get("phase", "")),
    ),
    ("", "Event"): Printer(
        (
            Column(
                "Last Seen",
                description="The time at which the most recent occurrence of "
                "this event was recorded.",
            ),
            Column(
                "Type",
                description="Type of this event (Normal, Warning), new types could be "
                "added in the future",
            ),
            Column(
                "Reason",
                description="This should be a short, machine understandable string "
                "that gives the reason for the transition into the object's current status.",
            ),
            Column("Object", description="The object that this event is about."),
            Column(
                "Subobject",
                priority=1,
                description="If referring to a piece of an object "
                "instead of an entire object, this string should contain a valid JSON/Go "
                "field access statement, such as desiredState.manifest.containers[2].",
            ),
            Column("Source", priority=1, description="The component reporting this event."),
            Column(
                "Message",
                description="A human-readable description of the status of this operation.",
            ),
            Column(
                "First Seen",
                priority=1,
                description="The time at which the event was first recorded.",
            ),
            Column("Count", priority=1, description="The number of times this event has occurred."),
            Column("Name", priority=1, format="name", description=NAME_DOC),
        ),
        event_row,
    ),
    ("", "ConfigMap"): Printer(
        (NAME, Column("Data", description="Data contains the configuration data."), AGE),
        _simple(lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})),
    ),
    ("", "Secret"): Printer(
        (
            NAME,
            Column("Type", description="Used to facilitate programmatic handling of secret data."),
            Column("Data", description="Data contains the secret data."),
            AGE,
        ),
        _simple(lambda o: o.get("type", ""), lambda o: len(o.get("data") or {})),
    ),
    ("", "ServiceAccount"): Printer(
        (
            NAME,
            Column(
                "Secrets",
                description="Secrets is a list of the secrets in the same "
                "namespace that pods running using this ServiceAccount are allowed to "
                "use.",
            ),
            AGE,
        ),
        _simple(lambda o: len(o.get("secrets") or ())),
    ),
    ("", "PersistentVolume"): Printer(
        (
            NAME,
            Column(
                "Capacity",
                description="capacity is the description of the persistent "
                "volume's resources and capacity.",
            ),
            Column(
                "Access Modes",
                description="accessModes contains all ways the volume can be mounted.",
            ),
            Column(
                "Reclaim Policy",
                description="persistentVolumeReclaimPolicy defines what "
                "happens to a persistent volume when released from its claim.",
            ),
            Column(
                "Status",
                description="phase indicates if a volume is available, bound to "
                "a claim, or released by a claim.",
            ),
            Column(
                "Claim",
                description="claimRef is part of a bi-directional binding between "
                "PersistentVolume and PersistentVolumeClaim.",
            ),
            Column("StorageClass", description="StorageClass of the pv"),
            Column("VolumeAttributesClass", description="VolumeAttributesClass of the pv"),
            Column(
                "Reason",
                description="reason is a brief CamelCase string that describes "
                "any failure and is meant for machine parsing and tidy display in the CLI.",
            ),
            AGE,
            Column(
                "VolumeMode",
                priority=1,
                description="volumeMode defines if a volume is "
                "intended to be used with a formatted filesystem or to remain in raw block "
                "state.",
            ),
        ),
        pv_row,
    ),
    ("", "PersistentVolumeClaim"): Printer(
        (
            NAME,
            Column(
                "Status", description="phase represents the current phase of PersistentVolumeClaim."
            ),
            Column(
                "Volume",
                description="volumeName is the binding reference to the "
                "PersistentVolume backing this claim.",
            ),
            Column(
                "Capacity",
                description="capacity represents the actual resources of the underlying volume.",
            ),
            Column(
                "Access Modes",
                description="accessModes contains the actual access modes "
                "the volume backing the PVC has.",
            ),
            Column("StorageClass", description="StorageClass of the pvc"),
            Column("VolumeAttributesClass", description="VolumeAttributesClass of the pvc"),
            AGE,
            Column(
                "VolumeMode",
                priority=1,
                description="volumeMode defines what type of volume is required by the claim.",
            ),
        ),
        pvc_row,
    ),
    ("storage.k8s.io", "StorageClass"): Printer(
        (
            NAME,
            Column("Provisioner", description="provisioner indicates the type of the provisioner."),
            Column(
                "ReclaimPolicy",
                description="reclaimPolicy controls the reclaimPolicy for "
                "dynamically provisioned PersistentVolumes of this storage class.",
            ),
            Column(
                "VolumeBindingMode",
                description="volumeBindingMode indicates how "
                "PersistentVolumeClaims should be provisioned and bound.",
            ),
            Column(
                "AllowVolumeExpansion",
                description="allowVolumeExpansion shows whether "
                "the storage class allow volume expand.",
            ),
            AGE,
        ),
        storageclass_row,
    ),
    ("certificates.k8s.io", "CertificateSigningRequest"): Printer(
        (
            NAME,
            AGE,
            Column("SignerName"),
            Column("Requestor"),
            Column("RequestedDuration"),
            Column("Condition"),
        ),
        csr_row,
    ),
    ("coordination.k8s.io", "Lease"): Printer(
        (
            NAME,
            Column(
                "Holder",
                description="holderIdentity contains the identity of the "
                "holder of a current lease.",
            ),
            AGE,
        ),
        _simple(lambda o: (o.get("spec") or {}).get("holderIdentity") or ""),
    ),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"): Printer(
        (
            NAME,
            Column(
                "PriorityLevel",
                description="`name` is the name of the priority level "
                "configuration being referenced Required.",
            ),
            Column(
                "MatchingPrecedence",
                description="`matchingPrecedence` is used to choose "
                "among the FlowSchemas that match a given request.",
            ),
            Column(
                "DistinguisherMethod",
                description="`distinguisherMethod` defines how to "
                "compute the flow distinguisher for requests that match this schema.",
            ),
            AGE,
            Column(
                "MissingPL",
                description="references a broken or non-existent PriorityLevelConfiguration",
            ),
        ),
        lambda o, now: [
            o["metadata"].get("name", ""),
            o["spec"]["priorityLevelConfiguration"].get("name", ""),
            o["spec"].get("matchingPrecedence", 0),
            (o["spec"].get("distinguisherMethod") or {}).get("type", "*"),
            age(o, now),
            _dangling(o),
        ],
    ),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"): Printer(
        (
            NAME,
            Column(
                "Type",
                description="`type` indicates whether this priority level is "
                "subject to limitation on request execution.",
            ),
            Column(
                "NominalConcurrencyShares",
                description="`nominalConcurrencyShares` "
                "(NCS) contributes to the computation of the NominalConcurrencyLimit.",
            ),
            Column(
                "Queues", description="`queues` is the number of queues for this priority level."
            ),
            Column(
                "HandSize",
                description="`handSize` is a small positive number that "
                "configures the shuffle sharding of requests into queues.",
            ),
            Column(
                "QueueLengthLimit",
                description="`queueLengthLimit` is the maximum number "
                "of requests allowed to be waiting in a given queue of this priority level "
                "at a time.",
            ),
            AGE,
        ),
        lambda o, now: [
            o["metadata"].get("name", ""),
            o["spec"].get("type", ""),
            *_limits(o),
            age(o, now),
        ],
    ),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"): Printer(
        (NAME, _WEBHOOKS, AGE), _simple(lambda o: len(o.get("webhooks") or ()))
    ),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): Printer(
        (NAME, _WEBHOOKS, AGE), _simple(lambda o: len(o.get("webhooks") or ()))
    ),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"): Printer(
        (
            NAME,
            Column(
                "Validations",
                type="integer",
                description="Validations contain CEL expressions which is used to apply the "
                "validation.",
            ),
            Column(
                "ParamKind",
                description="ParamKind specifies the kind of resources used to parameterize "
                "this policy",
            ),
            AGE,
        ),
        _simple(
            lambda o: len((o.get("spec") or {}).get("validations") or ()),
            lambda o: _param_kind((o.get("spec") or {}).get("paramKind")),
        ),
    ),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"): Printer(
        (
            NAME,
            Column(
                "PolicyName",
                description="PolicyName references a ValidatingAdmissionPolicy name which the "
                "ValidatingAdmissionPolicyBinding binds to.",
            ),
            Column(
                "ParamRef",
                description="paramRef specifies the parameter resource used to configure the "
                "admission control policy.",
            ),
            AGE,
        ),
        _simple(
            lambda o: (o.get("spec") or {}).get("policyName") or "",
            lambda o: _param_ref((o.get("spec") or {}).get("paramRef")),
        ),
    ),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): Printer(
        (NAME, Column("Created At", type="date", description=AGE_DOC)),
        lambda o, now: [
            o["metadata"].get("name", ""),
            o["metadata"].get("creationTimestamp", ""),
        ],
    ),
    ("apiregistration.k8s.io", "APIService"): Printer(
        (
            NAME,
            Column("Service", description="The service the API server proxies to"),
            Column("Available", description="Whether the APIService is available"),
            AGE,
        ),
        lambda o, now: [o["metadata"].get("name", ""), *apiservice_cells(o), age(o, now)],
    ),
}
DEFAULT = Printer((NAME, AGE), _simple())


def apiservice_cells(o: Obj) -> list[Cell]:
    """SERVICE ("ns/name" or Local) and AVAILABLE ("True", "False (Reason)"), as kubectl's."""
    service = (o.get("spec") or {}).get("service")
    where = f"{service.get('namespace')}/{service.get('name')}" if service else "Local"
    available = next(
        (
            c
            for c in (o.get("status") or {}).get("conditions") or ()
            if c.get("type") == "Available"
        ),
        None,
    )
    if available is None:
        return [where, "Unknown"]
    state = str(available.get("status", "Unknown"))
    if state != "True" and available.get("reason"):
        state += f" ({available['reason']})"
    return [where, state]


def printer(group: str, kind: str) -> Printer:
    return PRINTERS.get((group, kind), DEFAULT)
