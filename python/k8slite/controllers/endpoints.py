"""The Endpoints controller: one Endpoints object per selector Service, from its pods."""

from __future__ import annotations

import contextlib
import copy

from k8slite.client import AlreadyExists, DeletedFinalStateUnknown, NotFound
from k8slite.client.resource import ENDPOINTS, PODS, SERVICES
from k8slite.component.objects import Obj, labels_of, meta, resource_version_of
from k8slite.controllers import endpointutil as eu
from k8slite.controllers.base import CONFLICT_RETRY, Controller, ControllerContext
from k8slite.controllers.podutil import is_pod_ready

MANAGED_BY = "endpoints.kubernetes.io/managed-by"
MANAGER = "endpoint-controller"


def _address(pod: Obj, svc: Obj) -> Obj:
    address: Obj = {"ip": eu.pod_ips(pod)[0]}
    hostname = eu.hostname_for(pod, svc)
    if hostname:
        address["hostname"] = hostname
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        address["nodeName"] = node
    address["targetRef"] = eu.target_ref(pod)
    return address


def _ports_key(ports: list[Obj]) -> tuple[tuple[str, int, str], ...]:
    return tuple(sorted((p.get("name", ""), p["port"], p.get("protocol", "TCP")) for p in ports))


def _by_ip(address: Obj) -> tuple[str, str]:
    return (address["ip"], address["targetRef"].get("uid", ""))


def build_subsets(svc: Obj, pods: list[Obj]) -> list[Obj]:
    """Addresses grouped by the set of ports they serve (upstream's RepackSubsets)."""
    tolerate_unready = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
    service_ports = (svc.get("spec") or {}).get("ports") or []
    groups: dict[tuple[tuple[str, int, str], ...], Obj] = {}
    for pod in pods:
        if not eu.should_be_in_endpoints(pod, include_terminating=tolerate_unready):
            continue
        ports = []
        for sp in service_ports:
            number = eu.resolve_port(pod, sp)
            if number is not None:
                ports.append(eu.endpoint_port(sp, number))
        if service_ports and not ports:
            continue
        key = _ports_key(ports)
        group = groups.setdefault(key, {"ports": ports, "ready": [], "notReady": []})
        ready = tolerate_unready or is_pod_ready(pod)
        group["ready" if ready else "notReady"].append(_address(pod, svc))
    subsets = []
    for key in sorted(groups):
        group = groups[key]
        subset: Obj = {}
        if group["ready"]:
            subset["addresses"] = sorted(group["ready"], key=_by_ip)
        if group["notReady"]:
            subset["notReadyAddresses"] = sorted(group["notReady"], key=_by_ip)
        if group["ports"]:
            subset["ports"] = sorted(group["ports"], key=lambda p: (p.get("name", ""), p["port"]))
        subsets.append(subset)
    return subsets


class EndpointsController(Controller):
    name = "endpoints-controller"
    queue_name = "endpoint"
    event_source = "endpoint-controller"

    def __init__(self, ctx: ControllerContext, workers: int = 5) -> None:
        super().__init__(ctx, workers)
        self.services = ctx.informers.informer(SERVICES)
        self.pods = ctx.informers.informer(PODS)
        self.endpoints = ctx.informers.informer(ENDPOINTS)
        self.services.add_event_handler(self.enqueue, lambda _o, n: self.enqueue(n), self.enqueue)
        self.pods.add_event_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    def after_sync(self) -> None:
        """Endpoints whose Service went away while we were not running are removed."""
        for ep in self.endpoints.list():
            m = meta(ep)
            if (
                self.services.get(m["name"], m.get("namespace")) is None
                and (m.get("labels") or {}).get(MANAGED_BY) == MANAGER
            ):
                self.enqueue(ep)

    def _pod_added(self, pod: Obj) -> None:
        for svc in eu.services_for_pod(self.services, pod):
            self.enqueue(svc)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if resource_version_of(old) == resource_version_of(new):
            return
        if meta(old).get("labels") != meta(new).get("labels"):
            for svc in eu.services_for_pod(self.services, old):
                self.enqueue(svc)
            self._pod_added(new)
        elif eu.pod_changed(old, new):
            self._pod_added(new)

    def _pod_deleted(self, pod: Obj | DeletedFinalStateUnknown) -> None:
        obj = pod.obj if isinstance(pod, DeletedFinalStateUnknown) else pod
        self._pod_added(obj)

    async def sync(self, key: str) -> float | None:
        namespace, name = key.split("/", 1)
        svc = self.services.get(name, namespace)
        if svc is None:
            with contextlib.suppress(NotFound):
                await self.client.delete(ENDPOINTS, name, namespace=namespace)
            return None
        if eu.service_selector(svc) is None:
            return None  # a Service without a selector has its Endpoints managed by hand
        pods = eu.selected_pods(self.pods, svc)
        subsets = build_subsets(svc, pods)
        labels = eu.service_labels(svc)
        labels[MANAGED_BY] = MANAGER
        current = self.endpoints.get(name, namespace)
        if (
            current is not None
            and (current.get("subsets") or []) == subsets
            and labels_of(current) == labels
        ):
            return None
        body: Obj = (
            copy.deepcopy(current)
            if current is not None
            else {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": name, "namespace": namespace},
            }
        )
        body["metadata"]["labels"] = labels
        stamp = eu.trigger_time(svc, pods)
        if stamp:
            body["metadata"].setdefault("annotations", {})[eu.TRIGGER_TIME] = stamp
        body["subsets"] = subsets
        if current is None:
            try:
                await self.client.create(ENDPOINTS, body)
            except AlreadyExists:
                return CONFLICT_RETRY  # our cache has not seen it yet
        else:
            await self.client.update(ENDPOINTS, body)
        return None
