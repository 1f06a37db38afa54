"""Benchmark: the native watch cache holding 100,000 pods (apply, LIST, WATCH fan-out, memory)."""

from __future__ import annotations

import gc
import json
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

from k8slite._native import FieldSelector, LabelSelector, WatchCache, dumps

PODS = 100_000
NODES = 5_000
WATCHERS = 1_000
FIELDS = [
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "status.phase",
    "status.podIP",
]


def pod(i: int, rv: int, node: str) -> dict[str, Any]:
    """A ~1.5 KB pod: one container, owner, labels, tolerations, running status."""
    name = f"web-{i // 100:04d}-{i:06d}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": f"team-{i % 50:02d}",
            "uid": f"8f14e45f-ceea-467f-a0e6-{i:012d}",
            "resourceVersion": str(rv),
            "creationTimestamp": "2025-01-15T10:23:45Z",
            "labels": {
                "app": f"web-{i % 1000:03d}",
                "tier": ["frontend", "backend"][i % 2],
                "pod-template-hash": "7d9c8b6f5",
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"web-{i // 100:04d}",
                    "uid": "c9f0f895-fb98-4b91",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "registry.example.com/web-frontend:2.14.1",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "env": [{"name": "MODE", "value": "production"}],
                    "resources": {
                        "limits": {"cpu": "500m", "memory": "512Mi"},
                        "requests": {"cpu": "250m", "memory": "256Mi"},
                    },
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                }
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "nodeName": node,
            "schedulerName": "default-scheduler",
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                }
            ],
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-15T10:23:50Z"}
            ],
            "hostIP": "10.0.3.17",
            "podIP": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            "startTime": "2025-01-15T10:23:45Z",
            "containerStatuses": [
                {
                    "name": "web",
                    "ready": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": "2025-01-15T10:23:49Z"}},
                    "image": "registry.example.com/web-frontend:2.14.1",
                }
            ],
        },
    }


def key(i: int) -> str:
    return f"/registry/core/pods/team-{i % 50:02d}/web-{i // 100:04d}-{i:06d}"


def timed_ms(fn: Callable[[], object], repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    blobs = [dumps(pod(i, i + 1, f"node-{i % NODES:04d}")) for i in range(PODS)]
    pod_bytes = statistics.mean(len(b) for b in blobs)
    gc.collect()
    before = rss_mb()
    cache = WatchCache(FIELDS, capacity=10_000)
    start = time.perf_counter()
    for i, blob in enumerate(blobs):
        cache.apply("ADDED", key(i), i + 1, blob)
    apply_s = time.perf_counter() - start
    del blobs
    gc.collect()
    held_mb = rss_mb() - before

    prefix = "/registry/core/pods/"
    apps = ",".join(f"web-{n:03d}" for n in range(1, 11))
    selective = LabelSelector(f"app in ({apps}),tier=backend")
    figures = {
        "list_all_ms": timed_ms(lambda: cache.list(prefix)),
        "list_label_0.5pct_ms": timed_ms(lambda: cache.list(prefix, selective)),
        "list_label_half_ms": timed_ms(lambda: cache.list(prefix, LabelSelector("tier=backend"))),
        "list_node_ms": timed_ms(
            lambda: cache.list(prefix, field=FieldSelector("spec.nodeName=node-0042"))
        ),
        "list_page_500_ms": timed_ms(
            lambda: cache.list(prefix, limit=500, at_revision=PODS - 5000)
        ),
        "initial_events_all_ms": timed_ms(lambda: cache.initial_events(prefix), repeat=3),
    }
    count = cache.list(prefix)[1]
    assert count == PODS, count

    # WATCH fan-out: one write wakes 1,000 kubelet-like watchers (field selector on their
    # node) and each asks for what is new.
    selectors = [FieldSelector(f"spec.nodeName=node-{n:04d}") for n in range(WATCHERS)]
    rv = PODS + 1
    samples = []
    for round_ in range(20):
        i = round_ * 7
        cache.apply("MODIFIED", key(i), rv, dumps(pod(i, rv, f"node-{i % NODES:04d}")))
        start = time.perf_counter()
        delivered = 0
        for sel in selectors:
            frames, _ = cache.events_since(rv - 1, prefix, field=sel)
            delivered += len(frames)
        samples.append((time.perf_counter() - start) / WATCHERS * 1e6)
        assert delivered == 1
        rv += 1
    figures["events_since_us_per_watcher"] = statistics.median(samples)

    print(
        f"{PODS} pods of {pod_bytes:.0f} bytes each: applied at {PODS / apply_s:,.0f} pods/s, "
        f"holding {held_mb:.0f} MiB ({held_mb * 2**20 / PODS:.0f} bytes per pod)"
    )
    for name, value in figures.items():
        print(f"  {name:32} {value:10.2f}")
    print(
        json.dumps(
            {
                "bench": "cache",
                "pods": PODS,
                "pod_bytes": round(pod_bytes),
                "apply_pods_per_s": round(PODS / apply_s),
                "memory_bytes_per_pod": round(held_mb * 2**20 / PODS),
                **{k: round(v, 3) for k, v in figures.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
