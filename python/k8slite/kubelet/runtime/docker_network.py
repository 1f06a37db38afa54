"""The Docker pod network: one labelled bridge network on a subnet nothing else uses."""

from __future__ import annotations

import ipaddress
import logging
import time

import docker
import docker.errors
import docker.types

from k8slite.kubelet.runtime.base import LABEL_MANAGED, LABEL_NODE, CreateSandboxError

log = logging.getLogger(__name__)

# Tried in order when no pod CIDR is given; the first that overlaps no Docker network and
# no host route wins.
CANDIDATE_CIDRS = tuple(f"10.{n}.0.0/16" for n in range(244, 255))


def ensure_network(
    api: docker.APIClient, name: str, pod_cidr: str | None, *, masquerade: bool = True
) -> None:
    """Find or create the pods' bridge network, on a subnet nothing else on the host uses.

    masquerade=False: Docker leaves the pods' source addresses alone (a pod network across
    hosts, where the node network agent masquerades only what leaves the pod network)."""
    for _ in range(3):
        existing = [n for n in api.networks(names=[name]) if n["Name"] == name]
        if existing:
            net = min(existing, key=lambda n: n["Id"])
            if (net.get("Labels") or {}).get(LABEL_MANAGED) != "true":
                raise CreateSandboxError(
                    f"Docker network {name!r} exists and is not k8slite's; "
                    "remove it or choose another pod network name"
                )
            subnets = [c.get("Subnet") for c in (net.get("IPAM") or {}).get("Config") or ()]
            if pod_cidr and pod_cidr not in subnets:
                log.warning(
                    "Docker network %s exists on %s, not on the pod CIDR %s; using it",
                    name,
                    ", ".join(map(str, subnets)),
                    pod_cidr,
                )
            return
        taken = _taken_subnets(api)
        candidates = [pod_cidr] if pod_cidr else list(CANDIDATE_CIDRS)
        free = [
            c for c in candidates if not any(ipaddress.ip_network(c).overlaps(t) for t in taken)
        ]
        if not free:
            raise CreateSandboxError(
                f"no free pod network among {', '.join(candidates)}: each overlaps a Docker "
                "network or a host route; choose a free pod CIDR"
            )
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=free[0])])
        try:
            api.create_network(
                name,
                driver="bridge",
                ipam=ipam,
                check_duplicate=True,
                labels={LABEL_MANAGED: "true"},
                options=None
                if masquerade
                else {"com.docker.network.bridge.enable_ip_masquerade": "false"},
            )
            log.info("created Docker network %s on %s", name, free[0])
            return
        except docker.errors.APIError as e:
            # Another kubelet may have won the race (same name or same subnet): look again.
            log.info("creating Docker network %s on %s: %s", name, free[0], e)
    raise CreateSandboxError(f"could not create the Docker network {name!r}")


def remove_network(api: docker.APIClient, net_id: str) -> None:
    """Remove a network, waiting out endpoints that just-removed containers still hold."""
    for attempt in range(50):
        try:
            api.remove_network(net_id)
            return
        except docker.errors.APIError as e:
            if "active endpoints" not in str(e) or attempt == 49:
                raise
            time.sleep(0.1)


def remove_leftovers(api: docker.APIClient, nodes: list[str], network: str | None) -> None:
    """Every container these nodes' kubelets made, then the pod network: nothing stays."""
    for node in nodes:
        for row in api.containers(all=True, filters={"label": f"{LABEL_NODE}={node}"}):
            api.remove_container(row["Id"], force=True)
    if network:
        for net in api.networks(names=[network]):
            if net["Name"] == network:
                remove_network(api, net["Id"])


def _taken_subnets(api: docker.APIClient) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    taken = []
    for net in api.networks():
        for cfg in (net.get("IPAM") or {}).get("Config") or ():
            if cfg.get("Subnet"):
                taken.append(ipaddress.ip_network(cfg["Subnet"], strict=False))
    return taken + _host_routes()


def _host_routes() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The host's IPv4 routes except the default one (/proc/net/route, little-endian hex)."""
    routes: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    try:
        with open("/proc/net/route") as f:
            next(f, None)
            for line in f:
                fields = line.split()
                dest, mask = (int(fields[1], 16), int(fields[7], 16))
                if mask:
                    addr = ipaddress.IPv4Address(dest.to_bytes(4, "little"))
                    prefix = mask.bit_count()
                    routes.append(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))
    except OSError:
        pass
    return routes


def gateway(api: docker.APIClient, name: str) -> str:
    """The network's gateway: the bridge's address on the host (Docker's default, the
    subnet's first address, unless the network names another)."""
    net = api.inspect_network(name)
    for cfg in (net.get("IPAM") or {}).get("Config") or ():
        if cfg.get("Gateway"):
            return str(cfg["Gateway"]).split("/")[0]
        if cfg.get("Subnet"):
            return str(next(ipaddress.ip_network(cfg["Subnet"], strict=False).hosts()))
    raise CreateSandboxError(f"Docker network {name!r} has no subnet")
