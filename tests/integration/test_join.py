"""`k8slite join` on loopback: a real API server with bootstrap tokens, a real controller
manager running the bootstrap signer, csrapproving and csrsigning (certificates of 15 s, so
that rotation shows within the test), and `k8slite join` as a user runs it.

The node's CSR is approved as a bootstrapper's and issued, the node turns Ready, its
kubelet rotates its client certificate (a node's own renewal, approved as selfnodeclient)
and keeps working on the new one after the first has expired; `k8slite status` and
`k8slite stop` know the node. A wrong token, an unknown token and a wrong CA hash are
refused with upstream's messages, and nothing is written.
"""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from cryptography import x509

from k8slite import bootstraptoken as bt
from k8slite.cmd import runstate
from k8slite.cmd.up import create_join_command
from k8slite.kubelet import clientcert
from tests.conftest import ServerHandle, start_apiserver
from tests.e2e.cluster import start_up, stop_up, up_command
from tests.integration.controller_harness import ManagerHandle, start_controller_manager
from tests.polling import wait_for

CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
# The signer's --cluster-signing-duration here: rotation at 70-90% of it.
CERT_SECONDS = 15


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerHandle, ManagerHandle]]:
    root = Path(tmp_path_factory.mktemp("join"))
    server = start_apiserver(
        root / "data",
        "--enable-bootstrap-token-auth",
        f"--anonymous-auth-paths={bt.CLUSTER_INFO_PATH}",
    )
    ca_cert, ca_key = server.pki / "ca.pem", server.pki / "ca.key"
    manager = start_controller_manager(
        server,
        "--controllers=csrapproving,csrsigning,bootstrapsigner,tokencleaner",
        f"--cluster-signing-cert-file={ca_cert}",
        f"--cluster-signing-key-file={ca_key}",
        f"--cluster-signing-duration={CERT_SECONDS}s",
    )
    yield server, manager
    manager.stop()
    server.stop()


@pytest.fixture
def server(cluster: tuple[ServerHandle, ManagerHandle]) -> ServerHandle:
    return cluster[0]


@pytest.fixture
def admin(server: ServerHandle) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def new_token(admin: httpx.Client) -> bt.TokenSecret:
    token_id, secret = bt.parse(bt.generate()) or ("", "")
    token = bt.TokenSecret(
        token_id,
        secret,
        expiration=bt.format_time(datetime.now(UTC) + timedelta(hours=1)),
        usages=list(bt.USAGES),
        extra_groups=[bt.DEFAULT_NODE_GROUP],
    )
    r = admin.post(f"/api/v1/namespaces/{bt.NAMESPACE}/secrets", json=token.to_secret())
    assert r.status_code == 201, r.text
    return token


