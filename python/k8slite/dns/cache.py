"""The answer cache: finished responses keyed by the query's bytes, dropped as names change.

The key is everything in the query but its ID and the letter case of the question (the
flags, the question, the EDNS record) plus the transport, so a hit is the cached response
with the query's ID and question copied in: no parsing, no building. The response is kept
with the question in lower case, as the key has it: a query whose question is lower case
already (what stub resolvers send) is its own key, transport + bytes after the ID, found
without even walking the name, and answered by the stored bytes with its ID put in.

Each entry lists the names its answer was read from (the question, CNAME and SRV
targets, and their ancestors' existence through the question itself); the record store
says which names a change touched, and only the entries that read one of them go.
"""

from __future__ import annotations

import struct

_HEADER = 12
_COUNTS = struct.Struct("!HHHH")
# Where the question starts in a key: after the transport byte and the header but its ID.
_KEY_QUESTION = 1 + _HEADER - 2


def exact_key(data: bytes, transport: bytes) -> bytes:
    """The key of a query whose question is in lower case (else one no entry has)."""
    return transport + data[2:]


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
        # key -> (response, is a denial, the query type, the names it was read from)
        self._entries: dict[bytes, tuple[bytes, bool, int, frozenset[str]]] = {}
        # name -> keys of the entries read from it
        self._readers: dict[str, set[bytes]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> tuple[bytes, bool, int, frozenset[str]] | None:
        """(response with the question in lower case, is a denial, query type, names)."""
        return self._entries.get(key)

    def put(
        self,
        key: bytes,
        question_length: int,
        response: bytes,
        denial: bool,
        names: frozenset[str],
    ) -> None:
        """Keep `response` to the query that `key` (from query_key) stands for."""
        if self.capacity <= 0:
            return  # caching turned off
        end = _KEY_QUESTION + question_length
        question = key[_KEY_QUESTION:end]
        qtype = int.from_bytes(key[end - 4 : end - 2], "big")
        response = response[:_HEADER] + question + response[_HEADER + question_length :]
        if key in self._entries:
            self._drop(key)
        elif len(self._entries) >= self.capacity:
            # The oldest entry goes (dicts keep insertion order).
            self._drop(next(iter(self._entries)))
        self._entries[key] = (response, denial, qtype, names)
        for name in names:
            self._readers.setdefault(name, set()).add(key)

    def invalidate(self, names: set[str] | None) -> None:
        """Forget the answers read from these names; None: every answer."""
        if names is None:
            self._entries.clear()
            self._readers.clear()
            return
        for name in names:
            for key in self._readers.pop(name, ()):
                self._drop(key)

    def _drop(self, key: bytes) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        for name in entry[3]:
            readers = self._readers.get(name)
            if readers is not None:
                readers.discard(key)
                if not readers:
                    del self._readers[name]


def with_id(cached: bytes, query: bytes) -> bytes:
    """The cached response with this query's ID: for a query found by exact_key."""
    return query[:2] + cached[2:]


def patched(cached: bytes, query: bytes, question_length: int) -> bytes:
    """The cached response with this query's ID and question (its letter case) in it."""
    end = _HEADER + question_length
    return query[:2] + cached[2:_HEADER] + query[_HEADER:end] + cached[end:]
