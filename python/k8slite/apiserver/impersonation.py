"""Impersonation: a caller acts as another user through Impersonate-* headers, as upstream.

Impersonate-User names the user (system:serviceaccount:<ns>:<name> is a service account),
Impersonate-Group (repeatable) its groups, Impersonate-Uid its uid and Impersonate-Extra-<key>
(repeatable) its extra values. The caller needs the `impersonate` verb on each: users,
groups or serviceaccounts (in the account's namespace) in the core group, uids and
userextras/<key> in authentication.k8s.io, resource name the value. The request then runs
as the new user (with system:authenticated), its headers stripped; the audit log keeps both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from k8slite.apiserver.authn import AUTHENTICATED, UserInfo
from k8slite.apiserver.authz.attributes import Attributes, denied
from k8slite.apiserver.authz.authorizer import Authorizer

USER_HEADER = b"impersonate-user"
GROUP_HEADER = b"impersonate-group"
UID_HEADER = b"impersonate-uid"
EXTRA_PREFIX = b"impersonate-extra-"
ANONYMOUS = "system:anonymous"
UNAUTHENTICATED = "system:unauthenticated"
SA_PREFIX = "system:serviceaccount:"
SA_GROUPS = "system:serviceaccounts"
AUTHENTICATION_GROUP = "authentication.k8s.io"
# Where the impersonating (authenticated) user travels in the ASGI scope, for the audit.
IMPERSONATOR_KEY = "k8slite.impersonator"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class ImpersonationError(Exception):
    """Groups, a uid or extras asked for without a user: upstream answers a plain 500."""


@dataclass(frozen=True, slots=True)
class _Ask:
    """One thing to impersonate (upstream's ObjectReference of kind User, Group, ...)."""

    kind: str
    name: str
    namespace: str = ""
    api_version: str = ""
    field_path: str = ""  # the extra's key

    def go(self) -> str:
        """How Go prints the ObjectReference in its error (%v of the struct)."""
        fields = (self.kind, self.namespace, self.name, "", self.api_version, "", self.field_path)
        return "{" + " ".join(fields) + "}"

    def attributes(self, requestor: UserInfo, path: str) -> Attributes:
        resource, group, subresource = {
            "ServiceAccount": ("serviceaccounts", "", ""),
            "User": ("users", "", ""),
            "Group": ("groups", "", ""),
            "UID": ("uids", AUTHENTICATION_GROUP, ""),
            "UserExtra": ("userextras", AUTHENTICATION_GROUP, self.field_path),
        }[self.kind]
        return Attributes(
            requestor,
            "impersonate",
            True,
            group,
            "",
            resource,
            subresource,
            self.namespace,
            self.name,
            path,
        )


def _service_account(username: str) -> tuple[str, str] | None:
    if not username.startswith(SA_PREFIX):
        return None
    parts = username[len(SA_PREFIX) :].split(":")
    if len(parts) != 2:
        return None
    namespace, name = parts
    if len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace):
        return None
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        return None
    return namespace, name


def _asks(headers: list[tuple[bytes, bytes]]) -> list[_Ask]:
    """What the headers ask to impersonate, user first; none without the headers."""
    user = next((v.decode("latin-1") for k, v in headers if k.lower() == USER_HEADER), "")
    asks: list[_Ask] = []
    if user:
        sa = _service_account(user)
        asks.append(_Ask("ServiceAccount", sa[1], sa[0]) if sa else _Ask("User", user))
    others: list[_Ask] = []
    for key, value in headers:
        key = key.lower()
        text = value.decode("latin-1")
        if key == GROUP_HEADER:
            others.append(_Ask("Group", text))
        elif key.startswith(EXTRA_PREFIX):
            extra = unquote(key[len(EXTRA_PREFIX) :].decode("latin-1"))
            others.append(_Ask("UserExtra", text, "", "authentication.k8s.io/v1", extra))
        elif key == UID_HEADER and text:
            others.append(_Ask("UID", text, "", "authentication.k8s.io/v1"))
    if others and not user:
        listed = " ".join(a.go() for a in others)
        raise ImpersonationError(f"requested [{listed}] without impersonating a user")
    return asks + others


def impersonate(scope: Any, requestor: UserInfo, authorizer: Authorizer) -> UserInfo | None:
    """The user this request acts as, if it asks to impersonate one; 403 if not allowed."""
    headers = list(scope.get("headers") or ())
    if not any(k.lower().startswith(b"impersonate-") for k, _ in headers):
        return None
    asks = _asks(headers)
    if not asks:
        return None
    for ask in asks:
        attrs = ask.attributes(requestor, scope["path"])
        allowed, reason = authorizer.authorize(attrs)
        if not allowed:
            raise denied(attrs, reason)
    first = asks[0]
    username = first.name
    groups = [a.name for a in asks if a.kind == "Group"]
    if first.kind == "ServiceAccount":
        username = f"{SA_PREFIX}{first.namespace}:{first.name}"
        if not groups:  # a service account's groups follow from its name
            groups = [SA_GROUPS, f"{SA_GROUPS}:{first.namespace}"]
    if username != ANONYMOUS:
        if AUTHENTICATED not in groups and UNAUTHENTICATED not in groups:
            groups.append(AUTHENTICATED)
    elif UNAUTHENTICATED not in groups:
        groups.append(UNAUTHENTICATED)
    extra: dict[str, list[str]] = {}
    for ask in asks:
        if ask.kind == "UserExtra":
            extra.setdefault(ask.field_path, []).append(ask.name)
    uid = next((a.name for a in asks if a.kind == "UID"), "")
    # The handlers see the new user only: the headers go, as upstream deletes them.
    scope["headers"] = [(k, v) for k, v in headers if not k.lower().startswith(b"impersonate-")]
    scope[IMPERSONATOR_KEY] = requestor
    return UserInfo(username, tuple(groups), uid, extra)
