"""Tests of the cluster PKI: files, identities, idempotence, and mTLS with Python clients."""

from __future__ import annotations

import base64
import http.client
import ipaddress
import os
import socket
import ssl
import stat
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from k8slite import pki
from tests.mtls import VersionHandler, kubeconfig_for, version_server

REPO = Path(__file__).resolve().parents[2]
NODES = ("node1", "node-2.example")

COMPONENTS = ["admin", "controller-manager", "scheduler", "proxy", "dns", "metrics-server"]
CLIENTS = {
    # name: (CN, O)
    "admin": ("admin", ["system:masters"]),
    "controller-manager": ("system:kube-controller-manager", []),
    "scheduler": ("system:kube-scheduler", []),
    "proxy": ("system:kube-proxy", []),
    "dns": (
        "system:serviceaccount:kube-system:kube-dns",
        ["system:serviceaccounts", "system:serviceaccounts:kube-system"],
    ),
    "metrics-server": (
        "system:serviceaccount:kube-system:metrics-server",
        ["system:serviceaccounts", "system:serviceaccounts:kube-system"],
    ),
    "front-proxy-client": ("front-proxy-client", []),
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ["system:masters"]),
    **{f"node-{n}": (f"system:node:{n}", ["system:nodes"]) for n in NODES},
}
KUBECONFIGS = [*COMPONENTS, *(f"node-{n}" for n in NODES)]


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cluster") / "pki"
    pki.ensure_pki(path, nodes=NODES, sans=["192.0.2.7", "API.Example.com", "[2001:db8::1]"])
    return path


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def orgs(cert: x509.Certificate) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]


def eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(ext.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}
    return dns, ips


def snapshot(path: Path) -> dict[str, tuple[bytes, int, int]]:
    return {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns, stat.S_IMODE(p.stat().st_mode))
        for p in sorted(path.iterdir())
    }


def expected_files(nodes: tuple[str, ...] = NODES) -> set[str]:
    users = [*COMPONENTS, *(f"node-{n}" for n in nodes)]
    clients = [*users, "apiserver-kubelet-client", "front-proxy-client"]
    stems = ["ca", "server", *(f"kubelet-{n}" for n in nodes), *(f"client-{c}" for c in clients)]
    files = {f"{s}.{ext}" for s in stems for ext in ("pem", "key")}
    # sa.key signs service-account tokens, sa.pub verifies them.
    return files | {f"{u}.kubeconfig" for u in users} | {"sa.key", "sa.pub"}


def listing(path: Path) -> set[str]:
    return {p.name for p in path.iterdir() if not p.name.startswith(".")}


def test_files_and_modes(pki_dir: Path) -> None:
    assert listing(pki_dir) == expected_files()
    assert stat.S_IMODE(pki_dir.stat().st_mode) == 0o700
    for path in pki_dir.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.suffix in (".key", ".kubeconfig"):
            assert mode == 0o600, path.name
        elif path.suffix in (".pem", ".pub"):
            assert mode == 0o644, path.name


def test_service_account_key_pair(pki_dir: Path) -> None:
    """An RSA key as kubeadm makes, its public half beside it; kept by every later run."""
    key_path, pub_path = pki.service_account_key_paths(pki_dir)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert pub_path.read_bytes() == key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    before = key_path.read_bytes()
    pub_path.unlink()
    assert pki.ensure_service_account_key(pki_dir) == [pub_path]
    assert key_path.read_bytes() == before and pub_path.exists()


def test_second_run_changes_nothing(pki_dir: Path) -> None:
    before = snapshot(pki_dir)
    written = pki.ensure_pki(
        pki_dir, nodes=NODES, sans=["192.0.2.7", "API.Example.com", "[2001:db8::1]"]
    )
    assert written == []
    assert snapshot(pki_dir) == before


def test_ca(pki_dir: Path) -> None:
    ca = load_cert(pki_dir / "ca.pem")
    assert ca.subject == ca.issuer
    ca.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert timedelta(days=3649) < lifetime < timedelta(days=3651)


