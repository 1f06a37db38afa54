"""CEL rules: x-kubernetes-validations of CRD schemas and webhook matchConditions.

Expressions are compiled once (per CRD version, per webhook configuration) with the
Rust `cel` crate through its Python binding (common-expression-language); the strings,
lists, sets and math extensions of cel-go are available as upstream's Kubernetes CEL
environment offers them, regular expressions through `matches`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cel
from cel.stdlib import add_stdlib_to_context

from k8slite.api.validation import FieldErrors, json_type

# One evaluation context holding the extension functions, reused for every evaluation
# (building one costs far more than a rule): the API server evaluates on one thread.
_EXTENDED = cel.Context()
add_stdlib_to_context(_EXTENDED)
_EXTENSION_NAMES = frozenset(_EXTENDED.functions)
_SELF = re.compile(r"\b(self|oldSelf)\b(\s*\.\s*([A-Za-z_][A-Za-z0-9_]*))?")
_REASONS = ("FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate")


class CelError(Exception):
    """An expression that does not compile."""


@dataclass(frozen=True)
class Expression:
    """A compiled expression and whether it needs the extension functions."""

    source: str
    program: Any
    extended: bool

    # The fields of self/oldSelf the expression selects, when it uses them only as
    # `self.<field>`: evaluation is then handed those fields alone, since converting a
    # whole object into CEL values costs more than most rules.
    fields: frozenset[str] | None = None

    def project(self, value: Any) -> Any:
        """value, or the part of it this expression can see."""
        if self.fields is None or not isinstance(value, dict):
            return value
        return {k: value[k] for k in self.fields if k in value}

    def run(self, variables: dict[str, Any]) -> Any:
        """Evaluate; raises the binding's error (RuntimeError, TypeError, KeyError...)."""
        if not self.extended:
            return self.program.execute(variables)
        for name, value in variables.items():
            _EXTENDED.add_variable(name, value)
        return self.program.execute(_EXTENDED)


def compile_expression(source: str) -> Expression:
    try:
        program = cel.compile(source)
    except ValueError as e:
        raise CelError(str(e).replace(f"Failed to parse expression '{source}': ", "")) from None
    extended = bool(set(program.functions()) & _EXTENSION_NAMES)
    fields: set[str] | None = set()
    for m in _SELF.finditer(source):
        if m.group(3) is None:
            fields = None  # self used whole (self == ..., size(self), self[...])
            break
        assert fields is not None
        fields.add(m.group(3))
    return Expression(source, program, extended, frozenset(fields) if fields is not None else None)


def go_type(value: Any) -> str:
    """The schema type upstream shows as a rule's invalid value (a null shows as string)."""
    return "string" if value is None else json_type(value)


@dataclass(frozen=True)
class Rule:
    """One x-kubernetes-validations entry, compiled."""

    rule: Expression
    message: str
    message_expression: Expression | None
    reason: str
    field_path: str
    transition: bool
    optional_old_self: bool

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> Rule:
        rule = compile_expression(str(raw.get("rule") or ""))
        message_expr = raw.get("messageExpression")
        return cls(
            rule,
            str(raw.get("message") or ""),
            compile_expression(str(message_expr)) if message_expr else None,
            str(raw.get("reason") or "FieldValueInvalid"),
            str(raw.get("fieldPath") or ""),
            "oldSelf" in rule.program.variables(),
            bool(raw.get("optionalOldSelf")),
        )

    def check(self, value: Any, old: Any, has_old: bool, path: str, errs: FieldErrors) -> None:
        """Evaluate on self=value (oldSelf=old for a transition rule) and report a failure."""
        if self.transition and not has_old and not self.optional_old_self:
            return  # a transition rule applies to updates of an existing value only
        project = self.rule.project if self.message_expression is None else _whole
        variables: dict[str, Any] = {"self": project(value)}
        if self.transition:
            if self.optional_old_self:
                variables["oldSelf"] = (
                    cel.OptionalValue.of(project(old)) if has_old else cel.OptionalValue.none()
                )
            else:
                variables["oldSelf"] = project(old)
        where = path + self.field_path if self.field_path else path
        shown = where or "<nil>"
        try:
            passed = self.rule.run(variables)
        except (RuntimeError, TypeError, KeyError, ValueError, OverflowError) as e:
            errs._add(
                "FieldValueInvalid", shown, f'Invalid value: "{go_type(value)}": {eval_error(e)}'
            )
            return
        if passed is True:
            return
        message = self.message or f"failed rule: {self.rule.source}"
        if self.message_expression is not None:
            try:
                text = self.message_expression.run(variables)
            except (RuntimeError, TypeError, KeyError, ValueError, OverflowError):
                text = None
            if isinstance(text, str) and text.strip() and "\n" not in text:
                message = text
        _report(errs, self.reason, shown, go_type(value), message)


def _whole(value: Any) -> Any:
    return value


def eval_error(e: Exception) -> str:
    if isinstance(e, KeyError):
        return f"no such key: {e.args[0] if e.args else ''}"
    return str(e).split(". ", 1)[0]


def _report(errs: FieldErrors, reason: str, path: str, type_name: str, message: str) -> None:
    if reason == "FieldValueForbidden":
        errs._add(reason, path, f"Forbidden: {message}")
    elif reason == "FieldValueRequired":
        errs._add(reason, path, f"Required value: {message}")
    elif reason == "FieldValueDuplicate":
        errs._add(reason, path, f'Duplicate value: "{message}"')
    else:
        errs._add("FieldValueInvalid", path, f'Invalid value: "{type_name}": {message}')


def check_rule_definitions(raw: Any, path: str, errs: FieldErrors) -> None:
    """Compile-time checks of a schema node's x-kubernetes-validations (CRD validation)."""
    for i, entry in enumerate(raw or ()):
        here = f"{path}[{i}]"
        if not isinstance(entry, dict) or not entry.get("rule"):
            errs.required(f"{here}.rule", "rule is not specified")
            continue
        for field in ("rule", "messageExpression"):
            if entry.get(field):
                try:
                    compile_expression(str(entry[field]))
                except CelError as e:
                    errs.invalid(f"{here}.{field}", entry[field], f"compilation failed: {e}")
        reason = entry.get("reason")
        if reason is not None and reason not in _REASONS:
            errs.not_supported(f"{here}.reason", reason, list(_REASONS))
        field_path = entry.get("fieldPath")
        if field_path and not str(field_path).startswith("."):
            errs.invalid(
                f"{here}.fieldPath", field_path, "must be a relative path starting with '.'"
            )
