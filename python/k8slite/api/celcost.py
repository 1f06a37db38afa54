"""Cost of CEL expressions, as upstream's estimator and runtime limits count it.

The binding we evaluate with (common-expression-language) reports no cost, so this module
parses an expression itself (a small Pratt parser for the CEL grammar) and estimates the
cost of evaluating it from the sizes its data can have, with cel-go's cost model: 1 for
each variable, field select, index, operator and scalar comparison; strings cost a tenth
of their length when traversed (comparison, prefix, concatenation, the string library),
`contains` the product of both tenths, a regular expression the string's tenth times a
quarter of the pattern's length; a list or map macro costs its range times its body (plus
two for the loop's step and condition), a literal list 10 and a map 30 besides their
elements. The estimate of a branch (`? :`) is its dearer side, of `&&`/`||` both sides:
it never counts less than an evaluation could cost, so it is an upper bound of cel-go's
actual cost, not cel-go's estimate to the unit.

Sizes come from a Shape: from the schema (maxLength, maxItems, maxProperties, enum and
format lengths; without a bound, what fits in upstream's 3 MiB request limit given the
smallest serialized element, as apiextensions estimates it), or from the values of one
request (the runtime check, see Rule in celrules.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Upstream's limits (k8s.io/apiserver/pkg/apis/cel/config.go, apiextensions validation).
PER_CALL_LIMIT = 1_000_000
RUNTIME_BUDGET = 10_000_000
STATIC_EXPRESSION_LIMIT = 10_000_000
STATIC_CRD_LIMIT = 100_000_000
MAX_REQUEST_BYTES = 3 * 1024 * 1024
UNBOUNDED = 2**64 - 1
_STRING_FACTOR = 0.1
_REGEX_FACTOR = 0.25
LIST_CREATE = 10
_MAP_CREATE = 30


def _sat(n: float) -> int:
    """A cost, saturating at cel-go's maximum."""
    return UNBOUNDED if n >= UNBOUNDED else int(n)


def _factor(size: int, factor: float) -> int:
    return _sat(math.ceil(size * factor))


# ------------------------------------------------------------------------- shapes


class Shape:
    """What an expression's value can be: its kind and largest size, and its parts."""

    kind = "any"  # string, list, map, object, scalar, any

    def size(self) -> int:
        return UNBOUNDED if self.kind in ("any", "string", "list", "map") else 1

    def field(self, name: str) -> Shape:
        return ANY

    def elem(self) -> Shape:
        return ANY

    def key(self) -> Shape:
        return ANY


class Fixed(Shape):
    """A computed value: a kind, a size and (for a list) its elements' shape."""

    def __init__(self, kind: str, size: int = 1, elem: Shape | None = None) -> None:
        self.kind = kind
        self._size = size
        self._elem = elem or ANY

    def size(self) -> int:
        return self._size

    def elem(self) -> Shape:
        return self._elem


ANY = Shape()
SCALAR = Fixed("scalar")
# The result of a function this estimator does not model (a quantity, a URL, an optional):
# of any type but small. Data of unknown type (x-kubernetes-preserve-unknown-fields, dyn)
# is ANY, as large as a request allows.
OPAQUE = Fixed("any", 1)
# Conversions and the result of string() of a number, a bool, a timestamp.
_CONVERSIONS = frozenset(("int", "uint", "double", "bool", "type", "dyn", "duration", "timestamp"))
_SCALAR_TEXT = Fixed("string", 40)


def _min_json_size(raw: dict[str, Any]) -> int:
    """The fewest bytes a value of this schema takes serialized, as upstream estimates it:
    an object is {} and its required properties without defaults."""
    t = raw.get("type")
    if raw.get("x-kubernetes-int-or-string"):
        return 1
    if t == "string":
        return 2
    if t == "boolean":
        return 4
    if t == "object" and not isinstance(raw.get("additionalProperties"), dict):
        props = raw.get("properties") or {}
        size = 2
        for name in raw.get("required") or ():
            prop = props.get(name)
            if isinstance(prop, dict) and "default" not in prop:
                size += len(name) + _min_json_size(prop) + 4
        return size
    if t in ("object", "array"):
        return 2
    return 1


# Strings without maxLength: as long as a request allows, but for these formats.
_FORMAT_LENGTHS = {"date": 12, "date-time": 37, "duration": 32}
# maxLength counts code points, sizes count bytes: up to four a code point (as upstream).
_BYTES_PER_CHAR = 4


