"""Cluster DNS in `k8slite up`: where k8slite-dns listens, and the kube-dns Service to it."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from k8slite.dns import kubedns
from k8slite.freeport import bindable, free_port

log = logging.getLogger("k8slite.up")

# Upstream's DNS port, and where it goes when a host resolver holds 53 on that address.
DNS_PORT, FALLBACK_DNS_PORT = 53, 10053
METRICS_PORT = 9153


class ClusterDnsError(Exception):
    """Cluster DNS cannot be set up; the message says why."""


def docker_gateway(network: str) -> str:
    """The pods' gateway on the Docker network (made now if the kubelet has not yet): the
    host address pods reach without the proxy, where k8slite-dns listens."""
    import docker
    import docker.errors

    from k8slite.kubelet.runtime.base import ContainerRuntimeError
    from k8slite.kubelet.runtime.docker_network import ensure_network, gateway

    try:
        api = docker.APIClient(version="auto", timeout=30)
    except docker.errors.DockerException as e:
        raise ClusterDnsError(f"no Docker engine ({e})") from None
    try:
        ensure_network(api, network, None)
        return gateway(api, network)
    except (docker.errors.DockerException, ContainerRuntimeError) as e:
        raise ClusterDnsError(f"Docker network {network}: {e}") from None
    finally:
        api.close()


def pick_ports(host: str, any_port: bool) -> tuple[int, int]:
    """(DNS port, metrics port) on host: 53 and 9153, or 10053 when 53 is taken (a host
    resolver); free ones for several clusters side by side (any_port)."""
    if any_port:
        try:
            dns = free_port(host, udp=True)
            metrics = free_port(host)
            while metrics == dns:
                metrics = free_port(host)
        except OSError as e:
            raise ClusterDnsError(f"no free ports for cluster DNS on {host}: {e}") from None
        return dns, metrics
    fixed = bindable(host, DNS_PORT, udp=True) or bindable(host, FALLBACK_DNS_PORT, udp=True)
    if fixed is None:
        raise ClusterDnsError(
            f"ports {DNS_PORT} and {FALLBACK_DNS_PORT} are taken on {host}: "
            "is another cluster running?"
        )
    if bindable(host, METRICS_PORT) is None:
        raise ClusterDnsError(f"port {METRICS_PORT} (DNS metrics) is taken on {host}")
    return fixed, METRICS_PORT


async def _put(client: httpx.AsyncClient, url: str, collection: str, obj: dict[str, Any]) -> None:
    """Create obj, or replace the one there (keeping what the API server allocated)."""
    name = obj["metadata"]["name"]
    r = await client.get(f"{url}/{collection}/{name}")
    if r.status_code == 404:
        r = await client.post(f"{url}/{collection}", json=obj)
    elif r.status_code == 200:
        current = r.json()
        obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        r = await client.put(f"{url}/{collection}/{name}", json=obj)
    if r.status_code not in (200, 201):
        raise ClusterDnsError(f"{collection}/{name}: {r.status_code} {r.text.strip()[:300]}")


async def publish(server: str, ssl_context: Any, address: str, dns_port: int, metrics: int) -> None:
    """Make kube-system/kube-dns (10.96.0.10) point at k8slite-dns at address:dns_port."""
    async with httpx.AsyncClient(verify=ssl_context, timeout=30) as client:
        ns = f"{server}/api/v1/namespaces/{kubedns.NAMESPACE}"
        svc = await client.get(f"{ns}/services/{kubedns.NAME}")
        if svc.status_code == 200:
            ip = (svc.json().get("spec") or {}).get("clusterIP")
            if ip != kubedns.CLUSTER_IP:
                raise ClusterDnsError(
                    f"Service {kubedns.NAMESPACE}/{kubedns.NAME} exists with clusterIP {ip}, "
                    f"not {kubedns.CLUSTER_IP}, the kubelet's --cluster-dns; delete it"
                )
        else:
            await _put(client, ns, "services", kubedns.service())
        await _put(
            client,
            f"{server}/apis/discovery.k8s.io/v1/namespaces/{kubedns.NAMESPACE}",
            "endpointslices",
            kubedns.endpoint_slice(address, dns_port, metrics),
        )
