"""Pure-Python label and field selectors with upstream semantics: the oracle for the native ones."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class SelectorError(ValueError):
    """A selector that does not parse (same wording as the native SelectorError)."""


# ------------------------------------------------------------------------- validation

LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_KEY_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
LABEL_VALUE_FMT = f"({LABEL_KEY_FMT})?"
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, "
    "'-', '_' or '.', and must start and end with an alphanumeric character"
)
DNS_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN_FMT = DNS_LABEL + "(\\." + DNS_LABEL + ")*"
DNS_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character"
)


def _full(fmt: str, text: str) -> bool:
    # Go's regexp on bytes: only ASCII can match these classes.
    return text.isascii() and re.fullmatch(fmt, text) is not None


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    shown = "".join(("" if i == 0 else " or ") + f"'{e}', " for i, e in enumerate(examples))
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def label_key_errors(key: str) -> list[str]:
    errs: list[str] = []
    parts = key.split("/")
    if len(parts) > 2:
        example = regex_error(LABEL_KEY_MSG, LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
        return [
            (
                f"a valid label key {example} with an optional DNS subdomain prefix and '/' "
                "(e.g. 'example.com/MyName')"
            )
        ]
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            if len(prefix.encode()) > 253:
                errs.append("prefix part must be no more than 253 bytes")
            if not _full(DNS_SUBDOMAIN_FMT, prefix):
                errs.append(
                    "prefix part "
                    + regex_error(DNS_SUBDOMAIN_MSG, DNS_SUBDOMAIN_FMT, "example.com")
                )
    if not name:
        errs.append("name part must be non-empty")
    elif len(name.encode()) > 63:
        errs.append("name part must be no more than 63 bytes")
    if not _full(LABEL_KEY_FMT, name):
        errs.append(
            "name part " + regex_error(LABEL_KEY_MSG, LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


def label_value_errors(value: str) -> list[str]:
    errs = []
    if len(value.encode()) > 63:
        errs.append("must be no more than 63 bytes")
    if not _full(LABEL_VALUE_FMT, value):
        errs.append(regex_error(LABEL_VALUE_MSG, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


_GO_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def go_quote(text: str) -> str:
    """Go's %q."""
    out = []
    for ch in text:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif 0x80 <= ord(ch) < 0xA0:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def invalid(path: str, shown: str, detail: str) -> str:
    return f"{path}: Invalid value: {shown}: {detail}"


def aggregate(errs: list[str]) -> str | None:
    unique = list(dict.fromkeys(errs))
    if not unique:
        return None
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


# ---------------------------------------------------------------------- requirements

OPS = {"=", "==", "!=", "in", "notin", "exists", "!", "gt", "lt"}


