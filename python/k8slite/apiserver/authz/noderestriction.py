"""Node restriction: what a kubelet may change, checked like upstream's NodeRestriction admission.

Authorization lets every node write nodes, pods/status, leases and mirror pods in general;
this narrows each write to the node's own objects: its Node, its Lease, and pods bound to it,
and what it may change in them: a Node keeps its taints, ownerReferences and configSource and
gains or loses only kubelet labels. Most checks read only the request's name and the node
graph; creates read the body; Node writes are checked on the final object (writes.admit).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from k8slite._native import loads
from k8slite.api import errors, nodelabels
from k8slite.apiserver import rest, writes
from k8slite.apiserver.authn import user_of
from k8slite.apiserver.authz.node import NodeGraph, pod_references
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.http import Request
from k8slite.apiserver.requestinfo import RequestInfo
from k8slite.component.objects import Obj

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
_WRITES = {"create", "update", "patch", "delete", "deletecollection"}


class NodeRestriction:
    """A resource handler filter; runs after authorization allowed the request."""

    def __init__(self, core: ApiCore, graph: NodeGraph) -> None:
        self.pods = core.registries[("", "pods")]
        self.nodes = core.registries[("", "nodes")]
        self.graph = graph

    async def filter(self, req: Request, info: RequestInfo) -> None:
        if info.verb not in _WRITES:
            return
        user = user_of(req.scope)
        node = user.node_name if user is not None else None
        if node is None:
            return
        rt = info.resource
        if rt.group == "" and rt.plural == "nodes":
            await self._node(req, info, node)
        elif rt.group == "" and rt.plural == "pods":
            await self._pod(req, info, node)
        elif rt.group == "coordination.k8s.io" and rt.plural == "leases" and info.verb == "create":
            name = _name(await _object(req, info))
            if name != node:
                raise _forbidden(
                    info,
                    name,
                    "can only access node lease with the same name as the requesting node",
                )

    async def _node(self, req: Request, info: RequestInfo, node: str) -> None:
        name = info.name or (_name(await _object(req, info)) if info.verb == "create" else "")
        if name != node:
            raise _forbidden(info, name, f'node "{node}" is not allowed to modify node "{name}"')
        if info.verb != "delete":
            writes.admit(req, lambda new, old: _node_change(info, node, new, old))

    async def _pod(self, req: Request, info: RequestInfo, node: str) -> None:
        if info.subresource not in (None, "status", "eviction"):
            raise _forbidden(
                info,
                info.name or "",
                f'unexpected pod subresource "{info.subresource}", '
                "only 'status' and 'eviction' are allowed",
            )
        if info.verb == "create" and info.subresource is None:
            self._mirror_pod(await _object(req, info), info, node)
            return
        name, ns = info.name or "", info.namespace or ""
        if not name or self.pods.cache.get(self.pods.key(ns, name)) is None:
            return  # nothing to protect: the handler answers 404 (or refuses the verb)
        if self.graph.node_of(ns, name) == node:
            if info.subresource == "status":
                writes.admit(req, lambda new, old: _pod_status_change(info, node, new, old))
            return
        if info.subresource == "status":
            why = (
                f'node "{node}" can only update pod status for pods with spec.nodeName set '
                f"to itself"
            )
        elif info.subresource == "eviction":
            why = f"node {node} can only evict pods with spec.nodeName set to itself"
        elif info.verb == "delete":
            why = f'node "{node}" can only delete pods with spec.nodeName set to itself'
        else:
            why = f'node "{node}" can only modify pods with spec.nodeName set to itself'
        raise _forbidden(info, name, why)

    def _mirror_pod(self, pod: Obj, info: RequestInfo, node: str) -> None:
        name = _name(pod)

        def refuse(why: str) -> errors.ApiError:
            return _forbidden(info, name, why)

        annotations = _get(pod, "metadata", "annotations")
        if not isinstance(annotations, dict) or MIRROR_ANNOTATION not in annotations:
            raise refuse(
                f'pod does not have "{MIRROR_ANNOTATION}" annotation, '
                f'node "{node}" can only create mirror pods'
            )
        if _get(pod, "spec", "nodeName") != node:
            raise refuse(f'node "{node}" can only create pods with spec.nodeName set to itself')
        self._mirror_owner(_get(pod, "metadata", "ownerReferences") or [], node, refuse)
        if _get(pod, "spec", "serviceAccountName"):
            raise refuse(f'node "{node}" can not create pods that reference a service account')
        # A mirror pod must not put secrets and the like into the node's reach.
        referenced = {resource for resource, _, _ in pod_references(pod)}
        for resource in ("secrets", "configmaps"):
            if resource in referenced:
                raise refuse(f'node "{node}" can not create pods that reference {resource}')
        volumes = [v for v in _get(pod, "spec", "volumes") or [] if isinstance(v, dict)]
        for vol in volumes:
            for source in _get(vol, "projected", "sources") or []:
                if isinstance(source, dict) and source.get("clusterTrustBundle") is not None:
                    raise refuse(
                        f'node "{node}" can not create pods that reference clustertrustbundles'
                    )
        if any(v.get("persistentVolumeClaim") is not None for v in volumes):
            raise refuse(f'node "{node}" can not create pods that reference persistentvolumeclaims')

    def _mirror_owner(
        self, owners: Any, node: str, refuse: Callable[[str], errors.ApiError]
    ) -> None:
        """A mirror pod is owned by its Node alone, as the kubelet sets it."""
        if not isinstance(owners, list) or len(owners) == 0:
            raise refuse(
                f'node "{node}" can only create pods with an owner reference set to itself'
            )
        if len(owners) > 1:
            raise refuse(
                f'node "{node}" can only create pods with a single owner reference set to itself'
            )
        owner = owners[0] if isinstance(owners[0], dict) else {}
        if (owner.get("apiVersion"), owner.get("kind"), owner.get("name")) != ("v1", "Node", node):
            raise refuse(
                f'node "{node}" can only create pods with an owner reference set to itself'
            )
        if owner.get("controller") is not True:
            raise refuse(
                f'node "{node}" can only create pods with a controller owner reference set '
                "to itself"
            )
        if owner.get("blockOwnerDeletion") is True:
            raise refuse(f'node "{node}" must not set blockOwnerDeletion on an owner reference')
        hit = self.nodes.cache.get(self.nodes.key(None, node))
        if hit is None:
            raise errors.not_found("nodes", node)
        uid = _get(loads(hit[0]), "metadata", "uid")
        if owner.get("uid") != uid:
            raise refuse(f"node {node} UID mismatch: expected {owner.get('uid')} got {uid}")


def _pod_status_change(info: RequestInfo, node: str, new: Obj, old: Obj | None) -> None:
    """A kubelet reports its pods' status but does not rebind their resource claims."""
    if old is None:
        return

    def claims(pod: Obj) -> list[tuple[Any, Any]]:
        entries = _get(pod, "status", "resourceClaimStatuses") or []
        return [(e.get("name"), e.get("resourceClaimName")) for e in entries if isinstance(e, dict)]

    if claims(new) != claims(old):
        why = f'node "{node}" cannot update resource claim statues'  # sic, as upstream
        raise _forbidden(info, _name(new), why)


