"""The token cleaner: deletes bootstrap token Secrets once they expire (upstream's
tokencleaner, off by default; kubeadm and `k8slite up` turn it on).

Each bootstrap token Secret in kube-system is looked at when it changes and again when it
is due to expire; the delete carries the Secret's uid as a precondition, so a token made
anew under the same name in the meantime survives. An expiration that does not parse
counts as past, as upstream.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from k8slite import bootstraptoken as bt
from k8slite.client import Conflict, DeletedFinalStateUnknown, NotFound
from k8slite.client.resource import SECRETS
from k8slite.component.objects import Obj, name_of, namespace_of
from k8slite.controllers.base import Controller, ControllerContext


class TokenCleaner(Controller):
    name = "token-cleaner-controller"
    queue_name = "token_cleaner"
    event_source = "token-cleaner"

    def __init__(self, ctx: ControllerContext, workers: int = 1) -> None:
        super().__init__(ctx, workers)
        self.secrets = ctx.informers.informer(SECRETS)
        self.secrets.add_event_handler(self._secret, lambda _old, new: self._secret(new), None)

    def _secret(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        if isinstance(obj, DeletedFinalStateUnknown):
            return
        if namespace_of(obj) == bt.NAMESPACE and obj.get("type") == bt.SECRET_TYPE:
            self.queue.add(name_of(obj))

    async def sync(self, key: str) -> float | None:
        secret = self.secrets.get(key, bt.NAMESPACE)
        if secret is None or secret.get("type") != bt.SECRET_TYPE:
            return None
        expiration = _expiration(secret)
        if expiration is None:
            return None
        left = (expiration - datetime.now(UTC)).total_seconds()
        if left > 0:
            # Come back when it is due (the queue holds the key till then).
            return left
        uid = (secret.get("metadata") or {}).get("uid")
        try:
            await self.client.delete(
                SECRETS,
                key,
                namespace=bt.NAMESPACE,
                preconditions={"uid": uid} if uid else None,
            )
        except (NotFound, Conflict):
            pass
        return None


def _expiration(secret: Obj) -> datetime | None:
    """The Secret's expiration, read like upstream's GetExpiration (the data key alone; an
    unparseable one is already past)."""
    raw = (secret.get("data") or {}).get(bt.EXPIRATION)
    if raw is None:
        return None
    try:
        text = base64.b64decode(raw, validate=True).decode()
        return bt.parse_time(text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return datetime.fromtimestamp(0, UTC)
