"""Who calls the metrics API, and whether they may.

Authentication as upstream's requestheader authenticator: a client certificate whose
common name is one of the allowed front-proxy names (the API server's front-proxy-client)
vouches for the user in X-Remote-User and the groups in X-Remote-Group; any other
certificate is the caller itself. Authorization as upstream's delegated authorizer: a
SubjectAccessReview to the API server, cached 10 seconds either way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from k8slite.client import ApiClient, ApiError
from k8slite.component.serving import Request, Response
from k8slite.metricsserver.api import GROUP, PREFIX, status

log = logging.getLogger(__name__)

CACHE_TTL = 10.0
SAR_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
USER_HEADER = "x-remote-user"
GROUP_HEADER = "x-remote-group"


def caller(req: Request, front_proxies: frozenset[str]) -> tuple[str, tuple[str, ...]] | None:
    """(user, groups) of the request; None when nobody is authenticated."""
    if req.user is None:
        return None
    if req.user.name in front_proxies:
        user = req.headers.get(USER_HEADER, "")
        if not user:
            return None
        # Repeated X-Remote-Group headers arrive joined with commas.
        groups = req.headers.get(GROUP_HEADER, "")
        return user, tuple(g.strip() for g in groups.split(",") if g.strip())
    return req.user.name, tuple(req.user.groups)


def attributes(req: Request) -> tuple[str, str, str, str] | None:
    """(verb, resource, namespace, name) of a metrics.k8s.io resource request; None for
    discovery (open to every authenticated caller, as upstream's system:discovery)."""
    parts = req.path[len(PREFIX) :].strip("/").split("/")
    rest = parts[1:]
    namespace = ""
    if len(rest) >= 2 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return None
    name = rest[1] if len(rest) > 1 else ""
    return ("get" if name else "list"), rest[0], namespace, name


class Authorizer:
    """Authentication and cached SubjectAccessReviews for the metrics API."""

    def __init__(
        self,
        client: ApiClient,
        front_proxies: frozenset[str],
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.client = client
        self.front_proxies = front_proxies
        self.clock = clock
        self._cache: dict[tuple[object, ...], tuple[bool, float]] = {}

    async def authorize(self, req: Request) -> Response | None:
        if not req.path.startswith(PREFIX):
            return None  # health and metrics: the component base's rules
        who = caller(req, self.front_proxies)
        if who is None:
            return status(401, "Unauthorized", "Unauthorized")
        attrs = attributes(req)
        if attrs is None:
            return None
        user, groups = who
        verb, resource, namespace, name = attrs
        try:
            allowed = await self._allowed(user, groups, verb, resource, namespace, name)
        except ApiError as e:
            log.warning("authorizing %s: %s", user, e)
            return status(500, "InternalError", f"authorization failed: {e}")
        if allowed:
            return None
        scope = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        return status(
            403,
            "Forbidden",
            f'{resource}.{GROUP} is forbidden: User "{user}" cannot {verb} resource '
            f'"{resource}" in API group "{GROUP}"{scope}',
            {"group": GROUP, "kind": resource, **({"name": name} if name else {})},
        )

    async def _allowed(
        self, user: str, groups: tuple[str, ...], verb: str, resource: str, ns: str, name: str
    ) -> bool:
        key = (user, groups, verb, resource, ns, name)
        now = self.clock()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        attrs = {"verb": verb, "group": GROUP, "version": "v1beta1", "resource": resource}
        if ns:
            attrs["namespace"] = ns
        if name:
            attrs["name"] = name
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": list(groups), "resourceAttributes": attrs},
        }
        answer = await self.client.request("POST", SAR_PATH, body=body)
        allowed = bool(((answer or {}).get("status") or {}).get("allowed"))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (allowed, now + CACHE_TTL)
        return allowed