class SchemaShape(Shape):
    """The shape a structural schema node allows."""

    def __init__(self, raw: dict[str, Any], root: bool = False) -> None:
        self.raw = raw
        self.root = root
        t = raw.get("type")
        if raw.get("x-kubernetes-int-or-string") or not t:
            self.kind = "any" if not raw.get("properties") else "object"
        elif t == "string":
            self.kind = "string"
        elif t == "array":
            self.kind = "list"
        elif t == "object":
            additional = raw.get("additionalProperties")
            if raw.get("properties") or raw.get("x-kubernetes-embedded-resource") or root:
                self.kind = "object"
            elif isinstance(additional, dict) or additional is True:
                self.kind = "map"
            else:
                self.kind = "any" if raw.get("x-kubernetes-preserve-unknown-fields") else "object"
        else:
            self.kind = "scalar"

    def size(self) -> int:
        raw = self.raw
        if self.kind == "string" or raw.get("x-kubernetes-int-or-string"):
            if raw.get("maxLength") is not None:
                return max(int(raw["maxLength"]), 0) * _BYTES_PER_CHAR
            if raw.get("enum") and self.kind == "string":
                return max(len(str(v)) for v in raw["enum"])
            fixed = _FORMAT_LENGTHS.get(raw.get("format") or "")
            return fixed if fixed and self.kind == "string" else MAX_REQUEST_BYTES - 2
        if self.kind == "list":
            if raw.get("maxItems") is not None:
                return int(raw["maxItems"])
            items = raw.get("items")
            items = items if isinstance(items, dict) else {}
            return (MAX_REQUEST_BYTES - 2) // (_min_json_size(items) + 1)
        if self.kind == "map":
            if raw.get("maxProperties") is not None:
                return int(raw["maxProperties"])
            value = raw.get("additionalProperties")
            value = value if isinstance(value, dict) else {}
            # "":<value>, each: an empty key, a colon, a comma and two to spare.
            return (MAX_REQUEST_BYTES - 2) // (_min_json_size(value) + 6)
        if self.kind == "object":
            if raw.get("maxProperties") is not None:
                return int(raw["maxProperties"])
            return max(len(raw.get("properties") or ()), 1)
        return super().size()

    def field(self, name: str) -> Shape:
        props = self.raw.get("properties") or {}
        if name in props and isinstance(props[name], dict):
            return SchemaShape(props[name])
        if self.root or self.raw.get("x-kubernetes-embedded-resource"):
            if name in ("apiVersion", "kind"):
                return Fixed("string", MAX_REQUEST_BYTES - 2)
            if name == "metadata":
                return _METADATA
        additional = self.raw.get("additionalProperties")
        if isinstance(additional, dict):
            return SchemaShape(additional)
        return ANY

    def elem(self) -> Shape:
        sub = self.raw.get("items") if self.kind == "list" else self.raw.get("additionalProperties")
        return SchemaShape(sub) if isinstance(sub, dict) else ANY

    def key(self) -> Shape:
        if self.kind == "object":
            names = self.raw.get("properties") or {}
            return Fixed("string", max((len(n) for n in names), default=0))
        # Upstream's estimator gives a map's keys no size (its string type has no bound set),
        # so what a rule does with a key costs as with an empty string.
        return Fixed("string", 0)


# What root rules see of metadata: name and generateName, strings with no bound given.
_METADATA = SchemaShape(
    {
        "type": "object",
        "properties": {"name": {"type": "string"}, "generateName": {"type": "string"}},
    }
)


class ValuesShape(Shape):
    """The shape of the values of one request at one place (every item of a list merged):
    the sizes are the largest of those values."""

    def __init__(self, values: list[Any]) -> None:
        self.values = values
        first = next((v for v in values if v is not None), None)
        if isinstance(first, str | bytes):
            self.kind = "string"
        elif isinstance(first, list):
            self.kind = "list"
        elif isinstance(first, dict):
            self.kind = "map"
        elif first is None:
            self.kind = "any"
        else:
            self.kind = "scalar"

    def size(self) -> int:
        if self.kind == "scalar":
            return 1
        return max(
            (len(v) for v in self.values if isinstance(v, str | bytes | list | dict)), default=0
        )

    def field(self, name: str) -> Shape:
        return ValuesShape([v[name] for v in self.values if isinstance(v, dict) and name in v])

    def elem(self) -> Shape:
        out: list[Any] = []
        for v in self.values:
            if isinstance(v, list):
                out.extend(v)
            elif isinstance(v, dict):
                out.extend(v.values())
        return ValuesShape(out)

    def key(self) -> Shape:
        if self.kind == "list":
            return self.elem()
        return ValuesShape([k for v in self.values if isinstance(v, dict) for k in v])


