"""The legacy token controller: fills in Secrets of type kubernetes.io/service-account-token.

A Secret that names its account in the kubernetes.io/service-account.name annotation gets
`token` (a non-expiring JWT with upstream's legacy claims, signed with
--service-account-private-key-file), `ca.crt` and `namespace`, and the account's uid in
kubernetes.io/service-account.uid; it is deleted when its account is gone (or replaced).
"""

from __future__ import annotations

import base64
import copy
import logging

from k8slite.client import DeletedFinalStateUnknown, NotFound
from k8slite.client.resource import SECRETS, SERVICEACCOUNTS
from k8slite.component.objects import Obj, is_deleting, meta, name_of, namespace_of, uid_of
from k8slite.controllers.base import Controller, ControllerContext
from k8slite.serviceaccount import claims
from k8slite.serviceaccount.jwt import PrivateKey, load_private_key, sign

log = logging.getLogger(__name__)

TOKEN_TYPE = "kubernetes.io/service-account-token"
NAME_ANNOTATION = "kubernetes.io/service-account.name"
UID_ANNOTATION = "kubernetes.io/service-account.uid"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _is_token_secret(secret: Obj) -> bool:
    return secret.get("type") == TOKEN_TYPE


class TokensController(Controller):
    name = "serviceaccount-token-controller"
    queue_name = "serviceaccount_tokens_secret"
    event_source = "tokens-controller"

    def __init__(self, ctx: ControllerContext, workers: int = 1) -> None:
        super().__init__(ctx, workers)
        assert ctx.options.service_account_private_key_file is not None
        self.key: PrivateKey = load_private_key(ctx.options.service_account_private_key_file)
        self.root_ca = ctx.root_ca.decode()
        self.secrets = ctx.informers.informer(SECRETS)
        self.accounts = ctx.informers.informer(SERVICEACCOUNTS)
        self.secrets.add_event_handler(self._secret, lambda _old, new: self._secret(new), None)
        self.accounts.add_event_handler(None, None, self._account_deleted)

    def _secret(self, secret: Obj) -> None:
        if _is_token_secret(secret):
            self.enqueue(secret)

    def _account_deleted(self, account: Obj | DeletedFinalStateUnknown) -> None:
        obj = account.obj if isinstance(account, DeletedFinalStateUnknown) else account
        for secret in self.secrets.list(namespace_of(obj)):
            annotations = meta(secret).get("annotations") or {}
            if _is_token_secret(secret) and annotations.get(NAME_ANNOTATION) == name_of(obj):
                self.enqueue(secret)

    async def _account(self, namespace: str, name: str, uid: str) -> Obj | None:
        """The account, from the cache or (on a miss) the API; None if gone or replaced."""
        account = self.accounts.get(name, namespace)
        if account is None:
            try:
                account = await self.client.get(SERVICEACCOUNTS, name, namespace=namespace)
            except NotFound:
                return None
        if uid and uid_of(account) != uid:
            return None
        return account

    async def sync(self, key: str) -> float | None:
        namespace, name = key.split("/", 1)
        secret = self.secrets.get(name, namespace)
        if secret is None or not _is_token_secret(secret) or is_deleting(secret):
            return None
        annotations = meta(secret).get("annotations") or {}
        account_name = annotations.get(NAME_ANNOTATION) or ""
        if not account_name:
            return None  # validation requires the annotation; nothing to fill in
        account = await self._account(namespace, account_name, annotations.get(UID_ANNOTATION, ""))
        if account is None:
            log.info(
                "service account %s/%s is gone: deleting token %s", namespace, account_name, key
            )
            try:
                await self.client.delete(SECRETS, name, namespace=namespace)
            except NotFound:
                pass
            return None
        data = secret.get("data") or {}
        wanted = {"ca.crt": _b64(self.root_ca), "namespace": _b64(namespace)}
        if (
            all(data.get(k) == v for k, v in wanted.items())
            and data.get("token")
            and annotations.get(UID_ANNOTATION) == uid_of(account)
        ):
            return None
        body = copy.deepcopy(secret)
        body_data = body.setdefault("data", {})
        body_data.update(wanted)
        if not body_data.get("token"):
            body_data["token"] = _b64(sign(self.key, claims.legacy(account, name)))
        body["metadata"].setdefault("annotations", {}).update(
            {NAME_ANNOTATION: name_of(account), UID_ANNOTATION: uid_of(account)}
        )
        try:
            await self.client.update(SECRETS, body, namespace=namespace)
        except NotFound:
            pass
        return None
