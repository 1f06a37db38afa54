"""What the proxiers program: each service port with its address and its usable endpoints."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from k8slite.component.objects import Obj, labels_of, name_of, namespace_of

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
# Services carrying this label belong to another proxy implementation, as upstream.
PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
DEFAULT_AFFINITY_SECONDS = 10800
PROTOCOLS = ("TCP", "UDP")
_NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


@dataclass(frozen=True, slots=True)
class ServicePortName:
    """One port of one service, named like upstream's ServicePortName ("ns/name:port")."""

    namespace: str
    name: str
    port: str
    protocol: str

    def __str__(self) -> str:
        return (
            f"{self.namespace}/{self.name}:{self.port}"
            if self.port
            else f"{self.namespace}/{self.name}"
        )


@dataclass(frozen=True, slots=True, order=True)
class Endpoint:
    ip: str
    port: int

    @property
    def version(self) -> int:
        return 6 if ":" in self.ip else 4

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if self.version == 6 else f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServicePort:
    """A service port on one of its cluster IPs, and the endpoints traffic may go to."""

    name: ServicePortName
    cluster_ip: str
    port: int
    protocol: str
    node_port: int | None
    # Seconds a client sticks to its endpoint (sessionAffinity ClientIP); None: no affinity.
    affinity_timeout: int | None
    endpoints: tuple[Endpoint, ...]

    @property
    def version(self) -> int:
        return 6 if ":" in self.cluster_ip else 4


def _address_type(ip: str) -> str:
    return "IPv6" if ":" in ip else "IPv4"


def _valid_ip(text: Any) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def endpoints_for(
    slices: Iterable[Obj], port_name: str, protocol: str, address_type: str
) -> tuple[Endpoint, ...]:
    """The endpoints a service port sends to: the ready ones, or, when none is ready, those
    still serving while they terminate (upstream's graceful fallback), sorted and unique."""
    ready: set[Endpoint] = set()
    draining: set[Endpoint] = set()
    for eps in slices:
        if eps.get("addressType") != address_type:
            continue
        number = next(
            (
                p.get("port")
                for p in eps.get("ports") or ()
                if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == protocol
            ),
            None,
        )
        if not isinstance(number, int) or not 0 < number < 65536:
            continue
        for ep in eps.get("endpoints") or ():
            ip = _valid_ip((ep.get("addresses") or [None])[0])
            if ip is None:
                continue
            cond = ep.get("conditions") or {}
            # An unset condition means "ready" (the API's documented reading of nil).
            is_ready = cond.get("ready") is not False
            serving = cond.get("serving")
            serving = is_ready if serving is None else serving
            if is_ready and not cond.get("terminating"):
                ready.add(Endpoint(ip, number))
            elif serving and cond.get("terminating"):
                draining.add(Endpoint(ip, number))
    return tuple(sorted(ready or draining))


def affinity_timeout(spec: Obj) -> int | None:
    if spec.get("sessionAffinity") != "ClientIP":
        return None
    config = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
    seconds = config.get("timeoutSeconds")
    return seconds if isinstance(seconds, int) and seconds > 0 else DEFAULT_AFFINITY_SECONDS


def cluster_ips(spec: Obj) -> list[str]:
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [ip for ip in ips if ip and ip != "None"]


def service_ports(
    service: Obj, slices: Iterable[Obj], routable: Callable[[str], bool]
) -> tuple[list[ServicePort], list[str]]:
    """The service's ports to program, and the problems that made parts of it unusable.

    `routable` says whether an address lies in the locally routed service range; addresses
    outside it are refused, since traffic to them would not be held on this machine.
    """
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName" or PROXY_NAME_LABEL in labels_of(service):
        return [], []
    slices = list(slices)
    out: list[ServicePort] = []
    problems: list[str] = []
    timeout = affinity_timeout(spec)
    for raw_ip in cluster_ips(spec):
        ip = _valid_ip(raw_ip)
        if ip is None or not routable(ip):
            problems.append(
                f"cluster IP {raw_ip} is outside the service range this proxy "
                "routes locally (check --service-cluster-ip-range)"
            )
            continue
        for port in spec.get("ports") or ():
            protocol = port.get("protocol") or "TCP"
            number = port.get("port")
            if protocol not in PROTOCOLS or not isinstance(number, int):
                problems.append(
                    f"port {port.get('name') or number}/{protocol} is not "
                    "supported by k8slite-proxy"
                )
                continue
            name = ServicePortName(
                namespace_of(service) or "default",
                name_of(service),
                port.get("name") or "",
                protocol,
            )
            node_port = port.get("nodePort") if spec.get("type") in _NODE_PORT_TYPES else None
            out.append(
                ServicePort(
                    name,
                    ip,
                    number,
                    protocol,
                    node_port or None,
                    timeout,
                    endpoints_for(slices, name.port, protocol, _address_type(ip)),
                )
            )
    return out, problems
