"""Parse a resource URL into what upstream calls RequestInfo: verb, resource, namespace, name."""

from __future__ import annotations

from dataclasses import dataclass

from k8slite.api import errors
from k8slite.api.resources import ResourceType, lookup

# Subresources of a namespace, which otherwise look like a resource inside the namespace.
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}
# Where the filter chain leaves a request's parsed RequestInfo for the resource handler.
SCOPE_KEY = "k8slite.requestinfo"
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
# The proxy subresource (pods, services, nodes) carries a path of its own after it.
PROXY = "proxy"
# A proxy request's verb comes from its method alone, as upstream's RequestInfoFactory maps
# it (any other method, such as OPTIONS, has the empty verb only a "*" rule allows).
_PROXY_VERBS = {"GET": "get", "HEAD": "get", **_VERBS}


@dataclass(frozen=True, slots=True)
class RequestInfo:
    verb: str  # get list watch create update patch delete deletecollection
    group: str
    version: str
    resource: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


def is_resource_path(path: str) -> bool:
    """Whether the path is under a group/version (the rest is discovery, health, ...)."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        return len(parts) >= 3
    return parts[0] == "apis" and len(parts) >= 4


def parse(method: str, path: str, watch_param: bool) -> RequestInfo:
    parts = [p for p in path.strip("/").split("/")]
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    else:
        group, version, rest = parts[1], parts[2], parts[3:]
    legacy_watch = bool(rest) and rest[0] == "watch"
    if legacy_watch:
        rest = rest[1:]
    namespace: str | None = None
    # /namespaces/<ns>/<resource>... names a namespace's content, while
    # /namespaces/<name>/status and /finalize are subresources of the namespace itself.
    if (
        len(rest) > 2
        and rest[0] == "namespaces"
        and (rest[2] not in _NAMESPACE_SUBRESOURCES or len(rest) > 3)
    ):
        namespace, rest = rest[1], rest[2:]
    if not rest or not rest[0]:
        raise errors.not_found_path()
    resource = lookup(group, version, rest[0])
    if resource is None:
        raise errors.not_found_path()
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    if subresource and subresource not in resource.subresources:
        raise errors.not_found_path()
    if len(rest) > 3 and subresource != PROXY:
        raise errors.not_found_path()
    if resource.namespaced is False:
        if namespace is not None:
            raise errors.not_found_path()
    elif name is not None and namespace is None:
        raise errors.not_found_path()
    if subresource == PROXY and not legacy_watch:
        verb = _PROXY_VERBS.get(method, "")
    elif method in ("GET", "HEAD"):
        if legacy_watch or (name is None and watch_param):
            verb = "watch"
        else:
            verb = "get" if name is not None else "list"
    elif method == "DELETE" and name is None:
        verb = "deletecollection"
    elif method in _VERBS:
        verb = _VERBS[method]
        if verb == "create" and name is not None and subresource is None:
            raise errors.method_not_allowed()
        if verb in ("update", "patch", "delete") and name is None:
            raise errors.method_not_allowed()
    else:
        raise errors.method_not_allowed()
    return RequestInfo(verb, group, version, resource, namespace, name, subresource)


def is_proxy_path(path: str) -> bool:
    """Whether the path names a proxy subresource: /api/v1/[namespaces/NS/]RES/NAME/proxy[/...].

    Only the core group has proxy subresources; this is decided from the path alone, before
    the request is parsed (the request filters need it: a proxy streams its body).
    """
    parts = path.strip("/").split("/")
    if parts[:1] != ["api"] or len(parts) < 5:
        return False
    rest = parts[2:]
    if rest[0] == "namespaces" and len(rest) > 4:
        rest = rest[2:]
    return rest[0] in ("pods", "services", "nodes") and len(rest) >= 3 and rest[2] == PROXY