def k8slite(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "k8slite.cmd.k8slite", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def join(
    server: ServerHandle, token: str, ca_hash: str, node: str, data: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return k8slite(
        "join",
        "--server",
        server.url,
        "--token",
        token,
        "--discovery-token-ca-cert-hash",
        ca_hash,
        "--node-name",
        node,
        "--runtime",
        "fake",
        "--data-dir",
        str(data),
        "--kubelet-port",
        "0",
        "--no-proxy",
        *extra,
    )


def node_ready(admin: httpx.Client, node: str) -> bool:
    r = admin.get(f"/api/v1/nodes/{node}")
    conditions = (r.json().get("status") or {}).get("conditions") or [] if r.is_success else []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def issued_to(csr: dict[str, Any]) -> str:
    pem = base64.b64decode(str((csr.get("status") or {}).get("certificate", "")))
    cert = x509.load_pem_x509_certificate(pem)
    return str(cert.subject.rfc4514_string())


def csrs_of(admin: httpx.Client, username: str) -> list[dict[str, Any]]:
    items = admin.get(CSRS).json()["items"]
    return [c for c in items if c["spec"].get("username") == username]


def test_join_bootstraps_rotates_and_stops(server: ServerHandle, admin: httpx.Client) -> None:
    token = new_token(admin)
    node = f"joined-{os.urandom(3).hex()}"
    data = server.data_dir.parent / node
    ca_hash = bt.ca_cert_hash(server.ca.read_bytes())
    try:
        began = time.monotonic()
        done = join(server, token.token, ca_hash, node, data)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "This node has joined the cluster" in done.stdout, done.stdout
        assert node_ready(admin, node)
        took = time.monotonic() - began
        # The bootstrap CSR: the token's user asked, csrapproving approved it as a
        # bootstrapper's (nodeclient), csrsigning issued the node's identity.
        # (The kubelet bootstraps again should that certificate of 15 s expire before it
        # starts, as upstream's does: then there are two.)
        boots = csrs_of(admin, f"system:bootstrap:{token.token_id}")
        assert boots
        for boot in boots:
            approved = [c for c in boot["status"]["conditions"] if c["type"] == "Approved"]
            assert approved and approved[0]["reason"] == "AutoApproved", boot
            assert issued_to(boot) == f"CN=system:node:{node},O=system:nodes"
        # What the node has: the CA, the kubeconfigs, one certificate file (0600).
        current = data / "pki" / clientcert.CURRENT
        assert (data / "pki" / "ca.pem").read_bytes() == server.ca.read_bytes()
        assert oct(current.stat().st_mode & 0o777) == "0o600"
        assert oct((data / "bootstrap-kubelet.kubeconfig").stat().st_mode & 0o777) == "0o600"
        first = x509.load_pem_x509_certificate(current.read_bytes())
        # Rotation: the node asks for its own identity (selfnodeclient) at 70-90% of 15 s.
        second = wait_for(
            lambda: (
                c
                if (c := x509.load_pem_x509_certificate(current.read_bytes())).serial_number
                != first.serial_number
                else None
            ),
            timeout=CERT_SECONDS + 20,
            what="the kubelet's client certificate to be rotated",
        )
        assert second.subject == first.subject
        renewals = csrs_of(admin, f"system:node:{node}")
        assert renewals, "no CSR by the node itself"
        assert any(
            c["type"] == "Approved" and "self kubelet client" in c["message"]
            for r in renewals
            for c in r["status"]["conditions"]
        ), renewals
        # After the first certificate has expired the kubelet still renews its Lease:
        # its new connections present the rotated certificate.
        expired = first.not_valid_after_utc
        time.sleep(max(0.0, (expired - datetime.now(UTC)).total_seconds()))
        lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}"
        wait_for(
            lambda: (
                datetime.fromisoformat(
                    admin.get(lease_path).json()["spec"]["renewTime"].replace("Z", "+00:00")
                )
                > expired
            ),
            timeout=30,
            what="the Lease renewed after the first certificate expired",
        )
        assert node_ready(admin, node)
        # The node's credentials read what its proxy needs (k8slite:node-proxier).
        ctx = ssl.create_default_context(cafile=str(server.ca))
        ctx.load_cert_chain(current)
        with httpx.Client(base_url=server.url, verify=ctx, timeout=10) as as_node:
            assert as_node.get("/apis/discovery.k8s.io/v1/endpointslices").status_code == 200
            assert as_node.get("/api/v1/secrets").status_code == 403
        status = k8slite("status", "--data-dir", str(data))
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"{node}: Ready" in status.stdout, status.stdout
        info = runstate.read(data)
        assert info is not None and info.joined and set(info.components) == {"kubelet"}
        kubelet = info.components["kubelet"]
        stopped = k8slite("stop", "--data-dir", str(data))
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert not kubelet.alive()
        print(f"join to Ready: {took:.1f}s")
    finally:
        info = runstate.read(data)
        if info is not None and info.running():
            k8slite("stop", "--data-dir", str(data))


def test_wrong_token_secret_is_refused(server: ServerHandle, admin: httpx.Client) -> None:
    token = new_token(admin)
    data = server.data_dir.parent / f"wrong-{os.urandom(3).hex()}"
    wrong = f"{token.token_id}.{'0' * 16}"
    done = join(server, wrong, bt.ca_cert_hash(server.ca.read_bytes()), "wrong-token", data)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "failed to verify JWS signature of received cluster info object" in done.stderr
    assert not data.exists()


def test_unknown_token_is_refused(server: ServerHandle) -> None:
    data = server.data_dir.parent / f"unknown-{os.urandom(3).hex()}"
    ca_hash = bt.ca_cert_hash(server.ca.read_bytes())
    done = join(server, bt.generate(), ca_hash, "unknown", data, "--discovery-timeout", "1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "is invalid for this cluster or it has expired" in done.stderr, done.stderr
    assert not data.exists()


def test_wrong_ca_hash_is_refused(server: ServerHandle, admin: httpx.Client) -> None:
    token = new_token(admin)
    data = server.data_dir.parent / f"badca-{os.urandom(3).hex()}"
    done = join(server, token.token, "sha256:" + "ab" * 32, "bad-ca", data)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "none of the public keys" in done.stderr and "are pinned" in done.stderr
    assert bt.ca_cert_hash(server.ca.read_bytes()) in done.stderr
    assert not data.exists()


def test_up_prints_a_join_command_that_works(tmp_path: Path) -> None:
    """`k8slite up` makes a bootstrap token and prints the `k8slite join` command, as
    `kubeadm init` prints `kubeadm join ...`; run as printed (with a node name and data
    directory of its own, on this host), it adds a node that turns Ready."""
    data = tmp_path / "cp"
    cluster = start_up(up_command(data, "--runtime", "fake", "--no-proxy", "--no-dashboard"), data)
    node_data = tmp_path / "node"
    try:
        line = wait_for(
            lambda: next((x for x in cluster.output if x.strip().startswith("k8slite join")), ""),
            timeout=30,
            what="the join command in up's output",
        )
        words = line.split()
        port = cluster.info["ports"]["apiserver"]
        assert words[2:4] == ["--server", f"https://127.0.0.1:{port}"], line
        assert words[6] == "--discovery-token-ca-cert-hash", line
        assert words[7] == bt.ca_cert_hash((data / "pki" / "ca.pem").read_bytes())
        node = f"upjoin-{os.urandom(3).hex()}"
        done = k8slite(
            *words[1:],
            "--node-name",
            node,
            "--data-dir",
            str(node_data),
            "--runtime",
            "fake",
            "--kubelet-port",
            "0",
            "--no-proxy",
        )
        assert done.returncode == 0, done.stdout + done.stderr
        nodes = cluster.kubectl("get", "nodes", "--no-headers").stdout
        assert any(row.split()[:2] == [node, "Ready"] for row in nodes.splitlines()), nodes
        # What a restart of `k8slite up` does: the previous command again while its token
        # lasts (none piles up), a new token for another server.
        url = f"https://127.0.0.1:{port}"
        same = trio.run(create_join_command, url, data / "pki", words[3], line.strip())
        assert same == line.strip()
        other = trio.run(create_join_command, url, data / "pki", "https://10.0.0.1:6443", line)
        assert other.split()[3] == "https://10.0.0.1:6443" and other.split()[5] != words[5]
    finally:
        info = runstate.read(node_data)
        if info is not None and info.running():
            k8slite("stop", "--data-dir", str(node_data))
        stop_up(cluster)
