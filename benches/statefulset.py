"""StatefulSet start-up: time to all Ready, and the controller's delay per ordinal.

Run: .venv/bin/python benches/statefulset.py [--replicas 50] [--runtime fake|process|docker]
     [--ready-delay 0.2] [--no-claims]

Each replica has one claim (a volumeClaimTemplate of the default local-path class).
--runtime fake (default): a real API server and controller manager (the StatefulSet
controller alone); the tests' fake kubelet binds each pod and marks it Running and Ready
`--ready-delay` seconds after it first sees it (pod start-up held constant; the claims are
made but not bound). --runtime process|docker: a real API server, the whole controller
manager (binder and local-path provisioner too), the scheduler and one real kubelet, so
each pod's start-up includes its claim's provisioning and binding and the container start.

For Parallel and OrderedReady: the time from create to every pod Ready, and for OrderedReady
the controller's added delay per ordinal: from the watch showing pod i-1 Ready to the watch
showing pod i created (goal < 100 ms). The 1-minute load average is reported with the
figures: on a shared machine they move with it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).parent))
import harness

from k8slite.client import ApiClient, SharedInformer
from k8slite.client.resource import NAMESPACES, PODS, STATEFULSETS
from k8slite.component.objects import Obj
from tests.conftest import ServerHandle, start_apiserver
from tests.integration.cluster_harness import nodes_with_control_plane, ready_nodes
from tests.integration.controller_harness import (
    FakeKubelet,
    admin_config,
    create_namespace,
    is_ready,
    start_controller_manager,
    wait_for,
)

RUNTIMES = ("fake", "process", "docker")


def statefulset(replicas: int, policy: str, claims: bool) -> Obj:
    labels = {"app": "bench"}
    claim = {
        "metadata": {"name": "data"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "16Mi"}},
        },
    }
    container: Obj = {"name": "app", "image": "busybox:1.35", "command": ["sleep", "3600"]}
    if claims:
        container["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
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
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]},
            },
            "volumeClaimTemplates": [claim] if claims else [],
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


async def measure(client: ApiClient, ns: str, replicas: int, policy: str, claims: bool) -> Obj:
    """Create the set, wait for every pod Ready; the figures."""
    async with trio.open_nursery() as nursery:
        timeline = Timeline(client, ns)
        nursery.start_soon(timeline.informer.run)
        await timeline.informer.wait_synced()
        start = trio.current_time()
        await client.create(STATEFULSETS, statefulset(replicas, policy, claims), namespace=ns)
        while len(timeline.ready) < replicas:
            await trio.sleep(0.02)
        total = max(timeline.ready.values()) - start
        nursery.cancel_scope.cancel()
    out: dict[str, Any] = {"all_ready_s": round(total, 2), "load_1m": round(os.getloadavg()[0], 2)}
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


async def run_fake(
    client: ApiClient, replicas: int, policy: str, delay: float, claims: bool
) -> Obj:
    ns = await create_namespace(client, "bench")
    async with trio.open_nursery() as nursery:
        kubelet = FakeKubelet(client, ns, ["node-1", "node-2", "node-3"], ready_delay=delay)
        await nursery.start(kubelet.run)
        out = await measure(client, ns, replicas, policy, claims)
        nursery.cancel_scope.cancel()
    return out


async def run_real(client: ApiClient, replicas: int, policy: str, claims: bool) -> Obj:
    """On the real kubelet; the namespace (pods, claims, volumes) is deleted afterwards, so
    the next run starts on an idle node."""
    ns = await create_namespace(client, "bench")
    out = await measure(client, ns, replicas, policy, claims)
    await client.delete(NAMESPACES, ns)

    async def gone() -> bool:
        return not (await client.list(PODS, namespace=ns))["items"]

    await wait_for(gone, 600, message="the bench pods removed")
    return out


async def main_async(a: argparse.Namespace) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="k8slite-sts-bench-")))
        server: ServerHandle = start_apiserver(tmp / "data")
        stack.callback(server.stop)
        claims = not a.no_claims
        if a.runtime == "fake":
            manager = start_controller_manager(server, "--controllers=statefulset-controller")
            stack.callback(manager.stop)
        else:
            (tmp / "cluster").mkdir()
            nodes = stack.enter_context(
                nodes_with_control_plane(server, tmp / "cluster", "bench", 1, a.runtime)
            )
        async with ApiClient(admin_config(server)) as client:
            if a.runtime == "fake":
                return {
                    policy: await run_fake(client, a.replicas, policy, a.ready_delay, claims)
                    for policy in ("Parallel", "OrderedReady")
                }
            await wait_for(lambda: ready_nodes(client, nodes), 120, message="node Ready")
            return {
                policy: await run_real(client, a.replicas, policy, claims)
                for policy in ("Parallel", "OrderedReady")
            }
    raise AssertionError("unreachable")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--replicas", type=int, default=50)
    p.add_argument("--runtime", choices=RUNTIMES, default="fake")
    p.add_argument("--ready-delay", type=float, default=0.2, help="fake pod start-up, seconds")
    p.add_argument("--no-claims", action="store_true", help="no volumeClaimTemplate")
    a = p.parse_args()
    r = trio.run(main_async, a)
    par, ordered = r["Parallel"], r["OrderedReady"]
    startup = (
        f"pods Ready {a.ready_delay}s after creation"
        if a.runtime == "fake"
        else f"pod start-up p50 {ordered['pod_startup_ms_p50']} ms (OrderedReady)"
    )
    print(
        f"{a.replicas} replicas, {a.runtime} runtime, {startup}: "
        f"Parallel all Ready in {par['all_ready_s']}s; OrderedReady in "
        f"{ordered['all_ready_s']}s, controller delay per ordinal p50 "
        f"{ordered['per_ordinal_ms_p50']} ms, p90 {ordered['per_ordinal_ms_p90']} ms "
        f"(goal < 100 ms); load average {ordered['load_1m']}",
        flush=True,
    )
    harness.emit(
        {
            "bench": "statefulset",
            "runtime": a.runtime,
            "replicas": a.replicas,
            "claims": not a.no_claims,
            "ready_delay_s": a.ready_delay if a.runtime == "fake" else None,
            "parallel": par,
            "ordered": ordered,
        }
    )


if __name__ == "__main__":
    main()
