"""Authentication: the user and groups of a request, from its client certificate or bearer token."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from k8slite.api import errors
from k8slite.apiserver.tls import PEER_CERT, TLS_EXTENSION

# Upstream's well-known groups and users.
AUTHENTICATED = "system:authenticated"
MASTERS = "system:masters"
NODES = "system:nodes"
NODE_PREFIX = "system:node:"
ANONYMOUS = "system:anonymous"
UNAUTHENTICATED = "system:unauthenticated"
# Where the authenticated user travels in the ASGI scope (like upstream's request context).
SCOPE_KEY = "k8slite.user"
# Distinct certificates remembered; a cluster has a few dozen, users add some more.
_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class UserInfo:
    """upstream's user.Info: name, groups (system:authenticated included) and extra."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict, hash=False, compare=False)

    @property
    def node_name(self) -> str | None:
        """The node a kubelet identity speaks for (system:node:<name> in system:nodes)."""
        if self.name.startswith(NODE_PREFIX) and NODES in self.groups:
            return self.name[len(NODE_PREFIX) :] or None
        return None


def unauthorized() -> errors.ApiError:
    return errors.ApiError(401, "Unauthorized", "Unauthorized")


class CertAuthenticator:
    """Maps the client certificate the TLS layer verified to a UserInfo (CN, O).

    The TLS handshake already checked the chain to the cluster CA and the validity period;
    this only reads the subject, once per distinct certificate, and refuses a certificate
    that expired while its connection stayed open.
    """

    def __init__(self) -> None:
        self._cache: dict[str, tuple[UserInfo, float]] = {}

    def authenticate(self, scope: Any) -> UserInfo:
        """The request's user; 401 without a usable client certificate."""
        tls = scope.get("extensions", {}).get(TLS_EXTENSION) or {}
        chain = tls.get("client_cert_chain") or ()
        if not chain:
            raise unauthorized()
        pem = chain[0]
        hit = self._cache.get(pem)
        if hit is None:
            hit = _from_decoded(tls.get(PEER_CERT)) or self._parse(pem)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[pem] = hit
        user, not_after = hit
        if time.time() >= not_after:
            raise unauthorized()
        return user

    @staticmethod
    def _parse(pem: str) -> tuple[UserInfo, float]:
        # Here, not at the top: a component that serves plain HTTP, or has no client
        # certificates to check, never loads cryptography (8 MiB).
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        try:
            cert = x509.load_pem_x509_certificate(pem.encode())
        except ValueError:
            raise unauthorized() from None
        subject = cert.subject
        names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        user = str(names[0].value) if names else ""
        if not user:
            raise unauthorized()
        groups = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        if AUTHENTICATED not in groups:
            groups.append(AUTHENTICATED)
        return UserInfo(user, tuple(groups)), cert.not_valid_after_utc.timestamp()


def _from_decoded(cert: dict[str, Any] | None) -> tuple[UserInfo, float] | None:
    """The user of a verified certificate as ssl decodes it (SSLSocket.getpeercert()): the
    first common name, the organizations as groups; None when there is nothing decoded."""
    if not cert or "subject" not in cert or "notAfter" not in cert:
        return None
    pairs = [pair for rdn in cert["subject"] for pair in rdn]
    names = [str(v) for k, v in pairs if k == "commonName"]
    user = names[0] if names else ""
    if not user:
        raise unauthorized()
    groups = [str(v) for k, v in pairs if k == "organizationName"]
    if AUTHENTICATED not in groups:
        groups.append(AUTHENTICATED)
    return UserInfo(user, tuple(groups)), float(ssl.cert_time_to_seconds(cert["notAfter"]))


def bearer_token(scope: Any) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, as upstream reads it."""
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and token and " " not in token:
                return token
            return None
    return None


class Authenticator:
    """Upstream's union order: a client certificate if one was presented, else a bearer token.

    A certificate the TLS layer accepted names the user; without one, the token must
    authenticate (each token authenticator in turn; the first to know it wins), or the
    answer is 401. A request with no credentials at all is anonymous only on
    `anonymous_paths`, like upstream's AuthenticationConfiguration anonymous.conditions;
    everywhere else it is 401 (as upstream with --anonymous-auth=false).
    """

    def __init__(
        self,
        tokens: Callable[[str], UserInfo | None] | None = None,
        *more_tokens: Callable[[str], UserInfo | None],
        anonymous_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.certs = CertAuthenticator()
        self.tokens = [t for t in (tokens, *more_tokens) if t is not None]
        self.anonymous_paths = anonymous_paths

    def authenticate(self, scope: Any) -> UserInfo:
        tls = scope.get("extensions", {}).get(TLS_EXTENSION) or {}
        if tls.get("client_cert_chain") or not self.tokens:
            if not tls.get("client_cert_chain") and self._anonymous(scope):
                return UserInfo(ANONYMOUS, (UNAUTHENTICATED,))
            return self.certs.authenticate(scope)
        token = bearer_token(scope)
        if token is None and self._anonymous(scope):
            return UserInfo(ANONYMOUS, (UNAUTHENTICATED,))
        for authenticate in self.tokens if token else ():
            user = authenticate(token)  # type: ignore[arg-type]
            if user is not None:
                return user
        raise unauthorized()

    def _anonymous(self, scope: Any) -> bool:
        """No credentials of any kind, on a path open to anonymous requests."""
        if not self.anonymous_paths or scope.get("path") not in self.anonymous_paths:
            return False
        return not any(name == b"authorization" for name, _ in scope.get("headers") or ())


def user_of(scope: Any) -> UserInfo | None:
    """The user the authentication layer attached to this request, if any."""
    user = scope.get(SCOPE_KEY)
    return user if isinstance(user, UserInfo) else None
