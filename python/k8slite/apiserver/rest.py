"""REST handlers for resources: get, list, create, update, patch, delete, deletecollection."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import trio
import yaml

from k8slite._native import (
    DecodeError,
    ExpiredError,
    FieldSelector,
    LabelSelector,
    SelectorError,
    dumps,
    loads,
)
from k8slite.api import apply, errors, fieldvalidation, schemas
from k8slite.api.customresource import custom_of
from k8slite.api.patch import json_patch, merge_patch
from k8slite.api.resources import ResourceType
from k8slite.api.schemas import Definition
from k8slite.api.strategic import go_format, strategic_merge_patch
from k8slite.apiserver import goints, pbobjects, writes, yamlbody
from k8slite.apiserver.http import Request
from k8slite.apiserver.registry import DeleteOptions, Registry
from k8slite.apiserver.requestinfo import RequestInfo
from k8slite.component.objects import Obj, meta, resource_version_of

PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)
CUSTOM_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
)
# How long a list or get for a resourceVersion newer than ours waits before 504.
_TOO_LARGE_RV_WAIT = 3.0


# ------------------------------------------------------------------ decoding


def decode_body(req: Request, body: bytes) -> Any:
    """JSON or YAML per Content-Type; 400 on malformed input, 415 on other media types."""
    ctype = req.content_type
    if not body.strip():
        raise errors.bad_request("the body of the request was empty")
    if ctype in ("", "application/json") or ctype in PATCH_TYPES[:3]:
        try:
            return loads(body)
        except DecodeError as e:
            raise errors.bad_request(f"json parse error: {e}") from None
        except ValueError as e:
            raise errors.bad_request(f"json parse error: {e}") from None
    if ctype == pbobjects.CONTENT_TYPE:
        return pbobjects.decode(body)
    if ctype in ("application/yaml", "application/apply-patch+yaml"):
        try:
            return yamlbody.load(body)
        except yaml.YAMLError as e:
            raise errors.bad_request(f"yaml parse error: {e}") from None
    raise errors.unsupported_media_type(ctype)


def check_type_meta(obj: Any, rt: ResourceType, expected_kind: str | None = None) -> Obj:
    """The body must be an object of this resource's kind and group/version (when given)."""
    if not isinstance(obj, dict):
        raise errors.bad_request("the body of the request must be a JSON object")
    kind = expected_kind or rt.kind
    api_version = obj.get("apiVersion")
    if api_version and api_version != rt.api_version and expected_kind is None:
        raise errors.bad_request(
            f"the API version in the data ({api_version}) does not match "
            f"the expected API version ({rt.api_version})"
        )
    if obj.get("kind") and obj["kind"] != kind:
        raise errors.bad_request(
            f"the kind in the data ({obj['kind']}) does not match the expected kind ({kind})"
        )
    metadata = obj.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise errors.bad_request("metadata must be an object")
    return obj


def check_body_namespace(obj: Obj, namespace: str | None) -> None:
    body_ns = meta(obj).get("namespace")
    if namespace and body_ns and body_ns != namespace:
        raise errors.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )


def dry_run(req: Request) -> bool:
    values = req.query.get("dryRun") or []
    for v in values:
        if v != "All":
            raise errors.bad_request(f'Invalid value: "{v}": supported values: "All"')
    return bool(values)


# ----------------------------------------------------------------- selectors


def label_selector(req: Request) -> LabelSelector | None:
    text = req.arg("labelSelector")
    if not text:
        return None
    try:
        return LabelSelector(text)
    except SelectorError as e:
        raise errors.bad_request(str(e)) from None


def field_selector(req: Request, rt: ResourceType, name: str | None = None) -> FieldSelector | None:
    text = req.arg("fieldSelector") or ""
    if name is not None:
        text = f"metadata.name={name}" + (f",{text}" if text else "")
    if not text:
        return None
    try:
        sel = FieldSelector(text)
    except SelectorError as e:
        raise errors.bad_request(str(e)) from None
    for field, _, _ in sel.requirements():
        if field not in rt.selectable_fields:
            raise errors.bad_request(f"field label not supported: {field}")
    return sel


