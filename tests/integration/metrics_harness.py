"""The resource metrics pipeline around a test API server: k8slite-metrics-server with its
Service, EndpointSlice and APIService (v1beta1.metrics.k8s.io), until the API server says
the APIService is Available."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ServerHandle
from tests.launch import launch, stop
from tests.polling import wait_for

APISERVICE = "v1beta1.metrics.k8s.io"
APISERVICES = "/apis/apiregistration.k8s.io/v1/apiservices"
SYSTEM = "/api/v1/namespaces/kube-system"
SLICES = "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices"


def start_metrics_server(server: ServerHandle, workdir: Path) -> tuple[Any, int]:
    args = [
        sys.executable,
        "-m",
        "k8slite.cmd.metricsserver",
        "--kubeconfig",
        str(server.kubeconfig_for("metrics-server")),
        "--bind-address",
        "127.0.0.1",
        "--secure-port",
        "0",
        "--client-ca-file",
        str(server.ca),
        "--metric-resolution",
        "1s",
    ]
    proc, line = launch(args, workdir / "metrics-server.log", " ready: ", what="metrics server")
    return proc, int(line.rsplit(":", 1)[1])


def available(api: httpx.Client) -> dict[str, Any] | None:
    """The APIService's Available condition once it is True."""
    obj = api.get(f"{APISERVICES}/{APISERVICE}").json()
    for c in (obj.get("status") or {}).get("conditions") or ():
        if c["type"] == "Available" and c["status"] == "True":
            return c  # type: ignore[no-any-return]
    return None


@contextlib.contextmanager
def metrics_api(server: ServerHandle, workdir: Path, wait: bool = False) -> Iterator[int]:
    """Run the metrics server and register it; yield its port (`wait`: once Available)."""
    proc, port = start_metrics_server(server, workdir)
    with server.client() as api:
        try:
            r = api.post(
                f"{SYSTEM}/services",
                json={
                    "metadata": {"name": "metrics-server"},
                    "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]},
                },
            )
            assert r.status_code == 201, r.text
            r = api.post(
                SLICES,
                json={
                    "metadata": {
                        "name": "metrics-server",
                        "labels": {"kubernetes.io/service-name": "metrics-server"},
                    },
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
                    "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
                },
            )
            assert r.status_code == 201, r.text
            r = api.post(
                APISERVICES,
                json={
                    "metadata": {"name": APISERVICE},
                    "spec": {
                        "group": "metrics.k8s.io",
                        "version": "v1beta1",
                        "service": {"namespace": "kube-system", "name": "metrics-server"},
                        "insecureSkipTLSVerify": True,
                        "groupPriorityMinimum": 100,
                        "versionPriority": 100,
                    },
                },
            )
            assert r.status_code == 201, r.text
            if wait:
                wait_for(lambda: available(api), 60, what="the APIService to be Available")
            yield port
        finally:
            api.delete(f"{APISERVICES}/{APISERVICE}")
            api.delete(f"{SLICES}/metrics-server")
            api.delete(f"{SYSTEM}/services/metrics-server")
            stop(proc, 10)
