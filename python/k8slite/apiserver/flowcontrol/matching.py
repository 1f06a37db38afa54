"""Which FlowSchema a request matches: subjects, resource and non-resource rules, as upstream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from k8slite.apiserver.authn import UserInfo

Obj = dict[str, Any]
_SA_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True, slots=True)
class Attributes:
    """What a rule looks at; `resource` is None for a non-resource request (then `path`)."""

    verb: str
    group: str
    resource: str | None  # "pods", or "pods/status" with the subresource
    namespace: str | None
    path: str


def _has(values: list[str] | None, value: str) -> bool:
    return bool(values) and ("*" in values or value in values)  # type: ignore[operator]


def _subject(subject: Obj, user: UserInfo) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        name = (subject.get("user") or {}).get("name")
        return name in ("*", user.name)
    if kind == "Group":
        name = (subject.get("group") or {}).get("name")
        return name == "*" or name in user.groups
    if kind == "ServiceAccount":
        sa = subject.get("serviceAccount") or {}
        prefix = f"{_SA_PREFIX}{sa.get('namespace')}:"
        if not user.name.startswith(prefix):
            return False
        return sa.get("name") == "*" or user.name == prefix + str(sa.get("name"))
    return False


def _resource_rule(rule: Obj, a: Attributes) -> bool:
    if not (
        _has(rule.get("verbs"), a.verb)
        and _has(rule.get("apiGroups"), a.group)
        and _has(rule.get("resources"), a.resource or "")
    ):
        return False
    if a.namespace is None:
        return bool(rule.get("clusterScope"))
    return _has(rule.get("namespaces"), a.namespace)


def _path(patterns: list[str] | None, path: str) -> bool:
    for pattern in patterns or ():
        if pattern == "*" or pattern == path:
            return True
        # "/apis/*" covers "/apis" and everything under it.
        if pattern.endswith("/*") and (path + "/").startswith(pattern[:-1]):
            return True
    return False


def _non_resource_rule(rule: Obj, a: Attributes) -> bool:
    return _has(rule.get("verbs"), a.verb) and _path(rule.get("nonResourceURLs"), a.path)


def matches(schema: Obj, user: UserInfo, a: Attributes) -> bool:
    """Whether one of the FlowSchema's rules matches both the user and the request."""
    for policy in (schema.get("spec") or {}).get("rules") or ():
        if not any(_subject(s, user) for s in policy.get("subjects") or ()):
            continue
        if a.resource is not None:
            if any(_resource_rule(r, a) for r in policy.get("resourceRules") or ()):
                return True
        elif any(_non_resource_rule(r, a) for r in policy.get("nonResourceRules") or ()):
            return True
    return False


def flow_distinguisher(schema: Obj, user: UserInfo, a: Attributes) -> str:
    """ByUser: the user name; ByNamespace: the request's namespace; no method: one flow."""
    method = ((schema.get("spec") or {}).get("distinguisherMethod") or {}).get("type")
    if method == "ByUser":
        return user.name
    if method == "ByNamespace":
        return a.namespace or ""
    return ""
