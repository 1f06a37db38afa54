"""admissionregistration.k8s.io/v1 Mutating/ValidatingWebhookConfiguration defaults and rules."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from k8slite._native import LabelSelector, SelectorError
from k8slite.api.celrules import CelError, compile_expression
from k8slite.api.strategy import Obj, Strategy, register
from k8slite.api.validation import FieldErrors

GROUP = "admissionregistration.k8s.io"
OPERATIONS = ["*", "CONNECT", "CREATE", "DELETE", "UPDATE"]
SCOPES = ["*", "Cluster", "Namespaced"]
FAILURE_POLICIES = ["Fail", "Ignore"]
MATCH_POLICIES = ["Equivalent", "Exact"]
SIDE_EFFECTS = ["None", "NoneOnDryRun"]
REINVOCATION = ["IfNeeded", "Never"]
REVIEW_VERSIONS = ("v1", "v1beta1")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _default_webhook(hook: Obj, mutating: bool) -> None:
    hook.setdefault("failurePolicy", "Fail")
    hook.setdefault("matchPolicy", "Equivalent")
    hook.setdefault("namespaceSelector", {})
    hook.setdefault("objectSelector", {})
    hook.setdefault("timeoutSeconds", 10)
    if mutating:
        hook.setdefault("reinvocationPolicy", "Never")
    for rule in hook.get("rules") or ():
        if isinstance(rule, dict):
            rule.setdefault("scope", "*")
    service = (hook.get("clientConfig") or {}).get("service")
    if isinstance(service, dict):
        service.setdefault("port", 443)


def _is_qualified(name: str) -> bool:
    labels = name.split(".")
    return len(name) <= 253 and len(labels) >= 3 and all(_DNS_LABEL.match(x) for x in labels)


def _check_client_config(errs: FieldErrors, path: str, config: Any) -> None:
    config = config if isinstance(config, dict) else {}
    url, service = config.get("url"), config.get("service")
    if (url is None) == (service is None):
        errs.required(path, "exactly one of url or service is required")
        return
    if url is not None:
        parts = urlsplit(str(url))
        if parts.scheme != "https":
            errs.invalid(f"{path}.url", url, "'https' is the only allowed URL scheme")
        elif not parts.hostname:
            errs.invalid(f"{path}.url", url, "host must be specified")
        elif parts.fragment or parts.query:
            errs.invalid(f"{path}.url", url, "fragments and query parameters are not allowed")
        return
    if not service.get("namespace"):
        errs.required(f"{path}.service.namespace", "service namespace is required")
    if not service.get("name"):
        errs.required(f"{path}.service.name", "service name is required")
    port = service.get("port")
    if not isinstance(port, int) or not 1 <= port <= 65535:
        errs.invalid(f"{path}.service.port", port, "port is not valid: must be between 1 and 65535")
    svc_path = service.get("path")
    if svc_path is not None and not str(svc_path).startswith("/"):
        errs.invalid(f"{path}.service.path", svc_path, "must start with a '/'")


def _check_rules(errs: FieldErrors, path: str, rules: Any) -> None:
    for i, rule in enumerate(rules or ()):
        here = f"{path}[{i}]"
        if not isinstance(rule, dict):
            errs.invalid(here, rule, "must be an object")
            continue
        for field in ("apiGroups", "apiVersions", "resources", "operations"):
            if not rule.get(field):
                errs.required(f"{here}.{field}", "")
        for op in rule.get("operations") or ():
            if op not in OPERATIONS:
                errs.not_supported(f"{here}.operations", op, OPERATIONS)
        if rule.get("scope") not in SCOPES:
            errs.not_supported(f"{here}.scope", rule.get("scope"), SCOPES)
        for j, res in enumerate(rule.get("resources") or ()):
            if not res:
                errs.required(f"{here}.resources[{j}]", "resource must not be empty")


def _check_selector(errs: FieldErrors, path: str, selector: Any) -> None:
    try:
        LabelSelector.from_dict(selector or {})
    except SelectorError as e:
        errs.invalid(path, selector, str(e))


def validate_webhooks(obj: Obj, errs: FieldErrors, mutating: bool) -> None:
    """Upstream's ValidateMutating/ValidatingWebhookConfiguration (v1 rules)."""
    seen: set[str] = set()
    for i, hook in enumerate(obj.get("webhooks") or ()):
        path = f"webhooks[{i}]"
        if not isinstance(hook, dict):
            errs.invalid(path, hook, "must be an object")
            continue
        name = hook.get("name") or ""
        if not name:
            errs.required(f"{path}.name", "")
        elif not _is_qualified(str(name)):
            errs.invalid(
                f"{path}.name",
                name,
                "should be a domain with at least three segments separated by dots",
            )
        elif name in seen:
            errs.duplicate(f"{path}.name", name)
        seen.add(str(name))
        versions = hook.get("admissionReviewVersions")
        if not versions:
            errs.required(f"{path}.admissionReviewVersions", "must specify one of v1, v1beta1")
        elif not any(v in REVIEW_VERSIONS for v in versions):
            errs.invalid(
                f"{path}.admissionReviewVersions",
                versions,
                "must include at least one of v1, v1beta1",
            )
        side = hook.get("sideEffects")
        if side is None:
            errs.required(f"{path}.sideEffects", "must specify one of None, NoneOnDryRun")
        elif side not in SIDE_EFFECTS:
            errs.not_supported(f"{path}.sideEffects", side, SIDE_EFFECTS)
        timeout = hook.get("timeoutSeconds")
        if not isinstance(timeout, int) or not 1 <= timeout <= 30:
            errs.invalid(
                f"{path}.timeoutSeconds",
                timeout,
                "the timeout value must be between 1 and 30 seconds",
            )
        if hook.get("failurePolicy") not in FAILURE_POLICIES:
            errs.not_supported(f"{path}.failurePolicy", hook.get("failurePolicy"), FAILURE_POLICIES)
        if hook.get("matchPolicy") not in MATCH_POLICIES:
            errs.not_supported(f"{path}.matchPolicy", hook.get("matchPolicy"), MATCH_POLICIES)
        if mutating and hook.get("reinvocationPolicy") not in REINVOCATION:
            errs.not_supported(
                f"{path}.reinvocationPolicy", hook.get("reinvocationPolicy"), REINVOCATION
            )
        _check_rules(errs, f"{path}.rules", hook.get("rules"))
        _check_selector(errs, f"{path}.namespaceSelector", hook.get("namespaceSelector"))
        _check_selector(errs, f"{path}.objectSelector", hook.get("objectSelector"))
        _check_client_config(errs, f"{path}.clientConfig", hook.get("clientConfig"))
        check_match_conditions(errs, f"{path}.matchConditions", hook.get("matchConditions"))


