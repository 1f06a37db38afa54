"""Programming a host: routes to the other nodes' pod CIDRs (host-gw, or over a VXLAN
device with static FDB and neighbour entries) and the pod network's masquerade rule.

Every step compares what the kernel has with what is wanted and changes only the
difference, in one `ip -batch` (or `bridge -batch`) process, so a sync of a quiet cluster
runs a few read commands and writes nothing. Routes carry their own protocol number, so a
restarted agent finds its routes (and removes those of nodes deleted meanwhile) without any
state of its own.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from k8slite.network import ipcmd

# The `proto` of our routes (unassigned in /etc/iproute2/rt_protos): the mark by which a
# sync, or a restarted agent, tells them from everyone else's.
ROUTE_PROTO = "95"
VXLAN_PORT = 8472  # the Linux kernel's (and flannel's) VXLAN port
VXLAN_OVERHEAD = 50  # outer Ethernet, IP, UDP and VXLAN headers
NAT_TABLE = "k8slite-podnet"


@dataclass(frozen=True, slots=True)
class Peer:
    """Another node as this one needs it: its pod CIDR, its address, and (VXLAN) its VTEP."""

    name: str
    pod_cidr: str
    public_ip: str
    vtep_mac: str = ""

    @property
    def vtep_ip(self) -> str:
        """The VXLAN device's address on that node: its pod CIDR's network address."""
        return str(ipaddress.IPv4Network(self.pod_cidr).network_address)


def vxlan_device(vni: int) -> str:
    return f"k8slite.{vni}"


async def batch(commands: list[str], tool: str = "ip") -> None:
    """Run `tool -force -batch -`: every command is tried; the failures are raised together."""
    if commands:
        await ipcmd.run(tool, "-force", "-batch", "-", stdin="\n".join(commands).encode() + b"\n")


async def device_of(address: str) -> tuple[str, int]:
    """The device holding a local address, and its MTU."""
    for link in await ipcmd.ip_json("-4", "addr", "show"):
        for a in link.get("addr_info") or ():
            if a.get("local") == address:
                return str(link["ifname"]), int(link["mtu"])
    raise ipcmd.NetworkError(f"no device of this host has the address {address}")


async def connected_networks(device: str) -> list[ipaddress.IPv4Network]:
    """The subnets a device is directly on: the nodes host-gw can route through."""
    return [
        ipaddress.IPv4Network(f"{a['local']}/{a['prefixlen']}", strict=False)
        for link in await ipcmd.ip_json("-4", "addr", "show", "dev", device)
        for a in link.get("addr_info") or ()
    ]


async def our_routes() -> dict[str, str]:
    """Our routes in the main table: destination -> `via GATEWAY [dev DEVICE onlink]`."""
    out = {}
    for r in await ipcmd.ip_json("-4", "route", "show", "proto", ROUTE_PROTO):
        via = f"via {r.get('gateway', '')}"
        if "onlink" in (r.get("flags") or ()):
            via += f" dev {r.get('dev', '')} onlink"
        out[str(r["dst"])] = via
    return out


async def sync_routes(want: dict[str, str]) -> int:
    """Make our routes exactly `want` (destination -> `via ...`); returns the changes made."""
    have = await our_routes()
    commands = [
        f"route replace {dst} {via} proto {ROUTE_PROTO}"
        for dst, via in sorted(want.items())
        if have.get(dst) != via
    ]
    commands += [f"route del {dst} proto {ROUTE_PROTO}" for dst in sorted(set(have) - set(want))]
    await batch(commands)
    return len(commands)


def host_gw_routes(peers: list[Peer]) -> dict[str, str]:
    """host-gw: each node's pod CIDR through that node's address (one L2 segment)."""
    return {p.pod_cidr: f"via {p.public_ip}" for p in peers}


def vxlan_routes(peers: list[Peer], device: str) -> dict[str, str]:
    """VXLAN: each pod CIDR through the node's VTEP address on our VXLAN device; `onlink`
    because that address is in no subnet of ours."""
    return {p.pod_cidr: f"via {p.vtep_ip} dev {device} onlink" for p in peers if p.vtep_mac}


async def ensure_vxlan(vni: int, local_ip: str, uplink: str, mtu: int, pod_cidr: str) -> str:
    """The VXLAN device (learning off: every peer is programmed), up, with our VTEP address;
    returns its MAC. A device of other parameters (another local address) is made anew."""
    device = vxlan_device(vni)
    links = []
    if await ipcmd.link_exists(device):
        links = await ipcmd.ip_json("-d", "link", "show", "dev", device)
        info = ((links[0].get("linkinfo") or {}).get("info_data") or {}) if links else {}
        if info.get("id") != vni or info.get("local") != local_ip or info.get("port") != VXLAN_PORT:
            await ipcmd.ip("link", "del", device)
            links = []
    if not links:
        await ipcmd.ip(
            "link", "add", device, "type", "vxlan", "id", str(vni), "local", local_ip,
            "dev", uplink, "dstport", str(VXLAN_PORT), "nolearning",
        )  # fmt: skip
    await ipcmd.ip("link", "set", device, "mtu", str(mtu), "up")
    vtep = f"{ipaddress.IPv4Network(pod_cidr).network_address}/32"
    have = {
        f"{a['local']}/{a['prefixlen']}"
        for link in await ipcmd.ip_json("-4", "addr", "show", "dev", device)
        for a in link.get("addr_info") or ()
    }
    for stale in have - {vtep}:
        await ipcmd.ignore_missing("addr", "del", stale, "dev", device)
    if vtep not in have:
        await ipcmd.ip("addr", "add", vtep, "dev", device)
    links = await ipcmd.ip_json("link", "show", "dev", device)
    return str(links[0]["address"])


async def sync_vxlan_peers(device: str, peers: list[Peer]) -> int:
    """Static neighbour (VTEP address -> MAC) and FDB (MAC -> node address) entries for
    exactly these peers; returns the changes made."""
    want_neigh = {p.vtep_ip: p.vtep_mac for p in peers if p.vtep_mac}
    have_neigh = {
        str(n["dst"]): str(n.get("lladdr", ""))
        for n in await ipcmd.ip_json("-4", "neigh", "show", "dev", device, "nud", "permanent")
    }
    neigh = [
        f"neigh replace {ip} lladdr {mac} dev {device} nud permanent"
        for ip, mac in sorted(want_neigh.items())
        if have_neigh.get(ip) != mac
    ]
    neigh += [f"neigh del {ip} dev {device}" for ip in sorted(set(have_neigh) - set(want_neigh))]
    want_fdb = {(p.vtep_mac, p.public_ip) for p in peers if p.vtep_mac}
    have_fdb = {
        (str(e["mac"]), str(e["dst"]))
        for e in await ipcmd.bridge_json("fdb", "show", "dev", device)
        if e.get("dst")
    }
    fdb = [
        f"fdb replace {mac} dev {device} dst {dst} self permanent"
        for mac, dst in sorted(want_fdb - have_fdb)
    ]
    fdb += [
        f"fdb del {mac} dev {device} dst {dst} self" for mac, dst in sorted(have_fdb - want_fdb)
    ]
    # Stale entries first: a node that came back with a new MAC must not keep the old one.
    await batch(sorted(fdb, key=lambda c: not c.startswith("fdb del")), tool="bridge")
    await batch(neigh)
    return len(neigh) + len(fdb)


async def remove_vxlan(vni: int) -> None:
    """Left over from a run in VXLAN mode: the device goes (its neighbours and FDB too)."""
    await ipcmd.ignore_missing("link", "del", vxlan_device(vni))


def masquerade_ruleset(cluster_cidr: str) -> str:
    """Traffic from pods to anything outside the pod network (and not multicast) leaves
    with the node's address; pod-to-pod traffic keeps its addresses on every path. Replaced
    whole in one transaction (a table declared, deleted, declared again), so it is
    idempotent and never half applied."""
    return (
        f"table ip {NAT_TABLE}\n"
        f"delete table ip {NAT_TABLE}\n"
        f"table ip {NAT_TABLE} {{\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat + 10; policy accept;\n"
        f"    ip saddr {cluster_cidr} ip daddr != {cluster_cidr} "
        "ip daddr != 224.0.0.0/4 masquerade\n"
        "  }\n"
        "}\n"
    )


async def apply_masquerade(cluster_cidr: str) -> None:
    await ipcmd.run("nft", "-f", "-", stdin=masquerade_ruleset(cluster_cidr).encode())


async def remove_masquerade() -> None:
    try:
        await ipcmd.run("nft", "delete", "table", "ip", NAT_TABLE)
    except ipcmd.NetworkError as e:
        if "No such file" not in str(e):
            raise
