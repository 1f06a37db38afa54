"""Zones for the node lifecycle controller: a node's zone key, a zone's state from its
nodes' Ready conditions, the tainting rate a state allows, and the rate-limited queue
that adds the NoExecute taints of one zone, as upstream's v1.35 controller has them."""

from __future__ import annotations

import enum
import itertools
from collections.abc import Awaitable, Callable, Sequence

import trio

from k8slite.client import TokenBucket
from k8slite.client.ratelimit import Clock
from k8slite.component.objects import Obj, meta

# Zone labels, the deprecated beta ones first (upstream's GetZoneKey reads them so).
ZONE_LABELS = ("failure-domain.beta.kubernetes.io/zone", "topology.kubernetes.io/zone")
REGION_LABELS = ("failure-domain.beta.kubernetes.io/region", "topology.kubernetes.io/region")

# Upstream's: a zone's queue lets one node through at a time.
EVICTION_BURST = 1


class ZoneState(enum.StrEnum):
    INITIAL = "Initial"
    NORMAL = "Normal"
    FULL_DISRUPTION = "FullDisruption"
    PARTIAL_DISRUPTION = "PartialDisruption"


def zone_key(node: Obj) -> str:
    """The node's zone as upstream keys it: "region:\\0:zone", or "" without labels."""
    labels = meta(node).get("labels") or {}
    zone = next((labels[k] for k in ZONE_LABELS if k in labels), "")
    region = next((labels[k] for k in REGION_LABELS if k in labels), "")
    if not region and not zone:
        return ""
    return f"{region}:\x00:{zone}"


def compute_zone_state(
    ready_conditions: Sequence[Obj | None], unhealthy_threshold: float
) -> tuple[int, ZoneState]:
    """(not ready nodes, state) of a zone from its nodes' Ready conditions (None: none).

    FullDisruption: no node ready. PartialDisruption: more than two nodes not ready and
    they are at least the threshold's share. Normal otherwise.
    """
    ready = sum(1 for c in ready_conditions if c is not None and c.get("status") == "True")
    not_ready = len(ready_conditions) - ready
    if ready == 0 and not_ready > 0:
        return not_ready, ZoneState.FULL_DISRUPTION
    if not_ready > 2 and not_ready / (ready + not_ready) >= unhealthy_threshold:
        return not_ready, ZoneState.PARTIAL_DISRUPTION
    return not_ready, ZoneState.NORMAL


def zone_eviction_rate(
    state: ZoneState,
    zone_size: int,
    *,
    rate: float,
    secondary_rate: float,
    large_cluster_threshold: int,
) -> float:
    """Nodes a second a zone in this state taints (upstream's setLimiterInZone)."""
    if state == ZoneState.PARTIAL_DISRUPTION:
        return secondary_rate if zone_size > large_cluster_threshold else 0.0
    return rate


class TaintQueue:
    """One zone's nodes waiting for a NoExecute taint, let through at the zone's rate.

    Upstream's RateLimitedTimedQueue: a token bucket (burst 1) is asked before each node
    is looked at; a rate of 0 lets nothing through. A node that got its taint stays known
    (add() refuses it) until remove(), so a monitor pass does not queue it again.
    """

    def __init__(self, rate: float, clock: Clock = trio.current_time) -> None:
        self._clock = clock
        self.rate = rate
        self._bucket = self._new_bucket(rate)
        self._waiting: dict[str, tuple[float, int]] = {}  # name -> (not before, order)
        self._done: set[str] = set()
        self._order = itertools.count()

    def _new_bucket(self, rate: float) -> TokenBucket | None:
        return TokenBucket(rate, EVICTION_BURST, clock=self._clock) if rate > 0 else None

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, name: object) -> bool:
        return name in self._waiting

    def tainted(self, name: str) -> bool:
        """True if the node got its taint through this queue (and was not removed since)."""
        return name in self._done

    def add(self, name: str) -> bool:
        """Queue the node; False if it is queued already or was tainted since its last
        remove()."""
        if name in self._waiting or name in self._done:
            return False
        self._waiting[name] = (self._clock(), next(self._order))
        return True

    def remove(self, name: str) -> bool:
        """Forget the node (it is ready again, or its taint is gone); True if it was queued."""
        self._done.discard(name)
        return self._waiting.pop(name, None) is not None

    def set_rate(self, rate: float) -> None:
        """A new rate; a bucket that is empty now leaves the new one empty too."""
        if rate == self.rate:
            return
        bucket = self._new_bucket(rate)
        if bucket is not None and (self._bucket is None or not self._bucket.try_accept()):
            bucket.try_accept()
        self.rate, self._bucket = rate, bucket

    async def try_each(self, action: Callable[[str], Awaitable[float | None]]) -> None:
        """Hand queued nodes to `action` while the rate allows; it returns None when done
        with the node, or seconds after which to try it again."""
        while self._waiting:
            if self._bucket is None or not self._bucket.try_accept():
                return
            name, (not_before, _) = min(self._waiting.items(), key=lambda item: item[1])
            now = self._clock()
            if now < not_before:
                return
            retry = await action(name)
            if name not in self._waiting:
                continue  # removed while we worked on it
            if retry is None:
                del self._waiting[name]
                self._done.add(name)
            else:
                self._waiting[name] = (now + retry, next(self._order))
