"""The kube-dns Service and EndpointSlice: how pods reach k8slite-dns at 10.96.0.10.

k8slite-dns runs on the host, not in a pod, so its Service has no selector; its one
endpoint is the host address where it listens, in an EndpointSlice the endpointslice
controller leaves alone (another manager's label). The proxy then carries the Service's
address to it like any other.
"""

from __future__ import annotations

from typing import Any

from k8slite.dns.records import SERVICE_NAME_LABEL

Obj = dict[str, Any]
NAMESPACE = "kube-system"
NAME = "kube-dns"
# Upstream's convention: the tenth address of the default service range.
CLUSTER_IP = "10.96.0.10"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
MANAGER = "k8slite-dns"


def service(cluster_ip: str = CLUSTER_IP) -> Obj:
    """kube-system/kube-dns as upstream's: ports dns (53/UDP), dns-tcp (53/TCP), metrics."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {
                "k8s-app": "kube-dns",
                "kubernetes.io/cluster-service": "true",
                "kubernetes.io/name": "CoreDNS",
            },
        },
        "spec": {
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ],
        },
    }


def endpoint_slice(address: str, dns_port: int = 53, metrics_port: int = 9153) -> Obj:
    """The Service's one endpoint: where k8slite-dns listens, as pods can reach it."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{NAME}-{MANAGER}",
            "namespace": NAMESPACE,
            "labels": {SERVICE_NAME_LABEL: NAME, MANAGED_BY: MANAGER},
        },
        "addressType": "IPv6" if ":" in address else "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [
            {"name": "dns", "port": dns_port, "protocol": "UDP"},
            {"name": "dns-tcp", "port": dns_port, "protocol": "TCP"},
            {"name": "metrics", "port": metrics_port, "protocol": "TCP"},
        ],
    }
