"""The node authorizer: a kubelet reads what its pods reference and uses the system:node rules.

Like upstream's, it answers only for node identities (user system:node:<name> in group
system:nodes). Secrets, config maps, persistent volume claims and service accounts are
readable only along a path node <- pod -> object, kept in a graph that follows the pod
commits; leases only the node's own in kube-node-lease; everything else by the static node
rules. Which pods and nodes a kubelet may *change* is the node restriction's job.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

from k8slite._native import FieldSelector, loads
from k8slite.apiserver.authz.attributes import Attributes
from k8slite.apiserver.authz.policy import NODE_RULES
from k8slite.apiserver.authz.rbac import compile_rules
from k8slite.apiserver.core import ApiCore
from k8slite.component.objects import Obj, name_of, namespace_of
from k8slite.storage import Event

log = logging.getLogger(__name__)

NODE_LEASE_NAMESPACE = "kube-node-lease"
_POD_PREFIX = "/registry/core/pods/"
_NODE_NAME = b'"nodeName":"'
# (resource, namespace, name) of an object a pod uses.
Ref = tuple[str, str, str]
# Volume sources that name a secret under "secretRef" (flexVolume, cephfs, rbd, ...).
_SECRET_REF_VOLUMES = (
    "azureFile",
    "cephfs",
    "cinder",
    "flexVolume",
    "iscsi",
    "rbd",
    "scaleIO",
    "storageos",
)


def pod_references(pod: Obj) -> Iterator[Ref]:
    """Everything a pod makes its kubelet read: volumes, env, pull secrets, service account."""
    ns = namespace_of(pod)
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return
    yield "serviceaccounts", ns, str(spec.get("serviceAccountName") or "default")
    for s in _dicts(spec.get("imagePullSecrets")):
        yield from _named("secrets", ns, s.get("name"))
    pod_name = name_of(pod)
    for vol in _dicts(spec.get("volumes")):
        yield from _volume_refs(ns, pod_name, vol)
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in _dicts(spec.get(key)):
            for env in _dicts(c.get("env")):
                source = env.get("valueFrom")
                if isinstance(source, dict):
                    yield from _named("secrets", ns, _get(source, "secretKeyRef", "name"))
                    yield from _named("configmaps", ns, _get(source, "configMapKeyRef", "name"))
            for env in _dicts(c.get("envFrom")):
                yield from _named("secrets", ns, _get(env, "secretRef", "name"))
                yield from _named("configmaps", ns, _get(env, "configMapRef", "name"))


def _volume_refs(ns: str, pod_name: str, vol: Obj) -> Iterator[Ref]:
    yield from _named("secrets", ns, _get(vol, "secret", "secretName"))
    yield from _named("configmaps", ns, _get(vol, "configMap", "name"))
    yield from _named("persistentvolumeclaims", ns, _get(vol, "persistentVolumeClaim", "claimName"))
    yield from _named("secrets", ns, _get(vol, "csi", "nodePublishSecretRef", "name"))
    yield from _named("secrets", ns, _get(vol, "azureFile", "secretName"))
    for kind in _SECRET_REF_VOLUMES:
        yield from _named("secrets", ns, _get(vol, kind, "secretRef", "name"))
    for source in _dicts(_get(vol, "projected", "sources")):
        yield from _named("secrets", ns, _get(source, "secret", "name"))
        yield from _named("configmaps", ns, _get(source, "configMap", "name"))
    if isinstance(vol.get("ephemeral"), dict) and isinstance(vol.get("name"), str):
        # A generic ephemeral volume's claim is named <pod>-<volume>.
        yield from _named("persistentvolumeclaims", ns, f"{pod_name}-{vol['name']}")


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _dicts(value: Any) -> Iterator[Obj]:
    if isinstance(value, list):
        yield from (v for v in value if isinstance(v, dict))


def _named(resource: str, ns: str, name: Any) -> Iterator[Ref]:
    if isinstance(name, str) and name:
        yield resource, ns, name


_BOUND = FieldSelector("spec.nodeName!=")


class NodeGraph:
    """Which node each bound pod is on and what each node's pods reference, kept current.

    Fed by the store's commits. A pod's node and references are taken when it is first seen
    bound; a pod's spec is immutable once bound (validation refuses other changes), so later
    modifications of an indexed pod (status updates, most writes) cost one dict lookup.
    """

    def __init__(self, core: ApiCore) -> None:
        self._pods: dict[str, tuple[str, tuple[Ref, ...]]] = {}  # pod key -> node, refs
        self._refs: dict[str, Counter[Ref]] = {}  # node -> reference counts
        reg = core.registries[("", "pods")]
        # Only bound pods matter; each is decoded on its own, never one giant list.
        frames, _ = reg.cache.initial_events(reg.rt.key_prefix, None, _BOUND)
        for frame in frames:
            pod = loads(frame)["object"]
            self._add(reg.rt.key(pod["metadata"].get("namespace"), pod["metadata"]["name"]), pod)
        core.store.subscribe(self._on_commit)

    def node_of(self, namespace: str, name: str) -> str | None:
        """The node a pod is bound to; None when unbound or unknown."""
        entry = self._pods.get(f"{_POD_PREFIX}{namespace}/{name}")
        return entry[0] if entry else None

    def related(self, node: str, resource: str, namespace: str, name: str) -> bool:
        refs = self._refs.get(node)
        return bool(refs) and (resource, namespace, name) in refs  # type: ignore[operator]

    def _on_commit(self, events: list[Event]) -> None:
        for ev in events:
            if not ev.key.startswith(_POD_PREFIX):
                continue
            try:
                if ev.type == "DELETED":
                    self._remove(ev.key)
                elif ev.key not in self._pods and _NODE_NAME in ev.data:
                    # Only bound pods matter; most pods are created unbound, and are not
                    # decoded until the scheduler binds them.
                    self._add(ev.key, loads(ev.data))
            except Exception:  # a store subscriber must never raise
                log.exception("node graph: cannot index %s", ev.key)

    def _add(self, key: str, pod: Obj) -> None:
        node = _get(pod, "spec", "nodeName")
        if not isinstance(node, str) or not node:
            return
        refs = tuple(set(pod_references(pod)))
        self._pods[key] = (node, refs)
        self._refs.setdefault(node, Counter()).update(refs)

    def _remove(self, key: str) -> None:
        entry = self._pods.pop(key, None)
        if entry is None:
            return
        node, refs = entry
        counts = self._refs[node]
        counts.subtract(refs)
        for ref in refs:
            if counts[ref] <= 0:
                del counts[ref]
        if not counts:
            del self._refs[node]


# Resources readable only along node <- pod -> object, and the verbs a kubelet uses on them.
_GRAPH_READS = {
    "secrets": ("get", "list", "watch"),
    "configmaps": ("get", "list", "watch"),
    "serviceaccounts": ("get", "list", "watch"),
    "persistentvolumeclaims": ("get",),
}


class NodeAuthorizer:
    """upstream's Node authorization mode; answers (allowed, reason) or None for no opinion."""

    def __init__(self, graph: NodeGraph) -> None:
        self.graph = graph
        self.rules = compile_rules(NODE_RULES)

    def authorize(self, attrs: Attributes) -> tuple[bool, str] | None:
        node = attrs.user.node_name
        if node is None:
            return None
        if attrs.resource_request and not attrs.api_group:
            if attrs.resource == "serviceaccounts" and attrs.subresource == "token":
                return self._create_token(node, attrs)
            verbs = _GRAPH_READS.get(attrs.resource)
            if verbs is not None:
                return self._read_related(node, attrs, verbs)
        if (
            attrs.resource_request
            and attrs.api_group == "coordination.k8s.io"
            and attrs.resource == "leases"
        ):
            return self._lease(node, attrs)
        if self.rules.allows(attrs):
            return True, ""
        return False, ""

    def _read_related(
        self, node: str, attrs: Attributes, verbs: tuple[str, ...]
    ) -> tuple[bool, str]:
        if attrs.verb not in verbs:
            return False, "can only read resources of this type"
        if attrs.subresource:
            return False, "cannot read subresource"
        if not attrs.namespace:
            return False, "can only read namespaced object of this type"
        if not attrs.name:
            return False, "No Object name found"
        if not self.graph.related(node, attrs.resource, attrs.namespace, attrs.name):
            return False, f"no relationship found between node '{node}' and this object"
        return True, ""

    def _create_token(self, node: str, attrs: Attributes) -> tuple[bool, str]:
        if attrs.verb != "create":
            return False, "can only create tokens for individual service accounts"
        if not attrs.name:
            return False, "No Object name found"
        if not self.graph.related(node, "serviceaccounts", attrs.namespace, attrs.name):
            return False, f"no relationship found between node '{node}' and this object"
        return True, ""

    @staticmethod
    def _lease(node: str, attrs: Attributes) -> tuple[bool, str]:
        if attrs.verb not in ("get", "create", "update", "patch", "delete"):
            return False, "can only get, create, update, patch, or delete a node lease"
        if attrs.namespace != NODE_LEASE_NAMESPACE:
            return False, (
                f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace'
            )
        # A create has no name yet; the node restriction checks the body's name.
        if attrs.verb != "create" and attrs.name != node:
            return False, "can only access node lease with the same name as the requesting node"
        return True, ""