@dataclass
class Requirement:
    key: str
    op: str
    values: list[str] = field(default_factory=list)

    @staticmethod
    def new(key: str, op: str, values: list[str] | None) -> Requirement:
        """labels.NewRequirement; values None is Go's nil slice (shown differently)."""
        errs = []
        if key_errs := label_key_errors(key):
            errs.append(invalid("key", go_quote(key), "; ".join(key_errs)))
        vals = values or []
        shown = (
            "[]string(nil)"
            if values is None
            else ("[]string{" + ", ".join(go_quote(v) for v in vals) + "}")
        )
        if op in ("in", "notin") and not vals:
            errs.append(
                invalid("values", shown, "for 'in', 'notin' operators, values set can't be empty")
            )
        elif op in ("=", "==", "!=") and len(vals) != 1:
            errs.append(
                invalid("values", shown, "exact-match compatibility requires one single value")
            )
        elif op in ("exists", "!") and vals:
            errs.append(
                invalid("values", shown, "values set must be empty for exists and does not exist")
            )
        elif op in ("gt", "lt"):
            if len(vals) != 1:
                errs.append(
                    invalid(
                        "values", shown, "for 'Gt', 'Lt' operators, exactly one value is required"
                    )
                )
            for i, v in enumerate(vals):
                if not _is_int64(v):
                    errs.append(
                        invalid(
                            f"values[{i}]",
                            go_quote(v),
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        )
                    )
        for i, v in enumerate(vals):
            if value_errs := label_value_errors(v):
                errs.append(invalid(f"values[{i}][{key}]", go_quote(v), "; ".join(value_errs)))
        if (msg := aggregate(errs)) is not None:
            raise SelectorError(msg)
        return Requirement(key, op, sorted(set(vals)))

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op in ("=", "==", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if not present or not _is_int64(value or ""):
            return False
        bound = int(self.values[0])
        return int(value or "") > bound if self.op == "gt" else int(value or "") < bound

    def __str__(self) -> str:
        if self.op == "!":
            return "!" + self.key
        if self.op == "exists":
            return self.key
        joined = ",".join(self.values)
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({joined})"
        return self.key + {"gt": ">", "lt": "<"}.get(self.op, self.op) + joined


def _is_int64(text: str) -> bool:
    # strconv.ParseInt(s, 10, 64): optional sign, decimal digits, 64-bit range.
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return False
    return -(2**63) <= int(text) < 2**63


# ------------------------------------------------------------------------ the parser

SPECIAL = "=!(),<>"
SPACE = " \t\r\n"
KEYWORDS = {
    ")": "CLOSE",
    ",": "COMMA",
    "!": "NOT",
    "==": "EQEQ",
    "=": "EQ",
    ">": "GT",
    "in": "IN",
    "<": "LT",
    "!=": "NE",
    "notin": "NOTIN",
    "(": "OPEN",
}


def lex(text: str) -> list[tuple[str, str]]:
    """Tokens as (kind, literal); a NUL character ends the input as it does upstream."""
    text = text.split("\0", 1)[0]
    tokens = []
    i = 0
    while True:
        while i < len(text) and text[i] in SPACE:
            i += 1
        if i >= len(text):
            tokens.append(("END", ""))
            return tokens
        start = i
        if text[i] in SPECIAL:
            best = None
            while i < len(text) and text[i] in SPECIAL:
                if text[start : i + 1] in KEYWORDS:
                    best = i + 1
                elif best is not None:
                    break
                i += 1
            assert best is not None
            i = best
            tokens.append((KEYWORDS[text[start:i]], text[start:i]))
        else:
            while i < len(text) and text[i] not in SPECIAL and text[i] not in SPACE:
                i += 1
            word = text[start:i]
            tokens.append((KEYWORDS.get(word, "ID"), word))


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = lex(text)
        self.pos = 0

    def peek(self, values: bool = True) -> tuple[str, str]:
        kind, lit = self.tokens[self.pos]
        return ("ID" if values and kind in ("IN", "NOTIN") else kind), lit

    def take(self, values: bool = True) -> tuple[str, str]:
        token = self.peek(values)
        self.pos += 1
        return token

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            kind, lit = self.peek()
            if kind == "END":
                return reqs
            if kind not in ("ID", "NOT"):
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                reqs.append(self.requirement())
            except SelectorError as err:
                raise SelectorError(f"unable to parse requirement: {err}") from None
            kind, lit = self.take()
            if kind == "END":
                return reqs
            if kind != "COMMA":
                raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            kind, lit = self.peek()
            if kind not in ("ID", "NOT"):
                raise SelectorError(f"found '{lit}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        negated = False
        kind, key = self.take()
        if kind == "NOT":
            negated = True
            kind, key = self.take()
        if kind != "ID":
            raise SelectorError(f"found '{key}', expected: identifier")
        if errs := label_key_errors(key):
            raise SelectorError(invalid("<nil>", go_quote(key), "; ".join(errs)))
        if negated:
            return Requirement.new(key, "!", [])
        if self.peek()[0] in ("END", "COMMA"):
            return Requirement.new(key, "exists", [])
        kind, lit = self.take(values=False)
        ops = {
            "IN": "in",
            "NOTIN": "notin",
            "EQ": "=",
            "EQEQ": "==",
            "NE": "!=",
            "GT": "gt",
            "LT": "lt",
        }
        if kind not in ops:
            raise SelectorError(f"found '{lit}', expected: in, notin, =, ==, !=, gt, lt")
        op = ops[kind]
        values = self.value_set() if op in ("in", "notin") else self.exact_value()
        return Requirement.new(key, op, values)

    def exact_value(self) -> list[str]:
        if self.peek()[0] in ("END", "COMMA"):
            return [""]
        kind, lit = self.take()
        if kind != "ID":
            raise SelectorError(f"found '{lit}', expected: identifier")
        return [lit]

    def value_set(self) -> list[str]:
        kind, lit = self.take()
        if kind != "OPEN":
            raise SelectorError(f"found '{lit}' expected: '('")
        kind, opening = self.peek()
        if kind == "CLOSE":
            self.take()
            return [""]
        if kind not in ("ID", "COMMA"):
            raise SelectorError(f"found '{opening}', expected: ',', ')' or identifier")
        values = self.identifiers()
        if self.take()[0] != "CLOSE":
            raise SelectorError(f"found '{opening}', expected: ')'")
        return values

    def identifiers(self) -> list[str]:
        values: list[str] = []
        while True:
            kind, lit = self.take()
            if kind == "ID":
                values.append(lit)
                nxt, nxt_lit = self.peek()
                if nxt == "CLOSE":
                    return values
                if nxt != "COMMA":
                    raise SelectorError(f"found '{nxt_lit}', expected: ',' or ')'")
            elif kind == "COMMA":
                if not values:
                    values.append("")
                nxt = self.peek()[0]
                if nxt == "CLOSE":
                    values.append("")
                    return values
                if nxt == "COMMA":
                    self.take()
                    values.append("")
            else:
                raise SelectorError(f"found '{lit}', expected: ',', or identifier")


class LabelSelector:
    """labels.Parse / metav1.LabelSelectorAsSelector."""

    def __init__(self, text: str = "") -> None:
        self.nothing = False
        self.reqs: list[Requirement] = sorted(_Parser(text).parse(), key=lambda r: r.key)

    @staticmethod
    def from_dict(selector: Mapping[str, Any] | None) -> LabelSelector:
        sel = LabelSelector()
        if selector is None:
            sel.nothing = True
            return sel
        reqs = [
            Requirement.new(k, "=", [v]) for k, v in (selector.get("matchLabels") or {}).items()
        ]
        for expr in selector.get("matchExpressions") or []:
            op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}.get(
                expr.get("operator") or ""
            )
            if op is None:
                raise SelectorError(
                    f"{go_quote(expr.get('operator') or '')} is not a valid label selector operator"
                )
            reqs.append(Requirement.new(expr.get("key") or "", op, expr.get("values") or None))
        sel.reqs = sorted(reqs, key=lambda r: r.key)
        return sel

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        return not self.nothing and all(r.matches(labels or {}) for r in self.reqs)

    def is_empty(self) -> bool:
        return not self.nothing and not self.reqs

    def requirements(self) -> list[tuple[str, str, list[str]]]:
        return [(r.key, r.op, list(r.values)) for r in self.reqs]

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.reqs)


