"""The kubelet's bridge plugin: a network namespace per pod, a veth into the node's bridge,
and an address from the node's pod CIDR (what CNI's bridge and host-local plugins do)."""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
from pathlib import Path

from k8slite.network import ipcmd
from k8slite.network.bridge import DEFAULT_BRIDGE, ensure_bridge, gateway, link_mtu

log = logging.getLogger(__name__)
NETNS_DIR = Path("/run/netns")
# `ip netns exec NAME` bind-mounts each file of /etc/netns/NAME over /etc's own, in a mount
# namespace of the command's: how a pod of the process runtime sees its resolv.conf and
# /etc/hosts (the kubelet's, which the Docker runtime bind-mounts) rather than the host's.
NETNS_ETC_DIR = Path("/etc/netns")
# The pod files that go there: /etc/resolv.conf and /etc/hosts.
POD_ETC_FILES = ("/etc/resolv.conf", "/etc/hosts")


class NoPodCidrError(RuntimeError):
    """The node has no pod CIDR yet: pods cannot get addresses."""


def netns_name(sandbox_id: str) -> str:
    # Sandbox IDs are random: 16 hex digits keep names unique across the hosts of a kernel.
    return f"k8slite-{sandbox_id[:16]}"


def netns_path(sandbox_id: str) -> Path:
    return NETNS_DIR / netns_name(sandbox_id)


def netns_etc(sandbox_id: str) -> Path:
    return NETNS_ETC_DIR / netns_name(sandbox_id)


def install_pod_file(sandbox_id: str, host_path: str, container_path: str) -> None:
    """Copy one of the kubelet's pod files (POD_ETC_FILES) to where `ip netns exec` finds it."""
    directory = netns_etc(sandbox_id)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / Path(container_path).name
    shutil.copyfile(host_path, target)
    target.chmod(0o644)


def host_veth(sandbox_id: str) -> str:
    return f"veth{sandbox_id[:11]}"  # interface names have at most 15 characters


class HostLocalIpam:
    """Addresses of one pod CIDR handed out one file each (`DIR/<ip>` holds the sandbox ID),
    so a restarted kubelet knows what is taken; `O_EXCL` makes each claim atomic."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def allocate(self, pod_cidr: str, owner: str) -> ipaddress.IPv4Address:
        self.dir.mkdir(parents=True, exist_ok=True)
        mine = self.owned(owner)
        net = ipaddress.IPv4Network(pod_cidr)
        if mine is not None and mine in net:
            return mine
        reserved = {gateway(pod_cidr).ip}
        for ip in net.hosts():
            if ip in reserved:
                continue
            try:
                fd = os.open(self.dir / str(ip), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w") as f:
                f.write(owner)
            return ip
        raise ipcmd.NetworkError(f"no free address left in the pod CIDR {pod_cidr}")

    def owned(self, owner: str) -> ipaddress.IPv4Address | None:
        if not self.dir.is_dir():
            return None
        for path in self.dir.iterdir():
            try:
                if path.read_text() == owner:
                    return ipaddress.IPv4Address(path.name)
            except (OSError, ValueError):
                continue
        return None

    def release(self, owner: str) -> None:
        ip = self.owned(owner)
        if ip is not None:
            (self.dir / str(ip)).unlink(missing_ok=True)


class BridgeNetwork:
    """Pods of one node on its bridge. `pod_cidr` is set from the Node's spec.podCIDR (or
    --pod-cidr) by the kubelet; until then sandboxes with pod networking fail and retry."""

    def __init__(
        self, state_dir: Path, *, bridge: str = DEFAULT_BRIDGE, pod_cidr: str | None = None
    ) -> None:
        self.bridge = bridge
        self.pod_cidr = pod_cidr
        self.ipam = HostLocalIpam(state_dir / "ipam")

    async def setup(self, sandbox_id: str) -> str:
        """The pod's namespace, wired to the bridge; returns its address."""
        cidr = self.pod_cidr
        if not cidr:
            raise NoPodCidrError("network is not ready: the node has no pod CIDR yet")
        await ensure_bridge(self.bridge, cidr)
        # The agent sets the bridge's MTU to what the backend carries (VXLAN: 50 less).
        mtu = str(await link_mtu(self.bridge) or 1500)
        ip = self.ipam.allocate(cidr, sandbox_id)
        ns, veth = netns_name(sandbox_id), host_veth(sandbox_id)
        prefix = ipaddress.IPv4Network(cidr).prefixlen
        try:
            if not netns_path(sandbox_id).exists():
                await ipcmd.ip("netns", "add", ns)
            await ipcmd.ignore_missing("link", "del", veth)
            await ipcmd.ip(
                "link", "add", veth, "mtu", mtu, "type", "veth",
                "peer", "name", "eth0", "mtu", mtu, "netns", ns,
            )  # fmt: skip
            await ipcmd.ip("link", "set", veth, "master", self.bridge, "up")
            await ipcmd.ip("-n", ns, "link", "set", "lo", "up")
            await ipcmd.ip("-n", ns, "addr", "add", f"{ip}/{prefix}", "dev", "eth0")
            await ipcmd.ip("-n", ns, "link", "set", "eth0", "up")
            await ipcmd.ip("-n", ns, "route", "add", "default", "via", str(gateway(cidr).ip))
        except ipcmd.NetworkError:
            await self.teardown(sandbox_id)
            raise
        log.info("pod network of sandbox %s: %s/%d on %s", sandbox_id, ip, prefix, self.bridge)
        return str(ip)

    async def teardown(self, sandbox_id: str) -> None:
        """Remove the pod's veth and namespace and free its address; idempotent."""
        await ipcmd.ignore_missing("link", "del", host_veth(sandbox_id))
        if netns_path(sandbox_id).exists():
            await ipcmd.ignore_missing("netns", "del", netns_name(sandbox_id))
        shutil.rmtree(netns_etc(sandbox_id), ignore_errors=True)
        self.ipam.release(sandbox_id)
