"""Leader election on coordination.k8s.io/v1 Leases, as client-go's leaderelection does it."""

from __future__ import annotations

import copy
import logging
import random
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import trio
from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from k8slite.client.errors import (
    AlreadyExists,
    ApiConnectionError,
    ApiError,
    Conflict,
    NotFound,
)
from k8slite.client.resource import LEASES
from k8slite.client.rest import ApiClient
from k8slite.metrics import PerRegistry

log = logging.getLogger(__name__)

# client-go waits retry_period * (1 + up to 1.2) between attempts to acquire.
JITTER_FACTOR = 1.2
LeaderWork = Callable[[trio.Nursery], Awaitable[None]]


def timing_errors(
    lease_duration: float, renew_deadline: float, retry_period: float
) -> list[tuple[str, str]]:
    """client-go's checks of the three periods, as (field, message) in its words."""
    errors = []
    if lease_duration <= renew_deadline:
        errors.append(("leaseDuration", "leaseDuration must be greater than renewDeadline"))
    if renew_deadline <= JITTER_FACTOR * retry_period:
        errors.append(
            ("renewDeadline", "renewDeadline must be greater than retryPeriod*JitterFactor")
        )
    for field, seconds in (
        ("leaseDuration", lease_duration),
        ("renewDeadline", renew_deadline),
        ("retryPeriod", retry_period),
    ):
        if seconds <= 0:
            errors.append((field, f"{field} must be greater than zero"))
    return errors


class LeaderElectionLost(Exception):
    """The lease could not be renewed within renew_deadline; the leader's work was cancelled.

    Upstream components exit when this happens; so should ours.
    """