# -------------------------------------------------------------------- field selectors


class FieldSelector:
    """fields.ParseSelector: `field=value`, `field==value`, `field!=value`, comma = AND."""

    def __init__(self, text: str = "") -> None:
        self.terms: list[tuple[str, str, str]] = []
        for part in sorted(_split_terms(text)):
            if not part:
                continue
            split = _split_term(part)
            if split is None:
                raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
            name, op, raw = split
            value = _unescape(raw)
            if name or value:
                self.terms.append((name, "!=" if op == "!=" else "=", value))

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(
            (fields.get(name) or "") == value if op == "=" else (fields.get(name) or "") != value
            for name, op, value in self.terms
        )

    def is_empty(self) -> bool:
        return not self.terms

    def requirements(self) -> list[tuple[str, str, str]]:
        return list(self.terms)

    def __str__(self) -> str:
        def escape(v: str) -> str:
            return v.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")

        # Sorted again: parsing sorted the raw terms, and `==` sorts apart from `=`.
        return ",".join(sorted(f"{name}{op}{escape(value)}" for name, op, value in self.terms))


def _split_terms(text: str) -> list[str]:
    if not text:
        return []
    terms, start, in_slash = [], 0, False
    for i, ch in enumerate(text):
        if in_slash:
            in_slash = False
        elif ch == "\\":
            in_slash = True
        elif ch == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
    return None


def _unescape(raw: str) -> str:
    out, in_slash = [], False
    for ch in raw:
        if in_slash:
            if ch not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            in_slash = False
        elif ch == "\\":
            in_slash = True
        elif ch in ",=":
            raise SelectorError(f"invalid field selector: unescaped character in value: {ord(ch)}")
        else:
            out.append(ch)
    if in_slash:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)
