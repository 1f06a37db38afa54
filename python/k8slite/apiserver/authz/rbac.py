"""RBAC: roles and bindings indexed by subject, evaluated in constant time per request.

The index is rebuilt from the four RBAC resources' caches whenever one of them changes (they
change rarely and are few next to pods); a request only looks up its user's and groups'
rule sets and probes each with a handful of dictionary lookups, whatever the number of rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from k8slite._native import loads
from k8slite.apiserver.authn import UserInfo
from k8slite.apiserver.authz.attributes import Attributes
from k8slite.apiserver.core import ApiCore
from k8slite.storage import Event

GROUP = "rbac.authorization.k8s.io"
PREFIX = f"/registry/{GROUP}/"
Obj = dict[str, Any]
_ANY = None  # a key's names: None grants every name, a set only those names
_MISSING = object()


class RuleSet:
    """The union of some policy rules, shaped for lookups.

    Resource rules become keys (verb, group, resource) with "*" kept as a literal, so a
    request probes at most 2 x 2 x 3 keys: its own values and the wildcards that cover them.
    The same probing answers "does this rule set cover that rule" for escalation checks.
    """

    __slots__ = ("resources", "rules", "urls")

    def __init__(self) -> None:
        self.resources: dict[tuple[str, str, str], frozenset[str] | None] = {}
        # verb -> (exact paths, prefixes of paths ending in "*")
        self.urls: dict[str, tuple[set[str], list[str]]] = {}
        self.rules: list[Obj] = []

    def __bool__(self) -> bool:
        return bool(self.rules)

    def add(self, rule: Obj) -> None:
        self.rules.append(rule)
        verbs = _strings(rule.get("verbs"))
        urls = _strings(rule.get("nonResourceURLs"))
        if urls:
            for verb in verbs:
                exact, prefixes = self.urls.setdefault(verb, (set(), []))
                for url in urls:
                    if url.endswith("*"):
                        prefixes.append(url[:-1])
                    else:
                        exact.add(url)
            return
        names = frozenset(_strings(rule.get("resourceNames"))) or _ANY
        for verb in verbs:
            for group in _strings(rule.get("apiGroups")):
                for resource in _strings(rule.get("resources")):
                    key = (verb, group, resource)
                    have = self.resources.get(key, _MISSING)
                    if have is _MISSING:
                        self.resources[key] = names
                    elif have is not _ANY:
                        self.resources[key] = _ANY if names is _ANY else have | names  # type: ignore[operator]

    def extend(self, other: RuleSet) -> None:
        for rule in other.rules:
            self.add(rule)

    def allows_resource(
        self, verb: str, group: str, resource: str, subresource: str, name: str
    ) -> bool:
        combined = f"{resource}/{subresource}" if subresource else resource
        candidates = (combined, "*", f"*/{subresource}") if subresource else (combined, "*")
        get = self.resources.get
        for v in (verb, "*"):
            for g in (group, "*"):
                for r in candidates:
                    names = get((v, g, r), _MISSING)
                    if names is _MISSING:
                        continue
                    if names is _ANY or name in names:  # type: ignore[operator]
                        return True
        return False

    def allows_path(self, verb: str, path: str) -> bool:
        for v in (verb, "*"):
            entry = self.urls.get(v)
            if entry is None:
                continue
            exact, prefixes = entry
            if path in exact or any(path.startswith(p) for p in prefixes):
                return True
        return False

    def allows(self, attrs: Attributes) -> bool:
        if attrs.resource_request:
            return self.allows_resource(
                attrs.verb, attrs.api_group, attrs.resource, attrs.subresource, attrs.name
            )
        return self.allows_path(attrs.verb, attrs.path)


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str)]


def compile_rules(rules: Iterable[Obj]) -> RuleSet:
    out = RuleSet()
    for rule in rules:
        if isinstance(rule, dict):
            out.add(rule)
    return out


def subject_user(subject: Obj, default_namespace: str) -> tuple[str, str] | None:
    """A binding subject as ("User"|"Group", name); service accounts are users upstream."""
    kind, name = subject.get("kind"), subject.get("name")
    if not isinstance(name, str) or not name:
        return None
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or default_namespace
        return ("User", f"system:serviceaccount:{ns}:{name}") if ns else None
    if kind in ("User", "Group"):
        return kind, name
    return None


class RBACIndex:
    """Rule sets per subject, cluster-wide and per namespace, from one snapshot of the policy."""

    def __init__(
        self,
        roles: list[Obj],
        cluster_roles: list[Obj],
        bindings: list[Obj],
        cluster_bindings: list[Obj],
    ) -> None:
        role_rules = {
            (_meta(r, "namespace"), _meta(r, "name")): compile_rules(r.get("rules") or ())
            for r in roles
        }
        cluster_rules = {
            _meta(r, "name"): compile_rules(r.get("rules") or ()) for r in cluster_roles
        }
        self.cluster: dict[tuple[str, str], RuleSet] = {}
        self.namespaced: dict[tuple[str, str, str], RuleSet] = {}
        for b in cluster_bindings:
            ref = b.get("roleRef") or {}
            role = ref.get("name", "")
            rules = cluster_rules.get(role) if ref.get("kind") == "ClusterRole" else None
            if rules:
                for subject in _subjects(b, ""):
                    self.cluster.setdefault(subject, RuleSet()).extend(rules)
        for b in bindings:
            ns = _meta(b, "namespace")
            ref = b.get("roleRef") or {}
            role = ref.get("name", "")
            if ref.get("kind") == "ClusterRole":
                rules = cluster_rules.get(role)
            elif ref.get("kind") == "Role":
                rules = role_rules.get((ns, role))
            else:
                rules = None
            if rules:
                for kind, name in _subjects(b, ns):
                    self.namespaced.setdefault((ns, kind, name), RuleSet()).extend(rules)

    def rule_sets(self, user: UserInfo, namespace: str) -> Iterator[RuleSet]:
        """The rule sets that apply to `user` in `namespace` ("" for cluster scope only)."""
        cluster, namespaced = self.cluster, self.namespaced
        found = cluster.get(("User", user.name))
        if found is not None:
            yield found
        for group in user.groups:
            found = cluster.get(("Group", group))
            if found is not None:
                yield found
        if namespace and namespaced:
            found = namespaced.get((namespace, "User", user.name))
            if found is not None:
                yield found
            for group in user.groups:
                found = namespaced.get((namespace, "Group", group))
                if found is not None:
                    yield found


def _meta(obj: Obj, key: str) -> str:
    return str((obj.get("metadata") or {}).get(key) or "")


def _subjects(binding: Obj, namespace: str) -> Iterator[tuple[str, str]]:
    for subject in binding.get("subjects") or ():
        if isinstance(subject, dict):
            found = subject_user(subject, namespace)
            if found is not None:
                yield found


class RBACAuthorizer:
    """Answers from an RBACIndex kept in step with the stored roles and bindings."""

    def __init__(self, core: ApiCore) -> None:
        self.core = core
        self._index: RBACIndex | None = None
        core.store.subscribe(self._on_commit)

    def _on_commit(self, events: list[Event]) -> None:
        # Store subscribers must not raise; marking stale is all that happens here.
        if self._index is not None and any(e.key.startswith(PREFIX) for e in events):
            self._index = None

    @property
    def index(self) -> RBACIndex:
        if self._index is None:
            self._index = RBACIndex(
                *(
                    self._list(plural)
                    for plural in ("roles", "clusterroles", "rolebindings", "clusterrolebindings")
                )
            )
        return self._index

    def _list(self, plural: str) -> list[Obj]:
        reg = self.core.registries[(GROUP, plural)]
        items = reg.cache.list(reg.rt.key_prefix, None, None, 0, None, None)[0]
        return [o for o in loads(items) if isinstance(o, dict)]

    def authorize(self, attrs: Attributes) -> tuple[bool, str]:
        for rules in self.index.rule_sets(attrs.user, attrs.namespace):
            if rules.allows(attrs):
                return True, ""
        return False, ""

    def rules_for(self, user: UserInfo, namespace: str) -> RuleSet:
        """Every rule that applies to `user` in `namespace` (SelfSubjectRulesReview, escalation)."""
        out = RuleSet()
        for rules in self.index.rule_sets(user, namespace):
            out.extend(rules)
        return out
