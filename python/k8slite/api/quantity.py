"""Kubernetes resource quantities ("100m", "1.5Gi", "2e3") parsed exactly as Fractions."""

from __future__ import annotations

import functools
import math
import re
from fractions import Fraction

QUANTITY_REGEX = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_QUANTITY_RE = re.compile(QUANTITY_REGEX)
_NUMBER_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)\Z")
_EXP_RE = re.compile(r"[eE]([-+]?\d+)\Z")

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}


class QuantityError(ValueError):
    """Not a quantity; the message is upstream's."""


def parse_quantity(value: object) -> Fraction:
    """The exact value of a quantity string (or JSON number)."""
    if isinstance(value, str):
        return _parse_string(value)
    if isinstance(value, bool):
        raise QuantityError(f"quantities must match the regular expression '{QUANTITY_REGEX}'")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QuantityError("quantities must be finite")
        return Fraction(str(value))
    raise QuantityError(f"quantities must match the regular expression '{QUANTITY_REGEX}'")


# The same few quantity strings ("100m", "64Mi") recur in every pod: parse each once.
@functools.lru_cache(maxsize=4096)
def _parse_string(value: str) -> Fraction:
    m = _QUANTITY_RE.match(value)
    if not m or not _NUMBER_RE.match(m.group(1)):
        raise QuantityError(f"quantities must match the regular expression '{QUANTITY_REGEX}'")
    number, suffix = Fraction(m.group(1)), m.group(2)
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    exp = _EXP_RE.match(suffix)
    if exp:
        return number * Fraction(10) ** int(exp.group(1))
    raise QuantityError("unable to parse quantity's suffix")


def milli_value(value: object) -> int:
    """The quantity in thousandths, rounded up (as upstream's MilliValue)."""
    return math.ceil(parse_quantity(value) * 1000)


def int_value(value: object) -> int:
    """The quantity as an integer, rounded up (as upstream's Value)."""
    return math.ceil(parse_quantity(value))