# -------------------------------------------------------------------- list


def encode_continue(rv: int, start_key: str) -> str:
    token = dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start_key + "\x00"})
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


_BAD_CONTINUE_RV = (
    "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
)


def decode_continue(token: str) -> tuple[int, str]:
    """The revision and start key of a continue token, checked as upstream decodes it."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = loads(raw)
    except (binascii.Error, ValueError) as e:
        raise errors.bad_request(f"{_BAD_CONTINUE_RV}: {e}") from None
    if not isinstance(data, dict):
        raise errors.bad_request(
            f"{_BAD_CONTINUE_RV}: json: cannot unmarshal {_json_kind(data)} into Go value "
            "of type storage.continueToken"
        )
    # The token is a Go struct: rv an int64, start a string, v a string.
    for field, kind in (("v", str), ("rv", int), ("start", str)):
        value = data.get(field)
        fits = isinstance(value, kind) and not isinstance(value, bool)
        if isinstance(value, int) and fits:
            fits = goints.INT64_MIN <= value <= goints.INT64_MAX
        if value is not None and not fits:
            shown = _json_kind(value)
            if shown == "number":  # Go shows the number as written
                literal = re.search(rb'"%s"\s*:\s*(-?[0-9][0-9.eE+-]*)' % field.encode(), raw)
                shown += f" {literal.group(1).decode() if literal else value}"
            raise errors.bad_request(
                f"{_BAD_CONTINUE_RV}: json: cannot unmarshal {shown} into Go struct "
                f"field continueToken.{field} of type {'int64' if kind is int else 'string'}"
            )
    if data.get("v") != "meta.k8s.io/v1":
        raise errors.bad_request(
            "continue key is not valid: server does not recognize this encoded version "
            + str(data.get("v") or "")
        )
    rv, start = data.get("rv") or 0, data.get("start") or ""
    if rv <= 0:
        raise errors.bad_request(_BAD_CONTINUE_RV)
    if not start:
        raise errors.bad_request(
            "continue key is not valid: encoded start key empty (version meta.k8s.io/v1)"
        )
    return rv, start.rstrip("\x00")


def _json_kind(value: object) -> str:
    """How Go's JSON decoder names a value of the wrong type."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    return "number"


