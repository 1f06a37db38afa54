"""Bootstrap tokens as upstream defines them: format, Secret fields, expiry, groups, JWS.

A bootstrap token `<id>.<secret>` lives in the Secret kube-system/bootstrap-token-<id> of
type bootstrap.kubernetes.io/token. The API server authenticates it, the token cleaner
deletes it once expired, the bootstrap signer signs the cluster-info ConfigMap with it
(a detached HS256 JWS keyed by the token secret), and `k8slite token` manages it. The
rules here are upstream's (k8s.io/cluster-bootstrap), shared by all four.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

NAMESPACE = "kube-system"
SECRET_TYPE = "bootstrap.kubernetes.io/token"
SECRET_PREFIX = "bootstrap-token-"
USER_PREFIX = "system:bootstrap:"
DEFAULT_GROUP = "system:bootstrappers"
# kubeadm's default extra group for node-joining tokens.
DEFAULT_NODE_GROUP = "system:bootstrappers:kubeadm:default-node-token"

# Secret data keys.
TOKEN_ID = "token-id"
TOKEN_SECRET = "token-secret"
EXPIRATION = "expiration"
DESCRIPTION = "description"
EXTRA_GROUPS = "auth-extra-groups"
USAGE_PREFIX = "usage-bootstrap-"
USAGES = ("signing", "authentication")

# The cluster-info ConfigMap the bootstrap signer signs.
CLUSTER_INFO_NAMESPACE = "kube-public"
CLUSTER_INFO = "cluster-info"
KUBECONFIG_KEY = "kubeconfig"
JWS_PREFIX = "jws-kubeconfig-"
# Its path: the one path kubeadm-style discovery reads without credentials.
CLUSTER_INFO_PATH = f"/api/v1/namespaces/{CLUSTER_INFO_NAMESPACE}/configmaps/{CLUSTER_INFO}"

ID_PATTERN = r"[a-z0-9]{6}"
SECRET_PATTERN = r"[a-z0-9]{16}"
TOKEN_RE = re.compile(rf"\A({ID_PATTERN})\.({SECRET_PATTERN})\Z")
ID_RE = re.compile(rf"\A{ID_PATTERN}\Z")
SECRET_RE = re.compile(rf"\A{SECRET_PATTERN}\Z")
GROUP_PATTERN = r"\Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\Z"
GROUP_RE = re.compile(GROUP_PATTERN)
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


class InvalidTokenField(ValueError):
    """A token, group or usage that upstream's validation refuses (kubeadm's messages)."""


def generate() -> str:
    """A fresh random token, as kubeadm makes them."""
    pick = secrets.choice
    return (
        "".join(pick(_ALPHABET) for _ in range(6))
        + "."
        + "".join(pick(_ALPHABET) for _ in range(16))
    )


def parse(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token, else None."""
    m = TOKEN_RE.match(token)
    return (m.group(1), m.group(2)) if m else None


def secret_name(token_id: str) -> str:
    return SECRET_PREFIX + token_id


def validate_groups(groups: list[str]) -> None:
    """Each extra group must match upstream's pattern."""
    for group in groups:
        if not GROUP_RE.match(group):
            raise InvalidTokenField(
                f"bootstrap group {group!r} is invalid (must match {GROUP_PATTERN})"
            )


def validate_usages(usages: list[str]) -> None:
    for usage in usages:
        if usage not in USAGES:
            raise InvalidTokenField(
                f"invalid bootstrap token usage string: {usage}, "
                f"valid usage options: {', '.join(USAGES)}"
            )


def format_time(when: datetime) -> str:
    """RFC 3339 in UTC, seconds precision, as Go's time.RFC3339 prints it."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """An RFC 3339 time (Z or an offset); ValueError if it is not one."""
    if not re.match(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})\Z", text):
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class TokenSecret:
    """The fields of a bootstrap-token Secret (its data decoded)."""

    token_id: str
    token_secret: str
    expiration: str | None = None
    description: str = ""
    usages: list[str] = field(default_factory=list)
    extra_groups: list[str] = field(default_factory=list)

    @property
    def token(self) -> str:
        return f"{self.token_id}.{self.token_secret}"

    def expires_at(self) -> datetime | None:
        """The expiry; a time that does not parse counts as already past, as upstream."""
        if self.expiration is None:
            return None
        try:
            return parse_time(self.expiration)
        except ValueError:
            return datetime.fromtimestamp(0, UTC)

    def expired(self, now: datetime) -> bool:
        at = self.expires_at()
        return at is not None and now >= at

    def groups(self) -> list[str]:
        """system:bootstrappers and the extra groups, sorted and unique (upstream's
        GetGroups); InvalidTokenField if an extra group is malformed."""
        validate_groups(self.extra_groups)
        return sorted({DEFAULT_GROUP, *self.extra_groups})

    def to_secret(self) -> dict[str, object]:
        data = {TOKEN_ID: self.token_id, TOKEN_SECRET: self.token_secret}
        if self.description:
            data[DESCRIPTION] = self.description
        if self.expiration is not None:
            data[EXPIRATION] = self.expiration
        for usage in self.usages:
            data[USAGE_PREFIX + usage] = "true"
        if self.extra_groups:
            data[EXTRA_GROUPS] = ",".join(self.extra_groups)
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret_name(self.token_id), "namespace": NAMESPACE},
            "type": SECRET_TYPE,
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }


def from_secret(obj: dict[str, object]) -> TokenSecret | None:
    """The token a Secret holds, or None when it is not a well-formed bootstrap token Secret
    (wrong type, name not bootstrap-token-<token-id>, malformed id or secret)."""
    meta = obj.get("metadata")
    if obj.get("type") != SECRET_TYPE or not isinstance(meta, dict):
        return None
    raw = obj.get("data")
    if not isinstance(raw, dict):
        return None
    data: dict[str, str] = {}
    for key, value in raw.items():
        try:
            data[key] = base64.b64decode(str(value), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
    token_id, token_secret = data.get(TOKEN_ID, ""), data.get(TOKEN_SECRET, "")
    if not ID_RE.match(token_id) or not SECRET_RE.match(token_secret):
        return None
    if meta.get("name") != secret_name(token_id):
        return None
    groups = [g.strip() for g in data.get(EXTRA_GROUPS, "").split(",") if g.strip()]
    return TokenSecret(
        token_id,
        token_secret,
        data.get(EXPIRATION),
        data.get(DESCRIPTION, ""),
        [u for u in USAGES if data.get(USAGE_PREFIX + u) == "true"],
        groups,
    )


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def detached_jws(content: str, token_id: str, token_secret: str) -> str:
    """The compact JWS of content, HS256 keyed by the token secret, kid the token id, with
    the payload left out (`header..signature`), as the bootstrap signer stores it.

    The protected header is go-jose's serialization: keys sorted, no spaces.
    """
    header = json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":"), sort_keys=True)
    signing_input = f"{_b64url(header.encode())}.{_b64url(content.encode())}"
    mac = hmac.new(token_secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{_b64url(header.encode())}..{_b64url(mac)}"


def verify_detached_jws(detached: str, content: str, token_id: str, token_secret: str) -> bool:
    """Whether detached is the signature of content by this token (constant-time)."""
    return hmac.compare_digest(detached, detached_jws(content, token_id, token_secret))


def ca_cert_hash(ca_pem: bytes) -> str:
    """kubeadm's --discovery-token-ca-cert-hash: sha256 of the CA's SubjectPublicKeyInfo."""
    cert = x509.load_pem_x509_certificate(ca_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()
