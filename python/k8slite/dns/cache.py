"""The answer cache: finished responses keyed by the query's bytes, dropped on any change.

The key is everything in the query but its ID and the letter case of the question (the
flags, the question, the EDNS record) plus the transport, so a hit is the cached response
with the query's ID and question copied in: no parsing, no building. Every entry belongs
to one generation of the record store and the whole cache goes when the store changes.
"""

from __future__ import annotations

import struct

_HEADER = 12
_COUNTS = struct.Struct("!HHHH")


def query_key(data: bytes, transport: bytes) -> tuple[bytes, int] | None:
    """(key, question length) of a plain one-question query, or None (not cacheable: the
    full path deals with it)."""
    if len(data) < _HEADER + 5 or data[2] & 0xF8:  # a response, or not a standard QUERY
        return None
    qd, an, ns, ar = _COUNTS.unpack_from(data, 4)
    if qd != 1 or an or ns or ar > 1:
        return None
    i = _HEADER
    end = len(data)
    while True:
        if i >= end:
            return None
        length = data[i]
        if length == 0:
            break
        if length & 0xC0:  # compression has no place in a question
            return None
        i += length + 1
    i += 5  # the root label, type and class
    if i > end:
        return None
    return transport + data[2:_HEADER] + data[_HEADER:i].lower() + data[i:], i - _HEADER


class AnswerCache:
    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self.generation = -1
        # key -> (response, is a denial)
        self._entries: dict[bytes, tuple[bytes, bool]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes, generation: int) -> tuple[bytes, bool] | None:
        if generation != self.generation:
            self._entries.clear()
            self.generation = generation
            return None
        return self._entries.get(key)

    def put(self, key: bytes, response: bytes, denial: bool, generation: int) -> None:
        if generation != self.generation:
            self._entries.clear()
            self.generation = generation
        if self.capacity <= 0:
            return  # caching turned off
        if len(self._entries) >= self.capacity:
            # The oldest entry goes (dicts keep insertion order).
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (response, denial)


def patched(cached: bytes, query: bytes, question_length: int) -> bytes:
    """The cached response with this query's ID and question (its letter case) in it."""
    end = _HEADER + question_length
    return query[:2] + cached[2:_HEADER] + query[_HEADER:end] + cached[end:]
