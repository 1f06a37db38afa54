"""The node lifecycle controller's zone states and rate-limited NoExecute tainting, driven
against an in-memory client on trio's mock clock."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable
from typing import Any

import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from k8slite.client import Conflict, NotFound, SharedInformer, SharedInformerFactory
from k8slite.client.resource import LEASES, NODES, PODS, Resource
from k8slite.cmd.controller_manager import parse_args
from k8slite.component.events import EventBroadcaster
from k8slite.component.objects import Obj
from k8slite.controllers.base import ControllerContext, ControllerOptions
from k8slite.controllers.nodelifecycle import (
    NODE_LEASE_NAMESPACE,
    NOT_READY,
    UNREACHABLE,
    NodeLifecycleController,
    merge_taints,
)
from k8slite.controllers.nodezones import (
    TaintQueue,
    ZoneState,
    compute_zone_state,
    zone_eviction_rate,
    zone_key,
)

ZONE = "topology.kubernetes.io/zone"
REGION = "topology.kubernetes.io/region"


# ------------------------------------------------------------------- pure rules


def ready(status: str | None) -> Obj | None:
    return None if status is None else {"type": "Ready", "status": status}


def test_zone_key_follows_upstream() -> None:
    def node(**labels: str) -> Obj:
        return {"metadata": {"name": "n", "labels": labels}}

    assert zone_key({"metadata": {"name": "n"}}) == ""
    assert zone_key(node(**{ZONE: "a"})) == ":\x00:a"
    assert zone_key(node(**{ZONE: "a", REGION: "r"})) == "r:\x00:a"
    # The deprecated beta label wins where both are set, as upstream's GetZoneKey has it.
    assert zone_key(node(**{ZONE: "a", "failure-domain.beta.kubernetes.io/zone": "b"})) == (
        ":\x00:b"
    )


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], (0, ZoneState.NORMAL)),
        (["True"] * 5, (0, ZoneState.NORMAL)),
        # Two lost nodes never make a zone unhealthy, whatever their share.
        (["Unknown", "False", "True"], (2, ZoneState.NORMAL)),
        (["Unknown"] * 3 + ["True"] * 2, (3, ZoneState.PARTIAL_DISRUPTION)),
        (["Unknown"] * 3 + ["True"] * 3, (3, ZoneState.NORMAL)),
        # At the threshold (0.55) counts.
        (["Unknown"] * 11 + ["True"] * 9, (11, ZoneState.PARTIAL_DISRUPTION)),
        (["Unknown"] * 10 + ["True"] * 8, (10, ZoneState.PARTIAL_DISRUPTION)),
        (["Unknown"] * 10 + ["True"] * 10, (10, ZoneState.NORMAL)),
        # No node ready: full disruption, even one node; no Ready condition is not ready.
        (["Unknown"], (1, ZoneState.FULL_DISRUPTION)),
        ([None, "False", "Unknown"], (3, ZoneState.FULL_DISRUPTION)),
    ],
)
def test_zone_state(statuses: list[str | None], expected: tuple[int, ZoneState]) -> None:
    assert compute_zone_state([ready(s) for s in statuses], 0.55) == expected


def test_zone_rates() -> None:
    rates = {"rate": 0.1, "secondary_rate": 0.01, "large_cluster_threshold": 50}
    assert zone_eviction_rate(ZoneState.NORMAL, 10, **rates) == 0.1
    assert zone_eviction_rate(ZoneState.INITIAL, 10, **rates) == 0.1
    assert zone_eviction_rate(ZoneState.FULL_DISRUPTION, 10, **rates) == 0.1
    assert zone_eviction_rate(ZoneState.PARTIAL_DISRUPTION, 50, **rates) == 0.0
    assert zone_eviction_rate(ZoneState.PARTIAL_DISRUPTION, 51, **rates) == 0.01


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_taint_queue_lets_one_node_through_per_token() -> None:
    clock = Clock()
    queue = TaintQueue(0.1, clock=clock)
    done: list[str] = []

    async def taint(name: str) -> float | None:
        done.append(name)
        return None

    assert queue.add("a") and queue.add("b") and queue.add("c")
    assert not queue.add("a"), "queued already"
    await queue.try_each(taint)
    assert done == ["a"], "a burst of one"
    clock.now += 9.9
    await queue.try_each(taint)
    assert done == ["a"]
    clock.now += 0.1
    await queue.try_each(taint)
    assert done == ["a", "b"]
    assert not queue.add("a"), "tainted: not queued again until removed"
    queue.remove("a")
    assert queue.add("a")
    # Rate 0 lets nothing through; a new rate starts with an empty bucket when the old
    # one had no token (and rate 0 never has one).
    queue.set_rate(0.0)
    clock.now += 100
    await queue.try_each(taint)
    assert done == ["a", "b"]
    queue.set_rate(0.1)
    await queue.try_each(taint)
    assert done == ["a", "b"]
    clock.now += 10
    await queue.try_each(taint)
    assert done == ["a", "b", "c"]
    queue.set_rate(0.01)
    clock.now += 10
    await queue.try_each(taint)
    assert done == ["a", "b", "c"]
    clock.now += 91
    await queue.try_each(taint)
    assert done == ["a", "b", "c", "a"]
    assert len(queue) == 0
    # A bucket with its token left hands it over: the new rate lets a node through now.
    queue.set_rate(5.0)
    clock.now += 1
    queue.set_rate(0.01)
    queue.add("d")
    await queue.try_each(taint)
    assert done[-1] == "d"


async def test_taint_queue_retries_after_the_delay_asked() -> None:
    clock = Clock()
    queue = TaintQueue(100.0, clock=clock)
    tries: list[str] = []

    async def flaky(name: str) -> float | None:
        tries.append(name)
        return 5.0 if len(tries) == 1 else None

    queue.add("a")
    await queue.try_each(flaky)
    assert tries == ["a"] and "a" in queue
    clock.now += 4
    await queue.try_each(flaky)
    assert tries == ["a"]
    clock.now += 1
    await queue.try_each(flaky)
    assert tries == ["a", "a"] and "a" not in queue


def test_eviction_flags() -> None:
    defaults, _ = parse_args([])
    o = defaults.options
    assert (
        o.node_eviction_rate,
        o.secondary_node_eviction_rate,
        o.large_cluster_size_threshold,
        o.unhealthy_zone_threshold,
    ) == (0.1, 0.01, 50, 0.55)
    tuned, _ = parse_args(
        [
            "--node-eviction-rate=0.5",
            "--secondary-node-eviction-rate=0.05",
            "--large-cluster-size-threshold=10",
            "--unhealthy-zone-threshold=0.4",
        ]
    )
    o = tuned.options
    assert (
        o.node_eviction_rate,
        o.secondary_node_eviction_rate,
        o.large_cluster_size_threshold,
        o.unhealthy_zone_threshold,
    ) == (0.5, 0.05, 10, 0.4)


# ------------------------------------------------------------ in-memory cluster


class FakeClient:
    """The ApiClient calls the controller makes, on objects in memory; every write goes
    to the informers at once, as a watch would deliver it."""

    def __init__(self, factory_informer: Any) -> None:
        self._informer = factory_informer
        self.objects: dict[tuple[Resource, str | None, str], Obj] = {}
        self._rv = itertools.count(1)
        self.updates = 0

    def informer(self, res: Resource) -> SharedInformer:
        if res is LEASES:
            return self._informer(LEASES, namespace=NODE_LEASE_NAMESPACE)  # type: ignore[no-any-return]
        return self._informer(res)  # type: ignore[no-any-return]

    def put(self, res: Resource, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        m = obj["metadata"]
        key = (res, m.get("namespace"), m["name"])
        event = "MODIFIED" if key in self.objects else "ADDED"
        m["resourceVersion"] = str(next(self._rv))
        self.objects[key] = obj
        self.informer(res).apply(event, copy.deepcopy(obj))
        return copy.deepcopy(obj)

    async def get(self, res: Resource, name: str, *, namespace: str | None = None) -> Obj:
        await trio.lowlevel.checkpoint()
        obj = self.objects.get((res, namespace, name))
        if obj is None:
            raise NotFound({"reason": "NotFound", "message": name}, 404)
        return copy.deepcopy(obj)

    async def update(
        self,
        res: Resource,
        body: Obj,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> Obj:
        await trio.lowlevel.checkpoint()
        m = body["metadata"]
        stored = self.objects.get((res, m.get("namespace"), m["name"]))
        if stored is None:
            raise NotFound({"reason": "NotFound", "message": m["name"]}, 404)
        if m.get("resourceVersion") != stored["metadata"]["resourceVersion"]:
            raise Conflict({"reason": "Conflict", "message": "the object has been modified"})
        new = copy.deepcopy(stored)
        if subresource == "status":
            new["status"] = copy.deepcopy(body.get("status"))
        else:
            new["spec"] = copy.deepcopy(body.get("spec"))
            new["metadata"]["labels"] = copy.deepcopy(m.get("labels"))
        self.updates += 1
        return self.put(res, new)

    async def update_status(self, res: Resource, body: Obj, *, namespace: str | None = None) -> Obj:
        return await self.update(res, body, namespace=namespace, subresource="status")


class Cluster:
    """Nodes in zones, their Leases, and the controller under test."""

    def __init__(self, **options: Any) -> None:
        self.factory = SharedInformerFactory(None)  # type: ignore[arg-type]
        self.client = FakeClient(self.factory.informer)
        for res in (NODES, PODS, LEASES):
            self.client.informer(res).replace([], "0")
        self.registry = CollectorRegistry()
        opts = ControllerOptions(**options)
        ctx = ControllerContext(
            lambda _name: self.client,  # type: ignore[arg-type,return-value]
            self.factory,
            EventBroadcaster(self.client, registry=self.registry),  # type: ignore[arg-type]
            opts,
            self.registry,
        )
        self.controller = NodeLifecycleController(ctx)
        self._renewals = itertools.count()

    def add_nodes(self, prefix: str, count: int, zone: str = "", status: str = "True") -> list[str]:
        names = [f"{prefix}-{i}" for i in range(count)]
        for name in names:
            self.client.put(
                NODES,
                {
                    "metadata": {
                        "name": name,
                        "uid": f"uid-{name}",
                        "labels": {ZONE: zone} if zone else {},
                        "creationTimestamp": "2026-01-01T00:00:00Z",
                    },
                    "spec": {},
                    "status": {"conditions": [self._ready(status)]},
                },
            )
        self.renew(names)
        return names

    @staticmethod
    def _ready(status: str) -> Obj:
        return {
            "type": "Ready",
            "status": status,
            "lastHeartbeatTime": "2026-01-01T00:00:00Z",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }

    def renew(self, names: Iterable[str]) -> None:
        """The kubelets of these nodes renew their Leases."""
        stamp = f"2026-01-01T00:00:00.{next(self._renewals):06d}Z"
        for name in names:
            self.client.put(
                LEASES,
                {
                    "metadata": {"name": name, "namespace": NODE_LEASE_NAMESPACE},
                    "spec": {"holderIdentity": name, "renewTime": stamp},
                },
            )

    def set_ready(self, names: Iterable[str], status: str) -> None:
        """The nodes' Ready condition as a kubelet (or an earlier controller) wrote it."""
        for name in names:
            node = self.node(name)
            node["status"]["conditions"] = [self._ready(status)]
            self.client.put(NODES, node)

    def node(self, name: str) -> Obj:
        return copy.deepcopy(self.client.objects[(NODES, None, name)])

    def eviction_taints(self, names: Iterable[str]) -> dict[str, str]:
        """name -> key of its not-ready/unreachable NoExecute taint, for those with one."""
        out = {}
        for name in names:
            for t in self.node(name)["spec"].get("taints") or ():
                if t["effect"] == "NoExecute" and t["key"] in (UNREACHABLE, NOT_READY):
                    assert t.get("timeAdded")
                    out[name] = t["key"]
        return out

    def metric(self, name: str, zone: str) -> float | None:
        return self.registry.get_sample_value(name, {"zone": zone})

    async def step(
        self, clock: trio.testing.MockClock, seconds: float, alive: Iterable[str]
    ) -> None:
        """Let `seconds` pass in monitor periods (5 s), the live nodes renewing their
        Leases, a monitor pass and a tainting pass at each."""
        alive = list(alive)
        passed = 0.0
        while passed < seconds:
            clock.jump(5.0)
            passed += 5.0
            self.renew(alive)
            await self.controller.monitor_node_health()
            await self.controller.taint_pass()


