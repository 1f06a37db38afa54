"""Cluster DNS in `k8slite up`: where k8slite-dns listens, and the kube-dns Service to it."""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any

import httpx

from k8slite.dns import kubedns

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


def _free(host: str, port: int) -> int | None:
    """port (0: any) if free on host for both UDP and TCP right now, else None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as udp, socket.socket(family) as tcp:
        try:
            udp.bind((host, port))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, udp.getsockname()[1]))
        except OSError as e:
            if e.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
            return None
        return int(udp.getsockname()[1])


def pick_ports(host: str, any_port: bool) -> tuple[int, int]:
    """(DNS port, metrics port) on host: 53 and 9153, or 10053 when 53 is taken (a host
    resolver); free ones for several clusters side by side (any_port)."""
    if any_port:
        for _ in range(20):
            dns = _free(host, 0)
            metrics = _free(host, 0)
            if dns and metrics and dns != metrics:
                return dns, metrics
        raise ClusterDnsError(f"no free ports for cluster DNS on {host}")
    dns = _free(host, DNS_PORT) or _free(host, FALLBACK_DNS_PORT)
    if dns is None:
        raise ClusterDnsError(
            f"ports {DNS_PORT} and {FALLBACK_DNS_PORT} are taken on {host}: "
            "is another cluster running?"
        )
    if _free(host, METRICS_PORT) is None:
        raise ClusterDnsError(f"port {METRICS_PORT} (DNS metrics) is taken on {host}")
    return dns, METRICS_PORT


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
