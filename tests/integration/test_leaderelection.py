"""Leader election on Leases: one leader among contenders, fast handover, loss on no renew."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
from prometheus_client import CollectorRegistry

from k8slite.client import ApiClient, ClientConfig, Conflict
from k8slite.client.resource import LEASES
from k8slite.leaderelection import (
    LeaderElectionConfig,
    LeaderElectionLost,
    LeaderElector,
    micro_time,
    run_leader_elected,
)
from tests.conftest import ServerHandle
from tests.integration.client_helpers import TcpProxy, server_config

MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
# Short but valid timings (lease > renew deadline > 1.2 * retry period).
FAST = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.25}


@pytest.fixture
def config(apiserver: ServerHandle) -> ClientConfig:
    return server_config(apiserver)


@pytest.fixture
async def kube(config: ClientConfig) -> AsyncIterator[ApiClient]:
    async with ApiClient(config) as client:
        yield client


class Contender:
    """One candidate: runs leader election and records when it leads."""

    def __init__(self, client: ApiClient, namespace: str, identity: str, **timing: Any) -> None:
        self.registry = CollectorRegistry()
        self.elector = LeaderElector(
            client,
            namespace,
            "lock",
            identity,
            metrics_registry=self.registry,
            **{**FAST, **timing},
        )
        self.identity = identity
        self.leading = False
        self.started = trio.Event()
        self.stopped = trio.Event()
        self.lost = False
        self.scope = trio.CancelScope()

    async def _work(self, nursery: trio.Nursery) -> None:
        self.leading = True
        self.started.set()
        try:
            await trio.sleep_forever()
        finally:
            self.leading = False
            self.stopped.set()

    async def run(self) -> None:
        with self.scope:
            try:
                await self.elector.run(self._work)
            except LeaderElectionLost:
                self.lost = True

    def gauge(self) -> float | None:
        return self.registry.get_sample_value("leader_election_master_status", {"name": "lock"})


async def lease_of(client: ApiClient, namespace: str) -> dict[str, Any]:
    return (await client.get(LEASES, "lock", namespace=namespace))["spec"]


async def test_exactly_one_leader_and_release_hands_over(kube: ApiClient, namespace: str) -> None:
    # A long lease: without the release on cancel, no standby could take over in time.
    timing = {"lease_duration": 60.0, "renew_deadline": 2.0, "retry_period": 0.25}
    contenders = [Contender(kube, namespace, f"c{i}", **timing) for i in range(3)]
    async with trio.open_nursery() as nursery:
        for c in contenders:
            nursery.start_soon(c.run)
        with trio.fail_after(20):
            while not any(c.leading for c in contenders):
                await trio.sleep(0.05)
        await trio.sleep(1.5)  # several renew rounds: nobody else may start leading
        leaders = [c for c in contenders if c.leading]
        assert len(leaders) == 1
        first = leaders[0]
        assert first.elector.is_leader and first.gauge() == 1
        assert all(c.gauge() == 0 for c in contenders if c is not first)
        spec = await lease_of(kube, namespace)
        assert spec["holderIdentity"] == first.identity
        assert spec["leaseDurationSeconds"] == 60
        assert MICRO_TIME.match(spec["renewTime"]) and MICRO_TIME.match(spec["acquireTime"])
        transitions = spec.get("leaseTransitions", 0)

        first.scope.cancel()
        with trio.fail_after(20):
            await first.stopped.wait()
            while not any(c.leading for c in contenders if c is not first):
                await trio.sleep(0.05)
        assert not first.leading and first.gauge() == 0
        second = next(c for c in contenders if c.leading)
        spec = await lease_of(kube, namespace)
        assert spec["holderIdentity"] == second.identity
        assert spec["leaseTransitions"] == transitions + 1
        assert sum(c.leading for c in contenders) == 1
        nursery.cancel_scope.cancel()


async def test_leader_that_cannot_renew_stops(
    config: ClientConfig, kube: ApiClient, namespace: str
) -> None:
    target = urlsplit(config.server)
    async with trio.open_nursery() as nursery:
        proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 443)
        await nursery.start(proxy.run)
        cut_off = ApiClient(dataclasses.replace(config, server=proxy.url, max_retries=0))
        leader = Contender(cut_off, namespace, "isolated")
        nursery.start_soon(leader.run)
        with trio.fail_after(20):
            await leader.started.wait()
        standby = Contender(kube, namespace, "standby")
        nursery.start_soon(standby.run)

        proxy.cut()  # the leader can no longer reach the API server
        with trio.fail_after(20):
            await leader.stopped.wait()
        assert not leader.leading
        with trio.fail_after(20):
            while not leader.lost:
                await trio.sleep(0.05)
        assert leader.gauge() == 0
        with trio.fail_after(20):
            await standby.started.wait()
        assert (await lease_of(kube, namespace))["holderIdentity"] == "standby"
        await cut_off.aclose()
        proxy.close()
        nursery.cancel_scope.cancel()


async def test_leader_whose_lease_is_taken_stops(kube: ApiClient, namespace: str) -> None:
    leader = Contender(kube, namespace, "victim")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(leader.run)
        with trio.fail_after(20):
            await leader.started.wait()
        # Someone else writes the lease as theirs (as another elector would after expiry);
        # the leader's renewal may land between our read and write, so read again then.
        while True:
            lease = await kube.get(LEASES, "lock", namespace=namespace)
            lease["spec"].update(
                holderIdentity="usurper", leaseDurationSeconds=600, renewTime=micro_time()
            )
            try:
                await kube.update(LEASES, lease)
                break
            except Conflict:
                continue
        with trio.fail_after(20):
            await leader.stopped.wait()
            while not leader.lost:
                await trio.sleep(0.05)
        assert leader.elector.leader == "usurper"
        # A lost leader does not clear someone else's lease on its way out.
        assert (await lease_of(kube, namespace))["holderIdentity"] == "usurper"
        nursery.cancel_scope.cancel()


async def test_finished_work_releases_and_returns(kube: ApiClient, namespace: str) -> None:
    ran: list[str] = []
    new_leaders: list[str] = []

    async def work(nursery: trio.Nursery) -> None:
        async def child() -> None:
            await trio.sleep(0.2)
            ran.append("child")

        nursery.start_soon(child)  # leadership lasts until this finishes too
        ran.append("work")

    with trio.fail_after(20):
        await run_leader_elected(
            kube,
            namespace,
            "lock",
            "once",
            work,
            **FAST,
            on_new_leader=new_leaders.append,
            metrics_registry=CollectorRegistry(),
        )
    assert ran == ["work", "child"]
    assert new_leaders == ["once"]
    spec = await lease_of(kube, namespace)
    assert not spec.get("holderIdentity") and spec["leaseDurationSeconds"] == 1


async def test_invalid_timings(kube: ApiClient) -> None:
    with pytest.raises(ValueError):
        LeaderElector(kube, "ns", "l", "me", lease_duration=5, renew_deadline=5)
    with pytest.raises(ValueError):
        LeaderElector(kube, "ns", "l", "me", renew_deadline=2, retry_period=2)
    with pytest.raises(ValueError):
        LeaderElector(kube, "ns", "l", "")


async def test_config_runs_work_without_election() -> None:
    ran: list[bool] = []

    async def work(nursery: trio.Nursery) -> None:
        ran.append(True)

    await LeaderElectionConfig(leader_elect=False).run(None, work)  # type: ignore[arg-type]
    assert ran == [True]
    with pytest.raises(ValueError):
        await LeaderElectionConfig().run(None, work)  # type: ignore[arg-type]


async def test_config_runs_elected(kube: ApiClient, namespace: str) -> None:
    holders: list[str] = []

    async def work(nursery: trio.Nursery) -> None:
        holders.append((await lease_of(kube, namespace))["holderIdentity"])

    cfg = LeaderElectionConfig(
        lease_duration=3,
        renew_deadline=2,
        retry_period=0.25,
        resource_namespace=namespace,
        resource_name="lock",
    )
    with trio.fail_after(20):
        await cfg.run(kube, work, identity="cfg", metrics_registry=CollectorRegistry())
    assert holders == ["cfg"]


def test_micro_time() -> None:
    assert MICRO_TIME.match(micro_time())
