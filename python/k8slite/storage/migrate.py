"""Copy every stored key from one Store to another (`k8slite storage migrate`).

Each object keeps its bytes except metadata.resourceVersion: the target assigns its own
revisions at commit, as an etcd restore does, so resourceVersions change and clients must
relist. Values that are not objects (service address and port claims) are copied verbatim.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from k8slite._native import dumps, loads
from k8slite.storage.base import Encoder, Op, Store

# etcd refuses a txn of more than 128 ops (--max-txn-ops) or 1.5 MiB (--max-request-bytes);
# values travel base64-encoded, so half a MiB of them stays well under.
BATCH_OPS = 100
BATCH_BYTES = 512 << 10
_EVENTS = "/registry/core/events/"
_MASTER_LEASES = "/registry/masterleases/"


class MigrationError(Exception):
    """The copy cannot go on; what was written so far is in the Copy's counts."""


@dataclass
class Copy:
    """What a migration wrote to the target, per resource."""

    written: Counter[str] = field(default_factory=Counter)
    cleared: int = 0  # keys deleted from the target first (--force)

    @property
    def total(self) -> int:
        return sum(self.written.values())


def resource_of(key: str) -> str:
    """The resource a storage key belongs to: "configmaps", "deployments.apps", "masterleases"."""
    parts = key.removeprefix("/registry/").split("/")
    if len(parts) < 3:
        return parts[0]
    group, plural = parts[0], parts[1]
    return plural if group == "core" else f"{plural}.{group}"


def restamp(key: str, data: bytes, rv: int) -> Encoder:
    """An encoder giving `data` with metadata.resourceVersion set to the revision it commits at.

    Only when decoding and re-encoding gives the stored bytes back exactly (our own encoder
    wrote them), so nothing but the resourceVersion can change.
    """
    try:
        obj = loads(data)
    except ValueError:
        obj = None
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or "resourceVersion" not in meta:
        return lambda _rv: data
    if meta["resourceVersion"] != str(rv) or dumps(obj) != data:
        raise MigrationError(
            f"{key}: its stored bytes do not re-encode identically (resourceVersion "
            f"{meta['resourceVersion']!r} at revision {rv}); refusing to change them"
        )

    def encode(new_rv: int) -> bytes:
        meta["resourceVersion"] = str(new_rv)
        return bytes(dumps(obj))

    return encode


def batches(ops: Iterable[tuple[Op, int]]) -> Iterator[list[Op]]:
    """Ops grouped into transactions within etcd's limits (a bigger value goes alone)."""
    batch: list[Op] = []
    size = 0
    for op, length in ops:
        if batch and (len(batch) >= BATCH_OPS or size + length > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(op)
        size += length
    if batch:
        yield batch


def check_all(source: Store) -> int:
    """Raise MigrationError for the first value that cannot be copied exactly, before any
    write; returns how many keys there are."""
    n = 0
    for key, data, rv in source.scan(""):
        restamp(key, data, rv)
        n += 1
    return n


def count_keys(store: Store) -> int:
    return sum(1 for _ in store.scan(""))


async def clear(store: Store) -> int:
    """Delete every key of `store`; returns how many."""
    keys = [key for key, _, _ in store.scan("")]
    deletes = ((Op("delete", key, lambda _rv: b""), 0) for key in keys)
    for batch in batches(deletes):
        await store.txn(batch)
    return len(keys)


async def copy_all(
    source: Store, target: Store, copy: Copy, ttls: dict[str, int] | None = None
) -> None:
    """Create every key of source in target; `ttls` maps key prefixes to a TTL in seconds.

    Counts each committed transaction's keys in `copy` as it goes, so on failure it says
    exactly what the target holds.
    """
    ttls = ttls or {}

    def ops() -> Iterator[tuple[Op, int]]:
        for key, data, rv in source.scan(""):
            ttl = next((t for prefix, t in ttls.items() if key.startswith(prefix)), None)
            yield Op("create", key, restamp(key, data, rv), ttl=ttl), len(data)

    for batch in batches(ops()):
        await target.txn(batch)
        copy.written.update(resource_of(op.key) for op in batch)


def etcd_ttls(event_ttl: int, lease_ttl: int) -> dict[str, int]:
    """Keys that live by an etcd lease when the API server writes them to etcd."""
    return {_EVENTS: event_ttl, _MASTER_LEASES: lease_ttl}
