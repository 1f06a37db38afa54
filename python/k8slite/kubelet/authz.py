"""Who may call the kubelet API: asked of the API server with a SubjectAccessReview.

Like upstream's kubelet in webhook authorization mode, a request is the API request that
would allow it: verb from the HTTP method, resource nodes, name the node, subresource from
the path (stats, metrics, log, checkpoint; pods, healthz and configz with proxy as the
fallback, as under upstream's KubeletFineGrainedAuthz; proxy for everything else). Answers
are cached as upstream's defaults say: allowed for 5 minutes, denied for 30 seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from k8slite.client import ApiClient, ApiError

log = logging.getLogger(__name__)

AUTHORIZED_TTL = 300.0
UNAUTHORIZED_TTL = 30.0
# A review that takes longer is an authorization error (500), not a denial.
REVIEW_TIMEOUT = 10.0
SAR_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"

_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_SUBRESOURCES = {
    "stats": ("stats",),
    "metrics": ("metrics",),
    "logs": ("log",),
    "checkpoint": ("checkpoint",),
    "pods": ("pods", "proxy"),
    "healthz": ("healthz", "proxy"),
    "configz": ("configz", "proxy"),
}


def attributes(method: str, path: str) -> tuple[str, tuple[str, ...]]:
    """The verb, and the subresources any one of which allows the request, in order."""
    first = path.strip("/").split("/", 1)[0]
    return _VERBS.get(method, ""), _SUBRESOURCES.get(first, ("proxy",))


class AuthorizationError(Exception):
    """The API server could not be asked (unreachable, slow, or it refused the review)."""


# (user, groups, verb, subresource) -> allowed?
Review = Callable[[str, frozenset[str], str, str], Awaitable[bool]]


def sar_review(client: ApiClient, node: str) -> Review:
    """Ask the API server whether the user may `verb` nodes/<subresource> of this node."""

    async def review(user: str, groups: frozenset[str], verb: str, subresource: str) -> bool:
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": sorted(groups),
                "resourceAttributes": {
                    "verb": verb,
                    "group": "",
                    "version": "v1",
                    "resource": "nodes",
                    "subresource": subresource,
                    "name": node,
                },
            },
        }
        answer: dict[str, Any] | None = None
        with trio.move_on_after(REVIEW_TIMEOUT):
            try:
                answer = await client.request("POST", SAR_PATH, body=body)
            except ApiError as e:
                raise AuthorizationError(str(e)) from e
        if answer is None:
            raise AuthorizationError(f"no answer within {REVIEW_TIMEOUT:.0f}s")
        return bool((answer.get("status") or {}).get("allowed"))

    return review


class Authorizer:
    """Cached reviews of kubelet API requests."""

    def __init__(self, review: Review, clock: Callable[[], float] = trio.current_time) -> None:
        self.review = review
        self.clock = clock
        self._cache: dict[tuple[str, frozenset[str], str, str], tuple[bool, float]] = {}

    async def allowed(
        self, user: str, groups: frozenset[str], verb: str, subresources: tuple[str, ...]
    ) -> bool:
        """True when any of the subresources is allowed; AuthorizationError when unknown."""
        for subresource in subresources:
            if await self._allowed(user, groups, verb, subresource):
                return True
        return False

    async def _allowed(
        self, user: str, groups: frozenset[str], verb: str, subresource: str
    ) -> bool:
        key = (user, groups, verb, subresource)
        now = self.clock()
        cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        allowed = await self.review(user, groups, verb, subresource)
        if len(self._cache) > 10_000:  # many callers: start again rather than grow
            self._cache.clear()
        self._cache[key] = (allowed, now + (AUTHORIZED_TTL if allowed else UNAUTHORIZED_TTL))
        return allowed