def micro_time(when: datetime | None = None) -> str:
    """metav1.MicroTime: RFC 3339 in UTC with exactly six fractional digits."""
    return (when or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_identity() -> str:
    """client-go's default: hostname plus a unique suffix, so restarts are new holders."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


class _Families:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.master = Gauge(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates "
            "backup, 1 indicates master. 'name' is the string used to identify the lease.",
            labelnames=("name",),
            registry=registry,
        )


_families_for = PerRegistry(_Families)


def _master_gauge(registry: CollectorRegistry | None, name: str) -> Any:
    return _families_for(registry or CollectorRegistry()).master.labels(name)


class LeaderElector:
    """Acquires and renews one Lease for one identity.

    Expiry is judged like client-go: by when *we* last saw the lease's record change (on our
    monotonic clock) plus its leaseDurationSeconds, never by the remote renewTime, so clock
    skew between machines cannot make two leaders.
    """

    def __init__(
        self,
        client: ApiClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_new_leader: Callable[[str], None] | None = None,
        metrics_registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        if not identity:
            raise ValueError("leader election needs a non-empty identity")
        errors = timing_errors(lease_duration, renew_deadline, retry_period)
        if errors:
            raise ValueError(errors[0][1])
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_new_leader = on_new_leader
        self._lease: dict[str, Any] | None = None  # as last read or written, with its rv
        self._observed: dict[str, Any] = {}  # the lease spec we last saw
        self._observed_time = float("-inf")
        self._reported_leader: str | None = None
        self._gauge = _master_gauge(metrics_registry, name)

    # ------------------------------------------------------------------ state

    @property
    def is_leader(self) -> bool:
        return bool(self._observed) and self._observed.get("holderIdentity") == self.identity

    @property
    def leader(self) -> str:
        """The holder we last observed ("" if none)."""
        return str(self._observed.get("holderIdentity") or "")

    def _lease_valid(self, now: float) -> bool:
        duration = float(self._observed.get("leaseDurationSeconds") or 0)
        return self._observed_time + duration > now

    def _observe(self, lease: dict[str, Any], spec: dict[str, Any]) -> None:
        self._lease = lease
        if spec != self._observed:
            self._observed = copy.deepcopy(spec)
            self._observed_time = trio.current_time()
        self._gauge.set(1 if self.is_leader else 0)
        holder = self.leader
        if holder and holder != self._reported_leader:
            self._reported_leader = holder
            log.info("lease %s/%s: new leader %s", self.namespace, self.name, holder)
            if self.on_new_leader is not None:
                self.on_new_leader(holder)

    # ------------------------------------------------------------- lock calls

    def _record(self, now: str) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, int(self.lease_duration)),
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": 0,
        }

    async def _create(self, spec: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": spec,
        }
        return await self.client.create(LEASES, body, namespace=self.namespace)

    async def _update(self, spec: dict[str, Any]) -> dict[str, Any]:
        assert self._lease is not None
        # PUT with the resourceVersion we read: a concurrent writer makes this a Conflict.
        body = dict(self._lease)
        body["spec"] = {**(self._lease.get("spec") or {}), **spec}
        return await self.client.update(LEASES, body, namespace=self.namespace)

    async def try_acquire_or_renew(self) -> bool:
        """One attempt to take or keep the lease; True if we hold it afterwards."""
        try:
            return await self._try_acquire_or_renew()
        except (AlreadyExists, Conflict) as e:
            # Another contender wrote first: the ordinary outcome of a race, not a fault.
            log.debug("lease %s/%s: %s", self.namespace, self.name, e)
            return False
        except (ApiError, ApiConnectionError) as e:
            log.warning("lease %s/%s: %s", self.namespace, self.name, e)
            return False

    async def _try_acquire_or_renew(self) -> bool:
        stamp = micro_time()
        spec = self._record(stamp)
        now = trio.current_time()
        # Fast path: a leader renews on top of what it last wrote, without reading first.
        if self.is_leader and self._lease_valid(now) and self._lease is not None:
            spec["acquireTime"] = self._observed.get("acquireTime", stamp)
            spec["leaseTransitions"] = self._observed.get("leaseTransitions", 0)
            try:
                lease = await self._update(spec)
            except (ApiError, ApiConnectionError) as e:
                log.info("lease %s/%s: optimistic renew failed (%s)", self.namespace, self.name, e)
            else:
                self._observe(lease, lease.get("spec") or spec)
                return True
        try:
            lease = await self.client.get(LEASES, self.name, namespace=self.namespace)
        except NotFound:
            lease = await self._create(spec)
            self._observe(lease, lease.get("spec") or spec)
            return True
        self._observe(lease, dict(lease.get("spec") or {}))
        if self.leader and self._lease_valid(trio.current_time()) and not self.is_leader:
            return False
        if self.is_leader:
            spec["acquireTime"] = self._observed.get("acquireTime", stamp)
            spec["leaseTransitions"] = self._observed.get("leaseTransitions", 0)
        else:
            spec["leaseTransitions"] = int(self._observed.get("leaseTransitions") or 0) + 1
        lease = await self._update(spec)
        self._observe(lease, lease.get("spec") or spec)
        return True

    async def release(self) -> bool:
        """Give the lease up (holder cleared, 1s duration) so a standby takes over at once."""
        if not self.is_leader or self._lease is None:
            return True
        stamp = micro_time()
        spec = {
            "holderIdentity": "",
            "leaseDurationSeconds": 1,
            "acquireTime": stamp,
            "renewTime": stamp,
            "leaseTransitions": self._observed.get("leaseTransitions", 0),
        }
        try:
            for attempt in range(3):
                try:
                    lease = await self._update(spec)
                    break
                except Conflict:
                    # A renew cancelled in flight may still land (on a busy server, even
                    # after a re-read), leaving us a stale resourceVersion: re-read, and
                    # release only if the lease is still ours.
                    if attempt == 2:
                        raise
                    current = await self.client.get(LEASES, self.name, namespace=self.namespace)
                    if (current.get("spec") or {}).get("holderIdentity") != self.identity:
                        self._observe(current, dict(current.get("spec") or {}))
                        return True
                    self._lease = current
        except (ApiError, ApiConnectionError) as e:
            log.warning("lease %s/%s: release failed: %s", self.namespace, self.name, e)
            return False
        self._observe(lease, lease.get("spec") or spec)
        log.info("lease %s/%s released by %s", self.namespace, self.name, self.identity)
        return True

    # ------------------------------------------------------------------ loops

    async def acquire(self) -> None:
        """Return once we hold the lease, trying every retry_period (jittered)."""
        log.info("lease %s/%s: %s trying to acquire", self.namespace, self.name, self.identity)
        while not await self.try_acquire_or_renew():
            await trio.sleep(self.retry_period * (1 + JITTER_FACTOR * random.random()))
        log.info("lease %s/%s acquired by %s", self.namespace, self.name, self.identity)

    async def renew_until_lost(self) -> None:
        """Renew every retry_period; return when a renew_deadline passes without success."""
        while True:
            with trio.move_on_after(self.renew_deadline) as deadline:
                while not await self.try_acquire_or_renew():
                    await trio.sleep(self.retry_period)
            if deadline.cancelled_caught:
                log.error(
                    "lease %s/%s: %s failed to renew within %.1fs",
                    self.namespace,
                    self.name,
                    self.identity,
                    self.renew_deadline,
                )
                self._gauge.set(0)
                return
            await trio.sleep(self.retry_period)

    async def run(self, on_started_leading: LeaderWork, *, release_on_cancel: bool = True) -> None:
        """Acquire, then run `on_started_leading(nursery)` while renewing.

        Leadership lasts while the nursery has work: when it all ends (or the leader cancels
        the nursery to step down) the lease is released and run() returns. If renewal fails
        for renew_deadline, the work is cancelled at once and LeaderElectionLost raised. When
        run() itself is cancelled, the lease is released if `release_on_cancel`.
        """
        lost = False
        try:
            await self.acquire()
            leader_scope = trio.CancelScope()

            async def keep_renewing() -> None:
                nonlocal lost
                await self.renew_until_lost()
                lost = True
                leader_scope.cancel()

            async with trio.open_nursery() as renewing:
                renewing.start_soon(keep_renewing)
                with leader_scope:
                    async with trio.open_nursery() as leader:
                        leader.start_soon(on_started_leading, leader)
                renewing.cancel_scope.cancel()
        finally:
            if release_on_cancel and not lost:
                # Shielded: this usually runs because we were cancelled, and the release
                # is what lets a standby take over without waiting out the lease.
                with trio.move_on_after(self.renew_deadline, shield=True):
                    await self.release()
            self._gauge.set(0)
        if lost:
            raise LeaderElectionLost(f"lease {self.namespace}/{self.name} lost by {self.identity}")


async def run_leader_elected(
    client: ApiClient,
    namespace: str,
    name: str,
    identity: str,
    on_started_leading: LeaderWork,
    *,
    lease_duration: float = 15.0,
    renew_deadline: float = 10.0,
    retry_period: float = 2.0,
    on_new_leader: Callable[[str], None] | None = None,
    release_on_cancel: bool = True,
    metrics_registry: CollectorRegistry | None = REGISTRY,
) -> None:
    """Run `on_started_leading(nursery)` only while holding Lease namespace/name.

    See LeaderElector.run for when it returns and raises.
    """
    elector = LeaderElector(
        client,
        namespace,
        name,
        identity,
        lease_duration=lease_duration,
        renew_deadline=renew_deadline,
        retry_period=retry_period,
        on_new_leader=on_new_leader,
        metrics_registry=metrics_registry,
    )
    await elector.run(on_started_leading, release_on_cancel=release_on_cancel)


@dataclass
class LeaderElectionConfig:
    """The --leader-elect* flags, parsed."""

    leader_elect: bool = True
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    resource_lock: str = "leases"
    resource_namespace: str = "kube-system"
    resource_name: str = ""

    async def run(
        self,
        client: ApiClient,
        on_started_leading: LeaderWork,
        *,
        identity: str | None = None,
        metrics_registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        """Run the work under these settings: elected if leader_elect, else right away."""
        if not self.leader_elect:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(on_started_leading, nursery)
            return
        if not self.resource_name:
            raise ValueError("--leader-elect-resource-name is required for leader election")
        await run_leader_elected(
            client,
            self.resource_namespace,
            self.resource_name,
            identity or default_identity(),
            on_started_leading,
            lease_duration=self.lease_duration,
            renew_deadline=self.renew_deadline,
            retry_period=self.retry_period,
            metrics_registry=metrics_registry,
        )
