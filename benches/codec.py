"""Benchmark: k8slite._native JSON codec against orjson and the stdlib on a realistic Pod."""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from k8slite import _native


def realistic_pod(i: int = 0) -> dict[str, Any]:
    """A Pod shaped like what a Deployment-managed workload looks like in a real cluster."""
    name = f"web-frontend-7d9c8b6f5-{i:05d}x"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "generateName": "web-frontend-7d9c8b6f5-",
            "namespace": "production",
            "uid": "8f14e45f-ceea-467f-a0e6-1d4b2f3c9a71",
            "resourceVersion": str(1000000 + i),
            "creationTimestamp": "2025-01-15T10:23:45Z",
            "labels": {
                "app": "web-frontend",
                "app.kubernetes.io/name": "web-frontend",
                "app.kubernetes.io/version": "2.14.1",
                "pod-template-hash": "7d9c8b6f5",
                "tier": "frontend",
            },
            "annotations": {
                "kubectl.kubernetes.io/restartedAt": "2025-01-15T10:20:00Z",
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9102",
                "description": "Serves the storefront — café edition ☕",
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-frontend-7d9c8b6f5",
                    "uid": "c9f0f895-fb98-4b91-99f5-1a3b7c4d2e60",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": [
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2025-01-15T10:23:45Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {
                        "f:metadata": {
                            "f:generateName": {},
                            "f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}},
                            "f:ownerReferences": {".": {}, 'k:{"uid":"c9f0f895"}': {}},
                        },
                        "f:spec": {
                            "f:containers": {'k:{"name":"web"}': {".": {}, "f:image": {}}},
                            "f:dnsPolicy": {},
                            "f:restartPolicy": {},
                        },
                    },
                },
                {
                    "manager": "kubelet",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2025-01-15T10:23:50Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:status": {"f:conditions": {}, "f:podIP": {}}},
                    "subresource": "status",
                },
            ],
        },
        "spec": {
            "volumes": [
                {"name": "config", "configMap": {"name": "web-config", "defaultMode": 420}},
                {
                    "name": "kube-api-access-x7k2p",
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {
                                "configMap": {
                                    "name": "kube-root-ca.crt",
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                }
                            },
                        ],
                        "defaultMode": 420,
                    },
                },
            ],
            "containers": [
                {
                    "name": "web",
                    "image": "registry.example.com/web-frontend:2.14.1",
                    "args": ["--port=8080", "--log-level=info"],
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "env": [
                        {"name": "NODE_ENV", "value": "production"},
                        {"name": "CACHE_TTL_SECONDS", "value": "300"},
                        {
                            "name": "POD_IP",
                            "valueFrom": {
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}
                            },
                        },
                    ],
                    "resources": {
                        "limits": {"cpu": "500m", "memory": "512Mi"},
                        "requests": {"cpu": "250m", "memory": "256Mi"},
                    },
                    "volumeMounts": [
                        {"name": "config", "mountPath": "/etc/web", "readOnly": True},
                        {
                            "name": "kube-api-access-x7k2p",
                            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                            "readOnly": True,
                        },
                    ],
                    "livenessProbe": {
                        "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                        "initialDelaySeconds": 10,
                        "periodSeconds": 10,
                        "timeoutSeconds": 1,
                        "successThreshold": 1,
                        "failureThreshold": 3,
                    },
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                },
                {
                    "name": "metrics-sidecar",
                    "image": "registry.example.com/statsd-exporter:0.26.0",
                    "ports": [{"name": "metrics", "containerPort": 9102, "protocol": "TCP"}],
                    "resources": {
                        "limits": {"cpu": "100m", "memory": "64Mi"},
                        "requests": {"cpu": "10m", "memory": "32Mi"},
                    },
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                },
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "nodeName": f"node-{i % 5000:04d}",
            "securityContext": {"runAsNonRoot": True, "fsGroup": 2000},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {
                    "type": t,
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": "2025-01-15T10:23:50Z",
                }
                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            "hostIP": "10.0.3.17",
            "podIP": "10.244.3.42",
            "podIPs": [{"ip": "10.244.3.42"}],
            "startTime": "2025-01-15T10:23:45Z",
            "containerStatuses": [
                {
                    "name": c,
                    "state": {"running": {"startedAt": "2025-01-15T10:23:49Z"}},
                    "lastState": {},
                    "ready": True,
                    "restartCount": 0,
                    "image": f"registry.example.com/{c}:1.0",
                    "imageID": "docker-pullable://registry.example.com/web@sha256:"
                    "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945",
                    "containerID": "docker://3b1f8e4c9a2d7e6f5a4b3c2d1e0f9a8b7c6d5e4f",
                    "started": True,
                }
                for c in ("web", "metrics-sidecar")
            ],
            "qosClass": "Burstable",
        },
    }


def medians_us(
    fns: dict[str, Callable[[], object]], *, rounds: int = 41, inner: int = 400
) -> dict[str, float]:
    """Median over `rounds` of the mean time of `inner` calls, in microseconds.

    The candidates take turns within each round, so a noisy neighbour on the machine
    slows all of them alike instead of skewing one.
    """
    for fn in fns.values():
        for _ in range(inner):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[name].append((time.perf_counter() - start) / inner * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    pod = realistic_pod()
    raw = orjson.dumps(pod)
    if _native.loads(_native.dumps(pod)) != pod or _native.loads(raw) != pod:
        sys.exit("round trip mismatch: refusing to report figures")

    encoders: dict[str, Callable[[], object]] = {
        "k8slite": lambda: _native.dumps(pod),
        "orjson": lambda: orjson.dumps(pod),
        "json": lambda: json.dumps(pod, separators=(",", ":"), ensure_ascii=False).encode(),
    }
    decoders: dict[str, Callable[[], object]] = {
        "k8slite": lambda: _native.loads(raw),
        "orjson": lambda: orjson.loads(raw),
        "json": lambda: json.loads(raw),
    }
    encode = medians_us(encoders)
    decode = medians_us(decoders)

    print(f"Pod of {len(raw)} bytes; median of 41 rounds x 400 calls, microseconds per call")
    print(f"{'':10}{'encode':>10}{'decode':>10}")
    for name in encoders:
        print(f"{name:10}{encode[name]:10.2f}{decode[name]:10.2f}")
    enc_ratio = encode["orjson"] / encode["k8slite"]
    dec_ratio = decode["orjson"] / decode["k8slite"]
    print(f"k8slite speed relative to orjson: encode x{enc_ratio:.2f}, decode x{dec_ratio:.2f}")
    print(
        json.dumps(
            {
                "bench": "codec",
                "pod_bytes": len(raw),
                "encode_us": {k: round(v, 3) for k, v in encode.items()},
                "decode_us": {k: round(v, 3) for k, v in decode.items()},
                "speedup_vs_orjson": {"encode": round(enc_ratio, 3), "decode": round(dec_ratio, 3)},
            }
        )
    )


if __name__ == "__main__":
    main()