def test_every_certificate_chains_to_the_ca_and_matches_its_key(pki_dir: Path) -> None:
    ca = load_cert(pki_dir / "ca.pem")
    now = datetime.now(UTC)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    for path in pki_dir.glob("*.pem"):
        if path.name == "ca.pem":
            continue
        cert = load_cert(path)
        cert.verify_directly_issued_by(ca)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        # Backdated for clock skew, valid for about a year.
        assert cert.not_valid_before_utc <= now - timedelta(minutes=2)
        assert timedelta(days=364) < cert.not_valid_after_utc - now <= timedelta(days=365)
        key = serialization.load_pem_private_key(path.with_suffix(".key").read_bytes(), None)
        assert key.public_key().public_bytes(der, spki) == cert.public_key().public_bytes(der, spki)


def test_server_certificate(pki_dir: Path) -> None:
    cert = load_cert(pki_dir / "server.pem")
    assert eku(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    dns, ips = sans(cert)
    assert {
        "localhost",
        socket.gethostname().lower(),
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "api.example.com",
    } <= dns
    assert {"127.0.0.1", "::1", "10.96.0.1", "192.0.2.7", "2001:db8::1"} <= ips


@pytest.mark.parametrize("node", NODES)
def test_kubelet_serving_certificate(pki_dir: Path, node: str) -> None:
    cert = load_cert(pki_dir / f"kubelet-{node}.pem")
    assert eku(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert (cn(cert), orgs(cert)) == (f"system:node:{node}", ["system:nodes"])
    dns, ips = sans(cert)
    assert {"localhost", node, socket.gethostname().lower()} <= dns
    assert {"127.0.0.1", "::1"} <= ips


@pytest.mark.parametrize("name", CLIENTS)
def test_client_certificate(pki_dir: Path, name: str) -> None:
    cert = load_cert(pki_dir / f"client-{name}.pem")
    assert (cn(cert), orgs(cert)) == CLIENTS[name]
    assert eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]


@pytest.mark.parametrize("name", KUBECONFIGS)
def test_kubeconfig_structure(pki_dir: Path, name: str) -> None:
    config = yaml.safe_load((pki_dir / f"{name}.kubeconfig").read_text())
    assert config["apiVersion"] == "v1" and config["kind"] == "Config"
    assert config["current-context"] == "k8slite"
    [cluster] = config["clusters"]
    [context] = config["contexts"]
    [user] = config["users"]
    assert cluster["name"] == "k8slite"
    assert cluster["cluster"]["server"] == "https://127.0.0.1:8080"
    ca = base64.b64decode(cluster["cluster"]["certificate-authority-data"])
    assert ca == (pki_dir / "ca.pem").read_bytes()
    assert context == {"name": "k8slite", "context": {"cluster": "k8slite", "user": name}}
    assert user["name"] == name
    cert = base64.b64decode(user["user"]["client-certificate-data"])
    key = base64.b64decode(user["user"]["client-key-data"])
    assert cert == (pki_dir / f"client-{name}.pem").read_bytes()
    assert key == (pki_dir / f"client-{name}.key").read_bytes()


def test_new_san_reissues_only_the_server_certificate(tmp_path: Path) -> None:
    pki.ensure_pki(tmp_path, nodes=["node1"])
    before = snapshot(tmp_path)
    written = pki.ensure_pki(tmp_path, nodes=["node1"], sans=["203.0.113.9"])
    # The extra SANs go to the API server and the kubelets, nothing else changes.
    assert {p.name for p in written} == {
        "server.pem",
        "server.key",
        "kubelet-node1.pem",
        "kubelet-node1.key",
    }
    after = snapshot(tmp_path)
    for name in before.keys() - {p.name for p in written}:
        assert after[name] == before[name], name
    assert "203.0.113.9" in sans(load_cert(tmp_path / "server.pem"))[1]


def test_server_url_host_is_a_san_and_lands_in_kubeconfigs(tmp_path: Path) -> None:
    pki.ensure_pki(tmp_path)
    written = pki.ensure_pki(tmp_path, server_url="https://cluster.test:6443")
    assert {p.name for p in written} == {
        "server.pem",
        "server.key",
        *(f"{k}.kubeconfig" for k in COMPONENTS),
    }
    assert "cluster.test" in sans(load_cert(tmp_path / "server.pem"))[0]
    config = yaml.safe_load((tmp_path / "admin.kubeconfig").read_text())
    assert config["clusters"][0]["cluster"]["server"] == "https://cluster.test:6443"


def test_added_node_gets_its_certificates(tmp_path: Path) -> None:
    pki.ensure_pki(tmp_path, nodes=["node1"])
    written = {p.name for p in pki.ensure_pki(tmp_path, nodes=["node1", "node2"])}
    assert written == {
        "kubelet-node2.pem",
        "kubelet-node2.key",
        "client-node-node2.pem",
        "client-node-node2.key",
        "node-node2.kubeconfig",
    }


def test_certificate_near_expiry_is_renewed(tmp_path: Path) -> None:
    pki.ensure_pki(tmp_path)
    pki.issue_client_cert(tmp_path, "admin", "admin", ["system:masters"], days=10)
    written = {p.name for p in pki.ensure_pki(tmp_path)}
    assert written == {"client-admin.pem", "client-admin.key", "admin.kubeconfig"}
    cert = load_cert(tmp_path / "client-admin.pem")
    assert cert.not_valid_after_utc - datetime.now(UTC) > timedelta(days=360)


def test_damaged_leaf_is_reissued(tmp_path: Path) -> None:
    pki.ensure_pki(tmp_path)
    (tmp_path / "client-scheduler.key").unlink()
    (tmp_path / "server.pem").write_text("garbage")
    written = {p.name for p in pki.ensure_pki(tmp_path)}
    assert written == {
        "client-scheduler.pem",
        "client-scheduler.key",
        "scheduler.kubeconfig",
        "server.pem",
        "server.key",
    }


def test_loose_key_mode_is_tightened(tmp_path: Path) -> None:
    pki.ensure_pki(tmp_path)
    os.chmod(tmp_path / "ca.key", 0o644)
    os.chmod(tmp_path / "admin.kubeconfig", 0o640)
    assert pki.ensure_pki(tmp_path) == []
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "admin.kubeconfig").stat().st_mode) == 0o600


