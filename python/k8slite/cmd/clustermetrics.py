"""Resource metrics in `k8slite up`: the metrics-server Service, its EndpointSlice and the
v1beta1.metrics.k8s.io APIService, so the API server proxies metrics.k8s.io to it."""

from __future__ import annotations

from typing import Any

import httpx

NAMESPACE = "kube-system"
NAME = "metrics-server"
APISERVICE = "v1beta1.metrics.k8s.io"
# Upstream's metrics-server manifest serves on this port inside its pod.
DEFAULT_PORT = 4443


class ClusterMetricsError(Exception):
    """The metrics API cannot be registered; the message says why."""


def objects(address: str, port: int) -> list[tuple[str, dict[str, Any]]]:
    """(collection path, object) of the Service, EndpointSlice and APIService."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"k8s-app": NAME}},
        # No selector: the EndpointSlice below names where the metrics server listens.
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]},
    }
    endpoint_slice = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": NAME, "k8s-app": NAME},
        },
        "addressType": "IPv6" if ":" in address else "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }
    apiservice = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": APISERVICE, "labels": {"k8s-app": NAME}},
        "spec": {
            "group": "metrics.k8s.io",
            "version": "v1beta1",
            "service": {"namespace": NAMESPACE, "name": NAME, "port": 443},
            # As upstream's manifest: the metrics server's certificate is self-signed.
            "insecureSkipTLSVerify": True,
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
        },
    }
    ns = f"/api/v1/namespaces/{NAMESPACE}"
    return [
        (f"{ns}/services", service),
        (f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices", endpoint_slice),
        ("/apis/apiregistration.k8s.io/v1/apiservices", apiservice),
    ]


async def publish(server: str, ssl_context: Any, address: str, port: int) -> None:
    """Create (or bring up to date) the objects that register the metrics server."""
    async with httpx.AsyncClient(verify=ssl_context, timeout=30) as client:
        for collection, obj in objects(address, port):
            name = obj["metadata"]["name"]
            url = f"{server}{collection}"
            r = await client.get(f"{url}/{name}")
            if r.status_code == 404:
                r = await client.post(url, json=obj)
            elif r.status_code == 200:
                current = r.json()
                obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                if obj["kind"] == "Service":  # keep what the API server allocated
                    obj["spec"]["clusterIP"] = current["spec"].get("clusterIP")
                    obj["spec"]["clusterIPs"] = current["spec"].get("clusterIPs")
                r = await client.put(f"{url}/{name}", json=obj)
            if r.status_code not in (200, 201):
                raise ClusterMetricsError(
                    f"{obj['kind']} {name}: {r.status_code} {r.text.strip()[:300]}"
                )
