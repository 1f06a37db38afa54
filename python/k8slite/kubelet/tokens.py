"""The kubelet's service-account token cache: one TokenRequest per pod token, renewed early.

As upstream's token manager, a token is requested once and reused until it has lived 80%
of its lifetime (from status.expirationTimestamp) or 24 hours, whichever comes first; the
pod worker asks for the next renewal time and rewrites the projected volume then, so a
running container sees the new token (the volume's `..data` link swaps at once).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from k8slite.component.objects import Obj, uid_of

log = logging.getLogger(__name__)

# (namespace, account, audiences, expiration seconds, pod) -> (token, expiry as Unix time).
TokenRequester = Callable[[str, str, list[str], int, Obj], Awaitable[tuple[str, float] | None]]
# Upstream renews a token at 80% of its lifetime, and after 24 h at the latest.
REFRESH_FRACTION = 0.8
MAX_TTL = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class _Token:
    token: str
    issued: float
    expires: float

    def renew_at(self, fraction: float) -> float:
        return self.issued + min((self.expires - self.issued) * fraction, MAX_TTL)


class TokenManager:
    """Tokens of the pods of one kubelet, keyed as upstream: account, audiences, lifetime, pod."""

    def __init__(self, request: TokenRequester, refresh_fraction: float = REFRESH_FRACTION) -> None:
        self.request = request
        self.refresh_fraction = refresh_fraction
        self._tokens: dict[tuple[str, str, tuple[str, ...], int, str], _Token] = {}

    async def get(
        self, namespace: str, account: str, audiences: list[str], expiration: int, pod: Obj
    ) -> str | None:
        """The pod's token, requested anew when none is cached or the cached one is due."""
        key = (namespace, account, tuple(audiences), expiration, uid_of(pod))
        now = time.time()
        cached = self._tokens.get(key)
        if cached is not None and now < cached.renew_at(self.refresh_fraction):
            return cached.token
        try:
            answer = await self.request(namespace, account, audiences, expiration, pod)
        except Exception:
            # Upstream keeps serving a still-valid token when renewal fails, and retries.
            if cached is not None and now < cached.expires:
                log.warning("renewing the token of %s/%s failed; keeping the old one", *key[:2])
                return cached.token
            raise
        if answer is None:
            return None
        token, expires = answer
        self._tokens[key] = _Token(token, now, expires)
        return token

    def next_renewal(self, uid: str) -> float | None:
        """When (Unix time) the first cached token of the pod is due for renewal."""
        due = [t.renew_at(self.refresh_fraction) for k, t in self._tokens.items() if k[4] == uid]
        return min(due, default=None)

    def forget(self, uid: str) -> None:
        """Drop the tokens of a pod that is gone."""
        self._tokens = {k: t for k, t in self._tokens.items() if k[4] != uid}