@pytest.fixture
def clock(mock_clock: trio.testing.MockClock) -> trio.testing.MockClock:
    return mock_clock


async def test_a_few_lost_nodes_are_tainted_one_at_a_time(clock: trio.testing.MockClock) -> None:
    """Three zones of 10; 2 nodes of one go silent: the zone stays Normal and its queue
    taints them at --node-eviction-rate (0.1/s), one now and one 10 s later."""
    c = Cluster()
    zones = {z: c.add_nodes(z, 10, zone=z) for z in ("a", "b", "c")}
    every = [n for names in zones.values() for n in names]
    lost = zones["b"][:2]
    alive = [n for n in every if n not in lost]
    await c.controller.monitor_node_health()
    assert set(c.controller.zone_states.values()) == {ZoneState.NORMAL}

    # Past the 40 s grace period the controller marks them Unknown; the pass after that
    # queues them and the first is tainted at once.
    await c.step(clock, 45, alive)
    assert c.node(lost[0])["status"]["conditions"][0]["status"] == "Unknown"
    assert c.eviction_taints(every) == {}
    await c.step(clock, 5, alive)
    assert len(c.eviction_taints(every)) == 1
    assert c.controller.zone_states[":\x00:b"] == ZoneState.NORMAL
    for _ in range(9):  # 9 more seconds: no token yet
        clock.jump(1.0)
        await c.controller.taint_pass()
        assert len(c.eviction_taints(every)) == 1
    clock.jump(1.5)
    await c.controller.taint_pass()
    assert c.eviction_taints(every) == dict.fromkeys(lost, UNREACHABLE)
    assert c.metric("node_collector_evictions_total", ":\x00:b") == 2
    assert c.metric("node_collector_evictions_total", ":\x00:a") == 0
    assert c.metric("node_collector_zone_size", ":\x00:b") == 10
    assert c.metric("node_collector_unhealthy_nodes_in_zone", ":\x00:b") == 2
    assert c.metric("node_collector_zone_health", ":\x00:b") == 80

    # The NoSchedule sync swaps the taint when Ready turns False, and removes it at Ready.
    c.set_ready(lost[:1], "False")
    await c.controller.sync(lost[0])
    assert c.eviction_taints(lost) == {lost[0]: NOT_READY, lost[1]: UNREACHABLE}
    c.set_ready(lost, "True")
    for name in lost:
        await c.controller.sync(name)
    assert c.eviction_taints(every) == {}
    assert not c.node(lost[0])["spec"].get("taints")

    # A deleted node leaves its zone's queue.
    tainter = c.controller.tainters[":\x00:b"]
    c.set_ready(lost[:1], "Unknown")
    await c.controller.monitor_node_health()
    assert lost[0] in tainter
    del c.client.objects[(NODES, None, lost[0])]
    c.client.informer(NODES).apply("DELETED", c.controller.nodes.get(lost[0]))  # type: ignore[arg-type]
    assert lost[0] not in tainter and not tainter.tainted(lost[0])