# ------------------------------------------------------------------------- parser


class ParseError(Exception):
    """An expression this parser does not read (the binding compiled it: no estimate)."""


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*)
  | (?P<str>[rRbB]{0,2}(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"
                        |'(?:\\.|[^\\'\n])*'|"(?:\\.|[^\\"\n])*"))
  | (?P<num>0[xX][0-9a-fA-F]+[uU]?|(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+[uU]?)
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[-+*/%<>!?:.,()\[\]{}])
    """,
    re.VERBOSE,
)

# A node: (tag, ...) tuples, small and cheap to walk.
Node = tuple[Any, ...]
_MACROS = frozenset(("all", "exists", "exists_one", "map", "filter"))
# Namespaces of functions (math.greatest, strings.quote...), not variables.
_NAMESPACES = frozenset(("math", "strings", "base64", "sets", "lists", "optional", "format"))
_RELATIONS = frozenset(("<", "<=", ">", ">=", "==", "!=", "in"))


# A literal's value when it is a plain one (celfast evaluates those), else this.
NO_VALUE = object()


def _string_value(text: str) -> Any:
    """A quoted string's value when it needs no unescaping (raw or without backslashes)."""
    prefix = len(text) - len(text.lstrip("rRbB"))
    flags, body = text[:prefix].lower(), text[prefix:]
    if "b" in flags:
        return NO_VALUE
    quote = 3 if body[:3] in ("'''", '"""') else 1
    inner = body[quote:-quote]
    return inner if "r" in flags or "\\" not in inner else NO_VALUE


def _number_value(text: str) -> Any:
    if text[-1] in "uU":
        return NO_VALUE
    if text[:2] in ("0x", "0X"):
        return int(text, 16)
    if any(c in text for c in ".eE"):
        return float(text)
    return int(text)


def _string_length(text: str) -> int:
    body = text.lstrip("rRbB")
    quote = 3 if body[:3] in ("'''", '"""') else 1
    return len(body) - 2 * quote


