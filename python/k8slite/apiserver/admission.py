"""The admission chain a write request carries to the registry (webhooks and the like).

The resource handler sets it for the request's task; the registry calls it on the object
it is about to store: mutate after defaulting and validation (then validates again what
changed), validate on the final object, as upstream's admission runs inside the write.
Writes the API server makes itself carry none.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol

from k8slite.api.resources import ResourceType
from k8slite.component.objects import Obj


class AdmissionChain(Protocol):
    async def mutate(
        self,
        rt: ResourceType,
        operation: str,
        obj: Obj,
        old: Obj | None,
        subresource: str | None,
        dry_run: bool,
    ) -> Obj:
        """The object after mutating admission (the same object when nothing changed it)."""

    async def validate(
        self,
        rt: ResourceType,
        operation: str,
        obj: Obj | None,
        old: Obj | None,
        subresource: str | None,
        dry_run: bool,
    ) -> None:
        """Refuse the write with an ApiError, or let it through."""


CURRENT: ContextVar[AdmissionChain | None] = ContextVar("k8slite.admission", default=None)


def current() -> AdmissionChain | None:
    return CURRENT.get()


def rule_matches(
    rule: Obj, rt: ResourceType, operation: str, subresource: str | None, name: str = ""
) -> bool:
    """Upstream's RuleWithOperations match, for webhooks and policies alike: operation,
    group, version, scope, resource (`*`, `pods`, `pods/*`, `*/status`) and, where the rule
    names them, resourceNames."""
    if not ({"*", operation} & set(rule.get("operations") or ())):
        return False
    if not ({"*", rt.group} & set(rule.get("apiGroups") or ())):
        return False
    if not ({"*", rt.version} & set(rule.get("apiVersions") or ())):
        return False
    scope = rule.get("scope") or "*"
    if scope == "Cluster" and rt.namespaced or scope == "Namespaced" and not rt.namespaced:
        return False
    names = rule.get("resourceNames") or ()
    if names and name not in names:
        return False
    for res in rule.get("resources") or ():
        plural, _, sub = str(res).partition("/")
        if plural not in ("*", rt.plural):
            continue
        if subresource is None and not sub:
            return True
        if subresource is not None and sub in ("*", subresource):
            return True
    return False