def _node_change(info: RequestInfo, node: str, new: Obj, old: Obj | None) -> None:
    """What a node may set on its own Node: on create, on update (and patch, apply)."""
    source = _get(new, "spec", "configSource")
    if old is None:
        if source is not None:
            # Upstream's message says "pods"; kept as it is.
            why = f'node "{node}" is not allowed to create pods with a non-nil configSource'
            raise _forbidden(info, node, why)
        bad = forbidden_labels(_labels(new), {})
        if bad:
            why = f'node "{node}" is not allowed to set the following labels: {", ".join(bad)}'
            raise _forbidden(info, node, why)
        return
    if source is not None and source != _get(old, "spec", "configSource"):
        why = f'node "{node}" is not allowed to update configSource to a new non-nil configSource'
        raise _forbidden(info, node, why)
    # Absent, null and [] are the same list to upstream's semantic comparison.
    if (_get(new, "spec", "taints") or []) != (_get(old, "spec", "taints") or []):
        raise _forbidden(info, node, f'node "{node}" is not allowed to modify taints')
    if (_get(new, "metadata", "ownerReferences") or []) != (
        _get(old, "metadata", "ownerReferences") or []
    ):
        raise _forbidden(info, node, f'node "{node}" is not allowed to modify ownerReferences')
    bad = forbidden_labels(_labels(new), _labels(old))
    if bad:
        raise _forbidden(info, node, f"is not allowed to modify labels: {', '.join(bad)}")


def forbidden_labels(new: dict[str, str], old: dict[str, str]) -> list[str]:
    """The changed label keys (added, removed or modified) a node may not change, sorted."""
    changed = {k for k in new.keys() | old.keys() if new.get(k) != old.get(k)}
    return sorted(k for k in changed if not nodelabels.node_may_set(k))


def _labels(obj: Obj) -> dict[str, str]:
    labels = _get(obj, "metadata", "labels")
    return labels if isinstance(labels, dict) else {}


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


async def _object(req: Request, info: RequestInfo) -> Obj:
    obj = rest.decode_body(req, await req.body())
    if not isinstance(obj, dict):
        raise errors.bad_request("the body of the request must be a JSON object")
    return obj


def _name(obj: Obj) -> str:
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else ""


def _forbidden(info: RequestInfo, name: str, why: str) -> errors.ApiError:
    rt = info.resource
    return errors.forbidden(rt.plural, name, rt.group, why)
