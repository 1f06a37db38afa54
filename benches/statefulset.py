"""StatefulSet start-up: time to all Ready, and the controller's delay per ordinal.

Run: .venv/bin/python benches/statefulset.py [--replicas 50] [--ready-delay 0.2]

A real API server and controller manager (the StatefulSet controller alone); the tests'
fake kubelet binds each pod and marks it Running and Ready `--ready-delay` seconds after it
first sees it (pod start-up held constant). For Parallel and OrderedReady: the time from
create to every pod Ready, and for OrderedReady the controller's added delay per ordinal:
from the watch showing pod i-1 Ready to the watch showing pod i created (goal < 100 ms).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).parent))
import harness

from k8slite.client import ApiClient, SharedInformer
from k8slite.client.resource import PODS, STATEFULSETS
from k8slite.component.objects import Obj
from tests.conftest import start_apiserver
from tests.integration.controller_harness import (
    FakeKubelet,
    admin_config,
    create_namespace,
    is_ready,
    start_controller_manager,
)


def statefulset(replicas: int, policy: str) -> Obj:
    labels = {"app": "bench"}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "bench"},
        "spec": {
            "replicas": replicas,
            "podManagementPolicy": policy,
            "serviceName": "bench",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "busybox:1.35"}]},
            },
        },
    }


class Timeline:
    """When the watch first showed each pod created and Ready (trio clock)."""

    def __init__(self, client: ApiClient, ns: str) -> None:
        self.created: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.informer = SharedInformer(client, PODS, namespace=ns)
        self.informer.add_event_handler(self._seen, lambda _o, n: self._seen(n), lambda _p: None)

    def _seen(self, pod: Obj) -> None:
        name, now = pod["metadata"]["name"], trio.current_time()
        self.created.setdefault(name, now)
        if is_ready(pod):
            self.ready.setdefault(name, now)


async def run_one(client: ApiClient, replicas: int, policy: str, delay: float) -> dict[str, Any]:
    ns = await create_namespace(client, "bench")
    async with trio.open_nursery() as nursery:
        kubelet = FakeKubelet(client, ns, ["node-1", "node-2", "node-3"], ready_delay=delay)
        await nursery.start(kubelet.run)
        timeline = Timeline(client, ns)
        nursery.start_soon(timeline.informer.run)
        await timeline.informer.wait_synced()
        start = trio.current_time()
        await client.create(STATEFULSETS, statefulset(replicas, policy), namespace=ns)
        while len(timeline.ready) < replicas:
            await trio.sleep(0.02)
        total = max(timeline.ready.values()) - start
        nursery.cancel_scope.cancel()
    out: dict[str, Any] = {"all_ready_s": round(total, 2)}
    startup = [timeline.ready[n] - timeline.created[n] for n in timeline.ready]
    out["pod_startup_ms_p50"] = round(1000 * harness.median(startup), 1)
    if policy == "OrderedReady":
        gaps = [
            timeline.created[f"bench-{i}"] - timeline.ready[f"bench-{i - 1}"]
            for i in range(1, replicas)
        ]
        out["per_ordinal_ms_p50"] = round(1000 * harness.median(gaps), 1)
        out["per_ordinal_ms_p90"] = round(1000 * harness.percentile(gaps, 0.9), 1)
        out["per_ordinal_ms_max"] = round(1000 * max(gaps), 1)
    return out


async def main_async(replicas: int, delay: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="k8slite-sts-bench-") as tmp:
        server = start_apiserver(Path(tmp) / "data")
        manager = start_controller_manager(server, "--controllers=statefulset-controller")
        try:
            async with ApiClient(admin_config(server)) as client:
                return {
                    "parallel": await run_one(client, replicas, "Parallel", delay),
                    "ordered": await run_one(client, replicas, "OrderedReady", delay),
                }
        finally:
            manager.stop()
            server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--replicas", type=int, default=50)
    p.add_argument("--ready-delay", type=float, default=0.2, help="fake pod start-up, seconds")
    a = p.parse_args()
    r = trio.run(main_async, a.replicas, a.ready_delay)
    par, ordered = r["parallel"], r["ordered"]
    print(
        f"{a.replicas} replicas, pods Ready {a.ready_delay}s after creation: "
        f"Parallel all Ready in {par['all_ready_s']}s; OrderedReady in "
        f"{ordered['all_ready_s']}s, controller delay per ordinal p50 "
        f"{ordered['per_ordinal_ms_p50']} ms, p90 {ordered['per_ordinal_ms_p90']} ms "
        "(goal < 100 ms)",
        flush=True,
    )
    harness.emit(
        {
            "bench": "statefulset",
            "replicas": a.replicas,
            "ready_delay_s": a.ready_delay,
            "parallel": par,
            "ordered": ordered,
        }
    )


if __name__ == "__main__":
    main()
