"""The one event recorder against a real API server: shape, counting, aggregation, spam."""

from __future__ import annotations

from typing import Any

import trio
from prometheus_client import CollectorRegistry

from k8slite.client import ApiClient
from k8slite.client.resource import EVENTS
from k8slite.component.events import (
    COMBINED,
    QUEUE_CAPACITY,
    QUEUE_FULL,
    SPAM_BURST,
    SPAM_FILTERED,
    EventBroadcaster,
)
from tests.conftest import ServerHandle
from tests.integration.client_helpers import server_config
from tests.integration.controller_harness import wait_for


async def test_repeats_bump_count_and_last_timestamp(
    apiserver: ServerHandle, namespace: str
) -> None:
    async with ApiClient(server_config(apiserver)) as client:
        broadcaster = EventBroadcaster(client, host="host-1")
        recorder = broadcaster.recorder("replicaset-controller")
        rs = {
            "kind": "ReplicaSet",
            "apiVersion": "apps/v1",
            "metadata": {
                "name": "web",
                "namespace": namespace,
                "uid": "uid-1",
                "resourceVersion": "7",
            },
        }
        node = {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "node-x", "uid": "uid-2"}}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(broadcaster.run)
            for _ in range(3):
                recorder.event(rs, "Warning", "FailedCreate", "Error creating: no quota")
            recorder.event(rs, "Normal", "SuccessfulCreate", "Created pod: web-abcde")
            recorder.event(
                node, "Normal", "NodeNotReady", "Node node-x status is now: NodeNotReady"
            )

            async def written() -> list[dict[str, object]] | None:
                items = (await client.list(EVENTS, namespace=namespace))["items"]
                counts = sorted(int(e.get("count") or 0) for e in items)
                node_events = await client.list(
                    EVENTS, namespace="default", field_selector="involvedObject.name=node-x"
                )
                return items if counts == [1, 3] and node_events["items"] else None

            items = await wait_for(written, message="two events, one counted thrice")
            nursery.cancel_scope.cancel()
        failed = next(e for e in items if e["reason"] == "FailedCreate")
        assert failed["type"] == "Warning" and failed["message"] == "Error creating: no quota"
        assert failed["involvedObject"] == {
            "kind": "ReplicaSet",
            "namespace": namespace,
            "name": "web",
            "uid": "uid-1",
            "apiVersion": "apps/v1",
            "resourceVersion": "7",
        }
        assert failed["source"] == {"component": "replicaset-controller"}
        assert failed["reportingComponent"] == "replicaset-controller"
        assert failed["reportingInstance"] == "host-1"
        assert failed["metadata"]["name"].startswith("web.")
        assert failed["firstTimestamp"] <= failed["lastTimestamp"]
        cluster_scoped = await client.list(
            EVENTS, namespace="default", field_selector="involvedObject.name=node-x"
        )
        assert [e["reason"] for e in cluster_scoped["items"]] == ["NodeNotReady"]


def _pod(namespace: str, name: str) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
    }


def _dropped(registry: CollectorRegistry, reason: str) -> float:
    return registry.get_sample_value("k8slite_events_dropped_total", {"reason": reason}) or 0.0


async def _events_of(client: ApiClient, namespace: str, name: str) -> list[dict[str, Any]]:
    selector = f"involvedObject.name={name}"
    return (await client.list(EVENTS, namespace=namespace, field_selector=selector))["items"]  # type: ignore[no-any-return]


async def test_kubelet_source_and_field_path(apiserver: ServerHandle, namespace: str) -> None:
    """A container's events are told apart by fieldPath: the same words about another
    container are another Event, not a repeat."""
    async with ApiClient(server_config(apiserver)) as client:
        broadcaster = EventBroadcaster(client)
        recorder = broadcaster.recorder("kubelet", host="node-1")
        pod = _pod(namespace, "p")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(broadcaster.run)
            for container in ("app", "app", "sidecar"):
                recorder.event(
                    pod,
                    "Normal",
                    "Pulled",
                    'Container image "pause" already present on machine',
                    field_path=f"spec.containers{{{container}}}",
                )

            async def both() -> list[dict[str, Any]] | None:
                items = await _events_of(client, namespace, "p")
                return items if sum(e["count"] for e in items) == 3 else None

            items = await wait_for(both, message="two events, one counted twice")
            nursery.cancel_scope.cancel()
    counts = {e["involvedObject"]["fieldPath"]: e["count"] for e in items}
    assert counts == {"spec.containers{app}": 2, "spec.containers{sidecar}": 1}
    assert all(e["source"] == {"component": "kubelet", "host": "node-1"} for e in items)
    assert all(e["reportingInstance"] == "node-1" for e in items)