def test_damaged_ca_is_never_replaced(tmp_path: Path) -> None:
    pki.ensure_pki(tmp_path)
    (tmp_path / "ca.key").unlink()
    with pytest.raises(pki.PKIError, match="not a matching certificate and key"):
        pki.ensure_pki(tmp_path)
    assert not (tmp_path / "ca.key").exists()


def test_issue_client_cert_for_a_new_user(pki_dir: Path) -> None:
    cert_path, key_path = pki.issue_client_cert(pki_dir, "alice", "alice", ["dev", "ops"])
    assert (cert_path.name, key_path.name) == ("client-alice.pem", "client-alice.key")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = load_cert(cert_path)
    cert.verify_directly_issued_by(load_cert(pki_dir / "ca.pem"))
    assert (cn(cert), orgs(cert)) == ("alice", ["dev", "ops"])
    assert eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_issue_expired_client_cert(pki_dir: Path) -> None:
    now = datetime.now(UTC)
    cert_path, _ = pki.issue_client_cert(
        pki_dir, "expired", "old", not_before=now - timedelta(days=2), days=1
    )
    cert = load_cert(cert_path)
    assert cert.not_valid_after_utc < now
    cert.verify_directly_issued_by(load_cert(pki_dir / "ca.pem"))


def test_issue_client_cert_needs_a_ca(tmp_path: Path) -> None:
    with pytest.raises(pki.PKIError, match="no CA"):
        pki.issue_client_cert(tmp_path, "bob", "bob")
    with pytest.raises(pki.PKIError, match="no PKI directory"):
        pki.issue_client_cert(tmp_path / "missing", "bob", "bob")


