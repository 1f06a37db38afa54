"""The `kubernetes` Service's endpoints list every live API server (upstream's lease reconciler).

Each API server on a shared etcd keeps a lease key, `/registry/masterleases/<ip>:<port>`,
written with an etcd lease of LEASE_TTL and renewed every RECONCILE_INTERVAL; its value
carries the time of the last renewal too, so an entry is dead once that is older than the
TTL even before etcd expires it. Every server follows the keys through the store and makes
the Endpoints and EndpointSlices of `kubernetes` name exactly the live ones. A server that
stops removes its own key and itself from the endpoints; one that dies drops out within
LEASE_TTL + RECONCILE_INTERVAL.

Upstream's servers share one port; ours may each have their own (several on one machine),
so the Endpoints get a subset per port and the EndpointSlices a slice per port ("kubernetes"
for the first, "kubernetes-<port>" for the others).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import trio

from k8slite.api import errors
from k8slite.apiserver.bootstrap import ensure_endpoints
from k8slite.apiserver.core import ApiCore
from k8slite.storage import Event, KeyExists, KeyNotFound, Op, StorageError, StoreUnavailable

log = logging.getLogger(__name__)

PREFIX = "/registry/masterleases/"
# Upstream's master lease TTL and endpoint reconcile interval.
LEASE_TTL = 15
RECONCILE_INTERVAL = 10.0


class LeaseEndpointReconciler:
    """Keeps this server's lease and the `kubernetes` endpoints; run() until cancelled."""

    def __init__(
        self,
        core: ApiCore,
        address: str,
        port: int,
        clock: Callable[[], float] = time.time,
        ttl: int = LEASE_TTL,
        interval: float = RECONCILE_INTERVAL,
    ) -> None:
        self.core = core
        self.address = address
        self.port = port
        self.key = f"{PREFIX}{address}:{port}"
        self._clock = clock
        self._ttl = ttl
        self._interval = interval
        self._leases: dict[str, tuple[str, int, float]] = {}  # key -> (ip, port, renewed)
        self._changed = trio.Event()
        for key, data, _ in core.store.scan(PREFIX):
            self._remember(key, data)
        core.store.subscribe(self._on_commit)

    def _remember(self, key: str, data: bytes) -> None:
        try:
            value = json.loads(data)
            self._leases[key] = (str(value["ip"]), int(value["port"]), float(value["renewed"]))
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed API server lease at %s", key)

    def _on_commit(self, events: list[Event]) -> None:
        for ev in events:
            if not ev.key.startswith(PREFIX):
                continue
            if ev.type == "DELETED":
                self._leases.pop(ev.key, None)
            else:
                self._remember(ev.key, ev.data)
            self._changed.set()

    def live(self) -> list[tuple[str, int]]:
        """(ip, port) of every API server whose lease is current, this one included."""
        now = self._clock()
        found = {
            (ip, port) for ip, port, renewed in self._leases.values() if now - renewed < self._ttl
        }
        return sorted(found)

    async def renew(self) -> None:
        body = json.dumps(
            {"ip": self.address, "port": self.port, "renewed": self._clock()}
        ).encode()
        exists = await self.core.store.get(self.key) is not None
        op = Op("update" if exists else "create", self.key, lambda _rv: body, ttl=self._ttl)
        try:
            await self.core.store.txn([op])
        except (KeyExists, KeyNotFound):
            pass  # expired or written meanwhile: the next round writes it again

    async def reconcile(self) -> None:
        """Renew our lease, then make the endpoints name every live server."""
        await self.renew()
        await ensure_endpoints(self.core, self.live())

    async def run(self) -> None:
        while True:
            try:
                await self.reconcile()
            except (StoreUnavailable, StorageError, errors.ApiError) as e:
                log.warning("cannot reconcile the kubernetes endpoints: %s", e)
            with trio.move_on_after(self._interval):
                # A lease that comes or goes is reflected at once, not at the next round.
                await self._changed.wait()
                self._changed = trio.Event()

    async def remove(self) -> None:
        """On shutdown: drop our lease and ourselves from the endpoints, as upstream does."""
        try:
            await self.core.store.txn([Op("delete", self.key, lambda _rv: b"{}")])
        except (KeyNotFound, StoreUnavailable):
            pass
        self._leases.pop(self.key, None)
        others = [peer for peer in self.live() if peer != (self.address, self.port)]
        if others:
            await ensure_endpoints(self.core, others)