async def test_similar_events_aggregate(apiserver: ServerHandle, namespace: str) -> None:
    """Nine distinct messages stand alone; from the tenth on they go to one combined
    Event, counted up, its message the latest one."""
    async with ApiClient(server_config(apiserver)) as client:
        broadcaster = EventBroadcaster(client)
        recorder = broadcaster.recorder("default-scheduler")
        pod = _pod(namespace, "agg")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(broadcaster.run)
            for i in range(12):
                recorder.event(pod, "Warning", "FailedScheduling", f"0/{i} nodes are available")

            async def settled() -> list[dict[str, Any]] | None:
                items = await _events_of(client, namespace, "agg")
                combined = [e for e in items if e["message"].startswith(COMBINED)]
                done = len(items) == 10 and combined and combined[0]["count"] == 3
                return items if done else None

            items = await wait_for(settled, message="nine events and one combined, counted 3")
            nursery.cancel_scope.cancel()
    singles = sorted(e["message"] for e in items if not e["message"].startswith(COMBINED))
    assert singles == sorted(f"0/{i} nodes are available" for i in range(9))
    assert all(e["count"] == 1 for e in items if e["message"] in singles)
    [combined] = [e for e in items if e["message"].startswith(COMBINED)]
    assert combined["message"] == COMBINED + "0/11 nodes are available"
    assert combined["reason"] == "FailedScheduling" and combined["type"] == "Warning"


async def test_spam_filter_holds_back_beyond_the_burst(
    apiserver: ServerHandle, namespace: str
) -> None:
    registry = CollectorRegistry()
    async with ApiClient(server_config(apiserver)) as client:
        broadcaster = EventBroadcaster(client, registry=registry)
        recorder = broadcaster.recorder("replicaset-controller")
        noisy, quiet = _pod(namespace, "noisy"), _pod(namespace, "quiet")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(broadcaster.run)
            for _ in range(SPAM_BURST + 5):
                recorder.event(noisy, "Warning", "FailedCreate", "Error creating: no quota")
            # Another object has a bucket of its own.
            recorder.event(quiet, "Normal", "SuccessfulCreate", "Created pod: quiet")
            # Events are taken in order: once the quiet one is written, all noisy ones were seen.
            await wait_for(lambda: _events_of(client, namespace, "quiet"), message="quiet event")
            nursery.cancel_scope.cancel()
        [event] = await _events_of(client, namespace, "noisy")
    assert event["count"] == SPAM_BURST
    assert _dropped(registry, SPAM_FILTERED) == 5
    assert _dropped(registry, QUEUE_FULL) == 0


async def test_full_queue_drops_and_counts(apiserver: ServerHandle, namespace: str) -> None:
    """Recording never waits: with nothing writing, what the queue cannot hold is dropped."""
    registry = CollectorRegistry()
    async with ApiClient(server_config(apiserver)) as client:
        broadcaster = EventBroadcaster(client, registry=registry)
        recorder = broadcaster.recorder("kubelet", host="node-1")
        for i in range(QUEUE_CAPACITY + 7):
            recorder.event(_pod(namespace, f"p{i}"), "Normal", "Pulled", "already present")
        assert _dropped(registry, QUEUE_FULL) == 7
        async with trio.open_nursery() as nursery:
            nursery.start_soon(broadcaster.run)
            await wait_for(lambda: _events_of(client, namespace, "p0"), message="first event")
            nursery.cancel_scope.cancel()
