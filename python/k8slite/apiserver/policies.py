"""ValidatingAdmissionPolicy: CEL validations bound by ValidatingAdmissionPolicyBindings.

Each binding whose policy's matchConstraints (and its own matchResources) match the write
evaluates the policy's validations, once per parameter object (paramRef by name or
selector, in the binding's or the request's namespace), on object, oldObject, request,
params, namespaceObject and the policy's variables. A failure is denied, warned or logged
as the binding's validationActions say; an error obeys the policy's failurePolicy.
Expressions compile once per change of a policy.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from k8slite._native import LabelSelector, loads
from k8slite.api import celrules, errors, resources
from k8slite.api.celrules import Expression, compile_expression
from k8slite.api.resources import ResourceType
from k8slite.apiserver.admission import rule_matches
from k8slite.apiserver.core import ApiCore
from k8slite.component.objects import Obj, labels_of, name_of

log = logging.getLogger(__name__)

GROUP = "admissionregistration.k8s.io"
# The audit annotation listing the validations that failed under the Audit action.
AUDIT_FAILURES = "validation.policy.admission.k8s.io/validation_failure"
POLICIES = "validatingadmissionpolicies"
BINDINGS = "validatingadmissionpolicybindings"
_EVAL_ERRORS = (RuntimeError, TypeError, KeyError, ValueError, OverflowError)
# Denial reasons and their codes, as upstream answers a policy's validation.reason.
_CODES = {"Unauthorized": 401, "Forbidden": 403, "Invalid": 422, "RequestEntityTooLarge": 413}


@dataclass(frozen=True)
class Validation:
    expression: Expression
    message: str
    message_expression: Expression | None
    reason: str


@dataclass(frozen=True)
class Policy:
    name: str
    spec: Obj
    validations: tuple[Validation, ...]
    variables: tuple[tuple[str, Expression], ...]
    conditions: tuple[tuple[str, Expression], ...]
    audit_annotations: tuple[tuple[str, Expression], ...]

    @classmethod
    def parse(cls, obj: Obj) -> Policy:
        spec = obj.get("spec") or {}
        return cls(
            name_of(obj),
            spec,
            tuple(
                Validation(
                    compile_expression(str(v["expression"])),
                    str(v.get("message") or ""),
                    compile_expression(str(v["messageExpression"]))
                    if v.get("messageExpression")
                    else None,
                    str(v.get("reason") or "Invalid"),
                )
                for v in spec.get("validations") or ()
            ),
            tuple(
                (str(v["name"]), compile_expression(str(v["expression"])))
                for v in spec.get("variables") or ()
            ),
            tuple(
                (str(c["name"]), compile_expression(str(c["expression"])))
                for c in spec.get("matchConditions") or ()
            ),
            tuple(
                (str(a["key"]), compile_expression(str(a["valueExpression"])))
                for a in spec.get("auditAnnotations") or ()
            ),
        )


class PolicyError(Exception):
    """A policy that could not be evaluated: subject to its failurePolicy."""


class PolicyEvaluator:
    """Reads policies and bindings from the API server's caches; checks writes."""

    def __init__(self, core: ApiCore) -> None:
        self.core = core
        self._policies: tuple[object, dict[str, Policy]] | None = None
        self._bindings: tuple[object, list[Obj]] | None = None

    def _list(self, plural: str) -> list[Obj]:
        reg = self.core.registries[(GROUP, plural)]
        items, _, _, _ = reg.cache.list(reg.rt.prefix(None), None, None, 0, None, None)
        return loads(items)  # type: ignore[no-any-return]

    def policies(self) -> dict[str, Policy]:
        changed = self.core.registries[(GROUP, POLICIES)].changed
        if self._policies is None or self._policies[0] is not changed:
            parsed = {}
            for obj in self._list(POLICIES):
                try:
                    parsed[name_of(obj)] = Policy.parse(obj)
                except celrules.CelError as e:  # refused on write; kept from older data
                    log.warning("policy %s does not compile: %s", name_of(obj), e)
            self._policies = (changed, parsed)
        return self._policies[1]

    def bindings(self) -> list[Obj]:
        changed = self.core.registries[(GROUP, BINDINGS)].changed
        if self._bindings is None or self._bindings[0] is not changed:
            self._bindings = (changed, sorted(self._list(BINDINGS), key=name_of))
        return self._bindings[1]

    def _namespace(self, name: str) -> Obj | None:
        hit = self.core.registries[("", "namespaces")].cache.get(
            f"/registry/core/namespaces/{name}"
        )
        return loads(hit[0]) if hit else None

    def _matches(
        self,
        match: Obj | None,
        rt: ResourceType,
        operation: str,
        sub: str | None,
        some: Obj,
        old: Obj | None,
        obj: Obj | None,
        namespace: Obj | None,
    ) -> bool:
        if not match:
            return True
        name = str((some.get("metadata") or {}).get("name") or "")
        rules = match.get("resourceRules")
        if rules and not any(rule_matches(r, rt, operation, sub, name) for r in rules):
            return False
        if any(
            rule_matches(r, rt, operation, sub, name)
            for r in match.get("excludeResourceRules") or ()
        ):
            return False
        ns_labels = labels_of(namespace) if namespace is not None else None
        if rt.group == "" and rt.plural == "namespaces":
            ns_labels = labels_of(some)
        ns_selector = LabelSelector.from_dict(match.get("namespaceSelector") or {})
        if ns_labels is not None and not ns_selector.matches(ns_labels):
            return False
        obj_selector = LabelSelector.from_dict(match.get("objectSelector") or {})
        return (obj is not None and obj_selector.matches(labels_of(obj))) or (
            old is not None and obj_selector.matches(labels_of(old))
        )

    def _params(self, policy: Policy, binding: Obj, request_namespace: str) -> list[Any] | None:
        """The parameter objects for a binding: [None] without paramKind, None if none found
        and parameterNotFoundAction is Allow."""
        kind = policy.spec.get("paramKind")
        ref = (binding.get("spec") or {}).get("paramRef")
        if not kind:
            return [None]
        if not ref:
            raise PolicyError(f"policy '{policy.name}' has paramKind but binding has no paramRef")
        group, _, version = str(kind.get("apiVersion") or "").rpartition("/")
        rt = next(
            (
                r
                for r in resources.served()
                if (r.group, r.version, r.kind) == (group, version, kind.get("kind"))
            ),
            None,
        )
        if rt is None:
            raise PolicyError(
                f"paramKind {kind.get('apiVersion')}/{kind.get('kind')} is not served"
            )
        reg = self.core.registries.get((rt.group, rt.plural))
        if reg is None:
            raise PolicyError(f"paramKind {kind.get('kind')} is not served")
        namespace = ref.get("namespace") or (request_namespace if rt.namespaced else None)
        found: list[Any] = []
        if ref.get("name"):
            hit = reg.cache.get(rt.key(namespace, str(ref["name"])))
            if hit is not None:
                found.append(loads(hit[0]))
        else:
            selector = LabelSelector.from_dict(ref.get("selector") or {})
            items, _, _, _ = reg.cache.list(rt.prefix(namespace), None, None, 0, None, None)
            found = [p for p in loads(items) if selector.matches(labels_of(p))]
        if found:
            return found
        if ref.get("parameterNotFoundAction") == "Allow":
            return None
        raise _ParamsMissing()

    def check(
        self,
        rt: ResourceType,
        operation: str,
        obj: Obj | None,
        old: Obj | None,
        sub: str | None,
        request: Obj,
        warn: Callable[[str], None],
        annotate: Callable[[str, str], None],
    ) -> None:
        """Evaluate every binding that matches; raise the first denial."""
        audits: list[Obj] = []
        try:
            self._check(rt, operation, obj, old, sub, request, warn, annotate, audits)
        finally:
            if audits:
                annotate(AUDIT_FAILURES, json.dumps(audits, separators=(",", ":")))

    def _check(
        self,
        rt: ResourceType,
        operation: str,
        obj: Obj | None,
        old: Obj | None,
        sub: str | None,
        request: Obj,
        warn: Callable[[str], None],
        annotate: Callable[[str, str], None],
        audits: list[Obj],
    ) -> None:
        bindings = self.bindings()
        if not bindings or (rt.group, rt.plural) in (
            (GROUP, POLICIES),
            (GROUP, BINDINGS),
        ):
            return
        some = obj if obj is not None else old
        assert some is not None
        ns_name = str((some.get("metadata") or {}).get("namespace") or "") if rt.namespaced else ""
        namespace = self._namespace(ns_name) if ns_name else None
        policies = self.policies()
        # Who the denial names (kubectl shows an Invalid one as `The <kind> "<name>" is
        # invalid: ...`).
        details: Obj = {
            "name": str((some.get("metadata") or {}).get("name") or ""),
            "kind": rt.plural,
        }
        if rt.group:
            details["group"] = rt.group
        for binding in bindings:
            spec = binding.get("spec") or {}
            policy = policies.get(str(spec.get("policyName") or ""))
            if policy is None:
                continue
            if not self._matches(
                policy.spec.get("matchConstraints"), rt, operation, sub, some, old, obj, namespace
            ):
                continue
            if not self._matches(
                spec.get("matchResources"), rt, operation, sub, some, old, obj, namespace
            ):
                continue
            actions = list(spec.get("validationActions") or ())
            try:
                params = self._params(policy, binding, ns_name)
                if params is None:
                    continue
                for param in params:
                    base = {
                        "object": obj,
                        "oldObject": old,
                        "request": request,
                        "params": param,
                        "namespaceObject": namespace,
                    }
                    sink = _Sink(warn, annotate, audits, details)
                    self._evaluate(policy, binding, base, actions, sink)
            except _ParamsMissing:
                self._act(
                    policy,
                    binding,
                    actions,
                    "no params found for policy binding with `Deny` parameterNotFoundAction",
                    "Invalid",
                    _Sink(warn, annotate, audits, details),
                    -1,
                )
            except PolicyError as e:
                if policy.spec.get("failurePolicy", "Fail") == "Fail":
                    who = f"ValidatingAdmissionPolicy '{policy.name}'"
                    raise errors.ApiError(
                        400,
                        "BadRequest",
                        f"{who} with binding '{name_of(binding)}' denied request: {e}",
                    ) from None
                log.warning("policy %s (failurePolicy Ignore): %s", policy.name, e)

    def _evaluate(
        self,
        policy: Policy,
        binding: Obj,
        base: dict[str, Any],
        actions: list[str],
        sink: _Sink,
    ) -> None:
        variables: dict[str, Any] = {}
        env = {**base, "variables": variables}
        for name, condition in policy.conditions:
            try:
                if condition.exceeds_call_limit(env):
                    raise RuntimeError(celrules.COST_EXCEEDED)
                if condition.run(env) is not True:
                    return
            except _EVAL_ERRORS as e:
                raise PolicyError(
                    f"failed to evaluate match condition {name!r}: {celrules.eval_error(e)}"
                ) from None
        for name, expression in policy.variables:
            try:
                if expression.exceeds_call_limit(env):
                    raise RuntimeError(celrules.COST_EXCEEDED)
                variables[name] = expression.run(env)
            except _EVAL_ERRORS as e:
                raise PolicyError(
                    f"variable '{name}' resulted in error: {celrules.eval_error(e)}"
                ) from None
        for index, v in enumerate(policy.validations):
            try:
                if v.expression.exceeds_call_limit(env):
                    raise RuntimeError(celrules.COST_EXCEEDED)
                passed = v.expression.run(env)
            except _EVAL_ERRORS as e:
                problem = celrules.eval_error(e)
                raise PolicyError(
                    f"expression '{v.expression.source}' resulted in error: {problem}"
                ) from None
            if passed is True:
                continue
            message = v.message or f"failed expression: {v.expression.source}"
            if v.message_expression is not None:
                try:
                    text = v.message_expression.run(env)
                except _EVAL_ERRORS:
                    text = None
                if isinstance(text, str) and text.strip():
                    message = text
            self._act(policy, binding, actions, message, v.reason, sink, index)
        for key, expression in policy.audit_annotations:
            try:
                value = expression.run(env)
            except _EVAL_ERRORS as e:
                raise PolicyError(
                    f"auditAnnotation '{key}' resulted in error: {celrules.eval_error(e)}"
                ) from None
            if isinstance(value, str) and value:
                sink.annotate(f"{policy.name}/{key}", value)

    def _act(
        self,
        policy: Policy,
        binding: Obj,
        actions: list[str],
        message: str,
        reason: str,
        sink: _Sink,
        index: int,
    ) -> None:
        who = f"ValidatingAdmissionPolicy '{policy.name}' with binding '{name_of(binding)}'"
        if "Warn" in actions:
            sink.warn(f"Validation failed for {who}: {message}")
        if "Audit" in actions:
            failure: Obj = {
                "message": message,
                "policy": policy.name,
                "binding": name_of(binding),
                "validationActions": actions,
            }
            if index >= 0:
                failure["expressionIndex"] = index
            sink.audits.append(failure)
        if "Deny" in actions:
            text = f"{who} denied request: {message}"
            raise errors.ApiError(
                _CODES.get(reason, 400),
                reason,
                text,
                {**sink.details, "causes": [{"message": text}]},
            )


@dataclass(frozen=True)
class _Sink:
    """Where a request's policy outcomes go besides a denial."""

    warn: Callable[[str], None]
    annotate: Callable[[str, str], None]
    audits: list[Obj]
    details: Obj


class _ParamsMissing(Exception):
    """No parameter object and parameterNotFoundAction Deny."""
