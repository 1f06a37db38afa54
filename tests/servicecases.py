"""Service ports for the nftables tests: the rendering's unit tests and nft's own."""

from __future__ import annotations

import ipaddress

from k8slite.proxy.nftables import NftablesConfig
from k8slite.proxy.serviceports import Endpoint, ServicePort, ServicePortName

CONFIG = NftablesConfig([ipaddress.ip_network("10.96.0.0/12")])
A, B = Endpoint("10.244.0.5", 8080), Endpoint("10.244.0.6", 8080)


def sp(
    name: str = "web",
    *endpoints: Endpoint,
    ip: str = "10.96.0.10",
    port: int = 80,
    node_port: int | None = None,
    affinity: int | None = None,
    protocol: str = "TCP",
    namespace: str = "default",
    port_name: str = "http",
) -> ServicePort:
    return ServicePort(
        ServicePortName(namespace, name, port_name, protocol),
        ip,
        port,
        protocol,
        node_port,
        affinity,
        endpoints,
    )
