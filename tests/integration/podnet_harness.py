"""Hosts as network namespaces for the pod network: a segment (a bridge in a namespace of
its own), hosts wired to it, and kubelets and node network agents running inside them.

Nothing here touches the machine's own network beyond one veth into the segment, which
carries the hosts' traffic to the API server on the segment's gateway address. The bridge
lives in its own namespace so that bridged traffic between hosts never passes the
machine's firewall (Docker's FORWARD policy would drop it when br_netfilter is loaded).
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from k8slite import pki
from tests.conftest import TEST_NODES, ServerHandle, start_apiserver
from tests.launch import launch, stop

# Hosts start at once from threads; the PKI's file lock does not keep threads of one
# process apart, and its temporary files are named by process.
_PKI_LOCK = threading.Lock()


def require_hosts() -> None:
    if os.geteuid() != 0:
        pytest.skip("pod network tests need root (network namespaces, routes, nftables)")
    for tool in ("ip", "bridge", "nft", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found; run hack/install-deps")


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def _taken() -> list[ipaddress.IPv4Network]:
    out = []
    for r in json.loads(_run("ip", "-j", "-4", "route", "show", "table", "all") or "[]"):
        try:
            out.append(ipaddress.IPv4Network(r.get("dst", ""), strict=False))
        except ValueError:
            continue  # default, and the like
    return out


def free_subnets(count: int, prefix: int) -> list[ipaddress.IPv4Network]:
    """`count` random ranges of this size in 10.128.0.0-10.249.255.255 that overlap no
    route of the machine and one another (tests running at once pick apart, most likely)."""
    taken = _taken()
    picked: list[ipaddress.IPv4Network] = []
    low, high = int(ipaddress.IPv4Address("10.128.0.0")), int(ipaddress.IPv4Address("10.250.0.0"))
    while len(picked) < count:
        start = random.randrange(low, high) >> (32 - prefix) << (32 - prefix)
        net = ipaddress.IPv4Network((start, prefix))
        if not any(net.overlaps(t) for t in taken + picked):
            picked.append(net)
    return picked


@dataclass
class Host:
    """One simulated machine: a network namespace with eth0 on the segment."""

    name: str  # the namespace, and the Node's name
    ip: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def argv(self, argv: list[str]) -> list[str]:
        # nsenter, not `ip netns exec`: the same mount namespace as the test, so the pod
        # namespaces a kubelet makes (/run/netns) are visible to everyone.
        return ["nsenter", f"--net=/run/netns/{self.name}", "--", *argv]

    def ip_cmd(self, *args: str) -> str:
        return _run("ip", "-n", self.name, *args)

    def routes(self) -> dict[str, str]:
        """Our agent's routes here: destination -> gateway."""
        out = self.ip_cmd("-j", "-4", "route", "show", "proto", "95")
        return {r["dst"]: r.get("gateway", "") for r in json.loads(out or "[]")}


