"""Tests for the native JSON codec (k8slite._native.dumps / loads)."""

from __future__ import annotations

import enum
import json
import math
from collections import OrderedDict, defaultdict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k8slite._native import DecodeError, dumps, loads

# Finite floats and ints of any size; text without surrogates (they get their own tests,
# since a high+low pair written as two escapes reads back as one astral character).
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=40,
)


def stdlib_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def same(a: Any, b: Any) -> bool:
    """Equality that also tells 1 from 1.0 and True from 1, and -0.0 from 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


# ----------------------------------------------------------------------------- round trip


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_round_trip(value: Any) -> None:
    assert same(loads(dumps(value)), value)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_reads_what_the_stdlib_writes(value: Any) -> None:
    assert same(loads(stdlib_bytes(value)), json.loads(stdlib_bytes(value)))
    spaced = json.dumps(value, indent=2, ensure_ascii=True)
    assert same(loads(spaced), json.loads(spaced))


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_stdlib_reads_what_we_write(value: Any) -> None:
    assert same(json.loads(dumps(value)), value)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(), c, max_size=5),
        max_leaves=30,
    )
)
def test_bytes_identical_to_stdlib_without_floats(value: Any) -> None:
    assert dumps(value) == stdlib_bytes(value)


# --------------------------------------------------------------------------------- dumps


def test_compact_and_utf8() -> None:
    assert dumps({"a": [1, "é", None, True, False]}) == '{"a":[1,"é",null,true,false]}'.encode()


def test_escapes_control_quote_backslash() -> None:
    text = 'q"b\\n\n\r\t\x08\x0c\x00\x1f\x7f'
    out = dumps(text)
    assert out == b'"q\\"b\\\\n\\n\\r\\t\\b\\f\\u0000\\u001f\x7f"'
    assert loads(out) == text


@pytest.mark.parametrize("length", range(40))
def test_escape_at_every_position(length: int) -> None:
    for pos in range(length):
        text = "a" * pos + '"' + "b" * (length - pos - 1)
        assert loads(dumps(text)) == text
        assert dumps(text) == stdlib_bytes(text)


def test_non_ascii_kinds() -> None:
    for text in ["café", "ΑΒΓ", "日本語", "😀 emoji", "mixed é 日 😀 \n"]:
        assert dumps(text) == stdlib_bytes(text)
        assert loads(dumps(text)) == text


def test_lone_surrogates_read_back_as_replacement_characters() -> None:
    # A Python str may hold lone surrogates; they are written as escapes, and every escape
    # of a lone surrogate reads as U+FFFD, as Go's decoder reads it.
    for text, read in [
        ("\ud800", "\ufffd"),
        ("a\udfffb", "a\ufffdb"),
        ("\udc00\ud800", "\ufffd\ufffd"),
        ("😀\ud83d", "😀\ufffd"),
    ]:
        out = dumps(text)
        assert out.decode("ascii", errors="replace").count("\\u") >= 1
        assert loads(out) == read


def test_ints() -> None:
    for n in [0, -1, 2**63 - 1, -(2**63), 2**63, 2**64, -(2**64) - 1, 10**40, -(10**40)]:
        assert dumps(n) == str(n).encode()
        assert loads(dumps(n)) == n


def test_floats_stay_floats() -> None:
    for x in [1.0, -0.0, 0.1, 1e16, 1e-7, 5e-324, 1.7976931348623157e308, 123456.789]:
        back = loads(dumps(x))
        assert isinstance(back, float)
        assert same(back, x)
    assert dumps(1.0) == b"1.0"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        dumps({"x": [bad]})


@pytest.mark.parametrize("bad", [{1, 2}, b"bytes", object(), 1j, {"a": {1}}])
def test_unsupported_types(bad: Any) -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps(bad)


@pytest.mark.parametrize("key", [1, None, 1.5, (1,)])
def test_keys_must_be_str(key: Any) -> None:
    with pytest.raises(TypeError, match="keys must be str"):
        dumps({key: 1})


def test_tuples_and_subclasses() -> None:
    class Color(enum.IntEnum):
        RED = 1

    class Name(str):
        pass

    class Ratio(float):
        pass

    class Big(int):
        def __str__(self) -> str:
            return "not a number"

    od = OrderedDict([("a", 1), ("b", 2)])
    od.move_to_end("a")
    dd: defaultdict[str, int] = defaultdict(int, {"x": 1})
    obj = {
        "t": (1, 2),
        "e": Color.RED,
        "n": Name("v"),
        "r": Ratio(0.5),
        "od": od,
        "dd": dd,
        Name("k"): 1,
        "big": Big(2**70),
    }
    assert (
        dumps(obj) == b'{"t":[1,2],"e":1,"n":"v","r":0.5,"od":{"b":2,"a":1},"dd":{"x":1},'
        b'"k":1,"big":1180591620717411303424}'
    )


def test_insertion_order_kept_after_deletes() -> None:
    d = {str(i): i for i in range(20)}
    for i in range(0, 20, 3):
        del d[str(i)]
    d["new"] = 1
    assert loads(dumps(d)) == d
    assert list(loads(dumps(d))) == list(d)


def test_depth_limit_and_cycles() -> None:
    deep: Any = []
    for _ in range(999):
        deep = [deep]
    assert dumps(deep) == b"[" * 1000 + b"]" * 1000
    with pytest.raises(ValueError, match="nesting"):
        dumps([deep])
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError):
        dumps(cycle)


def test_large_output_is_not_truncated() -> None:
    big = [{"name": f"pod-{i}", "data": "x" * (i % 300)} for i in range(5000)]
    assert loads(dumps(big)) == big


# --------------------------------------------------------------------------------- loads


def test_input_types() -> None:
    text = '{"a":[1,"é"]}'
    for data in [text, text.encode(), bytearray(text.encode()), memoryview(text.encode())]:
        assert loads(data) == {"a": [1, "é"]}
    with pytest.raises(TypeError):
        loads(123)  # type: ignore[arg-type]


def test_whitespace_and_scalars() -> None:
    assert loads(b' \t\r\n{ "a" : [ 1 , 2 ] , "b" : { } }\n ') == {"a": [1, 2], "b": {}}
    assert loads(b"true") is True
    assert loads(b"null") is None
    assert loads(b'"x"') == "x"
    assert loads(b"-0") == 0 and isinstance(loads(b"-0"), int)
    assert same(loads(b"-0.0"), -0.0)
    assert loads(b"1E2") == 100.0
    assert loads(b"1e400") == math.inf


def test_big_numbers() -> None:
    for text in [
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "123456789012345678901234567890123",
    ]:
        assert loads(text) == int(text)


def test_int_digit_limit_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="integer out of range: .* at byte 1$"):
        loads(b"[" + b"9" * 5000 + b"]")


def test_unicode_escapes() -> None:
    assert loads(b'"\\u00e9\\u65e5\\ud83d\\ude00\\/"') == "é日😀/"
    assert loads(b'"\\ud800"') == "\ufffd"
    assert loads(b'"\\ud800x"') == "\ufffdx"
    assert loads(b'"\\udc00\\ud800"') == "\ufffd\ufffd"
    assert loads(b'"\\ud83d\\u0041"') == "\ufffdA"
    assert loads(b'{"\\ud800":"\\udbff\\ud83d\\ude00"}') == {"\ufffd": "\ufffd😀"}
    assert loads('"é\\n"'.encode()) == "é\n"


def test_duplicate_keys_last_wins() -> None:
    assert loads(b'{"a":1,"b":2,"a":3}') == json.loads('{"a":1,"b":2,"a":3}')


def test_key_cache_does_not_confuse_keys() -> None:
    keys = [f"k{i}" for i in range(5000)] + ["a" * 64, "a" * 65, "é", "a\\u0062"]
    doc = "{" + ",".join(f'"{k}":{i}' for i, k in enumerate(keys)) + "}"
    assert loads(doc) == json.loads(doc)
    assert loads(doc) == json.loads(doc)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "unexpected end of JSON input at byte 0"),
        (b"   ", "unexpected end of JSON input at byte 3"),
        (b"[1,x", "invalid character 'x' looking for beginning of value at byte 3"),
        (b"[1,]", "invalid character ']' looking for beginning of value at byte 3"),
        (b"[1 2]", "invalid character '2' after array element at byte 3"),
        (b'{"a" 1}', "invalid character '1' after object key at byte 5"),
        (b'{"a":1 "b":2}', "invalid character '\"' after object key:value pair at byte 7"),
        (b"{1:2}", "invalid character '1' looking for beginning of object key string at byte 1"),
        (b'{"a":1,}', "invalid character '}' looking for beginning of object key string"),
        (b"[1] x", "invalid character 'x' after top-level value at byte 4"),
        (b"tru", "unexpected end of JSON input"),
        (b"trux", "invalid character 'x' in literal true (expecting 'e') at byte 3"),
        (b"nul", "unexpected end of JSON input"),
        (b"01", "invalid character '1' after top-level value at byte 1"),
        (b"-", "unexpected end of JSON input"),
        (b"-a", "invalid character 'a' in numeric literal at byte 1"),
        (b"1.", "unexpected end of JSON input"),
        (b"1.e3", "invalid character 'e' after decimal point in numeric literal at byte 2"),
        (b"1e", "unexpected end of JSON input"),
        (b"1e+x", "invalid character 'x' in exponent of numeric literal at byte 3"),
        (b'"abc', "unexpected end of JSON input"),
        (b'"a\nb"', "invalid character '\\n' in string literal at byte 2"),
        (b'"a\x01"', "invalid character '\\x01' in string literal at byte 2"),
        (b'"\\x"', "invalid character 'x' in string escape code at byte 2"),
        (b'"\\u12g4"', "invalid character 'g' in \\u hexadecimal character escape at byte 5"),
        (b'"\xff"', "invalid UTF-8 in string at byte 1"),
        (b'"ab\xc3"', "invalid UTF-8 in string at byte 3"),
        (b'"\\n\xed\xa0\x80"', "invalid UTF-8 in string at byte 3"),
        (b"NaN", "invalid character 'N' looking for beginning of value at byte 0"),
        (b"'a'", "invalid character '\\'' looking for beginning of value at byte 0"),
        (b"\xef\xbb\xbf{}", "looking for beginning of value at byte 0"),
    ],
)
def test_decode_errors(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        loads(data)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_decode_depth_limit() -> None:
    assert loads(b"[" * 1000 + b"]" * 1000) is not None
    assert loads(b'{"a":' * 1000 + b"1" + b"}" * 1000) is not None
    with pytest.raises(DecodeError, match="exceeded max depth of 1000 at byte 1000"):
        loads(b"[" * 1001 + b"]" * 1001)
    with pytest.raises(DecodeError, match="max depth"):
        loads(b"[" * 100000)


def test_errors_do_not_leak_partial_objects() -> None:
    # A failure deep inside a document must release what was built so far; this would
    # crash or corrupt refcounts (caught by the sanity loads below) if it did not.
    for _ in range(200):
        with pytest.raises(DecodeError):
            loads(b'{"a":[1,2,{"b":"cc","d":[null,true]}],"e":"' + b"x" * 50 + b'",' + b"!")
    assert loads(b'{"a":[1,2,{"b":"cc"}]}') == {"a": [1, 2, {"b": "cc"}]}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_garbage_never_crashes(data: bytes) -> None:
    try:
        expected: Any = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        expected = DecodeError
    try:
        got: Any = loads(data)
    except DecodeError:
        got = DecodeError
    if expected is DecodeError or got is DecodeError:
        # Python's json accepts NaN/Infinity and lone surrogate bytes; we do not.
        return
    assert same(got, expected)
