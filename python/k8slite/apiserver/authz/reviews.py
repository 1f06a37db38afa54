"""Access reviews (create-only, never stored): can-i answers and the caller's own identity.

authorization.k8s.io/v1 SelfSubjectAccessReview, SubjectAccessReview,
LocalSubjectAccessReview and SelfSubjectRulesReview (`kubectl auth can-i [--list]`), and
authentication.k8s.io/v1 SelfSubjectReview (`kubectl auth whoami`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from k8slite._native import dumps
from k8slite.api import errors
from k8slite.apiserver import rest
from k8slite.apiserver.authn import UserInfo, user_of
from k8slite.apiserver.authz.attributes import Attributes
from k8slite.apiserver.authz.authorizer import Authorizer
from k8slite.apiserver.http import Request
from k8slite.apiserver.requestinfo import RequestInfo
from k8slite.component.objects import Obj

AUTHZ_GROUP = "authorization.k8s.io"
AUTHN_GROUP = "authentication.k8s.io"
Review = Callable[[Request, RequestInfo], Awaitable[tuple[int, bytes]]]


async def _body(req: Request, info: RequestInfo) -> Obj:
    # JSON, YAML, or the protobuf that client-go's typed clients (kubectl auth) send.
    obj = rest.check_type_meta(rest.decode_body(req, await req.body()), info.resource)
    spec = obj.get("spec")
    if spec is not None and not isinstance(spec, dict):
        raise _invalid(
            info,
            [
                {
                    "reason": "FieldValueInvalid",
                    "field": "spec",
                    "message": "Invalid value: spec must be an object",
                }
            ],
        )
    return obj


def _invalid(info: RequestInfo, causes: list[dict[str, str]]) -> errors.ApiError:
    return errors.invalid(info.resource.kind, "", causes, info.resource.group)


def _answer(info: RequestInfo, obj: Obj, status: Obj) -> tuple[int, bytes]:
    metadata = obj.get("metadata")
    meta = dict(metadata) if isinstance(metadata, dict) else {}
    meta.setdefault("creationTimestamp", None)
    out: Obj = {
        "kind": info.resource.kind,
        "apiVersion": info.resource.api_version,
        "metadata": meta,
    }
    if "spec" in obj:
        out["spec"] = obj["spec"]
    out["status"] = status
    return 201, dumps(out)


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _attributes(
    info: RequestInfo,
    spec: Obj,
    user: UserInfo,
    local_ns: str | None,
    allow_nonresource: bool = True,
) -> Attributes:
    resource, nonresource = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if resource is not None and nonresource is not None:
        raise _invalid(
            info,
            [
                {
                    "reason": "FieldValueInvalid",
                    "field": "spec.nonResourceAttributes",
                    "message": "Invalid value: cannot be specified in combination "
                    "with resourceAttributes",
                }
            ],
        )
    if isinstance(nonresource, dict):
        if not allow_nonresource:
            raise _invalid(
                info,
                [
                    {
                        "reason": "FieldValueInvalid",
                        "field": "spec.nonResourceAttributes",
                        "message": "Invalid value: disallowed on this kind of request",
                    }
                ],
            )
        return Attributes(
            user, _string(nonresource.get("verb")), False, path=_string(nonresource.get("path"))
        )
    if not isinstance(resource, dict):
        raise _invalid(
            info,
            [
                {
                    "reason": "FieldValueRequired",
                    "field": "spec.resourceAttributes",
                    "message": "Required value: one of resourceAttributes or "
                    "nonResourceAttributes must be specified",
                }
            ],
        )
    namespace = _string(resource.get("namespace"))
    if local_ns is not None and namespace != local_ns:
        raise _invalid(
            info,
            [
                {
                    "reason": "FieldValueInvalid",
                    "field": "spec.resourceAttributes.namespace",
                    "message": f'Invalid value: "{namespace}": must match metadata.namespace',
                }
            ],
        )
    return Attributes(
        user,
        _string(resource.get("verb")),
        True,
        _string(resource.get("group")),
        _string(resource.get("version")),
        _string(resource.get("resource")),
        _string(resource.get("subresource")),
        namespace,
        _string(resource.get("name")),
    )


def _review_status(authorizer: Authorizer, attrs: Attributes) -> Obj:
    allowed, reason = authorizer.authorize(attrs)
    status: Obj = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    return status


def _caller(req: Request) -> UserInfo:
    user = user_of(req.scope)
    if user is None:
        raise errors.ApiError(401, "Unauthorized", "Unauthorized")
    return user


def _subject(info: RequestInfo, spec: Obj) -> UserInfo:
    name, groups = _string(spec.get("user")), spec.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise _invalid(
            info,
            [
                {
                    "reason": "FieldValueInvalid",
                    "field": "spec.groups",
                    "message": "Invalid value: must be a list of strings",
                }
            ],
        )
    if not name and not groups:
        raise _invalid(
            info,
            [
                {
                    "reason": "FieldValueInvalid",
                    "field": "spec.user",
                    "message": 'Invalid value: "": at least one of user or group must be specified',
                }
            ],
        )
    return UserInfo(name, tuple(groups), _string(spec.get("uid")))


def reviews(authorizer: Authorizer) -> dict[tuple[str, str], Review]:
    """The review resources by (group, plural), for the resource handler to serve."""

    async def self_access(req: Request, info: RequestInfo) -> tuple[int, bytes]:
        obj = await _body(req, info)
        attrs = _attributes(info, obj.get("spec") or {}, _caller(req), None)
        return _answer(info, obj, _review_status(authorizer, attrs))

    async def subject_access(req: Request, info: RequestInfo) -> tuple[int, bytes]:
        obj = await _body(req, info)
        spec = obj.get("spec") or {}
        attrs = _attributes(info, spec, _subject(info, spec), None)
        return _answer(info, obj, _review_status(authorizer, attrs))

    async def local_access(req: Request, info: RequestInfo) -> tuple[int, bytes]:
        obj = await _body(req, info)
        spec = obj.get("spec") or {}
        attrs = _attributes(
            info, spec, _subject(info, spec), info.namespace or "", allow_nonresource=False
        )
        return _answer(info, obj, _review_status(authorizer, attrs))

    async def self_rules(req: Request, info: RequestInfo) -> tuple[int, bytes]:
        obj = await _body(req, info)
        namespace = _string((obj.get("spec") or {}).get("namespace"))
        return _answer(info, obj, authorizer.rules_review(_caller(req), namespace))

    async def self_subject(req: Request, info: RequestInfo) -> tuple[int, bytes]:
        obj = await _body(req, info)
        user = _caller(req)
        user_info: Obj = {"username": user.name, "groups": list(user.groups)}
        if user.uid:
            user_info["uid"] = user.uid
        if user.extra:
            user_info["extra"] = user.extra
        return _answer(info, obj, {"userInfo": user_info})

    served: dict[tuple[str, str], Review] = {
        (AUTHZ_GROUP, "selfsubjectaccessreviews"): self_access,
        (AUTHZ_GROUP, "subjectaccessreviews"): subject_access,
        (AUTHZ_GROUP, "localsubjectaccessreviews"): local_access,
        (AUTHZ_GROUP, "selfsubjectrulesreviews"): self_rules,
        (AUTHN_GROUP, "selfsubjectreviews"): self_subject,
    }

    def create_only(review: Review) -> Review:
        async def serve(req: Request, info: RequestInfo) -> tuple[int, bytes]:
            if info.verb != "create" or info.subresource:
                raise errors.method_not_allowed()
            return await review(req, info)

        return serve

    return {key: create_only(review) for key, review in served.items()}
