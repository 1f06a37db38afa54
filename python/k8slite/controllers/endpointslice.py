"""The EndpointSlice controller: a Service's pods as EndpointSlices of up to 100 endpoints."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from k8slite.client import ApiError, DeletedFinalStateUnknown, NotFound, object_key
from k8slite.client.resource import ENDPOINTSLICES, NODES, PODS, SERVICES
from k8slite.component.objects import (
    Obj,
    annotations_of,
    is_deleting,
    labels_of,
    meta,
    resource_version_of,
)
from k8slite.controllers import endpointutil as eu
from k8slite.controllers.base import Controller, ControllerContext
from k8slite.controllers.ownerref import new_controller_ref
from k8slite.controllers.podutil import is_pod_ready
from k8slite.controllers.replicaset import is_namespace_terminating

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
MANAGER = "endpointslice-controller.k8s.io"
ZONE = "topology.kubernetes.io/zone"
MAX_ENDPOINTS = 100
SERVICE_INDEX = "endpointSliceService"
# How long to wait for our own writes to show up in the cache before trusting it anyway
# (someone else may have deleted or changed a slice right after we wrote it).
STALE_GRACE = 10.0
STALE_RETRY = 0.1

_Group = tuple[str, tuple[tuple[str, int, str], ...]]


def service_index(slice_: Obj) -> list[str]:
    """Our slices by "<namespace>/<service>"."""
    labels = labels_of(slice_)
    if labels.get(MANAGED_BY) != MANAGER or not labels.get(SERVICE_NAME):
        return []
    return [f"{meta(slice_).get('namespace')}/{labels[SERVICE_NAME]}"]


def _ports_key(ports: list[Obj]) -> tuple[tuple[str, int, str], ...]:
    return tuple(
        sorted(
            (p.get("name", ""), int(p.get("port") or 0), p.get("protocol", "TCP")) for p in ports
        )
    )


def _endpoint_key(ep: Obj) -> tuple[str, str]:
    return ((ep.get("targetRef") or {}).get("uid", ""), (ep.get("addresses") or [""])[0])


@dataclass
class SlicePlan:
    create: list[tuple[str, list[Obj], list[Obj]]] = field(default_factory=list)
    update: list[tuple[Obj, list[Obj], list[Obj]]] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)


def plan_slices(
    desired: dict[_Group, tuple[list[Obj], list[Obj]]], existing: list[Obj], primary_family: str
) -> SlicePlan:
    """What to create, update and delete so the slices hold the desired endpoints.

    Endpoints stay in the slice they are in; new ones fill free room before new slices are
    made. A slice that would be deleted is reused for one that would be created (same
    address type), and a Service with no endpoints keeps one empty placeholder slice.
    """
    plan = SlicePlan()
    by_group: dict[_Group, list[Obj]] = {}
    for slice_ in sorted(existing, key=lambda s: meta(s).get("name", "")):
        group = (slice_.get("addressType", ""), _ports_key(slice_.get("ports") or []))
        by_group.setdefault(group, []).append(slice_)
    if not desired:
        placeholder = (primary_family, ())
        kept = by_group.pop(placeholder, [])
        if kept:
            plan.update.append((kept[0], [], []))
            plan.delete += kept[1:]
        else:
            plan.create.append((primary_family, [], []))
    for group, slices in by_group.items():
        if group not in desired:
            plan.delete += slices
    for group, (ports, endpoints) in desired.items():
        want = {_endpoint_key(ep): ep for ep in endpoints}
        contents: list[tuple[Obj, list[Obj]]] = []
        for slice_ in by_group.get(group, []):
            kept = [
                want.pop(k) for k in map(_endpoint_key, slice_.get("endpoints") or ()) if k in want
            ]
            contents.append((slice_, kept))
        remaining = [want[k] for k in sorted(want)]
        for _, kept in contents:
            room = MAX_ENDPOINTS - len(kept)
            kept.extend(remaining[:room])
            remaining = remaining[room:]
        for slice_, kept in contents:
            if kept:
                plan.update.append((slice_, ports, kept))
            else:
                plan.delete.append(slice_)
        for start in range(0, len(remaining), MAX_ENDPOINTS):
            plan.create.append((group[0], ports, remaining[start : start + MAX_ENDPOINTS]))
    # Reuse slices about to go for the ones about to come: fewer writes, stable names.
    for address_type, ports, endpoints in list(plan.create):
        reusable = next((s for s in plan.delete if s.get("addressType") == address_type), None)
        if reusable is not None:
            plan.delete.remove(reusable)
            plan.create.remove((address_type, ports, endpoints))
            plan.update.append((reusable, ports, endpoints))
    return plan


class EndpointSliceController(Controller):
    name = "endpointslice-controller"
    queue_name = "endpoint_slice"
    event_source = "endpoint-slice-controller"

    def __init__(self, ctx: ControllerContext, workers: int = 5) -> None:
        super().__init__(ctx, workers)
        self.services = ctx.informers.informer(SERVICES)
        self.pods = ctx.informers.informer(PODS)
        self.nodes = ctx.informers.informer(NODES)
        self.slices = ctx.informers.informer(
            ENDPOINTSLICES, indexers={SERVICE_INDEX: service_index}
        )
        # service key -> slice name -> (resourceVersion we wrote, None if deleted; when)
        self._written: dict[str, dict[str, tuple[str | None, float]]] = {}
        self.services.add_event_handler(
            self.enqueue, lambda _o, n: self.enqueue(n), self._service_deleted
        )
        self.pods.add_event_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        self.slices.add_event_handler(
            self._slice_changed, lambda _o, n: self._slice_changed(n), self._slice_changed
        )

    # ---------------------------------------------------------------- handlers

    def _service_deleted(self, svc: Obj | DeletedFinalStateUnknown) -> None:
        self.queue.add(object_key(svc))

    def _slice_changed(self, slice_: Obj | DeletedFinalStateUnknown) -> None:
        obj = slice_.obj if isinstance(slice_, DeletedFinalStateUnknown) else slice_
        for key in service_index(obj):
            self.queue.add(key)

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
        self._pod_added(pod.obj if isinstance(pod, DeletedFinalStateUnknown) else pod)

    # -------------------------------------------------------------------- sync

    async def sync(self, key: str) -> float | None:
        if self._cache_behind(key):
            return STALE_RETRY
        namespace, name = key.split("/", 1)
        svc = self.services.get(name, namespace)
        existing = self.slices.indexer.by_index(SERVICE_INDEX, key)
        if svc is None or (svc.get("spec") or {}).get("type") == "ExternalName":
            for slice_ in existing:
                await self._delete(key, slice_)
            return None
        if eu.service_selector(svc) is None:
            return None  # slices of a Service without a selector are made by hand
        pods = eu.selected_pods(self.pods, svc)
        desired = self._desired(svc, pods)
        labels = self._labels(svc)
        stamp = eu.trigger_time(svc, pods)
        families = (svc.get("spec") or {}).get("ipFamilies") or ["IPv4"]
        try:
            await self._apply(key, svc, plan_slices(desired, existing, families[0]), labels, stamp)
        except ApiError as e:
            if not is_namespace_terminating(e):
                raise
        return None

    def _labels(self, svc: Obj) -> dict[str, str]:
        labels = eu.service_labels(svc)
        labels[SERVICE_NAME] = meta(svc)["name"]
        labels[MANAGED_BY] = MANAGER
        return labels

    def _desired(self, svc: Obj, pods: list[Obj]) -> dict[_Group, tuple[list[Obj], list[Obj]]]:
        """Endpoints grouped by (address type, ports): each group is one or more slices."""
        spec = svc.get("spec") or {}
        publish = bool(spec.get("publishNotReadyAddresses"))
        families = set(spec.get("ipFamilies") or ["IPv4"])
        groups: dict[_Group, tuple[list[Obj], list[Obj]]] = {}
        for pod in pods:
            if not eu.should_be_in_endpoints(pod, include_terminating=True):
                continue
            ports = []
            for sp in spec.get("ports") or ():
                number = eu.resolve_port(pod, sp)
                if number is not None:
                    ports.append(eu.endpoint_port(sp, number))
            ports.sort(key=lambda p: (p.get("name", ""), p["port"]))
            for ip in eu.pod_ips(pod):
                kind = eu.address_type(ip)
                if kind not in families:
                    continue
                group = groups.setdefault((kind, _ports_key(ports)), (ports, []))
                group[1].append(self._endpoint(pod, svc, ip, publish))
        return groups

    def _endpoint(self, pod: Obj, svc: Obj, ip: str, publish: bool) -> Obj:
        serving = publish or is_pod_ready(pod)
        terminating = is_deleting(pod)
        ep: Obj = {
            "addresses": [ip],
            "conditions": {
                "ready": publish or (serving and not terminating),
                "serving": serving,
                "terminating": terminating,
            },
        }
        hostname = eu.hostname_for(pod, svc)
        if hostname:
            ep["hostname"] = hostname
        ep["targetRef"] = eu.target_ref(pod)
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name:
            ep["nodeName"] = node_name
            node = self.nodes.get(node_name)
            zone = labels_of(node).get(ZONE) if node is not None else None
            if zone:
                ep["zone"] = zone
        return ep

    async def _apply(
        self, key: str, svc: Obj, plan: SlicePlan, labels: dict[str, str], stamp: str
    ) -> None:
        """Creates first and deletes last, so no endpoint is ever missing in between."""
        for address_type, ports, endpoints in plan.create:
            await self._create(key, svc, address_type, ports, endpoints, labels, stamp)
        for slice_, ports, endpoints in plan.update:
            await self._update(key, slice_, ports, endpoints, labels, stamp)
        for slice_ in plan.delete:
            await self._delete(key, slice_)

    # ------------------------------------------------------------------ writes

    async def _create(
        self,
        key: str,
        svc: Obj,
        address_type: str,
        ports: list[Obj],
        endpoints: list[Obj],
        labels: dict[str, str],
        stamp: str,
    ) -> None:
        body: Obj = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "generateName": f"{meta(svc)['name']}-",
                "namespace": meta(svc).get("namespace"),
                "labels": labels,
                "ownerReferences": [new_controller_ref(svc, "v1", "Service")],
            },
            "addressType": address_type,
            "endpoints": endpoints,
            "ports": ports,
        }
        if stamp:
            body["metadata"]["annotations"] = {eu.TRIGGER_TIME: stamp}
        created = await self.client.create(ENDPOINTSLICES, body)
        self._remember(key, created)

    async def _update(
        self,
        key: str,
        slice_: Obj,
        ports: list[Obj],
        endpoints: list[Obj],
        labels: dict[str, str],
        stamp: str,
    ) -> None:
        if (
            (slice_.get("ports") or []) == ports
            and (slice_.get("endpoints") or []) == endpoints
            and labels_of(slice_) == labels
        ):
            return
        body = dict(slice_)
        body["metadata"] = dict(meta(slice_))
        body["metadata"]["labels"] = labels
        if stamp:
            body["metadata"]["annotations"] = {
                **annotations_of(slice_),
                eu.TRIGGER_TIME: stamp,
            }
        body["ports"] = ports
        body["endpoints"] = endpoints
        updated = await self.client.update(ENDPOINTSLICES, body)
        self._remember(key, updated)

    async def _delete(self, key: str, slice_: Obj) -> None:
        m = meta(slice_)
        with contextlib.suppress(NotFound):
            await self.client.delete(ENDPOINTSLICES, m["name"], namespace=m.get("namespace"))
        self._written.setdefault(key, {})[m["name"]] = (None, time.monotonic())

    def _remember(self, key: str, written: Obj) -> None:
        m = meta(written)
        self._written.setdefault(key, {})[m["name"]] = (
            str(m.get("resourceVersion")),
            time.monotonic(),
        )

    def _cache_behind(self, key: str) -> bool:
        """Our last writes for this Service are not all in the cache yet.

        Slices have generated names, so acting on a cache that misses a slice we just made
        would make another one. resourceVersions are compared as numbers (what the API
        server issues) to tell "not yet seen" from "changed again since".
        """
        written = self._written.get(key)
        if not written:
            return False
        namespace = key.split("/", 1)[0]
        now = time.monotonic()
        behind = False
        for name, (rv, when) in list(written.items()):
            cached = self.slices.get(name, namespace)
            if rv is None:
                caught_up = cached is None
            else:
                cached_rv = meta(cached).get("resourceVersion") if cached is not None else None
                caught_up = cached_rv is not None and _rv_at_least(cached_rv, rv)
            if caught_up or now - when > STALE_GRACE:
                del written[name]
            else:
                behind = True
        if not written:
            self._written.pop(key, None)
        return behind


def _rv_at_least(have: str, want: str) -> bool:
    try:
        return int(have) >= int(want)
    except ValueError:
        return have == want
