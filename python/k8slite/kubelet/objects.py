"""Reading the ConfigMaps, Secrets, claims, volumes and service account tokens pods use, with a
short cache."""

from __future__ import annotations

import logging
import time

from k8slite.api.meta import parse_time
from k8slite.client import ApiClient, ApiError, NotFound
from k8slite.client.resource import (
    CONFIGMAPS,
    PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES,
    SECRETS,
    SERVICEACCOUNTS,
)
from k8slite.component.objects import Obj, meta

log = logging.getLogger(__name__)

_RESOURCES = {
    "ConfigMap": CONFIGMAPS,
    "Secret": SECRETS,
    "PersistentVolumeClaim": PERSISTENTVOLUMECLAIMS,
    "PersistentVolume": PERSISTENTVOLUMES,
}


class ObjectFetcher:
    """GETs one referenced object at a time, as the node authorizer allows.

    Answers are kept for `ttl` seconds, so a pod whose containers and volumes name the same
    ConfigMap costs one request per sync, not one per reference.
    """

    def __init__(self, client: ApiClient, ttl: float = 1.0) -> None:
        self.client = client
        self.ttl = ttl
        self._cache: dict[tuple[str, str, str], tuple[float, Obj | None]] = {}

    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        key = (kind, namespace, name)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        try:
            res = _RESOURCES[kind]
            obj: Obj | None = await self.client.get(
                res, name, namespace=None if res is PERSISTENTVOLUMES else namespace
            )
        except NotFound:
            obj = None
        if (
            kind == "PersistentVolumeClaim"
            and ((obj or {}).get("status") or {}).get("phase") != "Bound"
        ):
            return obj  # about to be bound: the pod waiting for it looks again soon
        if len(self._cache) > 1024:
            self._cache = {k: v for k, v in self._cache.items() if now - v[0] < self.ttl}
        self._cache[key] = (now, obj)
        return obj

    async def token(
        self,
        namespace: str,
        service_account: str,
        audiences: list[str],
        expiration_seconds: int,
        pod: Obj,
    ) -> tuple[str, float] | None:
        """A bound token from serviceaccounts/<sa>/token and its expiry (Unix time); None
        where the API has none."""
        m = meta(pod)
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"name": service_account, "namespace": namespace},
            "spec": {
                "audiences": audiences,
                "expirationSeconds": expiration_seconds,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": m.get("name"),
                    "uid": m.get("uid"),
                },
            },
        }
        try:
            answer = await self.client.create(
                SERVICEACCOUNTS, body, namespace=namespace, subresource="token"
            )
        except ApiError as e:
            if e.code in (404, 405):
                log.debug("no TokenRequest API (%s); projected token left out", e)
                return None
            raise
        status = answer.get("status") or {}
        token = str(status.get("token") or "")
        if not token:
            return None
        expiry = status.get("expirationTimestamp")
        # No expiry stated: take the lifetime asked for, as upstream's token manager does.
        expires = parse_time(expiry).timestamp() if expiry else time.time() + expiration_seconds
        return token, expires
