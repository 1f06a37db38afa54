"""CEL rules: x-kubernetes-validations of CRD schemas and webhook matchConditions.

Expressions are compiled once (per CRD version, per webhook configuration) with the
Rust `cel` crate through its Python binding (common-expression-language); the strings,
lists, sets and math extensions of cel-go are available as upstream's Kubernetes CEL
environment offers them, regular expressions through `matches`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cel
from cel.stdlib import add_stdlib_to_context

from k8slite.api import celcost, celfast
from k8slite.api.celcost import Budget, CostModel, CostTally, SchemaShape, Shape, ValuesShape
from k8slite.api.celfast import Fallback
from k8slite.api.cellib import add_kubernetes_library
from k8slite.api.validation import FieldErrors, json_type

# One evaluation context holding the extension functions, reused for every evaluation
# (building one costs far more than a rule): the API server evaluates on one thread.
_EXTENDED = cel.Context()
add_stdlib_to_context(_EXTENDED)
add_kubernetes_library(_EXTENDED)
# Program.functions() names `math.greatest(...)` as `greatest`: both spellings count.
_EXTENSION_NAMES = frozenset(_EXTENDED.functions) | {
    name.rsplit(".", 1)[1] for name in _EXTENDED.functions if "." in name
}
# How the binding wraps the error of a Python function (the Kubernetes libraries').
_WRAPPED = re.compile(r"^Function '[^']*' error: Python function call failed: \w+: ")
_SELF = re.compile(r"\b(self|oldSelf)\b(\s*\.\s*([A-Za-z_][A-Za-z0-9_]*))?")
_REASONS = ("FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate")
# A rule estimated to cost at most this much is charged its estimate against a request's
# budget; a dearer one is estimated again on the request's own values before it runs.
_CHEAP = 1000
# cel-go's error for an evaluation over the per-call limit.
COST_EXCEEDED = "operation cancelled: actual cost limit exceeded"


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
    # For the runtime cost limit of expressions without a schema (policies): the parse
    # tree and its estimate with every variable as large as a request allows.
    model: CostModel = CostModel(None)
    static_cost: int = 0
    # The expression as Python closures when celfast handles it (see run).
    fast: Callable[[dict[str, Any]], Any] | None = None

    def exceeds_call_limit(self, variables: Mapping[str, Any]) -> bool:
        """Whether evaluating on these values may cost more than upstream's per-call limit
        (estimated on the values only when the estimate without them is over it)."""
        if self.static_cost <= celcost.PER_CALL_LIMIT:
            return False
        env = {name: ValuesShape([value]) for name, value in variables.items()}
        return self.model.cost(env) > celcost.PER_CALL_LIMIT

    def project(self, value: Any) -> Any:
        """value, or the part of it this expression can see."""
        if self.fields is None or not isinstance(value, dict):
            return value
        return {k: value[k] for k in self.fields if k in value}

    def run(self, variables: dict[str, Any]) -> Any:
        """Evaluate; raises the binding's error (RuntimeError, TypeError, KeyError...)."""
        if self.fast is not None:
            try:
                return self.fast(variables)
            except Fallback:
                pass  # the binding answers: an error, or a case the fast path leaves to it
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
    model = CostModel.of(source)
    return Expression(
        source,
        program,
        extended,
        frozenset(fields) if fields is not None else None,
        model,
        model.cost({}),
        celfast.build(model.tree) if model.tree is not None else None,
    )


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
    # The cost models of rule and messageExpression and their estimates on the schema.
    rule_model: CostModel
    rule_cost: int
    message_model: CostModel | None
    message_cost: int

    @classmethod
    def from_raw(cls, raw: dict[str, Any], shape: Shape | None = None) -> Rule:
        source = str(raw.get("rule") or "")
        rule = compile_expression(source)
        message_expr = raw.get("messageExpression")
        env = _env(shape or celcost.ANY)
        rule_model = CostModel.of(source)
        message_model = CostModel.of(str(message_expr)) if message_expr else None
        return cls(
            rule,
            str(raw.get("message") or ""),
            compile_expression(str(message_expr)) if message_expr else None,
            str(raw.get("reason") or "FieldValueInvalid"),
            str(raw.get("fieldPath") or ""),
            "oldSelf" in rule.program.variables(),
            bool(raw.get("optionalOldSelf")),
            rule_model,
            rule_model.cost(env),
            message_model,
            message_model.cost(env) if message_model else 0,
        )

    def _charge(self, model: CostModel, static: int, value: Any, old: Any, budget: Budget) -> int:
        """Charge one evaluation to the budget; its cost (estimated on these values when
        the schema's estimate is not small), which the caller checks against the limit."""
        cost = static
        if static > _CHEAP:
            env = {"self": ValuesShape([value]), "oldSelf": ValuesShape([old])}
            cost = model.cost(env)
        if cost <= celcost.PER_CALL_LIMIT:
            budget.spend(cost)
        return cost

    def check(
        self,
        value: Any,
        old: Any,
        has_old: bool,
        path: str,
        errs: FieldErrors,
        budget: Budget | None = None,
    ) -> None:
        """Evaluate on self=value (oldSelf=old for a transition rule) and report a failure.
        With a budget, upstream's runtime limits apply: a call estimated above the per-call
        limit, or one the request's remaining budget cannot pay, stops all further rules."""
        if self.transition and not has_old and not self.optional_old_self:
            return  # a transition rule applies to updates of an existing value only
        if budget is not None:
            if budget.exhausted:
                return
            if self.rule_cost <= _CHEAP and budget.remaining >= self.rule_cost:
                budget.remaining -= self.rule_cost  # the common case, inline
                cost = self.rule_cost
            else:
                cost = self._charge(self.rule_model, self.rule_cost, value, old, budget)
            if cost > celcost.PER_CALL_LIMIT or budget.exhausted:
                budget.exhausted = True
                where = path + self.field_path if self.field_path else path
                problem = (
                    "'operation cancelled: actual cost limit exceeded': no further validation "
                    f"rules will be run due to call cost exceeds limit for rule: {self.shown()}"
                    if cost > celcost.PER_CALL_LIMIT
                    else "validation failed due to running out of cost budget, no further "
                    "validation rules will be run"
                )
                errs._add(
                    "FieldValueInvalid",
                    where or "<nil>",
                    f'Invalid value: "{go_type(value)}": {problem}',
                )
                return
        # The binding converts what it is given into CEL values: hand it only the fields
        # the rule reads (the fast path reads the values in place, and needs no copy).
        if self.message_expression is not None or self.rule.fast is not None:
            project = _whole
        else:
            project = self.rule.project
        variables: dict[str, Any] = {"self": project(value)}
        if self.transition:
            if self.optional_old_self:
                variables["oldSelf"] = (
                    cel.OptionalValue.of(project(old)) if has_old else cel.OptionalValue.none()
                )
            else:
                variables["oldSelf"] = project(old)
        try:
            passed = self.rule.run(variables)
        except (RuntimeError, TypeError, KeyError, ValueError, OverflowError) as e:
            shown = (path + self.field_path if self.field_path else path) or "<nil>"
            errs._add(
                "FieldValueInvalid", shown, f'Invalid value: "{go_type(value)}": {eval_error(e)}'
            )
            return
        if passed is True:
            return
        shown = (path + self.field_path if self.field_path else path) or "<nil>"
        message = self.message or f"failed rule: {self.rule.source}"
        if self.message_expression is not None and self._message_affordable(value, old, budget):
            try:
                text = self.message_expression.run(variables)
            except (RuntimeError, TypeError, KeyError, ValueError, OverflowError):
                text = None
            if isinstance(text, str) and text.strip() and "\n" not in text:
                message = text
        _report(errs, self.reason, shown, go_type(value), message)

    def _message_affordable(self, value: Any, old: Any, budget: Budget | None) -> bool:
        """Whether the messageExpression may run (else the message is the fallback)."""
        if budget is None or self.message_model is None:
            return True
        cost = self._charge(self.message_model, self.message_cost, value, old, budget)
        return cost <= celcost.PER_CALL_LIMIT and not budget.exhausted

    def shown(self) -> str:
        """How upstream names a rule in its runtime errors: its message, else its source."""
        return self.message.strip() or self.rule.source.strip()