def test_write_kubeconfig_is_idempotent(pki_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "alice.kubeconfig"
    args = (
        "https://127.0.0.1:1",
        (pki_dir / "ca.pem").read_bytes(),
        (pki_dir / "client-admin.pem").read_bytes(),
        (pki_dir / "client-admin.key").read_bytes(),
        "alice",
    )
    pki.write_kubeconfig(path, *args)
    mtime = path.stat().st_mtime_ns
    pki.write_kubeconfig(path, *args)
    assert path.stat().st_mtime_ns == mtime
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert yaml.safe_load(path.read_text())["users"][0]["name"] == "alice"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.1", x509.IPAddress(ipaddress.ip_address("10.0.0.1"))),
        ("[fd00::1]", x509.IPAddress(ipaddress.ip_address("fd00::1"))),
        ("Host.Example", x509.DNSName("host.example")),
        ("*.apps.example", x509.DNSName("*.apps.example")),
    ],
)
def test_parse_san(value: str, expected: x509.GeneralName) -> None:
    assert pki.parse_san(value) == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"nodes": ["Node_1"]},
        {"nodes": ["../etc"]},
        {"sans": ["not a name"]},
        {"server_url": "http://127.0.0.1:8080"},
    ],
)
def test_bad_arguments_are_rejected(tmp_path: Path, kwargs: dict[str, list[str] | str]) -> None:
    with pytest.raises(ValueError):
        pki.ensure_pki(tmp_path / "pki", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "pki").exists()


def test_certs_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "pki"
    assert pki.certs_main(["--dir", str(target), "--san", "198.51.100.1"]) == 0
    assert "wrote 33 files" in capsys.readouterr().out
    # The default node is node1, as in the multi-process cluster.
    assert (target / "node-node1.kubeconfig").exists()
    assert pki.certs_main(["--dir", str(target), "--san", "198.51.100.1"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert pki.certs_main(["--dir", str(target), "--server", "ftp://x"]) == 1
    assert "error: server URL" in capsys.readouterr().err


def test_gen_certs_script(tmp_path: Path) -> None:
    result = subprocess.run(
        [REPO / "hack" / "gen-certs", "pki", "--node", "worker-1"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert listing(tmp_path / "pki") == expected_files(("worker-1",))


# --- mTLS against a real HTTPS server, with the official client and Python's ssl ---
# (kubectl against the same server: tests/integration/test_pki_kubectl.py)


@pytest.fixture
def mtls_server(pki_dir: Path) -> Iterator[str]:
    """An HTTPS server on an ephemeral loopback port that requires a client certificate."""
    with version_server(pki_dir) as url:
        yield url


def test_kubernetes_client_mtls(pki_dir: Path, mtls_server: str, tmp_path: Path) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    kubeconfig = kubeconfig_for(pki_dir, "node-node1", mtls_server, tmp_path)
    api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    try:
        assert kubernetes.client.VersionApi(api).get_code().git_version == "v1.35.0"
    finally:
        api.close()
    assert VersionHandler.peers[-1] == ("system:node:node1", ["system:nodes"])


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_strict_python_tls_client(pki_dir: Path, mtls_server: str, host: str) -> None:
    ctx = ssl.create_default_context(cafile=pki_dir / "ca.pem")
    # The checks Python 3.13 turns on by default: our chain must pass them already.
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.load_cert_chain(pki_dir / "client-scheduler.pem", pki_dir / "client-scheduler.key")
    port = int(mtls_server.rsplit(":", 1)[1])
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=30)
    try:
        conn.request("GET", "/version")
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    assert VersionHandler.peers[-1] == ("system:kube-scheduler", [])


def test_expired_client_cert_is_refused(pki_dir: Path, mtls_server: str) -> None:
    now = datetime.now(UTC)
    cert_path, key_path = pki.issue_client_cert(
        pki_dir, "stale", "stale", not_before=now - timedelta(days=3), days=1
    )
    ctx = ssl.create_default_context(cafile=pki_dir / "ca.pem")
    ctx.load_cert_chain(cert_path, key_path)
    port = int(mtls_server.rsplit(":", 1)[1])
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    # TLS 1.3 sends the server's rejection of the client certificate after the handshake,
    # so it surfaces on the first read rather than on connect.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        conn.request("GET", "/version")
        conn.getresponse()
    conn.close()


def test_certs_command_starts_without_warnings(tmp_path: Path) -> None:
    # PYTHONWARNINGS=error turns any warning at import or run time (DSA's deprecation, say)
    # into a failure of the console script itself.
    env = {**os.environ, "PYTHONPATH": str(REPO / "python"), "PYTHONWARNINGS": "error"}
    result = subprocess.run(
        [REPO / ".venv" / "bin" / "k8slite", "certs", "--dir", tmp_path / "pki"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr
    assert (tmp_path / "pki" / "ca.key").exists()