async def test_all_nodes_unknown_is_full_disruption(clock: trio.testing.MockClock) -> None:
    """1,000 nodes in one zone: two lost ones are tainted; then every Lease lapses (a
    starved API server): no more taints, and the two are removed."""
    c = Cluster()
    names = c.add_nodes("hollow", 1000)
    await c.controller.monitor_node_health()
    c.set_ready(names[:2], "Unknown")
    await c.step(clock, 15, names[2:])
    assert c.eviction_taints(names) == dict.fromkeys(names[:2], UNREACHABLE)

    await c.step(clock, 45, [])  # past the grace period: every node Unknown
    assert all(c.node(n)["status"]["conditions"][0]["status"] == "Unknown" for n in names)
    assert c.controller.zone_states[""] == ZoneState.FULL_DISRUPTION
    assert c.eviction_taints(names) == {}, "taints removed: the control plane is suspect"
    await c.step(clock, 600, [])
    assert c.eviction_taints(names) == {}
    assert c.metric("node_collector_zone_health", "") == 0
    assert c.metric("node_collector_unhealthy_nodes_in_zone", "") == 1000
    # The NoSchedule sync gives the unreachable NoSchedule taint but no NoExecute one.
    node = c.node(names[500])
    taints = merge_taints(node)
    assert taints is not None
    assert {(t["key"], t["effect"]) for t in taints} == {(UNREACHABLE, "NoSchedule")}

    # Some nodes come back: the zone is partially disrupted (1000 > 50 nodes), so the
    # rest are tainted at the secondary rate, 0.01/s, starting with an empty bucket.
    back = names[:100]
    c.set_ready(back, "True")
    await c.step(clock, 5, back)
    assert c.controller.zone_states[""] == ZoneState.PARTIAL_DISRUPTION
    assert c.eviction_taints(names) == {}
    await c.step(clock, 90, back)
    assert c.eviction_taints(names) == {}
    await c.step(clock, 20, back)
    assert len(c.eviction_taints(names)) == 1
    await c.step(clock, 100, back)
    assert len(c.eviction_taints(names)) == 2
    assert not c.eviction_taints(back).keys()