def _env(shape: Shape) -> dict[str, Shape]:
    return {"self": shape, "oldSelf": shape}


def _whole(value: Any) -> Any:
    return value


def eval_error(e: Exception) -> str:
    if isinstance(e, KeyError):
        return f"no such key: {e.args[0] if e.args else ''}"
    text = str(e)
    unwrapped = _WRAPPED.sub("", text)
    if unwrapped != text:  # the library's own message, without the binding's advice
        return unwrapped.removesuffix(". Check function arguments and their types.")
    return text.split(". ", 1)[0]


def _report(errs: FieldErrors, reason: str, path: str, type_name: str, message: str) -> None:
    if reason == "FieldValueForbidden":
        errs._add(reason, path, f"Forbidden: {message}")
    elif reason == "FieldValueRequired":
        errs._add(reason, path, f"Required value: {message}")
    elif reason == "FieldValueDuplicate":
        errs._add(reason, path, f'Duplicate value: "{message}"')
    else:
        errs._add("FieldValueInvalid", path, f'Invalid value: "{type_name}": {message}')


def check_rule_definitions(
    raw: Any,
    path: str,
    errs: FieldErrors,
    node: dict[str, Any] | None = None,
    cardinality: int = 1,
    tally: CostTally | None = None,
    root: bool = False,
) -> None:
    """Compile-time checks of a schema node's x-kubernetes-validations (CRD validation):
    each rule and messageExpression compiles, and its estimated cost on the node's schema,
    times how many times it can run in one object (cardinality), is within upstream's
    per-expression limit; each estimate goes into tally for the schema's total."""
    env = _env(SchemaShape(node, root) if node is not None else celcost.ANY)
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
                    continue
                cost = celcost.multiply(CostModel.of(str(entry[field])).cost(env), cardinality)
                if cost > celcost.STATIC_EXPRESSION_LIMIT:
                    what = "rule" if field == "rule" else "messageExpression"
                    errs.forbidden(
                        f"{here}.{field}",
                        celcost.exceeds_message(
                            f"estimated {what} cost", cost, celcost.STATIC_EXPRESSION_LIMIT
                        ),
                    )
                if tally is not None:
                    tally.observe(f"{here}.{field}", cost)
        reason = entry.get("reason")
        if reason is not None and reason not in _REASONS:
            errs.not_supported(f"{here}.reason", reason, list(_REASONS))
        field_path = entry.get("fieldPath")
        if field_path and not str(field_path).startswith("."):
            errs.invalid(
                f"{here}.fieldPath", field_path, "must be a relative path starting with '.'"
            )
