"""Subresources with their own shapes: pods/binding and */scale (pods/eviction: eviction.py)."""

from __future__ import annotations

from k8slite._native import LabelSelector, dumps, loads
from k8slite.api import errors, fieldvalidation, meta, schemas
from k8slite.api.customresource import Scale, custom_of, json_path
from k8slite.api.resources import ResourceType
from k8slite.apiserver import writes
from k8slite.apiserver.http import Request
from k8slite.apiserver.registry import Registry
from k8slite.apiserver.requestinfo import RequestInfo
from k8slite.apiserver.rest import apply_patch, decode_body, dry_run
from k8slite.component.objects import Obj, is_deleting, resource_version_of, set_condition


def _success(code: int = 201) -> bytes:
    return dumps(
        {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code}
    )


async def bind_pod(reg: Registry, req: Request, info: RequestInfo) -> bytes:
    """POST pods/<name>/binding: assign the pod to a node, once."""
    assert info.name is not None
    body = decode_body(req, await req.body())
    if not isinstance(body, dict) or body.get("kind") not in (None, "Binding"):
        raise errors.bad_request("the body of the request must be a Binding")
    target = body.get("target") or {}
    node = target.get("name")
    name = info.name
    if not node:
        raise errors.invalid(
            "Binding",
            name,
            [{"reason": "FieldValueRequired", "field": "target.name", "message": "Required value"}],
        )

    def mutate(current: Obj | None) -> Obj:
        # Changes a copy (of the pod, its spec and status, not the rest): the registry
        # decodes the stored pod once and keeps it as the update's old object.
        if current is None:
            raise errors.not_found("pods", name)
        spec = current.get("spec")
        spec = dict(spec) if isinstance(spec, dict) else {}
        if is_deleting(current):
            raise errors.conflict(
                "pods/binding",
                name,
                "",
                f"pod {name} is being deleted, cannot be assigned to a host",
            )
        if spec.get("nodeName"):
            raise errors.conflict(
                "pods/binding",
                name,
                "",
                f'pod {name} is already assigned to node "{spec["nodeName"]}"',
            )
        spec["nodeName"] = node
        status = current.get("status")
        status = dict(status) if isinstance(status, dict) else {}
        if isinstance(status.get("conditions"), list):
            status["conditions"] = list(status["conditions"])
        set_condition(
            status,
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": meta.now(),
            },
        )
        return {**current, "spec": spec, "status": status}

    await reg.update(
        info.namespace, name, mutate, subresource="binding", dry_run=dry_run(req), copies=True
    )
    return _SUCCESS


_SUCCESS = _success()


_SCALE = ("autoscaling", "v1", "Scale")


def _custom_scale(obj: Obj, scale: Scale) -> tuple[int, int, str]:
    """Replicas and selector from the paths a CRD's scale subresource names."""
    spec = json_path(obj, scale.spec_replicas)
    status = json_path(obj, scale.status_replicas)
    selector = json_path(obj, scale.label_selector) if scale.label_selector else []
    return (
        spec[0] if spec and isinstance(spec[0], int) else 0,
        status[0] if status and isinstance(status[0], int) else 0,
        selector[0] if selector and isinstance(selector[0], str) else "",
    )


def _set_path(obj: Obj, path: str, value: int) -> None:
    """Set a .a.b path (a scale subresource's specReplicasPath), making objects on the way."""
    keys = path.lstrip(".").split(".")
    for key in keys[:-1]:
        child = obj.get(key)
        if not isinstance(child, dict):
            child = obj[key] = {}
        obj = child
    obj[keys[-1]] = value


def _scale_of(obj: Obj, rt: ResourceType) -> Obj:
    m = obj["metadata"]
    custom = custom_of(rt)
    if custom is not None and custom.scale is not None:
        spec_replicas, replicas, selector_text = _custom_scale(obj, custom.scale)
    else:
        selector = (obj.get("spec") or {}).get("selector") or {}
        if obj.get("kind") == "ReplicationController":
            selector = {"matchLabels": selector}  # an RC's selector is a plain label map
        spec_replicas = (obj.get("spec") or {}).get("replicas", 0)
        replicas = (obj.get("status") or {}).get("replicas", 0)
        selector_text = str(LabelSelector.from_dict(selector))
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: m[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in m
        },
        "spec": {"replicas": spec_replicas},
        "status": {"replicas": replicas, "selector": selector_text},
    }


def get_scale(reg: Registry, info: RequestInfo) -> bytes:
    assert info.name is not None
    return dumps(_scale_of(reg.get(info.namespace, info.name), reg.rt))


async def update_scale(reg: Registry, req: Request, info: RequestInfo) -> bytes:
    """PUT or PATCH of */scale: only spec.replicas moves, through the main resource."""
    assert info.name is not None
    body = decode_body(req, await req.body())
    name = info.name
    is_patch = req.method == "PATCH"

    def mutate(current: Obj | None) -> Obj:
        if current is None:
            raise errors.not_found(reg.rt.plural, name, reg.rt.group)
        scale = _scale_of(current, reg.rt)
        wanted = apply_patch(req.content_type, meta.clone(scale), body) if is_patch else body
        if not isinstance(wanted, dict):
            raise errors.bad_request("the body of the request must be a Scale")
        rv = resource_version_of(wanted)
        if rv and rv != current["metadata"].get("resourceVersion"):
            raise errors.conflict(reg.rt.plural, name, reg.rt.group)
        found = fieldvalidation.check(meta.clone(wanted), schemas.catalog().kinds[_SCALE])
        if found.type_error:
            if is_patch:
                raise writes.invalid_patch(dumps(wanted).decode(), found.type_error)
            raise errors.bad_request(
                f'Scale in version "v1" cannot be handled as a Scale: {found.type_error}'
            )
        replicas = (wanted.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise errors.invalid(
                "Scale",
                name,
                [
                    {
                        "reason": "FieldValueInvalid",
                        "field": "spec.replicas",
                        "message": f"Invalid value: {replicas}: must be greater than or equal to 0",
                    }
                ],
                "autoscaling",
            )
        custom = custom_of(reg.rt)
        if custom is not None and custom.scale is not None:
            _set_path(current, custom.scale.spec_replicas, replicas)
        else:
            current.setdefault("spec", {})["replicas"] = replicas
        return current

    data, _ = await reg.update(
        info.namespace, name, mutate, dry_run=dry_run(req), allow_create=False
    )
    return dumps(_scale_of(loads(data), reg.rt))
