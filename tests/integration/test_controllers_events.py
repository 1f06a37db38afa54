"""The controllers' event recorder against a real API server: shape and aggregation."""

from __future__ import annotations

import trio

from k8slite.client import ApiClient
from k8slite.client.resource import EVENTS
from k8slite.controllers.events import EventBroadcaster
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
