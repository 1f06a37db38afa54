"""Upstream's service-account token claims: bound (TokenRequest) and legacy (Secret) tokens."""

from __future__ import annotations

import uuid
from typing import Any

from k8slite.serviceaccount.jwt import LEGACY_ISSUER

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
USER_PREFIX = "system:serviceaccount:"
GROUP = "system:serviceaccounts"
GROUP_PREFIX = "system:serviceaccounts:"
# The kubelet asks for 3607 s; such pod-bound tokens last a year but warn after the hour
# (upstream's --service-account-extend-token-expiration, on by default).
WARN_ONLY_SECONDS = 3607
EXTENDED_SECONDS = 365 * 24 * 3600
LEGACY_PREFIX = "kubernetes.io/serviceaccount/"


def username(namespace: str, name: str) -> str:
    return f"{USER_PREFIX}{namespace}:{name}"


def groups(namespace: str) -> tuple[str, ...]:
    return (GROUP, f"{GROUP_PREFIX}{namespace}")


def ref(obj: dict[str, Any]) -> dict[str, str]:
    m = obj.get("metadata") or {}
    return {"name": str(m.get("name") or ""), "uid": str(m.get("uid") or "")}


def bound(
    *,
    issuer: str,
    audiences: list[str],
    now: int,
    expires: int,
    account: dict[str, Any],
    pod: dict[str, Any] | None = None,
    secret: dict[str, Any] | None = None,
    node: dict[str, Any] | None = None,
    warn_after: int | None = None,
) -> dict[str, Any]:
    """A TokenRequest token's claims; `node` for a Node binding or a scheduled pod's node."""
    namespace = str(account["metadata"]["namespace"])
    private: dict[str, Any] = {"namespace": namespace}
    if node is not None:
        private["node"] = ref(node)
    if pod is not None:
        private["pod"] = ref(pod)
    if secret is not None:
        private["secret"] = ref(secret)
    private["serviceaccount"] = ref(account)
    if warn_after is not None:
        private["warnafter"] = warn_after
    return {
        "aud": audiences,
        "exp": expires,
        "iat": now,
        "iss": issuer,
        "jti": str(uuid.uuid4()),
        "kubernetes.io": private,
        "nbf": now,
        "sub": username(namespace, private["serviceaccount"]["name"]),
    }


def legacy(account: dict[str, Any], secret_name: str) -> dict[str, Any]:
    """A Secret-based token's claims: no expiry, no audience, as upstream's legacy tokens."""
    m = account["metadata"]
    return {
        "iss": LEGACY_ISSUER,
        f"{LEGACY_PREFIX}namespace": m["namespace"],
        f"{LEGACY_PREFIX}secret.name": secret_name,
        f"{LEGACY_PREFIX}service-account.name": m["name"],
        f"{LEGACY_PREFIX}service-account.uid": m.get("uid") or "",
        "sub": username(m["namespace"], m["name"]),
    }