def check_match_conditions(errs: FieldErrors, path: str, conditions: Any) -> None:
    """matchConditions: at most 64, named uniquely, each a CEL expression that compiles."""
    conditions = conditions or ()
    if len(conditions) > 64:
        errs.too_many(path, len(conditions), 64)
    names: set[str] = set()
    for i, cond in enumerate(conditions):
        here = f"{path}[{i}]"
        cond = cond if isinstance(cond, dict) else {}
        name = cond.get("name")
        if not name:
            errs.required(f"{here}.name", "")
        elif name in names:
            errs.duplicate(f"{here}.name", name)
        names.add(str(name))
        expression = cond.get("expression")
        if not expression:
            errs.required(f"{here}.expression", "")
            continue
        try:
            compile_expression(str(expression))
        except CelError as e:
            errs.invalid(f"{here}.expression", expression, f"compilation failed: {e}")


class _WebhookConfigurationStrategy(Strategy):
    mutating = False
    tracks_generation = True

    def default(self, obj: Obj) -> None:
        for hook in obj.get("webhooks") or ():
            if isinstance(hook, dict):
                _default_webhook(hook, self.mutating)

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        validate_webhooks(obj, errs, self.mutating)

    def validate_update(self, new: Obj, old: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate_update(new, old, errs, namespaced)
        validate_webhooks(new, errs, self.mutating)


@register(GROUP, "MutatingWebhookConfiguration")
class MutatingWebhookConfigurationStrategy(_WebhookConfigurationStrategy):
    mutating = True


@register(GROUP, "ValidatingWebhookConfiguration")
class ValidatingWebhookConfigurationStrategy(_WebhookConfigurationStrategy):
    mutating = False


# ------------------------------------------------- ValidatingAdmissionPolicy (+Binding)

VALIDATION_ACTIONS = ["Audit", "Deny", "Warn"]
PARAM_NOT_FOUND = ["Allow", "Deny"]


def _default_match_resources(match: Any) -> None:
    if not isinstance(match, dict):
        return
    match.setdefault("namespaceSelector", {})
    match.setdefault("objectSelector", {})
    match.setdefault("matchPolicy", "Equivalent")
    for field in ("resourceRules", "excludeResourceRules"):
        for rule in match.get(field) or ():
            if isinstance(rule, dict):
                rule.setdefault("scope", "*")


def _check_expressions(errs: FieldErrors, path: str, entries: Any, field: str) -> None:
    for i, entry in enumerate(entries or ()):
        entry = entry if isinstance(entry, dict) else {}
        for name in (field, "messageExpression"):
            text = entry.get(name)
            if name == field and not text:
                errs.required(f"{path}[{i}].{field}", f"{field} is not specified")
                continue
            if text:
                try:
                    compile_expression(str(text))
                except CelError as e:
                    errs.invalid(f"{path}[{i}].{name}", text, f"compilation failed: {e}")


@register(GROUP, "ValidatingAdmissionPolicy")
class ValidatingAdmissionPolicyStrategy(Strategy):
    tracks_generation = True

    def default(self, obj: Obj) -> None:
        spec = obj.get("spec")
        if isinstance(spec, dict):
            spec.setdefault("failurePolicy", "Fail")
            _default_match_resources(spec.get("matchConstraints"))

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        spec = obj.get("spec") or {}
        if not spec.get("validations") and not spec.get("auditAnnotations"):
            errs.required(
                "spec.validations", "validations or auditAnnotations must contain at least one item"
            )
        if not spec.get("matchConstraints"):
            errs.required("spec.matchConstraints", "")
        elif not (spec["matchConstraints"].get("resourceRules")):
            errs.required("spec.matchConstraints.resourceRules", "")
        else:
            _check_rules(
                errs,
                "spec.matchConstraints.resourceRules",
                spec["matchConstraints"]["resourceRules"],
            )
        if spec.get("failurePolicy") not in FAILURE_POLICIES:
            errs.not_supported("spec.failurePolicy", spec.get("failurePolicy"), FAILURE_POLICIES)
        param_kind = spec.get("paramKind")
        if param_kind is not None:
            if not (param_kind or {}).get("apiVersion"):
                errs.required("spec.paramKind.apiVersion", "")
            if not (param_kind or {}).get("kind"):
                errs.required("spec.paramKind.kind", "")
        _check_expressions(errs, "spec.validations", spec.get("validations"), "expression")
        _check_expressions(errs, "spec.variables", spec.get("variables"), "expression")
        _check_expressions(
            errs, "spec.auditAnnotations", spec.get("auditAnnotations"), "valueExpression"
        )
        for i, entry in enumerate(spec.get("auditAnnotations") or ()):
            if not (entry if isinstance(entry, dict) else {}).get("key"):
                errs.required(f"spec.auditAnnotations[{i}].key", "")
        check_match_conditions(errs, "spec.matchConditions", spec.get("matchConditions"))

    def validate_update(self, new: Obj, old: Obj, errs: FieldErrors, namespaced: bool) -> None:
        self.validate(new, errs, namespaced)


@register(GROUP, "ValidatingAdmissionPolicyBinding")
class ValidatingAdmissionPolicyBindingStrategy(Strategy):
    tracks_generation = True

    def default(self, obj: Obj) -> None:
        spec = obj.get("spec")
        if isinstance(spec, dict):
            _default_match_resources(spec.get("matchResources"))

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        spec = obj.get("spec") or {}
        if not spec.get("policyName"):
            errs.required("spec.policyName", "")
        actions = spec.get("validationActions") or []
        if not actions:
            errs.required("spec.validationActions", "at least one validation action is required")
        for i, action in enumerate(actions):
            if action not in VALIDATION_ACTIONS:
                errs.not_supported(f"spec.validationActions[{i}]", action, VALIDATION_ACTIONS)
        if "Deny" in actions and "Warn" in actions:
            errs.invalid(
                "spec.validationActions",
                actions,
                "must not contain both Deny and Warn (repeating the same validation failure "
                "information in the API response and headers serves no purpose)",
            )
        ref = spec.get("paramRef")
        if isinstance(ref, dict):
            if ref.get("name") and ref.get("selector") is not None:
                errs.forbidden("spec.paramRef.name", "name and selector are mutually exclusive")
            if not ref.get("name") and ref.get("selector") is None:
                errs.required("spec.paramRef", "one of name or selector must be specified")
            action = ref.get("parameterNotFoundAction")
            if action is None:
                errs.required("spec.paramRef.parameterNotFoundAction", "")
            elif action not in PARAM_NOT_FOUND:
                errs.not_supported("spec.paramRef.parameterNotFoundAction", action, PARAM_NOT_FOUND)

    def validate_update(self, new: Obj, old: Obj, errs: FieldErrors, namespaced: bool) -> None:
        self.validate(new, errs, namespaced)
