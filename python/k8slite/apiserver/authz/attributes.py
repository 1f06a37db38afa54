"""What a request asks to do (upstream's authorizer.Attributes) and the 403 that refuses it."""

from __future__ import annotations

from dataclasses import dataclass

from k8slite.api import errors
from k8slite.apiserver.authn import UserInfo
from k8slite.apiserver.http import Request
from k8slite.apiserver.requestinfo import RequestInfo


@dataclass(frozen=True, slots=True)
class Attributes:
    """A verb on a resource (group, resource, subresource, namespace, name) or on a path."""

    user: UserInfo
    verb: str
    resource_request: bool
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


def _selected_name(field_selector: str | None) -> str:
    """The name a list or watch is narrowed to by fieldSelector=metadata.name=<name>.

    Upstream puts it into the request's attributes, so that RBAC resourceNames and the node
    authorizer can allow watching one object without allowing watching them all.
    """
    if not field_selector or "metadata.name" not in field_selector:
        return ""
    for term in field_selector.split(","):
        key, sep, value = term.partition("==")
        if not sep:
            key, sep, value = term.partition("=")
        if sep and key.strip() == "metadata.name" and not key.endswith("!"):
            return value.strip()
    return ""


def resource_attributes(user: UserInfo, req: Request, info: RequestInfo) -> Attributes:
    rt = info.resource
    name = info.name or ""
    namespace = info.namespace or ""
    if info.verb in ("list", "watch") and not name:
        name = _selected_name(req.arg("fieldSelector"))
    if rt.plural == "namespaces" and not rt.group and info.name:
        # A namespace is inside itself: a RoleBinding in "ns" may grant "get namespaces/ns".
        namespace = info.name
    return Attributes(
        user,
        info.verb,
        True,
        info.group,
        info.version,
        rt.plural,
        info.subresource or "",
        namespace,
        name,
        req.path,
    )


def nonresource_attributes(user: UserInfo, method: str, path: str) -> Attributes:
    return Attributes(user, method.lower(), False, path=path)


def forbidden_message(attrs: Attributes, reason: str = "") -> str:
    """upstream's wording: User "u" cannot <verb> resource "r" in API group "g" ...: reason."""
    user = attrs.user.name
    if not attrs.resource_request:
        text = f'User "{user}" cannot {attrs.verb} path "{attrs.path}"'
    else:
        resource = attrs.resource
        if attrs.subresource:
            resource += "/" + attrs.subresource
        text = (
            f'User "{user}" cannot {attrs.verb} resource "{resource}" in API group '
            f'"{attrs.api_group}"'
        )
        if attrs.namespace:
            text += f' in the namespace "{attrs.namespace}"'
        else:
            text += " at the cluster scope"
    return f"{text}: {reason}" if reason else text


def forbidden(attrs: Attributes, why: str) -> errors.ApiError:
    """A 403 Status for `attrs` with message `why`, named like upstream's NewForbidden."""
    if not attrs.resource_request or not attrs.resource:
        return errors.ApiError(403, "Forbidden", f"forbidden: {why}", {})
    return errors.forbidden(attrs.resource, attrs.name, attrs.api_group, why)


def denied(attrs: Attributes, reason: str = "") -> errors.ApiError:
    return forbidden(attrs, forbidden_message(attrs, reason))
