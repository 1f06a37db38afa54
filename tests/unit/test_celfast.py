"""celfast answers only as the binding does: for every expression and value here, either
the fast path leaves the case to the binding (Fallback) or both give the same value."""

from __future__ import annotations

import itertools
from typing import Any

import cel
import pytest

from k8slite.api.celfast import Fallback, compile_fast

EXPRESSIONS = [
    "self.replicas <= 50 || self.paused",
    "self.containers.all(c, c.name != 'init')",
    "!has(self.port) || self.port != 22",
    "self.a == self.b",
    "self.a != self.b",
    "self.a < self.b && self.b >= 0",
    "self.a + self.b > 10",
    "self.a - self.b == 0 || self.a * 2 == self.b",
    "self.name.startsWith('web') || self.name.endsWith('-x') || self.name.contains('z')",
    "size(self.name) > 2 && self.name.size() < 100",
    "self.tags.exists(t, t == 'prod')",
    "self.tags.exists_one(t, t == 'prod')",
    "'prod' in self.tags",
    "self.a in [1, 2, 3]",
    "'k' in self.labels",
    "self.labels.all(k, k.startsWith('app'))",
    "self.a > 0 ? self.name == 'x' : self.name != 'x'",
    "-self.a < 0",
    "self.name + '-suffix' == 'web-suffix'",
    "has(self.missing) || self.a == 1",
    "self.missing == 1 || true",
    "false && self.missing == 1",
    "self.paused == false",
    "self.flag",
]
VALUES: list[dict[str, Any]] = [
    {
        "replicas": 3,
        "paused": False,
        "containers": [{"name": "web"}, {"name": "init"}],
        "port": 22,
        "a": 1,
        "b": 1,
        "name": "web",
        "tags": ["prod", "eu"],
        "labels": {"app": "x", "k": "v"},
        "flag": True,
    },
    {"replicas": 60, "paused": True, "a": 2, "b": 1.5, "name": "x", "tags": [], "flag": 1},
    {"a": 2**63 - 1, "b": 1, "name": "", "tags": ["prod", "prod"], "labels": {}, "flag": None},
    {"a": True, "b": 1, "name": 5, "tags": [1, "prod"], "containers": [{}], "replicas": "3"},
    {"a": -(2**62), "b": 3, "name": "ümlaut-z", "port": 8080, "paused": "no"},
]


def _binding(source: str, value: dict[str, Any]) -> tuple[str, Any]:
    try:
        return ("value", cel.compile(source).execute({"self": value}))
    except (RuntimeError, TypeError, KeyError, ValueError, OverflowError) as e:
        return ("error", type(e).__name__)


CASES = list(itertools.product(EXPRESSIONS, range(len(VALUES))))


@pytest.mark.parametrize(("source", "index"), CASES)
def test_fast_path_agrees_with_the_binding(source: str, index: int) -> None:
    fast = compile_fast(source)
    assert fast is not None, f"the fast path should handle {source}"
    value = VALUES[index]
    try:
        got = fast({"self": value})
    except Fallback:
        return
    expected = _binding(source, value)
    assert expected == ("value", got) and type(expected[1]) is type(got), (source, value)


def test_the_common_rules_take_the_fast_path() -> None:
    value = VALUES[0]
    answered = 0
    for source in EXPRESSIONS[:12]:
        fast = compile_fast(source)
        assert fast is not None
        try:
            fast({"self": value})
            answered += 1
        except Fallback:
            pass
    assert answered == 12


@pytest.mark.parametrize(
    "source",
    [
        "self.a.matches('x')",
        "self.a == 1.5",
        "self.a == b'x'",
        "self.l.map(x, x)",
        "'\\n' == 'x'",
        "{'a': 1}.size() == 1",
    ],
)
def test_what_the_fast_path_leaves_to_the_binding(source: str) -> None:
    assert compile_fast(source) is None


def test_size_counts_code_points_as_upstream() -> None:
    # The one place the fast path departs from the binding: cel-go counts a string's code
    # points; the binding counts its UTF-8 bytes (size('üü') is 4 there).
    fast = compile_fast("size(self.name) == 2 && self.name.size() == 2")
    assert fast is not None
    assert fast({"self": {"name": "üü"}}) is True
    assert cel.compile("size('üü')").execute({}) == 4
