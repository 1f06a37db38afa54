"""The bootstrap signer: signs kube-public/cluster-info with every signing bootstrap token
(upstream's bootstrapsigner, off by default; kubeadm and `k8slite up` turn it on).

For each well-formed, unexpired bootstrap token Secret with usage-bootstrap-signing "true",
cluster-info holds `jws-kubeconfig-<token id>`: the detached HS256 JWS of its `kubeconfig`
value keyed by the token secret. Signatures of tokens that are gone, expired or no longer
signing are removed. A joining node that knows a token checks that the kubeconfig it
read anonymously is the one this cluster signed.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from k8slite import bootstraptoken as bt
from k8slite.client import DeletedFinalStateUnknown, NotFound
from k8slite.client.resource import CONFIGMAPS, SECRETS
from k8slite.component.objects import Obj, name_of, namespace_of
from k8slite.controllers.base import Controller, ControllerContext


def signatures(content: str, secrets: list[Obj], now: datetime) -> tuple[dict[str, str], float]:
    """The jws-kubeconfig-* entries content should carry, and the seconds until one of the
    signing tokens expires (inf: none does)."""
    out: dict[str, str] = {}
    soonest = float("inf")
    for secret in secrets:
        token = bt.from_secret(secret)
        if token is None or "signing" not in token.usages or token.expired(now):
            continue
        out[bt.JWS_PREFIX + token.token_id] = bt.detached_jws(
            content, token.token_id, token.token_secret
        )
        at = token.expires_at()
        if at is not None:
            soonest = min(soonest, (at - now).total_seconds())
    return out, soonest


class BootstrapSigner(Controller):
    name = "bootstrap-signer-controller"
    queue_name = "bootstrap_signer"
    event_source = "bootstrap-signer"
    KEY = f"{bt.CLUSTER_INFO_NAMESPACE}/{bt.CLUSTER_INFO}"

    def __init__(self, ctx: ControllerContext, workers: int = 1) -> None:
        super().__init__(ctx, 1)
        self.secrets = ctx.informers.informer(SECRETS)
        self.configmaps = ctx.informers.informer(CONFIGMAPS)
        self.secrets.add_event_handler(
            self._secret, lambda _old, new: self._secret(new), self._secret
        )
        self.configmaps.add_event_handler(
            self._configmap, lambda _old, new: self._configmap(new), None
        )

    def _secret(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        obj = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        if namespace_of(obj) == bt.NAMESPACE and obj.get("type") == bt.SECRET_TYPE:
            self.queue.add(self.KEY)

    def _configmap(self, obj: Obj) -> None:
        if namespace_of(obj) == bt.CLUSTER_INFO_NAMESPACE and name_of(obj) == bt.CLUSTER_INFO:
            self.queue.add(self.KEY)

    async def sync(self, key: str) -> float | None:
        current = self.configmaps.get(bt.CLUSTER_INFO, bt.CLUSTER_INFO_NAMESPACE)
        if current is None:
            return None
        data = current.get("data") or {}
        content = data.get(bt.KUBECONFIG_KEY)
        if not isinstance(content, str):
            return None
        wanted, soonest = signatures(content, self.secrets.list(bt.NAMESPACE), datetime.now(UTC))
        have = {k: v for k, v in data.items() if k.startswith(bt.JWS_PREFIX)}
        if have != wanted:
            body = copy.deepcopy(current)
            body["data"] = {
                **{k: v for k, v in data.items() if not k.startswith(bt.JWS_PREFIX)},
                **wanted,
            }
            try:
                await self.client.update(CONFIGMAPS, body, namespace=bt.CLUSTER_INFO_NAMESPACE)
            except NotFound:
                return None
        # Drop a signature when its token expires, even before the cleaner deletes it.
        return soonest + 0.5 if soonest != float("inf") else None
