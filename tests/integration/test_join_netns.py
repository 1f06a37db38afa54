"""`k8slite join` from another host: a network namespace of the test's own as that host.

The control plane (API server and controller manager) listens on the host's end of a test
bridge, a private /24 the test picks; the node is a network namespace whose veth is on that
bridge with an address of its own. `k8slite join` runs in the namespace (ip netns exec),
discovers the cluster at the bridge address, bootstraps its kubelet's certificate, and runs
the kubelet and the proxy (as the node) there: the node turns Ready with its namespace's
address as InternalIP, and its kubelet serves on that address across the bridge.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from k8slite import bootstraptoken as bt
from k8slite import pki
from k8slite.cmd import runstate
from tests.conftest import ServerHandle, start_apiserver
from tests.integration.controller_harness import start_controller_manager

pytestmark = [
    pytest.mark.xdist_group("host-network"),
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"
    ),
]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.199.0.0/16 that no route of this host overlaps."""
    routes = subprocess.run(
        ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, timeout=30
    ).stdout
    taken = []
    for line in routes.splitlines():
        words = line.split()
        first = words[1] if words[0] in ("local", "broadcast", "unreachable") else words[0]
        try:
            taken.append(ipaddress.ip_network(first, strict=False))
        except ValueError:
            continue
    for _ in range(50):
        net = ipaddress.ip_network(f"10.199.{int.from_bytes(os.urandom(1), 'big')}.0/24")
        if not any(net.overlaps(t) for t in taken if t.prefixlen > 0):
            return net
    pytest.skip("no free /24 in 10.199.0.0/16")


@pytest.fixture
def hosts() -> Iterator[tuple[str, str, str]]:
    """(bridge address, node namespace, node address), removed afterwards."""
    suffix = os.urandom(3).hex()
    bridge, host_veth, node_veth = f"brjn{suffix}", f"vhjn{suffix}", f"vnjn{suffix}"
    netns = f"k8slite-join-{suffix}"
    net = free_subnet()
    gateway, node_ip = str(net[1]), str(net[2])
    try:
        ip("link", "add", bridge, "type", "bridge")
        ip("addr", "add", f"{gateway}/24", "dev", bridge)
        ip("link", "set", bridge, "up")
        ip("netns", "add", netns)
        ip("link", "add", host_veth, "type", "veth", "peer", "name", node_veth)
        ip("link", "set", host_veth, "master", bridge)
        ip("link", "set", host_veth, "up")
        ip("link", "set", node_veth, "netns", netns)
        ip("-n", netns, "addr", "add", f"{node_ip}/24", "dev", node_veth)
        ip("-n", netns, "link", "set", node_veth, "up")
        ip("-n", netns, "link", "set", "lo", "up")
        yield gateway, netns, node_ip
    finally:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", host_veth], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, timeout=30)


def test_node_in_another_namespace_joins(tmp_path: Path, hosts: tuple[str, str, str]) -> None:
    gateway, netns, node_ip = hosts
    # The serving certificate names the bridge address (as `k8slite up --advertise-address`
    # makes it); the API server listens there only.
    pki.ensure_pki(tmp_path / "data" / "pki", sans=[gateway])
    server: ServerHandle = start_apiserver(
        tmp_path / "data",
        "--enable-bootstrap-token-auth",
        f"--anonymous-auth-paths={bt.CLUSTER_INFO_PATH}",
        f"--bind-address={gateway}",
        f"--advertise-address={gateway}",
    )
    manager = start_controller_manager(
        server,
        "--controllers=csrapproving,csrsigning,bootstrapsigner,tokencleaner",
        f"--cluster-signing-cert-file={server.pki / 'ca.pem'}",
        f"--cluster-signing-key-file={server.pki / 'ca.key'}",
    )
    node = f"netns-{os.urandom(3).hex()}"
    data = tmp_path / "node"
    try:
        assert server.url.startswith(f"https://{gateway}:"), server.url
        with server.client() as admin:
            token_id, secret = bt.parse(bt.generate()) or ("", "")
            token = bt.TokenSecret(
                token_id,
                secret,
                expiration=bt.format_time(datetime.now(UTC) + timedelta(hours=1)),
                usages=list(bt.USAGES),
                extra_groups=[bt.DEFAULT_NODE_GROUP],
            )
            r = admin.post("/api/v1/namespaces/kube-system/secrets", json=token.to_secret())
            assert r.status_code == 201, r.text
            # cluster-info names the advertised address.
            cm = admin.get(bt.CLUSTER_INFO_PATH).json()
            assert f"server: https://{gateway}:" in cm["data"]["kubeconfig"]
            done = subprocess.run(
                ["ip", "netns", "exec", netns, sys.executable, "-m", "k8slite.cmd.k8slite"]
                + ["join", "--server", server.url, "--token", token.token]
                + ["--discovery-token-ca-cert-hash", bt.ca_cert_hash(server.ca.read_bytes())]
                + ["--node-name", node, "--runtime", "fake", "--kubelet-port", "0"]
                + ["--data-dir", str(data)],
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            got = admin.get(f"/api/v1/nodes/{node}").json()
            ready = [c for c in got["status"]["conditions"] if c["type"] == "Ready"]
            assert ready and ready[0]["status"] == "True", got["status"]
            addresses = {a["type"]: a["address"] for a in got["status"]["addresses"]}
            assert addresses.get("InternalIP") == node_ip, addresses
            info = runstate.read(data)
            assert info is not None and set(info.components) == {"kubelet", "proxy"}
            # The proxy runs as the node and has synced (its healthz answers only then).
            proxy_log = (data / "logs" / "proxy.log").read_text()
            assert "ready in userspace mode" in proxy_log, proxy_log[-2000:]
            # The kubelet serves on the node's address across the bridge (its serving
            # certificate is self-signed, as upstream's kubelet makes it: see
            # docs/security.md); the API server's kubelet client certificate is accepted.
            port = info.ports["kubelet"]
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            ctx.load_cert_chain(*pki.cert_paths(server.pki, "client-apiserver-kubelet-client"))
            with httpx.Client(verify=ctx, timeout=10) as kubelet:
                healthz = kubelet.get(f"https://{node_ip}:{port}/healthz")
            assert healthz.status_code == 200 and healthz.text == "ok", healthz.text
    finally:
        info = runstate.read(data)
        if info is not None and info.running():
            subprocess.run(
                [sys.executable, "-m", "k8slite.cmd.k8slite", "stop", "--data-dir", str(data)],
                capture_output=True,
                timeout=120,
            )
        manager.stop()
        server.stop()