async def test_zone_states_set_each_zones_rate(clock: trio.testing.MockClock) -> None:
    """A small unhealthy zone stops, a large one slows down, a fully disrupted one (while
    others are not) goes on at the normal rate, a healthy one is not affected."""
    c = Cluster()
    small = c.add_nodes("small", 10, zone="small")
    large = c.add_nodes("large", 60, zone="large")
    full = c.add_nodes("full", 4, zone="full")
    healthy = c.add_nodes("ok", 10, zone="ok")
    await c.controller.monitor_node_health()
    c.set_ready(small[:6] + large[:40] + full, "Unknown")
    alive = small[6:] + large[40:] + healthy
    await c.step(clock, 5, alive)
    states = c.controller.zone_states
    assert states[":\x00:small"] == ZoneState.PARTIAL_DISRUPTION
    assert states[":\x00:large"] == ZoneState.PARTIAL_DISRUPTION
    assert states[":\x00:full"] == ZoneState.FULL_DISRUPTION
    assert states[":\x00:ok"] == ZoneState.NORMAL
    await c.step(clock, 30, alive)
    tainted = c.eviction_taints(small + large + full)
    assert not tainted.keys() & set(small), "a zone of <= 50 nodes stops"
    # The large zone's first node went at once (its bucket was full), the next waits
    # 100 s; the fully disrupted zone goes at 0.1/s: all 4 within 30 s.
    assert len(tainted.keys() & set(large)) == 1
    assert tainted.keys() & set(full) == set(full)
    await c.step(clock, 100, alive)
    assert len(c.eviction_taints(large)) == 2


