"""The Store on an etcd v3 cluster, spoken to through etcd's JSON gRPC gateway over httpx.

Why the gateway (see docs/architecture.md): it is etcd's own HTTP/JSON face of the same
gRPC services (KV range/txn/compaction, Watch, Lease), served on the client port of every
etcd since 3.3; httpx is already a dependency and is Trio-native, so there is no generated
code, no thread per call and no stale third-party client between us and etcd.

Semantics follow upstream's storage/etcd3:
- a key's revision (its resourceVersion) is its etcd mod revision; the global revision is
  etcd's header revision, so other writers (other API servers) share it;
- create is a txn comparing create_revision == 0, update/delete compare mod_revision with the
  expected revision (or only that the key exists); a failed compare reads the keys in the
  same txn, so the StorageError raised names the same key and current revision RocksStore's
  would;
- one watch on the whole prefix, from the revision the store opened at, feeds subscribers in
  revision order; after a disconnect it resumes at the last delivered revision + 1 on the
  next endpoint, so nothing is lost or repeated; progress notifications move that mark on;
- a compaction loop runs every compaction interval, compacting to the revision seen one
  interval before, coordinated between API servers by upstream's `compact_rev_key`.

Keys and values as etcd holds them: etcdlayout.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import ssl
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import httpx
import trio

from k8slite._native import dumps, loads
from k8slite.storage.base import (
    BackgroundTasks,
    Event,
    KeyExists,
    KeyNotFound,
    Op,
    RevisionConflict,
    StoreUnavailable,
    Subscriber,
)
from k8slite.storage.etcdhttp import ConnectFailed, EtcdHTTP, RequestFailed
from k8slite.storage.etcdlayout import (
    decode_value,
    encode_value,
    path_head,
    storage_key,
    upstream_key,
)

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/registry"
# Upstream's --etcd-compaction-interval default.
DEFAULT_COMPACTION_INTERVAL = 300.0
# The root of the storage keys the API server makes (/registry/<group>/<plural>/...): it is
# replaced by --etcd-prefix in etcd.
STORAGE_ROOT = "/registry"
# Upstream's key coordinating compaction between API servers (outside any prefix).
COMPACT_REV_KEY = "compact_rev_key"
_SCAN_PAGE = 1000
# Lease reuse, as upstream's (leaseReuseDurationSeconds, leaseReuseDurationPercent).
LEASE_REUSE_SECONDS = 60.0
LEASE_REUSE_FRACTION = 0.05
# The etcd health check: how often etcd is probed, and how long a probe may take.
HEALTH_INTERVAL = 1.0
HEALTH_TIMEOUT = 2.0
# How long sync waits for the watch to move before asking etcd whether anything of ours is
# on its way (the watch usually delivers within milliseconds).
SYNC_GRACE = 0.05
# etcd's gRPC codes that the gateway puts in "code".
_OUT_OF_RANGE = 11


class Compacted(StoreUnavailable):
    """A read or watch asked for a revision etcd has compacted away (ErrCompacted)."""

    def __init__(self, message: str, compacted: int) -> None:
        super().__init__(message)
        self.compacted = compacted


@dataclass(frozen=True)
class EtcdTLS:
    """Client TLS to etcd: upstream's --etcd-cafile, --etcd-certfile, --etcd-keyfile."""

    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.cafile) if self.cafile else None)
        if self.certfile is not None:
            ctx.load_cert_chain(str(self.certfile), str(self.keyfile) if self.keyfile else None)
        return ctx


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def _range_end(prefix: bytes) -> bytes:
    """The first key after every key starting with prefix (etcd's prefix range end)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"  # every key


class EtcdStore(BackgroundTasks):
    """A Store on etcd; use as `async with EtcdStore(["http://127.0.0.1:2379"]) as store:`.

    `endpoints` are tried in turn: a request that cannot connect moves on to the next one. A
    write whose connection breaks after it was sent raises StoreUnavailable (its outcome is
    unknown, as with etcd's own client). Storage keys start with `root`; in etcd, `prefix`
    replaces it.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        prefix: str = DEFAULT_PREFIX,
        root: str = STORAGE_ROOT,
        tls: EtcdTLS | None = None,
        compaction_interval: float = DEFAULT_COMPACTION_INTERVAL,
        request_timeout: float = 15.0,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.prefix = prefix.rstrip("/")
        self.root = root.rstrip("/")
        self.compaction_interval = compaction_interval
        self.compactions = 0  # compactions this store ran (the others' are not counted)
        self.watch_restarts = 0  # watches reopened after a disconnect
        self.leases_granted = 0
        self._leases: dict[int, tuple[int, float]] = {}  # ttl -> (lease id, expiry)
        self._lease_lock = trio.Lock()
        self.relists = 0  # catch-ups from etcd's state after the watch's history was compacted
        self._ssl = tls.context() if tls is not None else None
        self._timeout = request_timeout
        self._current = 0  # index of the endpoint in use
        self._client: httpx.AsyncClient | None = None
        self._http: list[EtcdHTTP] = []
        self._sync: httpx.Client | None = None
        self._revision = 0  # the last revision whose events every subscriber has seen
        self._watched = 0  # the last revision the watch is known complete to
        self._moved = trio.Event()  # set (and replaced) whenever _revision moves
        self._subscribers: list[Subscriber] = []
        # Every live key's mod revision as the subscribers know it: what a relist compares
        # etcd's state with when the watch's history was compacted away.
        self._index: dict[str, int] = {}
        # (our revision, etcd's) when sync found etcd's later revisions all outside our prefix.
        self._unchanged = (0, 0)
        self._down: str | None = "not open"
        self._unhealthy: str | None = None
        self._cause: BaseException | None = None
        self._stack: AsyncExitStack | None = None
        watched = (self.prefix + "/").encode()
        self._watch_range = (watched, _range_end(watched))

    # Lifecycle.

    async def __aenter__(self) -> Self:
        if self._down != "not open":
            raise RuntimeError("an EtcdStore opens once; make a new one to reopen")
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
        timeout = httpx.Timeout(self._timeout, connect=min(self._timeout, 3.0))
        verify: ssl.SSLContext | bool = self._ssl if self._ssl is not None else True
        # The watch stream goes through httpx; every other request through EtcdHTTP.
        self._client = httpx.AsyncClient(limits=limits, timeout=timeout, verify=verify)
        self._http = [EtcdHTTP(url, self._ssl) for url in self.endpoints]
        self._sync = httpx.Client(timeout=timeout, verify=verify)
        async with AsyncExitStack() as stack:
            stack.push_async_callback(self._close_clients)
            start, end = self._watch_range
            revision, kvs = await self._range_all(start, end, keys_only=True)
            self._index = {
                self._storage_key(_unb64(kv["key"])): int(kv["mod_revision"]) for kv in kvs
            }
            self._revision = self._watched = revision
            self._down = None
            nursery = await stack.enter_async_context(trio.open_nursery())
            nursery.start_soon(self._watch_loop)
            nursery.start_soon(self._probe_loop)
            if self.compaction_interval > 0:
                nursery.start_soon(self._compact_loop)
            stack.callback(nursery.cancel_scope.cancel)
            self._stack = stack.pop_all()
        return self

    async def _close_clients(self) -> None:
        if self._down is None:
            self._down = "closed"
        self._wake()
        client, self._client = self._client, None
        sync, self._sync = self._sync, None
        with trio.CancelScope(shield=True):
            for http in self._http:
                await http.aclose()
            if client is not None:
                await client.aclose()
            if sync is not None:
                sync.close()

    # The Store protocol.

    def revision(self) -> int:
        return self._revision

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    async def sync(self) -> None:
        """Until the watch has delivered every write etcd committed before the call.

        Another API server's write is acknowledged once etcd committed it; ours learn of it
        through the watch, a moment later. A read of the latest state first asks etcd for its
        revision (a linearizable read of one key, so it needs a quorum, as upstream's
        consistent reads do) and waits for the watch to get there.

        etcd's revision also counts writes the watch never sees (compact_rev_key, keys of
        other prefixes). When the watch stands still short of it, etcd is asked whether our
        prefix changed in between; when it did not, the caches are already current.
        """
        self._usable()
        answer = await self._call("/v3/kv/range", {"key": _b64(self._watch_range[0])})
        current = int(answer["header"]["revision"])
        if self._revision >= current or self._unchanged == (self._revision, current):
            return
        checked = -1  # our revision when etcd last said the prefix changed after it
        with trio.move_on_after(self._timeout):
            while self._revision < current:
                with trio.move_on_after(SYNC_GRACE) as grace:
                    await self._moved.wait()
                self._usable()
                if grace.cancelled_caught and self._revision != checked:
                    seen = self._revision
                    if await self._unchanged_until(current):
                        return
                    checked = seen
        self._usable()
        if self._revision < current:
            raise StoreUnavailable(
                f"etcd is at revision {current} but this API server's watch of it is at "
                f"{self._revision} after {self._timeout:g}s; retry (the API server's log says "
                "why its etcd watch lags)"
            )

    async def _unchanged_until(self, current: int) -> bool:
        """Whether the keys under our prefix at `current` are those the caches hold now.

        They are when no live key was written after the caches' revision and as many keys
        live: a key written then and deleted again within the gap escapes this check, but
        leaves the same state, and the watch still delivers its events in order (the
        caches' revision is not moved past them).
        """
        seen, live = self._revision, len(self._index)
        start, end = self._watch_range
        answer = await self._call(
            "/v3/kv/range",
            {
                "key": _b64(start),
                "range_end": _b64(end),
                "revision": str(current),
                "keys_only": True,
                "min_mod_revision": str(seen + 1),
            },
        )
        if self._revision != seen:
            return False  # the watch moved meanwhile: wait for it again
        # `count` is every live key in the range; `kvs` only those the filter kept.
        if answer.get("kvs") or int(answer.get("count") or 0) != live:
            return False
        self._unchanged = (seen, current)
        return True

    async def get(self, key: str) -> tuple[bytes, int] | None:
        self._usable()
        answer = await self._call("/v3/kv/range", {"key": _b64(self._etcd_key(key))})
        kvs = answer.get("kvs")
        if not kvs:
            return None
        rv = int(kvs[0]["mod_revision"])
        return decode_value(_unb64(kvs[0].get("value")), rv), rv

    def scan(self, prefix: str) -> Iterator[tuple[str, bytes, int]]:
        """(key, bytes, rv) under prefix in key order, as of revision().

        Synchronous, as the protocol's callers (cache warm-up) are: it blocks the event loop
        for its round trips, which happens at start and when a custom kind begins to be served.
        """
        self._usable()
        path = prefix[len(self.root) :]
        if path.startswith(("/core/", "/apps/")) and not path_head(path, 2):
            # Core and apps kinds each have a prefix of their own in etcd (upstream's keys).
            raise ValueError(f"scan prefix {prefix!r} spans several etcd prefixes")
        start = self._etcd_key(prefix) if prefix else self._watch_range[0]
        if len(start) <= len(self.prefix):
            start = self._watch_range[0]
        return self._scan_pages(start, _range_end(start), self._revision)

    async def txn(self, ops: list[Op]) -> tuple[int, list[bytes]]:
        self._usable()
        if not ops:
            raise ValueError("a transaction needs at least one op")
        if len({op.key for op in ops}) != len(ops):
            raise ValueError("a transaction may write each key only once")
        keys = [_b64(self._etcd_key(op.key)) for op in ops]
        # Encode before sending anything, so an encoder that raises leaves no trace.
        values = [encode_value(op.encode) for op in ops]
        try:
            answer = await self._txn(ops, keys, values)
        except StoreUnavailable as e:
            if "lease not found" not in str(e):
                raise
            # Our lease expired or was revoked under us (nothing was written): a new one.
            self._leases.clear()
            answer = await self._txn(ops, keys, values)
        if not answer.get("succeeded"):
            responses = answer.get("responses") or []
            # The caller may read its caches next: they must hold the writes the compare saw
            # (a key another API server just created is in this cache once KeyExists says
            # so). Their revisions, not the header's: that may be a write outside our prefix.
            await self._wait_for(max(_mod_revisions(responses), default=0))
            raise _conflict(ops, responses)
        rv = int(answer["header"]["revision"])
        await self._wait_for(rv)
        return rv, [op.encode(rv) for op in ops]

    async def _txn(self, ops: list[Op], keys: list[str], values: list[bytes]) -> Any:
        compare: list[dict[str, str]] = []
        success: list[dict[str, Any]] = []
        leases = [await self._lease(op.ttl) if op.ttl and op.verb != "delete" else 0 for op in ops]
        for op, key, value, lease in zip(ops, keys, values, leases, strict=True):
            if op.verb == "create":
                compare.append(_compare(key, "CREATE", "EQUAL", 0))
            elif op.expected_rv is None:
                compare.append(_compare(key, "CREATE", "GREATER", 0))
            else:
                compare.append(_compare(key, "MOD", "EQUAL", op.expected_rv))
            if op.verb == "delete":
                success.append({"request_delete_range": {"key": key}})
            else:
                put = {"key": key, "value": _b64(value)}
                if lease:
                    put["lease"] = str(lease)
                success.append({"request_put": put})
        failure = [{"request_range": {"key": key, "keys_only": True}} for key in keys]
        body = {"compare": compare, "success": success, "failure": failure}
        return await self._call("/v3/kv/txn", body, idempotent=False)

    # Leases, for keys with a TTL: as upstream's lease manager, one lease serves every write
    # of the same TTL for a while (at most a minute, or 5% of the TTL), granted that much
    # longer, so a key lives at least its TTL and etcd is not asked for a lease per write.

    async def _lease(self, ttl: int) -> int:
        async with self._lease_lock:
            now = trio.current_time()
            reuse = min(LEASE_REUSE_SECONDS, ttl * LEASE_REUSE_FRACTION)
            held = self._leases.get(ttl)
            if held is not None and now + ttl + reuse >= held[1] > now + ttl:
                return held[0]
            granted = math.ceil(ttl + reuse)
            answer = await self._call("/v3/lease/grant", {"TTL": str(granted)})
            lease = int(answer["ID"])
            self._leases[ttl] = (lease, now + granted)
            self.leases_granted += 1
            return lease

    # Health, for the etcd check of /readyz, /livez and /healthz.

    def health(self) -> str | None:
        """None while healthy, else why not: from the last probe (health checks are sync)."""
        return self._down or self._unhealthy

    async def _probe_loop(self) -> None:
        """Every HEALTH_INTERVAL, a linearizable read of our prefix: it needs an etcd leader."""
        start = _b64(self._watch_range[0])
        while self._down is None:
            try:
                with trio.fail_after(HEALTH_TIMEOUT):
                    await self._call("/v3/kv/range", {"key": start, "count_only": True})
                self._unhealthy = None
            except (StoreUnavailable, trio.TooSlowError) as e:
                self._unhealthy = f"etcd does not answer: {e!r}"
            await trio.sleep(HEALTH_INTERVAL)

    # Requests.

    def _usable(self) -> None:
        if self._down is not None:
            error = StoreUnavailable(f"etcd store {self.prefix} is {self._down}")
            error.__cause__ = self._cause
            raise error

    def _etcd_key(self, key: str) -> bytes:
        if not key.startswith(self.root):
            raise ValueError(f"storage key {key!r} is not under {self.root!r}")
        path = key[len(self.root) :]
        etcd_path = upstream_key(path)
        if storage_key(etcd_path) != path:  # e.g. "/pods/x": would read back as "/core/pods/x"
            raise ValueError(f"storage key {key!r} has no etcd key of its own")
        return (self.prefix + etcd_path).encode()

    def _storage_key(self, raw: bytes) -> str:
        return self.root + storage_key(raw.decode()[len(self.prefix) :])

    def _rotate(self, failed: int) -> None:
        if self._current == failed:
            self._current = (failed + 1) % len(self.endpoints)

    async def _call(self, path: str, body: dict[str, Any], idempotent: bool = True) -> Any:
        """POST to the endpoint in use, moving on to the next while none can be reached.

        A read is also retried on the next endpoint when its connection breaks or it takes
        too long; a write is not (it may have been applied), it raises StoreUnavailable.
        """
        payload = dumps(body)
        last: Exception | None = None
        for _ in range(len(self.endpoints)):
            index = self._current
            try:
                with trio.fail_after(self._timeout):
                    status, data = await self._http[index].post(path, payload)
            except ConnectFailed as e:
                last = e  # never sent: safe to try the next endpoint
                self._rotate(index)
                continue
            except (RequestFailed, trio.TooSlowError) as e:
                if idempotent:
                    last = e
                    self._rotate(index)
                    continue
                raise StoreUnavailable(f"etcd {path} outcome unknown: {e!r}") from e
            return _answer(path, status, data)
        raise StoreUnavailable(f"no etcd endpoint answered {path}: {last!r}") from last

    def _scan_pages(self, start: bytes, end: bytes, rv: int) -> Iterator[tuple[str, bytes, int]]:
        assert self._sync is not None
        sync = self._sync
        while True:
            body = {
                "key": _b64(start),
                "range_end": _b64(end),
                "revision": str(rv),
                "limit": str(_SCAN_PAGE),
            }
            answer = self._sync_call(sync, body)
            kvs = answer.get("kvs") or []
            for kv in kvs:
                mod = int(kv["mod_revision"])
                key = _unb64(kv["key"])
                yield self._storage_key(key), decode_value(_unb64(kv.get("value")), mod), mod
            if not answer.get("more") or not kvs:
                return
            start = _unb64(kvs[-1]["key"]) + b"\x00"

    def _sync_call(self, sync: httpx.Client, body: dict[str, Any]) -> Any:
        last: Exception | None = None
        for _ in range(len(self.endpoints)):
            index = self._current
            try:
                response = sync.post(self.endpoints[index] + "/v3/kv/range", json=body)
            except httpx.TransportError as e:
                last = e
                self._rotate(index)
                continue
            return _answer("/v3/kv/range", response.status_code, response.content)
        raise StoreUnavailable(f"no etcd endpoint answered a range: {last!r}") from last

    # The watch feeding subscribers.

    async def _wait_for(self, rv: int) -> None:
        """Until the watch has delivered rv to every subscriber (or the store broke)."""
        with trio.move_on_after(self._timeout) as scope:
            while self._revision < rv and self._down is None:
                await self._moved.wait()
        self._usable()
        if scope.cancelled_caught:
            raise StoreUnavailable(f"etcd committed revision {rv} but its watch did not deliver it")

    def _wake(self) -> None:
        self._moved.set()
        self._moved = trio.Event()

    async def _watch_loop(self) -> None:
        backoff = 0.05
        while self._down is None:
            index = self._current
            try:
                await self._watch_once(self.endpoints[index])
            except Compacted as e:
                # The events since our last revision are gone: catch up from etcd's state.
                log.warning("etcd store %s: %s; relisting", self.prefix, e)
                try:
                    await self._relist()
                    self.relists += 1
                    continue
                except StoreUnavailable as relist_error:
                    log.warning("etcd store %s: relist failed: %s", self.prefix, relist_error)
            except (httpx.TransportError, httpx.HTTPStatusError, _WatchEnded, ValueError) as e:
                log.warning(
                    "etcd watch on %s ended (%r); resuming at revision %d",
                    self.endpoints[index],
                    e,
                    self._watched + 1,
                )
            self.watch_restarts += 1
            self._rotate(index)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _watch_once(self, endpoint: str) -> None:
        assert self._client is not None
        start, end = self._watch_range
        request = {
            "create_request": {
                "key": _b64(start),
                "range_end": _b64(end),
                "start_revision": str(self._watched + 1),
                "prev_kv": True,
                "progress_notify": True,
            }
        }
        timeout = httpx.Timeout(self._timeout, connect=min(self._timeout, 3.0), read=None)
        async with self._client.stream(
            "POST", endpoint + "/v3/watch", json=request, timeout=timeout
        ) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                message = json.loads(line)
                if "error" in message:
                    raise _WatchEnded(str(message["error"]))
                result = message["result"]
                if result.get("compact_revision"):
                    compacted = int(result["compact_revision"])
                    raise Compacted(
                        f"watch from revision {self._watched + 1} was compacted at {compacted}",
                        compacted,
                    )
                if result.get("canceled"):
                    raise _WatchEnded(result.get("cancel_reason") or "watch canceled")
                if result.get("events"):
                    self._deliver(result["events"])
                elif not result.get("created"):
                    # A progress notification: every event up to its revision has come.
                    self._watched = max(self._watched, int(result["header"]["revision"]))
        raise _WatchEnded("the watch stream ended")

    async def _range_all(
        self, start: bytes, end: bytes, *, keys_only: bool = False
    ) -> tuple[int, list[dict[str, Any]]]:
        """Every kv in [start, end) at one revision, page by page; returns (revision, kvs)."""
        revision = 0
        kvs: list[dict[str, Any]] = []
        while True:
            body: dict[str, Any] = {
                "key": _b64(start),
                "range_end": _b64(end),
                "limit": str(_SCAN_PAGE),
                "keys_only": keys_only,
            }
            if revision:
                body["revision"] = str(revision)
            answer = await self._call("/v3/kv/range", body)
            revision = revision or int(answer["header"]["revision"])
            page = answer.get("kvs") or []
            kvs += page
            if not answer.get("more") or not page:
                return revision, kvs
            start = _unb64(page[-1]["key"]) + b"\x00"

    async def _relist(self) -> None:
        """Bring subscribers to etcd's current state in one batch of events (upstream's
        reflector relists its watch cache the same way after ErrCompacted).

        A key gone meanwhile gets a DELETED event with empty data: its final state is lost
        with the compacted history, so subscribers keep the last state they knew.
        """
        start, end = self._watch_range
        revision, kvs = await self._range_all(start, end)
        found: dict[str, dict[str, Any]] = {self._storage_key(_unb64(kv["key"])): kv for kv in kvs}
        events: list[Event] = []
        for key in sorted(found.keys() | self._index.keys()):
            kv = found.get(key)
            if kv is None:
                events.append(Event("DELETED", key, revision, b""))
                continue
            mod = int(kv["mod_revision"])
            if self._index.get(key) != mod:
                kind: Literal["ADDED", "MODIFIED"] = "MODIFIED" if key in self._index else "ADDED"
                events.append(
                    Event(kind, key, revision, decode_value(_unb64(kv.get("value")), mod))
                )
        if events:
            # Applied at the relist's revision, with each object's own in its bytes.
            self._publish(
                revision, events, {key: int(kv["mod_revision"]) for key, kv in found.items()}
            )
        self._watched = max(self._watched, revision)

    def _deliver(self, raw_events: list[dict[str, Any]]) -> None:
        batch: list[Event] = []
        batch_rv = 0
        for raw in raw_events:
            event = self._event(raw)
            if batch and event.rv != batch_rv:
                self._publish(batch_rv, batch)
                batch = []
            batch.append(event)
            batch_rv = event.rv
        if batch:
            self._publish(batch_rv, batch)

    def _event(self, raw: dict[str, Any]) -> Event:
        kv = raw["kv"]
        rv = int(kv["mod_revision"])
        key = self._storage_key(_unb64(kv["key"]))
        if raw.get("type") == "DELETE":
            # The deleted object's last stored state, at the deletion's revision (upstream's
            # DELETED event carries the same).
            prev = raw.get("prev_kv") or {}
            return Event("DELETED", key, rv, decode_value(_unb64(prev.get("value")), rv))
        kind: Literal["ADDED", "MODIFIED"] = (
            "ADDED" if kv.get("create_revision") == kv.get("mod_revision") else "MODIFIED"
        )
        return Event(kind, key, rv, decode_value(_unb64(kv.get("value")), rv))

    def _publish(self, rv: int, events: list[Event], mods: dict[str, int] | None = None) -> None:
        if rv <= self._revision:
            return  # already delivered (a resumed watch never repeats, but be sure)
        self._revision = rv
        self._watched = max(self._watched, rv)
        for event in events:
            if event.type == "DELETED":
                self._index.pop(event.key, None)
            else:
                self._index[event.key] = mods[event.key] if mods is not None else event.rv
        try:
            for subscriber in self._subscribers:
                subscriber(events)
        except Exception as exc:
            # A subscriber's cache missed an event; serving on would serve stale reads.
            log.exception("etcd store %s: a subscriber failed", self.prefix)
            self._break("broken: a subscriber failed", exc)
        self._wake()

    def _break(self, reason: str, exc: BaseException) -> None:
        self._down, self._cause = reason, exc
        self._wake()

    # Compaction, as upstream's compactor: each interval, compact to the revision seen one
    # interval before, unless another API server did so meanwhile.

    async def _compact_loop(self) -> None:
        version, last = 0, 0
        while self._down is None:
            await trio.sleep(self.compaction_interval)
            try:
                version, last = await self.compact_once(version, last)
            except StoreUnavailable as e:
                log.warning("etcd compaction skipped: %s", e)

    async def compact_once(self, version: int, rv: int) -> tuple[int, int]:
        """One round of the compactor: returns (compact_rev_key's version, current revision).

        Compacts to rv when compact_rev_key still has the version this server last saw, so
        of several API servers only one compacts per interval.
        """
        key = _b64(COMPACT_REV_KEY.encode())
        answer = await self._call(
            "/v3/kv/txn",
            {
                "compare": [_compare(key, "VERSION", "EQUAL", version)],
                "success": [{"request_put": {"key": key, "value": _b64(str(rv).encode())}}],
                "failure": [{"request_range": {"key": key}}],
            },
            idempotent=False,
        )
        current = int(answer["header"]["revision"])
        if not answer.get("succeeded"):
            kvs = answer["responses"][0]["response_range"].get("kvs") or [{}]
            return int(kvs[0].get("version", 0)), current
        if rv > 0:
            try:
                await self._call("/v3/kv/compaction", {"revision": str(rv)}, idempotent=False)
                self.compactions += 1
                log.info("etcd compacted to revision %d", rv)
            except Compacted:
                pass  # compacted further already
        return version + 1, current


class _WatchEnded(Exception):
    """The watch stream stopped without a compaction: reopen it where it left off."""


def _compare(key: str, target: str, result: str, value: int) -> dict[str, str]:
    field = {"CREATE": "create_revision", "MOD": "mod_revision", "VERSION": "version"}[target]
    return {"key": key, "target": target, "result": result, field: str(value)}


def _answer(path: str, status: int, data: bytes) -> Any:
    try:
        answer = loads(data)
    except ValueError:
        raise StoreUnavailable(f"etcd {path}: HTTP {status}: {data[:200]!r}") from None
    if status != 200 or not isinstance(answer, dict) or "error" in answer:
        fields = answer if isinstance(answer, dict) else {}
        message = str(fields.get("message") or fields.get("error") or data[:200])
        if fields.get("code") == _OUT_OF_RANGE and "compacted" in message:
            raise Compacted(f"etcd {path}: {message}", 0)
        raise StoreUnavailable(f"etcd {path}: {message}")
    return answer


def _mod_revisions(responses: list[dict[str, Any]]) -> Iterator[int]:
    """The mod revisions of the keys a txn's failure branch read."""
    for response in responses:
        for kv in (response.get("response_range") or {}).get("kvs") or ():
            yield int(kv["mod_revision"])


def _conflict(ops: list[Op], responses: list[dict[str, Any]]) -> Exception:
    """The StorageError of the first op whose compare failed, from the failure branch's reads."""
    for op, response in zip(ops, responses, strict=True):
        kvs = (response.get("response_range") or {}).get("kvs")
        current = int(kvs[0]["mod_revision"]) if kvs else None
        if op.verb == "create":
            if current is not None:
                return KeyExists(op.key)
        elif current is None:
            return KeyNotFound(op.key)
        elif op.expected_rv is not None and op.expected_rv != current:
            return RevisionConflict(op.key, current)
    # Every compare holds now: a key changed back between the compare and these reads,
    # which one txn's reads cannot see; say so as a conflict on the first key.
    return RevisionConflict(ops[0].key, 0)
