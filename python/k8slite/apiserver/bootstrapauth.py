"""Bearer-token authentication of bootstrap tokens (upstream's --enable-bootstrap-token-auth).

`<id>.<secret>` authenticates as system:bootstrap:<id> in system:bootstrappers (and the
Secret's auth-extra-groups) when kube-system/bootstrap-token-<id> is a well-formed,
unexpired, not-deleting bootstrap token Secret with usage-bootstrap-authentication "true"
whose token-secret equals the presented one (compared in constant time). The Secret is
read from the API server's own watch cache, so a deleted or edited token stops working at
once; its decoded form is kept per resourceVersion.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from k8slite import bootstraptoken as bt
from k8slite._native import loads
from k8slite.apiserver.authn import AUTHENTICATED, UserInfo
from k8slite.apiserver.core import ApiCore


class BootstrapTokenAuthenticator:
    def __init__(self, core: ApiCore) -> None:
        self._secrets = core.registries[("", "secrets")]
        # token id -> (resourceVersion, decoded token or None, being deleted)
        self._decoded: dict[str, tuple[int, bt.TokenSecret | None, bool]] = {}

    def authenticate(self, token: str, now: datetime | None = None) -> UserInfo | None:
        parsed = bt.parse(token)
        if parsed is None:
            return None
        token_id, token_secret = parsed
        hit = self._secrets.cache.get(self._secrets.key(bt.NAMESPACE, bt.secret_name(token_id)))
        if hit is None:
            return None
        data, rv = hit
        known = self._decoded.get(token_id)
        if known is None or known[0] != rv:
            obj = loads(data)
            deleting = bool((obj.get("metadata") or {}).get("deletionTimestamp"))
            known = (rv, bt.from_secret(obj), deleting)
            if len(self._decoded) > 10_000:
                self._decoded.clear()
            self._decoded[token_id] = known
        _, stored, deleting = known
        if stored is None or deleting:
            return None
        if not hmac.compare_digest(stored.token_secret.encode(), token_secret.encode()):
            return None
        if stored.expired(now or datetime.now(UTC)):
            return None
        if "authentication" not in stored.usages:
            return None
        try:
            groups = stored.groups()
        except bt.InvalidTokenField:
            return None
        return UserInfo(bt.USER_PREFIX + token_id, (*groups, AUTHENTICATED))