class Segment:
    """A layer-2 segment for hosts, with the machine on it at `gateway` (the API server's
    address). With `remote`, a second segment behind a router (the switch's namespace
    routes between the two): hosts there share no L2 segment with the first ones."""

    def __init__(
        self, subnet: ipaddress.IPv4Network, remote: ipaddress.IPv4Network | None = None
    ) -> None:
        tag = uuid.uuid4().hex[:6]
        self.tag = tag
        self.subnet, self.remote = subnet, remote
        self._addresses = {False: subnet.hosts(), True: remote.hosts() if remote else iter(())}
        self.gateway = str(next(self._addresses[False]))
        self.router = str(next(self._addresses[False]))
        self.switch = f"kps-{tag}"
        self.uplink = f"kpu{tag}"
        self.hosts: list[Host] = []
        _run("ip", "netns", "add", self.switch)
        try:
            self._ns("link", "set", "lo", "up")
            self._bridge("br0", f"{self.router}/{subnet.prefixlen}")
            _run("ip", "link", "add", self.uplink, "type", "veth", "peer", "name", "up0",
                 "netns", self.switch)  # fmt: skip
            self._ns("link", "set", "up0", "master", "br0", "up")
            _run("ip", "addr", "add", f"{self.gateway}/{subnet.prefixlen}", "dev", self.uplink)
            _run("ip", "link", "set", self.uplink, "up")
            if remote is not None:
                self.remote_router = str(next(self._addresses[True]))
                self._bridge("br1", f"{self.remote_router}/{remote.prefixlen}")
                _run("ip", "netns", "exec", self.switch, "sysctl", "-qw", "net.ipv4.ip_forward=1")
                # The API server's replies to the remote hosts (the route goes with the uplink).
                _run("ip", "route", "add", str(remote), "via", self.router, "dev", self.uplink)
        except BaseException:
            self.delete()
            raise

    def _ns(self, *args: str) -> str:
        return _run("ip", "-n", self.switch, *args)

    def _bridge(self, name: str, address: str) -> None:
        self._ns("link", "add", name, "type", "bridge")
        self._ns("addr", "add", address, "dev", name)
        self._ns("link", "set", name, "up")

    def add_host(self, index: int, remote: bool = False) -> Host:
        """A host on the segment (remote: on the one behind the router)."""
        host = Host(f"kph-{self.tag}-{index}", str(next(self._addresses[remote])))
        net = self.remote if remote and self.remote is not None else self.subnet
        self.hosts.append(host)
        _run("ip", "netns", "add", host.name)
        port = f"p{index}"
        _run("ip", "-n", self.switch, "link", "add", port, "type", "veth", "peer", "name",
             "eth0", "netns", host.name)  # fmt: skip
        self._ns("link", "set", port, "master", "br1" if remote else "br0", "up")
        host.ip_cmd("link", "set", "lo", "up")
        host.ip_cmd("addr", "add", f"{host.ip}/{net.prefixlen}", "dev", "eth0")
        host.ip_cmd("link", "set", "eth0", "up")
        if self.remote is not None:
            other = self.subnet if remote else self.remote
            via = self.remote_router if remote else self.router
            host.ip_cmd("route", "add", str(other), "via", via)
        return host

    def delete(self) -> None:
        for host in self.hosts:
            for proc in host.procs:
                stop(proc, 10)
            subprocess.run(["ip", "netns", "del", host.name], check=False)
        subprocess.run(["ip", "link", "del", self.uplink], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", self.switch], check=False)


def apiserver_on(data_dir: Path, address: str) -> ServerHandle:
    """An API server listening on `address` only, with a certificate naming it."""
    pki.ensure_pki(data_dir / "pki", nodes=TEST_NODES, sans=[address])
    return start_apiserver(data_dir, "--bind-address", address)


def start_kubelet(server: ServerHandle, host: Host, workdir: Path, *extra: str) -> None:
    """A process-runtime kubelet for the host's Node, pods on the pod network."""
    with _PKI_LOCK:
        pki.ensure_pki(server.pki, nodes=[*TEST_NODES, host.name], sans=[server_address(server)])
        kubeconfig = server.kubeconfig_for(f"node-{host.name}")
    workdir.mkdir(parents=True, exist_ok=True)
    args = [
        sys.executable, "-m", "k8slite.cmd.kubelet",
        "--node-name", host.name,
        "--runtime", "process",
        "--kubeconfig", str(kubeconfig),
        "--pki-dir", str(server.pki),
        "--root-dir", str(workdir / "root"),
        "--node-ip", host.ip,
        "--port=-1", "--healthz-port=-1",
        "--pod-network", "bridge",
        "--node-status-update-frequency", "1s",
        "--node-lease-renew-interval", "1s",
        "--pleg-relist-period", "0.5s",
        "--system-log-dir", "",
        *extra,
    ]  # fmt: skip
    proc, _ = launch(host.argv(args), workdir / "kubelet.log", " ready: ", what="kubelet")
    host.procs.append(proc)


def start_agent(
    server: ServerHandle, host: Host, workdir: Path, cluster_cidr: str, backend: str
) -> tuple[subprocess.Popen[bytes], str]:
    """The node network agent in the host, with the node's credentials; returns it and the
    URL of its metrics (on the host's address, reachable from the test)."""
    workdir.mkdir(parents=True, exist_ok=True)
    with _PKI_LOCK:
        kubeconfig = server.kubeconfig_for(f"node-{host.name}")
    args = [
        sys.executable, "-m", "k8slite.cmd.netagent",
        "--kubeconfig", str(kubeconfig),
        "--node-name", host.name,
        "--cluster-cidr", cluster_cidr,
        "--backend", backend,
        "--metrics-bind-address", f"{host.ip}:0",
        "--resync-period", "5s",
    ]  # fmt: skip
    proc, line = launch(host.argv(args), workdir / "netagent.log", " ready in ", what="netagent")
    host.procs.append(proc)
    return proc, line.rsplit("serving on ", 1)[1].strip()


def start_proxy(server: ServerHandle, host: Host, workdir: Path, cluster_cidr: str) -> None:
    """k8slite-proxy in nftables mode in the host."""
    with _PKI_LOCK:
        kubeconfig = server.kubeconfig_for("proxy")
    args = [
        sys.executable, "-m", "k8slite.cmd.proxy",
        "--kubeconfig", str(kubeconfig),
        "--proxy-mode", "nftables",
        "--hostname-override", host.name,
        "--cluster-cidr", cluster_cidr,
        "--metrics-bind-address", "127.0.0.1:0",
        "--healthz-bind-address", "127.0.0.1:0",
        "--min-sync-period", "50ms",
    ]  # fmt: skip
    proc, _ = launch(host.argv(args), workdir / "proxy.log", "ready in", what="proxy")
    host.procs.append(proc)


def stop_agent(host: Host, proc: subprocess.Popen[bytes]) -> None:
    stop(proc, 10)
    host.procs.remove(proc)


def server_address(server: ServerHandle) -> str:
    return server.url.split("//", 1)[1].rsplit(":", 1)[0]


def kill_pod_processes(workdir: Path) -> None:
    """Whatever process pods of a kubelet under workdir still run, and their namespaces."""
    from k8slite.kubelet.runtime.shim import proc_start
    from k8slite.network.cni import NETNS_ETC_DIR, netns_name

    state = workdir / "root" / "process-runtime"
    for path in (state / "containers").glob("*/state.json"):
        try:
            data = json.loads(path.read_text())
            if proc_start(int(data["pid"])) == data["pid_start"] != "":
                os.killpg(int(data["pid"]), signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass
    for path in (state / "sandboxes").glob("*.json"):
        subprocess.run(["ip", "netns", "del", netns_name(path.stem)], check=False,
                       capture_output=True)  # fmt: skip
        shutil.rmtree(NETNS_ETC_DIR / netns_name(path.stem), ignore_errors=True)


def pod_json(
    name: str, node: str, command: list[str], labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "python", "command": command}],
            **spec,
        },
    }
