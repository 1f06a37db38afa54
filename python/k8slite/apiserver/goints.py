"""Integers from query strings and tokens parsed as Go's strconv does, with its messages.

Upstream decodes `limit`, `timeoutSeconds`, `gracePeriodSeconds` and the like as int64 and
resource versions as uint64; anything else (a sign where none may be, spaces, underscores,
a value out of range) is refused before it reaches code that takes machine integers.
"""

from __future__ import annotations

import json
import re

_DIGITS = re.compile(r"[0-9]+")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def parse_int64(value: str) -> int:
    """strconv.ParseInt(value, 10, 64); ValueError carries Go's message."""
    digits = value[1:] if value[:1] in ("+", "-") else value
    if not _DIGITS.fullmatch(digits):
        raise ValueError(f"strconv.ParseInt: parsing {_quote(value)}: invalid syntax")
    n = int(value)
    if not INT64_MIN <= n <= INT64_MAX:
        raise ValueError(f"strconv.ParseInt: parsing {_quote(value)}: value out of range")
    return n


def parse_uint64(value: str) -> int:
    """strconv.ParseUint(value, 10, 64); ValueError carries Go's message."""
    if not _DIGITS.fullmatch(value):
        raise ValueError(f"strconv.ParseUint: parsing {_quote(value)}: invalid syntax")
    n = int(value)
    if n > UINT64_MAX:
        raise ValueError(f"strconv.ParseUint: parsing {_quote(value)}: value out of range")
    return n