async def wait_for_revision(reg: Registry, rv: int) -> None:
    """Wait briefly for the store to reach rv; upstream answers 504 when it does not.

    Lists and watches call it before they send anything, so the answer is a whole Status.
    """
    with trio.move_on_after(_TOO_LARGE_RV_WAIT):
        while reg.store.revision() < rv:
            await reg.changed.wait()
    if reg.store.revision() < rv:
        raise errors.ApiError(
            504,
            "Timeout",
            f"Too large resource version: {rv}, current: {reg.store.revision()}",
            {
                "causes": [
                    {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
                ],
                "retryAfterSeconds": 1,
            },
            {"Retry-After": "1"},
        )


def parse_rv(value: str, what: str = "resourceVersion") -> int:
    """A resource version: a uint64, as upstream's storage parses it (400 otherwise)."""
    try:
        return goints.parse_uint64(value)
    except ValueError as e:
        # Upstream answers this with 500 (kubernetes#139485); a bad query is the client's.
        raise errors.bad_request(f'{what}: Invalid value: "{value}": {e}') from None


async def list_objects(reg: Registry, req: Request, info: RequestInfo) -> bytes:
    rt = reg.rt
    label = label_selector(req)
    field = field_selector(req, rt)
    limit = req.int_arg("limit") or 0
    limit = max(limit, 0)
    token = req.arg("continue")
    rv_arg = req.arg("resourceVersion") or ""
    match = req.arg("resourceVersionMatch") or ""
    if match and not rv_arg:
        raise errors.bad_request(
            "resourceVersionMatch is forbidden unless resourceVersion is provided"
        )
    if match not in ("", "Exact", "NotOlderThan"):
        raise errors.bad_request(
            f'resourceVersionMatch: Unsupported value: "{match}": '
            'supported values: "Exact", "NotOlderThan"'
        )
    at: int | None = None
    start_after: str | None = None
    if token:
        if rv_arg and rv_arg != "0":
            raise errors.bad_request(
                "specifying resource version is not allowed when using continue"
            )
        at, start = decode_continue(token)
        start_after = rt.key_prefix + start
    elif match == "Exact":
        at = parse_rv(rv_arg)
        if at == 0:
            raise errors.bad_request(
                'resourceVersionMatch "exact" is forbidden for resourceVersion "0"'
            )
    elif rv_arg and rv_arg != "0":
        await wait_for_revision(reg, parse_rv(rv_arg))
    elif not rv_arg:
        await reg.store.sync()  # the most recent state, as a quorum read gives
    if at is not None and at > reg.store.revision():
        await wait_for_revision(reg, at)
    prefix = rt.prefix(info.namespace)
    list_rv = at if at is not None else reg.store.revision()

    def envelope(last_key: str | None, remaining: int) -> tuple[bytes, bytes]:
        list_meta: Obj = {"resourceVersion": str(list_rv)}
        if last_key is not None:
            list_meta["continue"] = encode_continue(list_rv, last_key[len(rt.key_prefix) :])
            if label is None and field is None:
                list_meta["remainingItemCount"] = remaining
        head = (
            b'{"kind":"'
            + rt.list_kind.encode()
            + b'","apiVersion":"'
            + rt.api_version.encode()
            + b'","metadata":'
            + dumps(list_meta)
            + b',"items":'
        )
        return head, b"}"

    try:
        body, _, _, _ = reg.cache.list(prefix, label, field, limit, start_after, at, envelope)
    except ExpiredError:
        if token:
            raise errors.gone(
                "The provided continue parameter is too old to display a consistent list "
                "result. You can start a new list without the continue parameter, or use the "
                "continue token in this response to retrieve the remainder of the results. "
                "Continuing with the provided token results in an inconsistent list - objects "
                "that were created, modified, or deleted between the time the first chunk was "
                "returned and now may show up in the list."
            ) from None
        raise errors.gone(f"too old resource version: {at} ({reg.cache.oldest()})") from None
    return body


# ------------------------------------------------------------ get and write


def get_object(reg: Registry, req: Request, info: RequestInfo) -> bytes:
    assert info.name is not None
    rv_arg = req.arg("resourceVersion")
    if rv_arg and rv_arg != "0":
        parse_rv(rv_arg)
    return reg.get_bytes(info.namespace, info.name)[0]


async def create_object(reg: Registry, req: Request, info: RequestInfo) -> bytes:
    obj = check_type_meta(decode_body(req, await req.body()), reg.rt)
    check_body_namespace(obj, info.namespace)
    opts = writes.write_options(req, "CreateOptions")
    writes.validate_body(req, reg.rt, obj, opts)
    track = writes.with_admission(req, writes.tracker(reg.rt, opts, None))
    return await reg.create(info.namespace, obj, dry_run(req), track)


async def update_object(reg: Registry, req: Request, info: RequestInfo) -> tuple[bytes, bool]:
    """PUT of the object or of its status (or a namespace's finalize)."""
    assert info.name is not None
    body = check_type_meta(decode_body(req, await req.body()), reg.rt)
    check_body_namespace(body, info.namespace)
    opts = writes.write_options(req, "UpdateOptions")
    writes.validate_body(req, reg.rt, body, opts)
    name = info.name

    def mutate(current: Obj | None) -> Obj:
        wanted = resource_version_of(body)
        if current is None:
            if wanted:
                raise errors.not_found(reg.rt.plural, name, reg.rt.group)
            return body
        if wanted and wanted != current["metadata"].get("resourceVersion"):
            raise errors.conflict(reg.rt.plural, name, reg.rt.group)
        return dict(body)

    return await reg.update(
        info.namespace,
        name,
        mutate,
        subresource=info.subresource,
        dry_run=dry_run(req),
        track=writes.with_admission(req, writes.tracker(reg.rt, opts, info.subresource)),
    )


def apply_patch(ctype: str, current: Obj, patch: Any, definition: Definition | None = None) -> Obj:
    """Apply a JSON, merge or strategic merge patch (SMP merges by the definition's keys)."""
    if ctype == "application/json-patch+json":
        result = json_patch(current, patch)
    elif ctype == "application/strategic-merge-patch+json":
        result = strategic_merge_patch(current, patch, definition)
    else:
        if not isinstance(patch, dict):
            raise errors.bad_request("the patch must be a JSON object")
        result = merge_patch(current, patch)
    if not isinstance(result, dict):
        raise errors.bad_request("the patched object is not a JSON object")
    return result


async def patch_object(reg: Registry, req: Request, info: RequestInfo) -> tuple[bytes, bool]:
    """PATCH of any type; returns the body and whether an apply created the object."""
    assert info.name is not None
    ctype = req.content_type
    # Custom resources have no Go struct to carry patch strategies: no strategic merge.
    accepted = CUSTOM_PATCH_TYPES if custom_of(reg.rt) is not None else PATCH_TYPES
    if ctype not in accepted:
        raise errors.ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in "
            f"an unknown format - accepted media types include: "
            f"{', '.join(accepted)}",
        )
    patch = decode_body(req, await req.body())
    if ctype == "application/apply-patch+yaml":
        return await apply_object(reg, req, info, patch)
    if req.arg("force") is not None:
        raise errors.invalid(
            "PatchOptions",
            "",
            [
                {
                    "reason": "FieldValueForbidden",
                    "field": "force",
                    "message": "Forbidden: may not be specified for non-apply patch",
                }
            ],
            "meta.k8s.io",
        )
    opts = writes.write_options(req, "PatchOptions")
    definition = schemas.root(reg.rt)
    name = info.name

    def mutate(current: Obj | None) -> Obj:
        if current is None:
            raise errors.not_found(reg.rt.plural, name, reg.rt.group)
        rv = current["metadata"].get("resourceVersion")
        patched = apply_patch(ctype, current, patch, definition)
        wanted = resource_version_of(patched)
        if wanted and wanted != rv:
            raise errors.conflict(reg.rt.plural, name, reg.rt.group)
        writes.validate_patched(
            req,
            reg.rt,
            patched,
            opts,
            lambda: go_format(patch) if ctype == PATCH_TYPES[2] else dumps(patched).decode(),
        )
        return patched

    data, _ = await reg.update(
        info.namespace,
        name,
        mutate,
        subresource=info.subresource,
        dry_run=dry_run(req),
        allow_create=False,
        track=writes.with_admission(req, writes.tracker(reg.rt, opts, info.subresource)),
    )
    return data, False


