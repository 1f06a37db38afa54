"""The root-ca-cert-publisher: ConfigMap kube-root-ca.crt with the cluster CA in every namespace."""

from __future__ import annotations

import copy

from k8slite.client import DeletedFinalStateUnknown, NotFound
from k8slite.client.resource import CONFIGMAPS, NAMESPACES
from k8slite.component.objects import Obj, is_deleting, name_of, namespace_of
from k8slite.controllers.base import Controller, ControllerContext
from k8slite.controllers.replicaset import create_if_absent

CONFIGMAP = "kube-root-ca.crt"
DESCRIPTION = "kubernetes.io/description"
DESCRIPTION_TEXT = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
    "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
    "guaranteed across distributions of Kubernetes clusters."
)


class RootCACertPublisher(Controller):
    name = "root-ca-certificate-publisher-controller"
    queue_name = "root_ca_cert_publisher"
    event_source = "root-ca-cert-publisher"

    def __init__(self, ctx: ControllerContext, workers: int = 1) -> None:
        super().__init__(ctx, workers)
        self.root_ca = ctx.root_ca.decode()
        self.namespaces = ctx.informers.informer(NAMESPACES)
        self.configmaps = ctx.informers.informer(CONFIGMAPS)
        self.namespaces.add_event_handler(
            self._namespace, lambda _old, new: self._namespace(new), None
        )
        self.configmaps.add_event_handler(
            None, lambda _old, new: self._configmap(new), self._configmap
        )

    def _namespace(self, ns: Obj) -> None:
        self.queue.add(name_of(ns))

    def _configmap(self, cm: Obj | DeletedFinalStateUnknown) -> None:
        obj = cm.obj if isinstance(cm, DeletedFinalStateUnknown) else cm
        if name_of(obj) == CONFIGMAP:
            self.queue.add(namespace_of(obj) or "")

    async def sync(self, key: str) -> float | None:
        ns = self.namespaces.get(key)
        if ns is None or is_deleting(ns):
            return None
        data = {"ca.crt": self.root_ca}
        current = self.configmaps.get(CONFIGMAP, key)
        if current is None:
            new: Obj = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": CONFIGMAP,
                    "namespace": key,
                    "annotations": {DESCRIPTION: DESCRIPTION_TEXT},
                },
                "data": data,
            }
            await create_if_absent(self.client, CONFIGMAPS, new, key)
            return None
        annotations = (current.get("metadata") or {}).get("annotations") or {}
        if current.get("data") == data and annotations.get(DESCRIPTION):
            return None
        body: Obj = copy.deepcopy(current)
        body["data"] = data
        body["metadata"].setdefault("annotations", {})[DESCRIPTION] = DESCRIPTION_TEXT
        try:
            await self.client.update(CONFIGMAPS, body, namespace=key)
        except NotFound:
            self.queue.add(key)
        return None
