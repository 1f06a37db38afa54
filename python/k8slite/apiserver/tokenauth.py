"""Bearer-token authentication of service-account JWTs, with a cache that stays honest.

Upstream's checks: the signature (one of --service-account-key-file's keys), the issuer,
the expiry and not-before (one minute of leeway, as go-jose), an audience in common with
--api-audiences, and that the service account and the bound pod, secret or node still
exist with the uid the token names (deleted more than a minute ago counts as gone).

A verified token is cached (bounded) until it expires, with the objects it depends on and
the resourceVersion they had; a cache hit re-reads those objects from the API server's own
watch cache, which costs a dictionary lookup while they are unchanged, so a deleted pod's
token stops working at once.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

from k8slite._native import loads
from k8slite.api.meta import parse_time
from k8slite.apiserver.authn import AUTHENTICATED, UserInfo
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.registry import Registry
from k8slite.serviceaccount import claims as sa
from k8slite.serviceaccount.jwt import LEGACY_ISSUER, InvalidToken, PublicKey, Verifier

# go-jose's default leeway for exp/nbf, which upstream's validator uses.
LEEWAY = 60
# Upstream still accepts a bound object for this long after its deletionTimestamp.
DELETION_GRACE = 60
_CACHE_SIZE = 10_000
_EXTRA = "authentication.kubernetes.io/"


@dataclass(slots=True)
class _Dependency:
    """An object a token needs: where it lives in the cache and what it must still be."""

    registry: Registry
    key: str
    uid: str
    # The resourceVersion last seen to satisfy the check, so unchanged objects cost nothing.
    seen_rv: int = -1
    # For a legacy token, the Secret's data.token must still be this token.
    token: str | None = None

    def holds(self, now: float) -> bool:
        hit = self.registry.cache.get(self.key)
        if hit is None:
            return False
        data, rv = hit
        if rv == self.seen_rv:
            return True
        obj = loads(data)
        m = obj.get("metadata") or {}
        if self.uid and m.get("uid") != self.uid:
            return False
        deleted = m.get("deletionTimestamp")
        if deleted and parse_time(deleted).timestamp() + DELETION_GRACE < now:
            return False
        if self.token is not None:
            stored = (obj.get("data") or {}).get("token") or ""
            try:
                if base64.b64decode(stored).decode() != self.token:
                    return False
            except ValueError:
                return False
        # An object being deleted is re-checked against the clock at each use.
        if not deleted:
            self.seen_rv = rv
        return True


@dataclass(slots=True)
class _Entry:
    user: UserInfo
    expires: float
    not_before: float
    needs: list[_Dependency]
    audiences: list[str]


class TokenAuthenticator:
    """Maps a service-account JWT to its UserInfo, or None when it does not authenticate."""

    def __init__(
        self,
        core: ApiCore,
        keys: list[PublicKey],
        issuers: list[str],
        audiences: list[str],
    ) -> None:
        self.core = core
        self.verifier = Verifier(keys)
        self.issuers = set(issuers)
        self.audiences = set(audiences)
        self._cache: dict[str, _Entry] = {}
        self._accounts = core.registries[("", "serviceaccounts")]
        self._bound = {
            "pod": core.registries[("", "pods")],
            "secret": core.registries[("", "secrets")],
            "node": core.registries[("", "nodes")],
        }

    def authenticate(self, token: str, now: float | None = None) -> UserInfo | None:
        """The token's user for the API's own audiences; None if it does not authenticate."""
        now = time.time() if now is None else now
        entry = self._cache.get(token)
        if entry is None:
            try:
                entry = self._verify(token, self.audiences)
            except InvalidToken:
                return None
            if len(self._cache) >= _CACHE_SIZE:
                # Drop the oldest tenth: insertion order is the order they were verified in.
                for stale in list(self._cache)[: _CACHE_SIZE // 10]:
                    del self._cache[stale]
            self._cache[token] = entry
        if now >= entry.expires + LEEWAY:
            self._cache.pop(token, None)
            return None
        return entry.user if _current(entry, now) else None

    def review(self, token: str, audiences: list[str]) -> tuple[UserInfo | None, list[str]]:
        """A TokenReview: the user, and which of `audiences` (default: the API's) it holds."""
        if not audiences:
            user = self.authenticate(token)
            return user, sorted(self.audiences) if user else []
        try:
            entry = self._verify(token, set(audiences))
        except InvalidToken:
            return None, []
        now = time.time()
        if now >= entry.expires + LEEWAY or not _current(entry, now):
            return None, []
        return entry.user, entry.audiences

    def _verify(self, token: str, audiences: set[str]) -> _Entry:
        claims = self.verifier.verify(token)
        issuer = claims.get("iss")
        if issuer == LEGACY_ISSUER:
            return self._legacy(token, claims, audiences)
        if issuer not in self.issuers:
            raise InvalidToken("issuer not accepted")
        held = _audiences(claims) & audiences
        if not held:
            raise InvalidToken("token audiences are not among the accepted audiences")
        private = claims.get("kubernetes.io")
        if not isinstance(private, dict):
            raise InvalidToken("no kubernetes.io claim")
        namespace = _str(private.get("namespace"))
        account = private.get("serviceaccount") or {}
        name, uid = _str(account.get("name")), _str(account.get("uid"))
        if not namespace or not name or claims.get("sub") != sa.username(namespace, name):
            raise InvalidToken("malformed service-account claims")
        needs = [_Dependency(self._accounts, self._accounts.key(namespace, name), uid)]
        extra: dict[str, list[str]] = {}
        for kind in ("pod", "secret"):
            bound = private.get(kind)
            if isinstance(bound, dict):
                reg = self._bound[kind]
                needs.append(
                    _Dependency(
                        reg, reg.key(namespace, _str(bound.get("name"))), _str(bound.get("uid"))
                    )
                )
                if kind == "pod":
                    extra[_EXTRA + "pod-name"] = [_str(bound.get("name"))]
                    extra[_EXTRA + "pod-uid"] = [_str(bound.get("uid"))]
        node = private.get("node")
        if isinstance(node, dict):
            if "pod" not in private:
                # A token bound to the node itself lives as long as the node.
                reg = self._bound["node"]
                needs.append(
                    _Dependency(reg, reg.key(None, _str(node.get("name"))), _str(node.get("uid")))
                )
            extra[_EXTRA + "node-name"] = [_str(node.get("name"))]
            extra[_EXTRA + "node-uid"] = [_str(node.get("uid"))]
        if claims.get("jti"):
            extra[_EXTRA + "credential-id"] = [f"JTI={claims['jti']}"]
        user = UserInfo(
            sa.username(namespace, name), (*sa.groups(namespace), AUTHENTICATED), uid, extra
        )
        expires, not_before = claims.get("exp"), claims.get("nbf", claims.get("iat", 0))
        if not isinstance(expires, int | float) or not isinstance(not_before, int | float):
            raise InvalidToken("exp and nbf must be numbers")
        return _Entry(user, float(expires), float(not_before), needs, sorted(held))

    def _legacy(self, token: str, claims: dict[str, Any], audiences: set[str]) -> _Entry:
        prefix = sa.LEGACY_PREFIX
        namespace = _str(claims.get(prefix + "namespace"))
        name = _str(claims.get(prefix + "service-account.name"))
        uid = _str(claims.get(prefix + "service-account.uid"))
        secret = _str(claims.get(prefix + "secret.name"))
        if not (namespace and name and secret) or claims.get("sub") != sa.username(namespace, name):
            raise InvalidToken("malformed legacy service-account claims")
        secrets = self._bound["secret"]
        needs = [
            _Dependency(self._accounts, self._accounts.key(namespace, name), uid),
            _Dependency(secrets, secrets.key(namespace, secret), "", token=token),
        ]
        user = UserInfo(sa.username(namespace, name), (*sa.groups(namespace), AUTHENTICATED), uid)
        # Legacy tokens name no audience: they hold the API's own, as upstream treats them.
        held = audiences & self.audiences
        if not held:
            raise InvalidToken("legacy tokens hold only the API audiences")
        return _Entry(user, float("inf"), 0.0, needs, sorted(held))


def _current(entry: _Entry, now: float) -> bool:
    """Valid by now (nbf) and every object it depends on still there, the same one."""
    if now < entry.not_before - LEEWAY:
        return False
    return all(need.holds(now) for need in entry.needs)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _audiences(claims: dict[str, Any]) -> set[str]:
    """The token's audiences: aud as a string or a list."""
    aud = claims.get("aud")
    if isinstance(aud, str):
        return {aud}
    if isinstance(aud, list):
        return {a for a in aud if isinstance(a, str)}
    return set()