async def apply_object(
    reg: Registry, req: Request, info: RequestInfo, body: Any
) -> tuple[bytes, bool]:
    """Server-side apply (application/apply-patch+yaml): merge, own, prune, or 409."""
    assert info.name is not None
    rt, name, namespace = reg.rt, info.name, info.namespace
    opts = writes.write_options(req, "PatchOptions", is_apply=True)
    config = apply.check_config(body, rt.api_version, rt.kind, name)
    check_body_namespace(config, namespace)
    writes.check_apply_config(rt, config, namespace, name)
    node = writes.schema_node(rt)
    request = apply.ApplyRequest(
        config, opts.manager, req.flag("force"), rt.api_version, info.subresource or ""
    )

    def mutate(current: Obj | None) -> Obj:
        if node is None:
            return merge_patch(current or {}, config)  # type: ignore[no-any-return]
        try:
            return apply.server_side_apply(current, request, node)
        except apply.ApplyError as e:
            raise writes.apply_failed(rt, namespace, name, str(e)) from None

    return await reg.update(
        namespace,
        name,
        mutate,
        subresource=info.subresource,
        dry_run=dry_run(req),
        allow_create=info.subresource is None,
        track=writes.with_admission(req, None),
    )


_DELETE_OPTIONS = ("", "v1", "DeleteOptions")


