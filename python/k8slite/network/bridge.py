"""The node's pod bridge: one Linux bridge holding the gateway address of the node's pod CIDR."""

from __future__ import annotations

import ipaddress

from k8slite.network import ipcmd

# One per host (network namespace), like kubenet's cbr0 or flannel's cni0.
DEFAULT_BRIDGE = "k8slite0"


def gateway(pod_cidr: str) -> ipaddress.IPv4Interface:
    """The bridge's address: the pod CIDR's first host, with the CIDR's prefix."""
    net = ipaddress.IPv4Network(pod_cidr)
    return ipaddress.IPv4Interface(f"{net.network_address + 1}/{net.prefixlen}")


async def ensure_bridge(name: str, pod_cidr: str, mtu: int | None = None) -> None:
    """Create the bridge if missing, give it the gateway address (dropping any other IPv4
    address, say from a podCIDR this node held before), and bring it up. Idempotent: the
    agent and the kubelet's plugin both call it, whichever comes first."""
    if not await ipcmd.link_exists(name):
        try:
            await ipcmd.ip("link", "add", name, "type", "bridge")
        except ipcmd.NetworkError as e:
            if "File exists" not in str(e):
                raise
    want = gateway(pod_cidr)
    # One read gives the addresses, the MTU and the flags: a quiet resync writes nothing.
    links = await ipcmd.ip_json("-4", "addr", "show", "dev", name)
    have = {
        f"{a['local']}/{a['prefixlen']}"
        for link in links
        for a in link.get("addr_info") or ()
        if a.get("family") == "inet"
    }
    for stale in have - {str(want)}:
        await ipcmd.ignore_missing("addr", "del", stale, "dev", name)
    if str(want) not in have:
        await ipcmd.ip("addr", "replace", str(want), "dev", name)
    link = links[0] if links else {}
    if mtu is not None and link.get("mtu") != mtu:
        await ipcmd.ip("link", "set", name, "mtu", str(mtu))
    if "UP" not in (link.get("flags") or ()):
        await ipcmd.ip("link", "set", name, "up")


async def link_mtu(name: str) -> int | None:
    """A device's MTU, None when it does not exist."""
    try:
        links = await ipcmd.ip_json("link", "show", "dev", name)
    except ipcmd.NetworkError:
        return None
    return int(links[0]["mtu"]) if links else None
