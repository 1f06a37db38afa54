"""Keeps the record store in step with the cluster through shared informers."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from k8slite.client import DeletedFinalStateUnknown, SharedInformerFactory, object_key
from k8slite.client.resource import ENDPOINTSLICES, NAMESPACES, PODS, SERVICES
from k8slite.dns.metrics import DnsMetrics
from k8slite.dns.records import SERVICE_NAME_LABEL, is_headless, pod_ips, service_records
from k8slite.dns.store import RecordStore

Obj = dict[str, Any]
_SERVICE_INDEX = "service"
TRIGGER_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"


def _slice_service(obj: Obj) -> list[str]:
    meta = obj.get("metadata") or {}
    name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return [f"{meta.get('namespace')}/{name}"] if name else []


def _trigger(obj: Obj) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(TRIGGER_ANNOTATION)


def _obj(obj: Obj | DeletedFinalStateUnknown) -> Obj:
    return obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj


class ClusterWatcher:
    """Services (with their EndpointSlices), Namespaces and, if wanted, Pods into a store.

    Informer callbacks update the store inline, so a name resolves as soon as the watch
    event that made it has been read.
    """

    def __init__(
        self,
        factory: SharedInformerFactory,
        store: RecordStore,
        pods: bool,
        metrics: DnsMetrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.services = factory.informer(SERVICES)
        self.slices = factory.informer(ENDPOINTSLICES, indexers={_SERVICE_INDEX: _slice_service})
        self.namespaces = factory.informer(NAMESPACES)
        self.pods = factory.informer(PODS) if pods else None
        self.services.add_event_handler(
            on_add=lambda o: self.refresh(object_key(o)),
            on_update=lambda _, o: self.refresh(object_key(o)),
            on_delete=lambda o: self.refresh(object_key(o)),
        )
        self.slices.add_event_handler(
            on_add=self._slice_changed,
            on_update=lambda old, new: self._slice_changed(new, old),
            on_delete=self._slice_changed,
        )
        self.namespaces.add_event_handler(
            on_add=lambda o: store.set_namespace(o["metadata"]["name"], True),
            on_update=lambda _, o: store.set_namespace(o["metadata"]["name"], True),
            on_delete=lambda o: store.set_namespace(object_key(o), False),
        )
        if self.pods is not None:
            self.pods.add_event_handler(
                on_add=self._pod_changed,
                on_update=lambda _, o: self._pod_changed(o),
                on_delete=lambda o: store.set_pod(object_key(o), "", ()),
            )

    def refresh(self, key: str) -> None:
        """Recompute one Service's records from the informers' caches."""
        namespace, _, name = key.partition("/")
        service = self.services.get(name, namespace)
        if service is None:
            self.store.set_records(key, [])
            return
        slices = self.slices.indexer.by_index(_SERVICE_INDEX, key)
        self.store.set_records(key, service_records(service, slices, self.store.zone))

    def _slice_changed(self, new: Obj | DeletedFinalStateUnknown, old: Obj | None = None) -> None:
        keys = set(_slice_service(_obj(new)))
        if old is not None:
            keys.update(_slice_service(old))  # its label moved: the old Service loses it
        for key in keys:
            self.refresh(key)
        if not isinstance(new, DeletedFinalStateUnknown):
            self._observe_programming(new, old)

    def _observe_programming(self, new: Obj, old: Obj | None) -> None:
        """From the change behind a headless Service's endpoints to its records, as CoreDNS's
        coredns_kubernetes_dns_programming_duration_seconds (set by the endpointslice
        controller, so only Services with a selector carry it)."""
        if self.metrics is None:
            return
        value = _trigger(new)
        if not value or (old is not None and _trigger(old) == value):
            return
        for key in _slice_service(new):
            namespace, _, name = key.partition("/")
            service = self.services.get(name, namespace)
            if service is None or not is_headless(service):
                continue
            try:
                since = datetime.fromisoformat(value).timestamp()
            except ValueError:
                return
            self.metrics.programming.observe(max(0.0, time.time() - since))

    def _pod_changed(self, pod: Obj) -> None:
        namespace = (pod.get("metadata") or {}).get("namespace") or ""
        self.store.set_pod(object_key(pod), namespace, tuple(pod_ips(pod)))
