"""What the Endpoints and EndpointSlice controllers share: which pods back a Service, how."""

from __future__ import annotations

import ipaddress
from typing import Any

from k8slite._native import LabelSelector
from k8slite.api.meta import format_time, parse_time
from k8slite.client import SharedInformer
from k8slite.component.objects import Obj, get_condition, is_deleting, labels_of, meta
from k8slite.controllers.podutil import is_pod_ready

TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
HEADLESS = "service.kubernetes.io/headless"


def service_selector(svc: Obj) -> LabelSelector | None:
    """The pods a Service selects; None for a Service without a selector (not ours)."""
    selector = (svc.get("spec") or {}).get("selector")
    if not selector:
        return None
    return LabelSelector.from_dict({"matchLabels": selector})


def services_for_pod(services: SharedInformer, pod: Obj) -> list[Obj]:
    """Services of the pod's namespace whose selector matches its labels."""
    labels = labels_of(pod)
    out = []
    for svc in services.list(meta(pod).get("namespace")):
        selector = service_selector(svc)
        if selector is not None and selector.matches(labels):
            out.append(svc)
    return out


def selected_pods(pods: SharedInformer, svc: Obj) -> list[Obj]:
    selector = service_selector(svc)
    if selector is None:
        return []
    return [p for p in pods.list(meta(svc).get("namespace")) if selector.matches(labels_of(p))]


def _endpoint_view(pod: Obj) -> tuple[Any, ...]:
    status, spec = pod.get("status") or {}, pod.get("spec") or {}
    return (
        status.get("podIP"),
        status.get("podIPs"),
        is_pod_ready(pod),
        is_deleting(pod),
        spec.get("nodeName"),
        spec.get("hostname"),
        spec.get("subdomain"),
        status.get("phase"),
    )


def pod_changed(old: Obj, new: Obj) -> bool:
    """Whether anything endpoints are made of changed (labels are checked separately)."""
    return _endpoint_view(old) != _endpoint_view(new)


def pod_ips(pod: Obj) -> list[str]:
    status = pod.get("status") or {}
    ips = [entry.get("ip") for entry in status.get("podIPs") or () if entry.get("ip")]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    return ips


def address_type(ip: str) -> str:
    return "IPv6" if ipaddress.ip_address(ip).version == 6 else "IPv4"


def should_be_in_endpoints(pod: Obj, include_terminating: bool) -> bool:
    """Has an IP, is not finished for good, and (unless asked) is not terminating."""
    if not pod_ips(pod):
        return False
    if not include_terminating and is_deleting(pod):
        return False
    phase = (pod.get("status") or {}).get("phase")
    policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
    if policy == "Never":
        return phase not in ("Failed", "Succeeded")
    if policy == "OnFailure":
        return phase != "Succeeded"
    return True


def resolve_port(pod: Obj, service_port: Obj) -> int | None:
    """The pod's port for a Service port: targetPort by number, or by container port name."""
    target = service_port.get("targetPort", service_port.get("port"))
    protocol = service_port.get("protocol", "TCP")
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for container in (pod.get("spec") or {}).get("containers") or ():
        for port in container.get("ports") or ():
            if port.get("name") == target and port.get("protocol", "TCP") == protocol:
                return int(port["containerPort"])
    return None


def endpoint_port(service_port: Obj, number: int) -> Obj:
    port: Obj = {"port": number, "protocol": service_port.get("protocol", "TCP")}
    if service_port.get("name"):
        port["name"] = service_port["name"]
    if service_port.get("appProtocol"):
        port["appProtocol"] = service_port["appProtocol"]
    return port


def hostname_for(pod: Obj, svc: Obj) -> str | None:
    """A pod's hostname is published when its subdomain is this Service."""
    spec = pod.get("spec") or {}
    if (
        spec.get("hostname")
        and spec.get("subdomain") == meta(svc).get("name")
        and meta(pod).get("namespace") == meta(svc).get("namespace")
    ):
        return str(spec["hostname"])
    return None


def target_ref(pod: Obj) -> Obj:
    m = meta(pod)
    return {
        "kind": "Pod",
        "namespace": m.get("namespace"),
        "name": m.get("name"),
        "uid": m.get("uid"),
    }


def trigger_time(svc: Obj, pods: list[Obj]) -> str:
    """The latest change among the Service and its pods (their readiness transitions)."""
    stamps = [meta(svc).get("creationTimestamp")]
    for pod in pods:
        cond = get_condition(pod.get("status"), "Ready")
        stamps.append((cond or {}).get("lastTransitionTime") or meta(pod).get("creationTimestamp"))
    times = [parse_time(s) for s in stamps if s]
    return format_time(max(times)) if times else ""


def service_labels(svc: Obj) -> dict[str, str]:
    """A Service's labels as its endpoints carry them, with the headless marker."""
    labels = dict(labels_of(svc))
    if (svc.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS] = ""
    else:
        labels.pop(HEADLESS, None)
    return labels
