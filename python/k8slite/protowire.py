"""Protocol Buffers wire-format encoding: the few field encoders the project's messages need.

Fields are written as Go's proto3 marshaller writes them: a scalar equal to its zero value
(empty string, false, 0) is left out, repeated strings and messages are one field each.
Callers build a message as the concatenation of its fields, in field-number order.
"""

from __future__ import annotations

import struct

VARINT = 0
FIXED64 = 1
LENGTH_DELIMITED = 2


def varint(n: int) -> bytes:
    """Base-128 varint; a negative int64 is written as its 64-bit two's complement."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def message(number: int, payload: bytes) -> bytes:
    """A length-delimited field (embedded message, bytes); written even when empty."""
    return key(number, LENGTH_DELIMITED) + varint(len(payload)) + payload


def string(number: int, value: str) -> bytes:
    return message(number, value.encode()) if value else b""


def strings(number: int, values: list[str]) -> bytes:
    """A repeated string: one field per element, empty ones included."""
    return b"".join(message(number, v.encode()) for v in values)


def boolean(number: int, value: bool) -> bytes:
    return key(number, VARINT) + b"\x01" if value else b""


def int64(number: int, value: int) -> bytes:
    return key(number, VARINT) + varint(value) if value else b""


def double(number: int, value: float) -> bytes:
    return key(number, FIXED64) + struct.pack("<d", value) if value else b""
