"""rbac.authorization.k8s.io/v1 Role, ClusterRole, RoleBinding and ClusterRoleBinding rules."""

from __future__ import annotations

from typing import Any

from k8slite.api.strategy import Obj, Strategy, register
from k8slite.api.validation import FieldErrors, check_dns_subdomain, check_path_segment_name

GROUP = "rbac.authorization.k8s.io"
SUBJECT_KINDS = ["ServiceAccount", "User", "Group"]
_RULE_LISTS = ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs")


def _string_list(errs: FieldErrors, path: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errs.invalid(path, value, "must be a list of strings")
        return []
    return value


def validate_rules(errs: FieldErrors, rules: Any, namespaced: bool) -> None:
    """upstream's ValidatePolicyRule for each rule."""
    if rules is None:
        return
    if not isinstance(rules, list):
        errs.invalid("rules", rules, "must be a list of policy rules")
        return
    for i, rule in enumerate(rules):
        path = f"rules[{i}]"
        if not isinstance(rule, dict):
            errs.invalid(path, rule, "must be a policy rule object")
            continue
        lists = {k: _string_list(errs, f"{path}.{k}", rule.get(k)) for k in _RULE_LISTS}
        if not lists["verbs"]:
            errs.required(f"{path}.verbs", "verbs must contain at least one value")
        urls = lists["nonResourceURLs"]
        if urls:
            if namespaced:
                errs.invalid(
                    f"{path}.nonResourceURLs",
                    urls,
                    "namespaced rules cannot apply to non-resource URLs",
                )
            if lists["apiGroups"] or lists["resources"] or lists["resourceNames"]:
                errs.invalid(
                    f"{path}.nonResourceURLs",
                    urls,
                    "rules cannot apply to both regular resources and non-resource URLs",
                )
            continue
        if not lists["apiGroups"]:
            errs.required(f"{path}.apiGroups", "resource rules must supply at least one api group")
        if not lists["resources"]:
            errs.required(f"{path}.resources", "resource rules must supply at least one resource")


class _RoleStrategy(Strategy):
    name_check = "path"
    reset_status_on_create = False
    namespaced_rules = True

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        validate_rules(errs, obj.get("rules"), self.namespaced_rules)


@register(GROUP, "Role")
class RoleStrategy(_RoleStrategy):
    pass


@register(GROUP, "ClusterRole")
class ClusterRoleStrategy(_RoleStrategy):
    namespaced_rules = False

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        aggregation = obj.get("aggregationRule")
        if aggregation is not None and not isinstance(aggregation, dict):
            errs.invalid("aggregationRule", aggregation, "must be an object")


class _BindingStrategy(Strategy):
    name_check = "path"
    reset_status_on_create = False
    role_kinds: tuple[str, ...] = ("Role", "ClusterRole")
    # A ClusterRoleBinding has no namespace to default a service account subject's from.
    needs_subject_namespace = False

    def default(self, obj: Obj) -> None:
        for subject in obj.get("subjects") or ():
            if (
                isinstance(subject, dict)
                and not subject.get("apiGroup")
                and subject.get("kind") in ("User", "Group")
            ):
                subject["apiGroup"] = GROUP
        ref = obj.get("roleRef")
        if isinstance(ref, dict) and not ref.get("apiGroup"):
            ref["apiGroup"] = GROUP

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        self._validate_role_ref(errs, obj.get("roleRef"))
        subjects = obj.get("subjects")
        if subjects is None:
            return
        if not isinstance(subjects, list):
            errs.invalid("subjects", subjects, "must be a list of subjects")
            return
        for i, subject in enumerate(subjects):
            self._validate_subject(errs, f"subjects[{i}]", subject)

    def validate_update(self, new: Obj, old: Obj, errs: FieldErrors, namespaced: bool) -> None:
        self.validate(new, errs, namespaced)
        if new.get("roleRef") != old.get("roleRef"):
            errs.invalid("roleRef", new.get("roleRef"), "cannot change roleRef")

    def _validate_role_ref(self, errs: FieldErrors, ref: Any) -> None:
        if ref is None:
            errs.required("roleRef")
            return
        if not isinstance(ref, dict):
            errs.invalid("roleRef", ref, "must be an object")
            return
        if ref.get("apiGroup") != GROUP:
            errs.not_supported("roleRef.apiGroup", ref.get("apiGroup"), [GROUP])
        if ref.get("kind") not in self.role_kinds:
            errs.not_supported("roleRef.kind", ref.get("kind"), list(self.role_kinds))
        name = ref.get("name")
        if not name:
            errs.required("roleRef.name")
        elif not isinstance(name, str):
            errs.invalid("roleRef.name", name, "must be a string")
        else:
            check_path_segment_name(errs, "roleRef.name", name)

    def _validate_subject(self, errs: FieldErrors, path: str, subject: Any) -> None:
        if not isinstance(subject, dict):
            errs.invalid(path, subject, "must be a subject object")
            return
        name, kind, group = subject.get("name"), subject.get("kind"), subject.get("apiGroup")
        if not name:
            errs.required(f"{path}.name")
        elif not isinstance(name, str):
            errs.invalid(f"{path}.name", name, "must be a string")
            return
        if kind == "ServiceAccount":
            if isinstance(name, str) and name:
                check_dns_subdomain(errs, f"{path}.name", name)
            if group:
                errs.not_supported(f"{path}.apiGroup", group, [""])
            if self.needs_subject_namespace and not subject.get("namespace"):
                errs.required(f"{path}.namespace")
        elif kind in ("User", "Group"):
            if group != GROUP:
                errs.not_supported(f"{path}.apiGroup", group, [GROUP])
        else:
            errs.not_supported(f"{path}.kind", kind, SUBJECT_KINDS)
        ns = subject.get("namespace")
        if ns is not None and not isinstance(ns, str):
            errs.invalid(f"{path}.namespace", ns, "must be a string")


@register(GROUP, "RoleBinding")
class RoleBindingStrategy(_BindingStrategy):
    pass


@register(GROUP, "ClusterRoleBinding")
class ClusterRoleBindingStrategy(_BindingStrategy):
    role_kinds = ("ClusterRole",)
    needs_subject_namespace = True