async def test_nodes_excluded_from_disruption_do_not_count(clock: trio.testing.MockClock) -> None:
    c = Cluster()
    names = c.add_nodes("n", 3)
    for name in names[1:]:
        node = c.node(name)
        node["metadata"]["labels"]["node.kubernetes.io/exclude-disruption"] = ""
        c.client.put(NODES, node)
    await c.controller.monitor_node_health()
    assert c.metric("node_collector_zone_size", "") == 1
    c.set_ready(names[1:], "Unknown")
    await c.step(clock, 20, names[:1])
    assert c.controller.zone_states[""] == ZoneState.NORMAL
    # Excluded from the zone's health, not from eviction.
    assert c.eviction_taints(names).keys() == set(names[1:])


async def test_a_new_leader_starts_nodes_untainted(clock: trio.testing.MockClock) -> None:
    """Taints left by an earlier controller go on first sight; the zone's queue adds them
    again in turn."""
    c = Cluster()
    names = c.add_nodes("n", 5)
    c.set_ready(names[:1], "Unknown")
    node = c.node(names[0])
    node["spec"]["taints"] = [
        {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"},
        {"key": "dedicated", "effect": "NoSchedule"},
    ]
    c.client.put(NODES, node)
    await c.controller.monitor_node_health()
    assert c.eviction_taints(names) == {}
    assert c.node(names[0])["spec"]["taints"] == [{"key": "dedicated", "effect": "NoSchedule"}]
    await c.controller.monitor_node_health()
    await c.controller.taint_pass()
    assert c.eviction_taints(names) == {names[0]: UNREACHABLE}


async def test_starved_server_run_makes_no_eviction_churn(autojump_clock: trio.abc.Clock) -> None:
    """The density bench's case end to end, the controller's own loops on the mock clock:
    1,000 hollow nodes whose Leases all lapse get Unknown conditions and their NoSchedule
    taints, and never a NoExecute one."""
    c = Cluster()
    names = c.add_nodes("hollow", 1000)
    async with trio.open_nursery() as nursery:
        await nursery.start(c.controller.run)
        # Virtual time (autojump clock): the claim is about a span, that in 400 s of the
        # controller's own loops (past the 300 s tolerations) no NoExecute taint appears.
        await trio.sleep(400)
        nursery.cancel_scope.cancel()
    assert all(c.node(n)["status"]["conditions"][0]["status"] == "Unknown" for n in names)
    assert c.eviction_taints(names) == {}
    assert all(
        {(t["key"], t["effect"]) for t in c.node(n)["spec"].get("taints") or ()}
        == {(UNREACHABLE, "NoSchedule")}
        for n in names
    )
    assert c.metric("node_collector_evictions_total", "") == 0


async def test_a_taint_removed_by_hand_comes_back_in_turn(clock: trio.testing.MockClock) -> None:
    c = Cluster()
    names = c.add_nodes("n", 5)
    await c.controller.monitor_node_health()
    c.set_ready(names[:1], "Unknown")
    await c.step(clock, 5, names[1:])
    assert c.eviction_taints(names) == {names[0]: UNREACHABLE}
    node = c.node(names[0])
    node["spec"]["taints"] = []
    c.client.put(NODES, node)
    await c.controller.sync(names[0])  # the NoSchedule sync does not put it back...
    assert c.eviction_taints(names) == {}
    await c.step(clock, 10, names[1:])  # ... the zone's queue does, at its rate
    assert c.eviction_taints(names) == {names[0]: UNREACHABLE}
    assert c.metric("node_collector_evictions_total", "") == 2


async def test_a_lagging_lease_informer_does_not_mark_a_live_node(
    clock: trio.testing.MockClock,
) -> None:
    """The Lease informer stops showing renewals (its watch fell behind) while the server
    has them: before marking a node Unknown the controller reads its Lease afresh, sees
    the renewal and counts it; a node whose Lease really stopped is still marked."""
    c = Cluster()
    live, dead = c.add_nodes("n", 2)
    await c.controller.monitor_node_health()
    informer = c.client.informer(LEASES)
    lagging = informer.apply
    informer.apply = lambda *args: None  # type: ignore[method-assign]  # the watch stalls
    await c.step(clock, 45, [live])  # the server still gets live's renewals
    assert c.node(live)["status"]["conditions"][0]["status"] == "True"
    assert c.node(dead)["status"]["conditions"][0]["status"] == "Unknown"
    late = "k8slite_node_lifecycle_late_lease_renewals_total"
    assert c.registry.get_sample_value(late) == 1
    # Past another grace period with the informer still behind, a new fresh read is
    # needed and made; once the informer catches up no fresh read is needed at all.
    await c.step(clock, 45, [live])
    assert c.node(live)["status"]["conditions"][0]["status"] == "True"
    assert c.registry.get_sample_value(late) == 2
    informer.apply = lagging  # type: ignore[method-assign]
    await c.step(clock, 60, [live])
    assert c.node(live)["status"]["conditions"][0]["status"] == "True"
    assert c.registry.get_sample_value(late) == 2
