"""The kubelet's client certificate: rotation deadline, the files it writes, and the API
client loading a rotated certificate again."""

from __future__ import annotations

import random
import ssl
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from k8slite.client import kubeconfig
from k8slite.client.kubeconfig import ClientCertReloader
from k8slite.kubelet import clientcert


def _cert(key: object, start: datetime, end: datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "system:node:n1")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )


def test_rotation_deadline_is_70_to_90_percent_of_life() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    key = clientcert.new_key()
    # Backdated 5 minutes by the signer: the life counts from when it was written.
    cert = _cert(key, now - timedelta(minutes=5), now + timedelta(seconds=100))
    rng = random.Random(1)
    for _ in range(200):
        at = clientcert.rotation_deadline(cert, now, rng)
        assert now + timedelta(seconds=70) <= at < now + timedelta(seconds=90)
    # A year-long one: upstream's 70-90% from notBefore, to within the backdate.
    year = _cert(key, now - timedelta(minutes=5), now + timedelta(days=365))
    at = clientcert.rotation_deadline(year, now - timedelta(minutes=5), rng)
    assert now + timedelta(days=255) < at < now + timedelta(days=329)


def test_csr_request_is_a_node_client_request() -> None:
    req = x509.load_pem_x509_csr(clientcert.request_pem("n1", clientcert.new_key()))
    assert req.subject.rfc4514_string() == "CN=system:node:n1,O=system:nodes"
    assert clientcert.csr_name(clientcert.request_pem("n1", clientcert.new_key())).startswith(
        "node-csr-"
    )


def test_write_current_swaps_the_symlink_and_keeps_two(tmp_path: Path) -> None:
    key = clientcert.new_key()
    now = datetime.now(UTC)
    pems = []
    for _ in range(3):
        cert = _cert(key, now, now + timedelta(hours=1))
        pems.append(cert.public_bytes(serialization.Encoding.PEM))
        current = clientcert.write_current(tmp_path, pems[-1], clientcert.key_pem(key))
        time.sleep(0.001)
    assert current.is_symlink() and oct(current.stat().st_mode & 0o777) == "0o600"
    assert current.read_bytes().startswith(pems[-1])
    assert len(list(tmp_path.glob("kubelet-client-2*.pem"))) == 2
    loaded = clientcert.load_current(tmp_path)
    assert loaded is not None


def test_reloader_loads_a_changed_certificate(tmp_path: Path, monkeypatch: object) -> None:
    key = clientcert.new_key()
    now = datetime.now(UTC)
    pem = _cert(key, now, now + timedelta(hours=1)).public_bytes(serialization.Encoding.PEM)
    current = clientcert.write_current(tmp_path, pem, clientcert.key_pem(key))
    ctx = ssl.create_default_context()
    ctx.load_cert_chain(current)
    reloader = ClientCertReloader(ctx, current, current)
    monkeypatch.setattr(kubeconfig, "CERT_FILE_PERIOD", 0.0)  # type: ignore[attr-defined]
    assert not reloader.check()
    key2 = clientcert.new_key()
    pem2 = _cert(key2, now, now + timedelta(hours=1)).public_bytes(serialization.Encoding.PEM)
    clientcert.write_current(tmp_path, pem2, clientcert.key_pem(key2))
    assert reloader.check()
    assert not reloader.check()


def test_kubeconfig_naming_files_is_reloadable(tmp_path: Path) -> None:
    key = clientcert.new_key()
    now = datetime.now(UTC)
    ca = _cert(key, now, now + timedelta(hours=1)).public_bytes(serialization.Encoding.PEM)
    current = clientcert.write_current(tmp_path, ca, clientcert.key_pem(key))
    path = tmp_path / "kubelet.kubeconfig"
    path.write_text(clientcert.kubeconfig_yaml("https://127.0.0.1:1", ca, "n1", current))
    config = kubeconfig.load_kubeconfig(path)
    assert config.client_cert_file == current and config.client_key_file == current