def _tokens(source: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:
            raise ParseError(f"unexpected {source[pos]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group()))
    out.append(("end", ""))
    return out


class _Parser:
    def __init__(self, source: str) -> None:
        self.toks = _tokens(source)
        self.i = 0

    def peek(self, ahead: int = 0) -> tuple[str, str]:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def take(self, text: str | None = None) -> tuple[str, str]:
        tok = self.toks[self.i]
        if text is not None and tok[1] != text:
            raise ParseError(f"expected {text!r}, got {tok[1]!r}")
        self.i += 1
        return tok

    def accept(self, text: str) -> bool:
        if self.peek()[0] in ("op", "id") and self.peek()[1] == text:
            self.i += 1
            return True
        return False

    def expr(self) -> Node:
        cond = self.binary(0)
        if self.accept("?"):
            yes = self.binary(0)
            self.take(":")
            return ("cond", cond, yes, self.expr())
        return cond

    _LEVELS: tuple[frozenset[str], ...] = (
        frozenset(("||",)),
        frozenset(("&&",)),
        _RELATIONS,
        frozenset(("+", "-")),
        frozenset(("*", "/", "%")),
    )

    def binary(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        ops = self._LEVELS[level]
        while self.peek()[1] in ops and self.peek()[0] in ("op", "id"):
            op = self.take()[1]
            left = ("op", op, left, self.binary(level + 1))
        return left

    def unary(self) -> Node:
        if self.peek() == ("op", "!") or self.peek() == ("op", "-"):
            op = self.take()[1]
            return ("op", op, self.unary())
        return self.member()

    def member(self) -> Node:
        node = self.primary()
        while True:
            if self.accept("."):
                self.accept("?")
                kind, name = self.take()
                if kind != "id":
                    raise ParseError("expected a field name")
                if self.accept("("):
                    if node[0] == "ident" and node[1] in _NAMESPACES:
                        node = self.call(f"{node[1]}.{name}", None)
                    else:
                        node = self.call(name, node)
                else:
                    node = ("select", node, name)
            elif self.accept("["):
                self.accept("?")
                index = self.expr()
                self.take("]")
                node = ("index", node, index)
            else:
                return node

    def args(self, close: str) -> list[Node]:
        out: list[Node] = []
        while not self.accept(close):
            if out:
                self.take(",")
                if self.accept(close):
                    break
            self.accept("?")
            out.append(self.expr())
        return out

    def call(self, name: str, target: Node | None) -> Node:
        args = self.args(")")
        if target is not None and name in _MACROS and args and args[0][0] == "ident":
            return ("macro", name, target, args[0][1], args[1:])
        if target is None and name == "has" and len(args) == 1:
            return ("has", args[0])
        return ("call", name, target, args)

    def primary(self) -> Node:
        kind, text = self.take()
        if kind == "str":
            return ("lit", "string", _string_length(text), _string_value(text))
        if kind == "num":
            return ("lit", "scalar", 1, _number_value(text))
        if kind == "id":
            if text in ("true", "false", "null"):
                return ("lit", "scalar", 1, {"true": True, "false": False, "null": None}[text])
            if self.accept("("):
                return self.call(text, None)
            if self.peek()[1] == "{":  # a message (Type{field: value})
                self.take("{")
                fields = self.map_entries()
                return ("list", fields, _MAP_CREATE)
            return ("ident", text)
        if text == ".":
            return self.primary()
        if text == "(":
            inner = self.expr()
            self.take(")")
            return inner
        if text == "[":
            return ("list", self.args("]"), LIST_CREATE)
        if text == "{":
            return ("list", self.map_entries(), _MAP_CREATE)
        raise ParseError(f"unexpected {text!r}")

    def map_entries(self) -> list[Node]:
        out: list[Node] = []
        while not self.accept("}"):
            if out:
                self.take(",")
                if self.accept("}"):
                    break
            self.accept("?")
            out.append(self.expr())
            self.take(":")
            out.append(self.expr())
        return out


def parse(source: str) -> Node:
    p = _Parser(source)
    node = p.expr()
    if p.peek()[0] != "end":
        raise ParseError(f"unexpected {p.peek()[1]!r}")
    return node


# ---------------------------------------------------------------------- estimator


@dataclass(frozen=True)
class Est:
    """A subexpression's largest cost and the shape of its value."""

    cost: int
    shape: Shape


def _add(*costs: int) -> int:
    return _sat(sum(costs))


def _mul(a: int, b: int) -> int:
    return _sat(a * b)


multiply = _mul


def _elem_cost(shape: Shape) -> int:
    """Comparing two elements of a list: 1, or the strings' traversal."""
    return 1 + (_factor(shape.size(), _STRING_FACTOR) if shape.kind == "string" else 0)


# Functions of one string (a receiver or a single argument) that traverse it once: the
# strings extension and the Kubernetes libraries' parsers.
_STRING_TRAVERSALS = frozenset(
    (
        "lowerAscii",
        "upperAscii",
        "trim",
        "replace",
        "split",
        "substring",
        "charAt",
        "reverse",
        "quote",
        "strings.quote",
        "string",
        "bytes",
        "quantity",
        "isQuantity",
        "url",
        "isURL",
        "ip",
        "isIP",
        "cidr",
        "isCIDR",
        "base64.encode",
        "base64.decode",
    )
)
# Functions that walk a list once (the Kubernetes lists library, the lists extension).
_LIST_WALKS = frozenset(("isSorted", "sum", "min", "max", "distinct", "flatten", "join"))


def estimate(node: Node, env: Mapping[str, Shape]) -> Est:
    """The largest cost of evaluating node with variables of the given shapes."""
    tag = node[0]
    if tag == "lit":
        return Est(0, Fixed(node[1], node[2]))
    if tag == "ident":
        return Est(1, env.get(node[1], ANY))
    if tag == "select":
        inner = estimate(node[1], env)
        return Est(_add(inner.cost, 1), inner.shape.field(node[2]))
    if tag == "has":
        inner = estimate(node[1], env)
        return Est(_add(inner.cost, 1), SCALAR)
    if tag == "index":
        inner, index = estimate(node[1], env), estimate(node[2], env)
        shape = inner.shape
        if shape.kind == "object" and node[2][0] == "lit":
            out = ANY
        elif shape.kind in ("list", "map"):
            out = shape.elem()
        else:
            out = ANY
        return Est(_add(inner.cost, index.cost, 1), out)
    if tag == "list":
        parts = [estimate(n, env) for n in node[1]]
        elem = parts[0].shape if parts else ANY
        return Est(_add(node[2], *(p.cost for p in parts)), Fixed("list", len(parts), elem))
    if tag == "cond":
        c, a, b = (estimate(n, env) for n in node[1:])
        shape = a.shape if a.shape.size() >= b.shape.size() else b.shape
        return Est(_add(c.cost, max(a.cost, b.cost)), shape)
    if tag == "op":
        return _operator(node, env)
    if tag == "macro":
        return _macro(node, env)
    if tag == "call":
        return _call(node, env)
    raise ParseError(f"unknown node {tag}")


def _operator(node: Node, env: Mapping[str, Shape]) -> Est:
    op = node[1]
    if len(node) == 3:
        inner = estimate(node[2], env)
        return Est(_add(inner.cost, 1), SCALAR)
    left, right = estimate(node[2], env), estimate(node[3], env)
    both = _add(left.cost, right.cost)
    ls, rs = left.shape, right.shape
    if op in ("&&", "||"):
        return Est(both, SCALAR)
    if op == "in":
        if rs.kind == "list":
            return Est(_add(both, _mul(rs.size(), _elem_cost(ls))), SCALAR)
        return Est(_add(both, 1), SCALAR)
    if op in _RELATIONS:
        if "string" in (ls.kind, rs.kind):
            traversal = _factor(min(ls.size(), rs.size()), _STRING_FACTOR)
            return Est(_add(both, 1, traversal), SCALAR)
        if ls.kind in ("list", "map") or rs.kind in ("list", "map"):
            return Est(_add(both, 1, min(ls.size(), rs.size())), SCALAR)
        return Est(_add(both, 1), SCALAR)
    if op == "+":
        size = _add(ls.size(), rs.size())
        if ls.kind == "string" or rs.kind == "string":
            return Est(_add(both, 1, _factor(size, _STRING_FACTOR)), Fixed("string", size))
        if ls.kind == "list" or rs.kind == "list":
            elem = ls.elem() if ls.kind == "list" else rs.elem()
            return Est(_add(both, 1, _factor(size, _STRING_FACTOR)), Fixed("list", size, elem))
    return Est(_add(both, 1), SCALAR)


def _macro(node: Node, env: Mapping[str, Shape]) -> Est:
    name, target, var, body = node[1], node[2], node[3], node[4]
    rng = estimate(target, env)
    shape = rng.shape
    n = shape.size()
    item = shape.elem() if shape.kind == "list" else shape.key()
    inner = {**env, var: item}
    steps = [estimate(b, inner) for b in body]
    per_item = _add(2, *(s.cost for s in steps))
    cost = _add(rng.cost, _mul(n, per_item))
    if name == "map":
        return Est(cost, Fixed("list", n, steps[-1].shape if steps else ANY))
    if name == "filter":
        return Est(cost, Fixed("list", n, item))
    return Est(cost, SCALAR)


def _call(node: Node, env: Mapping[str, Shape]) -> Est:
    name, target_node, arg_nodes = node[1], node[2], node[3]
    target = estimate(target_node, env) if target_node is not None else None
    args = [estimate(a, env) for a in arg_nodes]
    base = _add(1, target.cost if target else 0, *(a.cost for a in args))
    # The value the function works on: the receiver, or the first argument of a global.
    subject = target if target is not None else (args[0] if args else None)
    others = args if target is not None else args[1:]
    s = subject.shape if subject else ANY
    if name == "size":
        return Est(base, SCALAR)
    if name in _CONVERSIONS or (name == "string" and s.kind == "scalar"):
        # Conversions cost 1 in cel-go, but string() and bytes() of text (below).
        if name == "dyn":
            return Est(base, s)
        return Est(base, _SCALAR_TEXT if name == "string" else SCALAR)
    if name in ("startsWith", "endsWith") and others:
        return Est(_add(base, _factor(others[0].shape.size(), _STRING_FACTOR)), SCALAR)
    if name == "contains" and others:
        if s.kind == "list":
            return Est(_add(base, _mul(s.size(), _elem_cost(others[0].shape))), SCALAR)
        cost = _mul(
            _factor(s.size(), _STRING_FACTOR), _factor(others[0].shape.size(), _STRING_FACTOR)
        )
        return Est(_add(base, cost), SCALAR)
    if name in ("matches", "find", "findAll") and others:
        text = _factor(_add(s.size(), 1), _STRING_FACTOR)
        regex = _factor(others[0].shape.size(), _REGEX_FACTOR)
        out: Shape = SCALAR
        if name == "find":
            out = Fixed("string", s.size())
        elif name == "findAll":
            out = Fixed("list", s.size(), Fixed("string", s.size()))
        return Est(_add(base, _mul(text, regex)), out)
    if name in ("indexOf", "lastIndexOf"):
        if s.kind == "list":
            return Est(_add(base, _mul(s.size(), _elem_cost(s.elem()))), SCALAR)
        return Est(_add(base, _factor(s.size(), _STRING_FACTOR)), SCALAR)
    if name in _LIST_WALKS and s.kind == "list":
        cost = _mul(s.size(), _elem_cost(s.elem()))
        if name == "distinct":
            cost = _mul(cost, s.size())
        if name == "join":
            size = _mul(s.size(), s.elem().size())
            return Est(_add(base, cost, _factor(size, _STRING_FACTOR)), Fixed("string", size))
        result = Fixed("list", s.size(), s.elem()) if name in ("distinct", "flatten") else s.elem()
        return Est(_add(base, cost), result)
    if name in ("sort", "slice", "reverse") and s.kind == "list":
        n = s.size()
        factor = max(1, math.ceil(math.log2(n))) if name == "sort" and n > 1 else 1
        return Est(_add(base, _mul(_mul(n, factor), _elem_cost(s.elem()))), s)
    if name in _STRING_TRAVERSALS and s.kind in ("string", "any"):
        cost = _add(base, _factor(s.size(), _STRING_FACTOR))
        if name == "split":
            return Est(cost, Fixed("list", s.size(), Fixed("string", s.size())))
        if name in ("lowerAscii", "upperAscii", "trim", "substring", "reverse", "quote"):
            return Est(cost, Fixed("string", s.size()))
        if name == "string":
            return Est(cost, Fixed("string", s.size()))
        return Est(cost, SCALAR if name.startswith("is") else OPAQUE)
    if name in ("orValue", "value") and target is not None:
        return Est(base, target.shape)
    if name == "optional.of" and args:
        return Est(base, args[0].shape)
    return Est(base, OPAQUE)


# --------------------------------------------------------------------- estimates


@dataclass(frozen=True)
class CostModel:
    """An expression's parse tree, or None when this parser cannot read it (no limits)."""

    tree: Node | None

    @classmethod
    def of(cls, source: str) -> CostModel:
        try:
            return cls(parse(source))
        except (ParseError, RecursionError):
            return cls(None)

    def cost(self, env: Mapping[str, Shape]) -> int:
        if self.tree is None:
            return 0
        try:
            return estimate(self.tree, env).cost
        except (ParseError, RecursionError):
            return 0


def exceeds_message(what: str, cost: int, limit: int) -> str:
    """Upstream's wording for an estimate over its limit."""
    factor = cost / limit
    if factor > 100.0:
        shown = "more than 100x"
    elif factor < 1.5:
        shown = f"{factor:f}x"
    else:
        shown = f"{factor:.1f}x"
    return (
        f"{what} exceeds budget by factor of {shown} (try simplifying the rule, or adding "
        "maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
    )


@dataclass
class CostTally:
    """The estimated costs of all of a schema's expressions (times their cardinality)."""

    total: int = 0
    expressions: list[tuple[int, str]] | None = None

    def observe(self, path: str, cost: int) -> None:
        self.total = _add(self.total, cost)
        if self.expressions is None:
            self.expressions = []
        self.expressions.append((cost, path))

    def most_expensive(self, n: int = 4) -> Iterable[str]:
        ranked = sorted(self.expressions or (), key=lambda e: -e[0])
        return [path for _, path in ranked[:n]]


class Budget:
    """One request's runtime cost budget for all of its rules (upstream: 10,000,000)."""

    __slots__ = ("remaining", "exhausted")

    def __init__(self, limit: int = RUNTIME_BUDGET) -> None:
        self.remaining = limit
        self.exhausted = False

    def spend(self, cost: int) -> bool:
        """Take cost; False (and exhausted from now on) when there was not that much left."""
        self.remaining -= cost
        if self.remaining < 0:
            self.exhausted = True
        return not self.exhausted
