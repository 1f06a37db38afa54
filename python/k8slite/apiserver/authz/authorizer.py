"""The authorizer chain (system:masters, Node, RBAC) and its hook into the resource handler."""

from __future__ import annotations

from typing import Any

from k8slite._native import dumps
from k8slite.api import errors
from k8slite.apiserver.authn import MASTERS, UserInfo, user_of
from k8slite.apiserver.authz.attributes import (
    Attributes,
    denied,
    nonresource_attributes,
    resource_attributes,
)
from k8slite.apiserver.authz.node import NodeAuthorizer, NodeGraph
from k8slite.apiserver.authz.rbac import RBACAuthorizer, RuleSet
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.http import Request
from k8slite.apiserver.requestinfo import RequestInfo
from k8slite.component.objects import Obj

# Where a request's authorization attributes travel in the ASGI scope (the audit reads them).
ATTRIBUTES_KEY = "k8slite.authz"


class Authorizer:
    """upstream's --authorization-mode=Node,RBAC, behind the system:masters short cut.

    Like upstream's union authorizer, the first allow wins and a denial carries the reasons
    the authorizers gave (the node authorizer's "no relationship found ...").
    """

    def __init__(self, core: ApiCore) -> None:
        self.graph = NodeGraph(core)
        self.node = NodeAuthorizer(self.graph)
        self.rbac = RBACAuthorizer(core)

    def authorize(self, attrs: Attributes) -> tuple[bool, str]:
        if MASTERS in attrs.user.groups:
            return True, ""
        reason = ""
        node = self.node.authorize(attrs)
        if node is not None:
            if node[0]:
                return True, ""
            reason = node[1]
        allowed, rbac_reason = self.rbac.authorize(attrs)
        if allowed:
            return True, ""
        return False, "\n".join(r for r in (reason, rbac_reason) if r)

    def check(self, attrs: Attributes) -> None:
        allowed, reason = self.authorize(attrs)
        if not allowed:
            raise denied(attrs, reason)

    async def filter(self, req: Request, info: RequestInfo) -> None:
        """The resource handler's hook: 403 unless the caller may do what it asks."""
        user = _user(req.scope)
        req.user = user
        attrs = resource_attributes(user, req, info)
        req.scope[ATTRIBUTES_KEY] = attrs
        self.check(attrs)

    def check_path(self, scope: Any) -> None:
        """Authorize a request for a non-resource path (/healthz, /version, /api, ...)."""
        attrs = nonresource_attributes(_user(scope), scope["method"], scope["path"])
        scope[ATTRIBUTES_KEY] = attrs
        self.check(attrs)

    def rules_review(self, user: UserInfo, namespace: str) -> Obj:
        """A SelfSubjectRulesReview's status: the rules that apply to `user` in `namespace`."""
        rules = self.rbac.rules_for(user, namespace)
        incomplete = False
        if user.node_name is not None:
            # Node rules are further narrowed by the node graph, which rules cannot express.
            rules.extend(self.node.rules)
            incomplete = True
        return {**_rules_status(rules), "incomplete": incomplete}


def _user(scope: Any) -> UserInfo:
    user = user_of(scope)
    if user is None:
        raise errors.ApiError(401, "Unauthorized", "Unauthorized")
    return user


def _rules_status(rules: RuleSet) -> Obj:
    resource_rules: list[Obj] = []
    nonresource_rules: list[Obj] = []
    seen: set[bytes] = set()
    for rule in rules.rules:
        if rule.get("nonResourceURLs"):
            out: Obj = {
                "verbs": rule.get("verbs") or [],
                "nonResourceURLs": rule["nonResourceURLs"],
            }
            target = nonresource_rules
        else:
            out = {"verbs": rule.get("verbs") or []}
            for key in ("apiGroups", "resources", "resourceNames"):
                if rule.get(key):
                    out[key] = rule[key]
            target = resource_rules
        encoded = dumps(out)  # several roles often grant the same rule
        if encoded not in seen:
            seen.add(encoded)
            target.append(out)
    return {"resourceRules": resource_rules, "nonResourceRules": nonresource_rules}
