"""Tests for the native label and field selectors against the pure-Python reference."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from k8slite._native import FieldSelector, LabelSelector, SelectorError
from tests.reference import selectors as ref

# ----------------------------------------------------------------- label selectors

TOKENS = [
    "a",
    "b",
    "env",
    "tier",
    "app.kubernetes.io/name",
    "x/y",
    "Ab/c",
    "/z",
    "a/b/c",
    "in",
    "notin",
    "=",
    "==",
    "!=",
    "!",
    "(",
    ")",
    ",",
    " ",
    "  ",
    "\t",
    ">",
    "<",
    "5",
    "-3",
    "prod",
    "dev",
    "",
    "a b",
    "é",
    "-bad",
    "z" * 64,
    "v" * 63,
    "app:",
]


def outcome(make: Any, text: str) -> tuple[str, ...]:
    try:
        sel = make(text)
    except (SelectorError, ref.SelectorError) as err:
        return ("error", str(err))
    return ("ok", str(sel), repr(sel.requirements()), repr(sel.is_empty()))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=10).map("".join))
def test_label_parse_matches_reference(text: str) -> None:
    assert outcome(LabelSelector, text) == outcome(ref.LabelSelector, text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_label_parse_arbitrary_text(text: str) -> None:
    assert outcome(LabelSelector, text) == outcome(ref.LabelSelector, text)


KEYS = ["a", "b", "env", "app.kubernetes.io/name"]
VALUES = ["", "x", "y", "prod", "5", "12", "0a"]
requirement_text = st.one_of(
    st.tuples(
        st.sampled_from(KEYS), st.sampled_from(["=", "==", "!="]), st.sampled_from(VALUES)
    ).map("".join),
    st.tuples(
        st.sampled_from(KEYS),
        st.sampled_from([" in ", " notin "]),
        st.lists(st.sampled_from(VALUES), min_size=1, max_size=3).map(",".join),
    ).map(lambda t: f"{t[0]}{t[1]}({t[2]})"),
    st.sampled_from(KEYS),
    st.sampled_from(KEYS).map(lambda k: "!" + k),
    st.tuples(
        st.sampled_from(KEYS), st.sampled_from([">", "<"]), st.sampled_from(["0", "5", "12"])
    ).map("".join),
)
selector_text = st.lists(requirement_text, max_size=4).map(",".join)
label_sets = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES + ["abc"]), max_size=4)


@settings(max_examples=400, deadline=None)
@given(selector_text, label_sets)
def test_label_matching_matches_reference(text: str, labels: dict[str, str]) -> None:
    try:
        oracle = ref.LabelSelector(text)
    except ref.SelectorError as err:  # e.g. "a in (,,)", which upstream rejects too
        with pytest.raises(SelectorError, match=re.escape(str(err))):
            LabelSelector(text)
        return
    native = LabelSelector(text)
    assert native.matches(labels) == oracle.matches(labels)
    assert str(native) == str(oracle)
    # The canonical form parses back to the same selector.
    assert str(LabelSelector(str(native))) == str(native)


def test_examples() -> None:
    sel = LabelSelector("a=b,c!=d,e in (f,g),h notin (i),j,!k")
    assert str(sel) == "a=b,c!=d,e in (f,g),h notin (i),j,!k"
    assert sel.requirements() == [
        ("a", "=", ["b"]),
        ("c", "!=", ["d"]),
        ("e", "in", ["f", "g"]),
        ("h", "notin", ["i"]),
        ("j", "exists", []),
        ("k", "!", []),
    ]
    assert sel.matches({"a": "b", "e": "g", "j": "1"})
    assert not sel.matches({"a": "b", "e": "g", "j": "1", "k": ""})
    assert str(LabelSelector("  tier in ( b , a ) ,  x ")) == "tier in (a,b),x"
    assert LabelSelector("x>5").matches({"x": "6"}) and not LabelSelector("x>5").matches({"x": "5"})
    assert not LabelSelector("x<5").matches({"x": "four"})
    assert LabelSelector("").is_empty() and LabelSelector().matches(None)
    assert LabelSelector("a!=b").matches(None) and not LabelSelector("a").matches(None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x=(", "unable to parse requirement: found '(', expected: identifier"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("a,", "found '', expected: identifier after ','"),
        (",a", "found ',', expected: !, identifier, or 'end of string'"),
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("x in a", "unable to parse requirement: found 'a' expected: '('"),
        ("x in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'"),
        (
            "x>a",
            (
                'unable to parse requirement: values[0]: Invalid value: "a": '
                "for 'Gt', 'Lt' operators, the value must be an integer"
            ),
        ),
        (
            "app: nginx",
            (
                'unable to parse requirement: <nil>: Invalid value: "app:": name part '
                "must consist of alphanumeric characters, '-', '_' or '.', and must start "
                "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  "
                "or '123-abc', regex used for validation is "
                "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
            ),
        ),
        (
            "x=" + "a" * 64,
            'unable to parse requirement: values[0][x]: Invalid value: "'
            + "a" * 64
            + '": must be no more than 63 bytes',
        ),
        (
            "/a",
            (
                'unable to parse requirement: <nil>: Invalid value: "/a": '
                "prefix part must be non-empty"
            ),
        ),
    ],
)
def test_upstream_messages(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as info:
        LabelSelector(text)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_from_dict_none_selects_nothing_empty_selects_everything() -> None:
    nothing = LabelSelector.from_dict(None)
    assert not nothing.matches({}) and not nothing.matches({"a": "b"})
    assert not nothing.is_empty() and nothing.requirements() == [] and str(nothing) == ""
    everything = LabelSelector.from_dict({})
    assert everything.matches({}) and everything.matches(None) and everything.is_empty()
    assert LabelSelector.from_dict({"matchLabels": None, "matchExpressions": []}).is_empty()


expressions = st.lists(
    st.fixed_dictionaries(
        {
            "key": st.sampled_from(KEYS + ["bad key"]),
            "operator": st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "Gt"]),
        },
        optional={"values": st.lists(st.sampled_from(VALUES + ["bad value"]), max_size=3)},
    ),
    max_size=3,
)
dict_selectors = st.fixed_dictionaries(
    {},
    optional={
        "matchLabels": st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3),
        "matchExpressions": expressions,
    },
)


@settings(max_examples=300, deadline=None)
@given(dict_selectors, label_sets)
def test_from_dict_matches_reference(selector: dict[str, Any], labels: dict[str, str]) -> None:
    def build(make: Any) -> Any:
        try:
            return make(selector)
        except (SelectorError, ref.SelectorError) as err:
            return str(err)

    native, oracle = build(LabelSelector.from_dict), build(ref.LabelSelector.from_dict)
    if isinstance(oracle, str):
        assert native == oracle
        return
    assert str(native) == str(oracle)
    assert native.requirements() == oracle.requirements()
    assert native.matches(labels) == oracle.matches(labels)


def test_from_dict_errors() -> None:
    cases = [
        (
            {"matchExpressions": [{"key": "a", "operator": "Foo"}]},
            '"Foo" is not a valid label selector operator',
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
            (
                "values: Invalid value: []string(nil): for 'in', 'notin' operators, "
                "values set can't be empty"
            ),
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            (
                'values: Invalid value: []string{"x"}: values set must be empty for exists and '
                "does not exist"
            ),
        ),
    ]
    for selector, message in cases:
        with pytest.raises(SelectorError) as info:
            LabelSelector.from_dict(selector)
        assert str(info.value) == message
    with pytest.raises(SelectorError, match="matchLabels must be a map of strings"):
        LabelSelector.from_dict({"matchLabels": {"a": 1}})


# ----------------------------------------------------------------- field selectors

FIELD_TOKENS = [
    "metadata.name",
    "spec.nodeName",
    "status.phase",
    "a",
    "x",
    "=",
    "==",
    "!=",
    "!",
    ",",
    "\\",
    "\\,",
    "\\=",
    "\\\\",
    "\\q",
    " ",
    "node-1",
    "Running",
    "",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(FIELD_TOKENS), max_size=8).map("".join))
def test_field_parse_matches_reference(text: str) -> None:
    assert outcome(FieldSelector, text) == outcome(ref.FieldSelector, text)


field_sets = st.dictionaries(
    st.sampled_from(["metadata.name", "spec.nodeName", "a", "x"]),
    st.sampled_from(["", "node-1", "Running", "x,y=z\\"]),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FIELD_TOKENS), max_size=8).map("".join), field_sets)
# `==` sorts before the `=` it is written back as: the text must still be canonical.
@example("==metadata.namemetadata.name,=metadata.name", {})
def test_field_matching_matches_reference(text: str, fields: dict[str, str]) -> None:
    try:
        oracle = ref.FieldSelector(text)
    except ref.SelectorError:
        return
    native = FieldSelector(text)
    assert native.matches(fields) == oracle.matches(fields)
    assert str(native) == str(oracle)
    assert str(FieldSelector(str(native))) == str(native)


def test_field_examples() -> None:
    sel = FieldSelector("spec.nodeName=,metadata.name!=x")
    assert sel.requirements() == [("metadata.name", "!=", "x"), ("spec.nodeName", "=", "")]
    assert sel.matches({"metadata.name": "y"})  # missing spec.nodeName counts as ""
    assert not sel.matches({"metadata.name": "y", "spec.nodeName": "node-1"})
    escaped = FieldSelector("a=x\\,y\\=z\\\\")
    assert escaped.requirements() == [("a", "=", "x,y=z\\")]
    assert str(escaped) == "a=x\\,y\\=z\\\\"
    assert str(FieldSelector("a==b")) == "a=b"
    assert FieldSelector("").is_empty() and FieldSelector("=").is_empty()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x", "invalid selector: 'x'; can't understand 'x'"),
        ("a=b,x", "invalid selector: 'a=b,x'; can't understand 'x'"),
        ("a=\\q", "invalid field selector: invalid escape sequence: \\q"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
        ("a=b=c", "invalid field selector: unescaped character in value: 61"),
    ],
)
def test_field_errors(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as info:
        FieldSelector(text)
    assert str(info.value) == message
