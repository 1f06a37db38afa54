"""Node restriction: what a kubelet may change, checked like upstream's NodeRestriction admission.

Authorization lets every node write nodes, pods/status, leases and mirror pods in general;
this narrows each write to the node's own objects: its Node, its Lease, and pods bound to it.
Most checks read only the request's name and the node graph; creates read the body.
"""

from __future__ import annotations

from typing import Any

from k8slite.api import errors
from k8slite.apiserver import rest
from k8slite.apiserver.authn import user_of
from k8slite.apiserver.authz.node import NodeGraph, pod_references
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.http import Request
from k8slite.apiserver.requestinfo import RequestInfo

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
_WRITES = {"create", "update", "patch", "delete", "deletecollection"}
Obj = dict[str, Any]


class NodeRestriction:
    """A resource handler filter; runs after authorization allowed the request."""

    def __init__(self, core: ApiCore, graph: NodeGraph) -> None:
        self.pods = core.registries[("", "pods")]
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

    async def _pod(self, req: Request, info: RequestInfo, node: str) -> None:
        if info.verb == "create" and info.subresource is None:
            await self._mirror_pod(await _object(req, info), info, node)
            return
        name, ns = info.name or "", info.namespace or ""
        if not name or self.pods.cache.get(self.pods.key(ns, name)) is None:
            return  # nothing to protect: the handler answers 404 (or refuses the verb)
        if self.graph.node_of(ns, name) == node:
            return
        if info.subresource == "status":
            why = (
                f'node "{node}" can only update pod status for pods with spec.nodeName set '
                f"to itself"
            )
        elif info.subresource == "eviction":
            why = f'node "{node}" can only evict pods with spec.nodeName set to itself'
        elif info.verb == "delete":
            why = f'node "{node}" can only delete pods with spec.nodeName set to itself'
        else:
            why = f'node "{node}" can only modify pods with spec.nodeName set to itself'
        raise _forbidden(info, name, why)

    @staticmethod
    async def _mirror_pod(pod: Obj, info: RequestInfo, node: str) -> None:
        name = _name(pod)
        meta = pod.get("metadata") or {}
        annotations = meta.get("annotations") if isinstance(meta, dict) else None
        if not isinstance(annotations, dict) or MIRROR_ANNOTATION not in annotations:
            raise _forbidden(
                info,
                name,
                f'pod does not have "{MIRROR_ANNOTATION}" annotation, '
                f'node "{node}" can only create mirror pods',
            )
        spec = pod.get("spec")
        if not isinstance(spec, dict):
            spec = {}
        if spec.get("nodeName") != node:
            raise _forbidden(
                info, name, f'node "{node}" can only create pods with spec.nodeName set to itself'
            )
        if spec.get("serviceAccountName"):
            raise _forbidden(
                info, name, f'node "{node}" can not create pods that reference a service account'
            )
        # A mirror pod must not put secrets and the like into the node's reach.
        for resource, _, _ in pod_references(pod):
            if resource != "serviceaccounts":
                raise _forbidden(
                    info, name, f'node "{node}" can not create pods that reference {resource}'
                )


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