def delete_options(req: Request, body: Any) -> DeleteOptions:
    opts = DeleteOptions(dry_run=dry_run(req))
    if isinstance(body, dict):
        if body.get("kind") not in (None, "DeleteOptions"):
            raise errors.bad_request(
                f"the kind in the data ({body.get('kind')}) does not match "
                f"the expected kind (DeleteOptions)"
            )
        found = fieldvalidation.check(dict(body), schemas.catalog().kinds[_DELETE_OPTIONS])
        if found.type_error:
            raise errors.bad_request(
                'DeleteOptions in version "v1" cannot be handled as a DeleteOptions: '
                + found.type_error
            )
        opts.grace_period_seconds = body.get("gracePeriodSeconds")
        opts.propagation_policy = body.get("propagationPolicy")
        if body.get("orphanDependents") is not None and opts.propagation_policy is None:
            opts.propagation_policy = "Orphan" if body["orphanDependents"] else "Background"
        pre = body.get("preconditions") or {}
        opts.precondition_uid = pre.get("uid")
        opts.precondition_rv = pre.get("resourceVersion")
        if body.get("dryRun"):
            opts.dry_run = True
    grace = req.int_arg("gracePeriodSeconds")
    if grace is not None:
        opts.grace_period_seconds = grace
    policy = req.arg("propagationPolicy")
    if policy:
        opts.propagation_policy = policy
    orphan = req.arg("orphanDependents")
    if orphan and opts.propagation_policy is None:
        opts.propagation_policy = "Orphan" if orphan == "true" else "Background"
    if opts.propagation_policy not in (None, "Orphan", "Background", "Foreground"):
        raise errors.invalid(
            "DeleteOptions",
            "",
            [
                {
                    "reason": "FieldValueNotSupported",
                    "field": "propagationPolicy",
                    "message": f'Unsupported value: "{opts.propagation_policy}": supported values: '
                    '"Foreground", "Background", "Orphan", "nil"',
                }
            ],
        )
    if opts.grace_period_seconds is not None and opts.grace_period_seconds < 0:
        opts.grace_period_seconds = 0
    return opts


async def _delete_body(req: Request) -> Any:
    body = await req.body()
    if not body.strip():
        return None
    return decode_body(req, body)


async def delete_object(reg: Registry, req: Request, info: RequestInfo) -> tuple[bytes, int]:
    assert info.name is not None
    opts = delete_options(req, await _delete_body(req))
    return await reg.delete(info.namespace, info.name, opts)


async def delete_collection(reg: Registry, req: Request, info: RequestInfo) -> bytes:
    opts = delete_options(req, await _delete_body(req))
    label = label_selector(req)
    field = field_selector(req, reg.rt)
    items, _, _, _ = reg.cache.list(reg.rt.prefix(info.namespace), label, field, 0, None, None)
    deleted: list[bytes] = []
    for obj in loads(items):
        # Stored objects always carry metadata: read inline, as the request paths here do,
        # rather than an accessor call per item (component/objects.py is for the rest).
        m = obj["metadata"]
        try:
            data, _ = await reg.delete(m.get("namespace"), m["name"], opts)
        except errors.ApiError as e:
            if e.code == 404:
                continue
            raise
        answer = loads(data)
        deleted.append(data if answer.get("kind") != "Status" else dumps(obj))
    head = (
        b'{"kind":"'
        + reg.rt.list_kind.encode()
        + b'","apiVersion":"'
        + reg.rt.api_version.encode()
        + b'","metadata":{"resourceVersion":"'
        + str(reg.store.revision()).encode()
        + b'"},"items":['
    )
    return head + b",".join(deleted) + b"]}"
