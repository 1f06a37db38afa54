"""Helpers for the priority and fairness tests: flowcontrol metrics, held seats, kubelet writes."""

from __future__ import annotations

import socket
import ssl
from datetime import UTC, datetime

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerHandle


def metric(admin: httpx.Client, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels` (0 when there are none)."""
    r = admin.get("/metrics")
    assert r.status_code == 200, r.text
    total = 0.0
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def executing(admin: httpx.Client, level: str) -> float:
    return metric(admin, "apiserver_flowcontrol_current_executing_requests", priority_level=level)


def tls_socket(server: ServerHandle, identity: str, rcvbuf: int = 0) -> ssl.SSLSocket:
    """A TLS connection as `identity`; with `rcvbuf`, a receive buffer that small."""
    host, port = server.url.removeprefix("https://").rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(server.ca))
    ctx.load_cert_chain(*server.cert(identity))
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        # Set before connecting, so the window stays small (no autotuning).
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.settimeout(30)
    raw.connect((host, int(port)))
    return ctx.wrap_socket(raw, server_hostname=host)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def kubelet_heartbeat(kubelet: httpx.Client, node: str) -> None:
    """What a kubelet writes to stay Ready: its node's status, then its Lease."""
    stamp = now()
    patch = {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": stamp,
                }
            ]
        }
    }
    r = kubelet.patch(
        f"/api/v1/nodes/{node}/status",
        json=patch,
        headers={"content-type": "application/strategic-merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": node, "namespace": "kube-node-lease"},
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": 40,
            "renewTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
    }
    r = kubelet.put(
        f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}", json=lease
    )
    assert r.status_code in (200, 201), r.text
