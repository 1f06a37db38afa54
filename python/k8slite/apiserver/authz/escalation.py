"""RBAC escalation prevention: nobody grants, through a role or a binding, rights they lack.

As upstream: writing a Role or ClusterRole needs every one of its rules to be held already
(or the "escalate" verb on it); writing a binding needs the bound role's rules to be held in
the binding's namespace (or the "bind" verb on the role). system:masters is exempt.
"""

from __future__ import annotations

from typing import Any

from k8slite.api import errors
from k8slite.api.patch import json_patch, merge_patch
from k8slite.apiserver import rest
from k8slite.apiserver.authn import MASTERS, UserInfo, user_of
from k8slite.apiserver.authz.attributes import Attributes
from k8slite.apiserver.authz.authorizer import Authorizer
from k8slite.apiserver.authz.rbac import GROUP, RuleSet
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.http import Request
from k8slite.apiserver.requestinfo import RequestInfo
from k8slite.component.objects import Obj

_ROLES = ("roles", "clusterroles")
_BINDINGS = ("rolebindings", "clusterrolebindings")


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def missing_rights(owner: RuleSet, rules: Any) -> list[str]:
    """The parts of `rules` that `owner` does not cover, in upstream's compact notation."""
    missing: dict[tuple[str, str, str, str], list[str]] = {}
    for rule in rules if isinstance(rules, list) else ():
        if not isinstance(rule, dict):
            continue
        verbs = _strings(rule.get("verbs"))
        urls = _strings(rule.get("nonResourceURLs"))
        for url in urls:
            for verb in verbs:
                if not owner.allows_path(verb, url):
                    missing.setdefault(("url", url, "", ""), []).append(verb)
        if urls:
            continue
        for group in _strings(rule.get("apiGroups")):
            for resource in _strings(rule.get("resources")):
                res, _, sub = resource.partition("/")
                for name in _strings(rule.get("resourceNames")) or [""]:
                    for verb in verbs:
                        if not owner.allows_resource(verb, group, res, sub, name):
                            missing.setdefault(("res", group, resource, name), []).append(verb)
    return sorted(_compact(key, verbs) for key, verbs in missing.items())


def _quoted(values: list[str]) -> str:
    return "[" + " ".join(f'"{v}"' for v in values) + "]"


def _compact(key: tuple[str, str, str, str], verbs: list[str]) -> str:
    kind, a, b, name = key
    if kind == "url":
        return f"{{NonResourceURLs:{_quoted([a])}, Verbs:{_quoted(verbs)}}}"
    parts = [f"APIGroups:{_quoted([a])}", f"Resources:{_quoted([b])}"]
    if name:
        parts.append(f"ResourceNames:{_quoted([name])}")
    parts.append(f"Verbs:{_quoted(verbs)}")
    return "{" + ", ".join(parts) + "}"


class EscalationCheck:
    """A resource handler filter for writes of roles and bindings."""

    def __init__(self, core: ApiCore, authorizer: Authorizer) -> None:
        self.core = core
        self.authorizer = authorizer

    async def filter(self, req: Request, info: RequestInfo) -> None:
        rt = info.resource
        if rt.group != GROUP or info.verb not in ("create", "update", "patch") or info.subresource:
            return
        user = user_of(req.scope)
        if user is None or MASTERS in user.groups:
            return
        new = await self._new_object(req, info)
        if new is None:
            return
        ns = info.namespace or ""
        name = info.name or _name(new)
        if rt.plural in _ROLES:
            if self._may(user, "escalate", rt.plural, ns, name):
                return
            self._confirm(user, ns, new.get("rules"), rt.plural, name)
        elif rt.plural in _BINDINGS:
            ref = new.get("roleRef")
            if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
                return  # validation refuses it
            role_plural = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
            if self._may(user, "bind", role_plural, ns, ref["name"]):
                return
            self._confirm(
                user,
                ns,
                self._role_rules(role_plural, ns, ref["name"], rt.plural, name),
                rt.plural,
                name,
            )

    def _may(self, user: UserInfo, verb: str, plural: str, ns: str, name: str) -> bool:
        attrs = Attributes(user, verb, True, GROUP, "v1", plural, "", ns, name)
        return self.authorizer.authorize(attrs)[0]

    def _confirm(self, user: UserInfo, ns: str, rules: Any, plural: str, name: str) -> None:
        owner = self.authorizer.rbac.rules_for(user, ns)
        missing = missing_rights(owner, rules)
        if missing:
            groups = "[" + " ".join(f'"{g}"' for g in user.groups) + "]"
            raise errors.forbidden(
                plural,
                name,
                GROUP,
                f'user "{user.name}" (groups={groups}) is attempting to grant RBAC permissions '
                f"not currently held:\n" + "\n".join(missing),
            )

    def _role_rules(
        self, role_plural: str, ns: str, role: str, plural: str, name: str
    ) -> list[Obj]:
        reg = self.core.registries[(GROUP, role_plural)]
        role_ns = ns if role_plural == "roles" else None
        if reg.cache.get(reg.key(role_ns, role)) is None:
            kind = "role" if role_plural == "roles" else "clusterrole"
            raise errors.forbidden(plural, name, GROUP, f'{kind}.{GROUP} "{role}" not found')
        rules = reg.get(role_ns, role).get("rules")
        return rules if isinstance(rules, list) else []

    async def _new_object(self, req: Request, info: RequestInfo) -> Obj | None:
        body = rest.decode_body(req, await req.body())
        if info.verb != "patch":
            return body if isinstance(body, dict) else None
        reg = self.core.registries[(GROUP, info.resource.plural)]
        hit = reg.cache.get(reg.key(info.namespace, info.name or ""))
        if hit is None:
            return None  # the handler answers 404
        current = reg.get(info.namespace, info.name or "")
        if req.content_type == "application/json-patch+json":
            patched = json_patch(current, body)
        elif isinstance(body, dict):
            # Merge, strategic and apply patches of RBAC objects replace lists whole.
            patched = merge_patch(current, body)
        else:
            return None
        return patched if isinstance(patched, dict) else None


def _name(obj: Obj) -> str:
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else ""
    return name if isinstance(name, str) else ""
