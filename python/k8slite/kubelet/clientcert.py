"""The kubelet's client certificate: TLS bootstrap and rotation, as upstream's kubelet does.

TLS bootstrap: with a bootstrap kubeconfig (a bootstrap token), the kubelet makes a key,
asks for a certificate with a CertificateSigningRequest for signer
kubernetes.io/kube-apiserver-client-kubelet (CN system:node:NAME, O system:nodes), waits
until csrapproving approves it and csrsigning issues it, and writes the certificate and key
as one file CERT_DIR/kubelet-client-<time>.pem, pointed at by the symlink
kubelet-client-current.pem, which its kubeconfig names.

Rotation: at a random point between 70% and 90% of the certificate's lifetime the kubelet
asks again, now as the node itself (csrapproving approves a node's request for its own
identity: selfnodeclient), writes the new pair and swaps the symlink; its API client loads
the new files for the connections it makes next (client.kubeconfig.ClientCertReloader).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trio
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from k8slite.api.certificates_v1 import (
    APPROVED,
    DENIED,
    FAILED,
    KUBE_APISERVER_CLIENT_KUBELET,
    KUBELET_SERVING,
)
from k8slite.client import ApiClient, ApiConnectionError, ApiError, ClientConfig, NotFound
from k8slite.client.resource import Resource

log = logging.getLogger(__name__)

CSRS = Resource("certificates.k8s.io", "v1", "certificatesigningrequests")
CURRENT = "kubelet-client-current.pem"
NODES_GROUP = "system:nodes"
# ECDSA keys: no key encipherment (upstream's usages for them).
USAGES = ["digital signature", "client auth"]
SERVING_USAGES = ["digital signature", "server auth"]
# Upstream's jitter: rotate somewhere in [70%, 90%) of the lifetime.
ROTATE_FROM, ROTATE_SPREAD = 0.7, 0.2
# How often a pending request is looked at, and how long a failed rotation waits to retry.
POLL = 0.2
RETRY_START, RETRY_MAX = 1.0, 60.0


class BootstrapError(Exception):
    """The certificate was not issued: denied, failed, or not in time; the message says."""


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def request_pem(
    node: str, key: ec.EllipticCurvePrivateKey, sans: list[x509.GeneralName] | None = None
) -> bytes:
    """CN system:node:NODE, O system:nodes; `sans` for a serving certificate."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, NODES_GROUP),
            x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}"),
        ]
    )
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def csr_name(req_pem: bytes) -> str:
    """node-csr-<digest of the request>, as the kubelet's bootstrap names its request (the
    same key and subject name the same request, so a retry finds it again)."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(req_pem).digest()).decode().rstrip("=")
    return "node-csr-" + digest.replace("_", "-").lower()[:40].rstrip("-")


async def request_certificate(
    client: ApiClient,
    node: str,
    key: ec.EllipticCurvePrivateKey,
    timeout: float,
    name: str | None = None,
) -> bytes:
    """Create the CSR for node's client certificate with `key`, wait until it is issued;
    the certificate's PEM. BootstrapError when denied, failed, or not issued in time."""
    req = request_pem(node, key)
    return await _request(
        client, name or csr_name(req), req, KUBE_APISERVER_CLIENT_KUBELET, USAGES, node, timeout
    )


async def request_serving_certificate(
    client: ApiClient, node: str, ips: list[str], timeout: float
) -> tuple[bytes, bytes]:
    """The kubelet's serving certificate (upstream's serverTLSBootstrap), asked for as the
    node: signer kubernetes.io/kubelet-serving, SANs the node's name and addresses (which
    csrapproving checks against the Node before it approves). (certificate PEM, key PEM)."""
    import ipaddress

    key = new_key()
    sans: list[x509.GeneralName] = [x509.DNSName(node)]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    req = request_pem(node, key, sans)
    name = "csr-" + csr_name(req).removeprefix("node-csr-")
    cert = await _request(client, name, req, KUBELET_SERVING, SERVING_USAGES, node, timeout)
    return cert, key_pem(key)


async def _request(
    client: ApiClient,
    name: str,
    req: bytes,
    signer: str,
    usages: list[str],
    node: str,
    timeout: float,
) -> bytes:
    body = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(req).decode(),
            "signerName": signer,
            "usages": usages,
        },
    }
    await client.create(CSRS, body)
    log.info("created CertificateSigningRequest %s for system:node:%s (%s)", name, node, signer)
    with trio.move_on_after(timeout):
        while True:
            try:
                csr = await client.get(CSRS, name)
            except NotFound:
                raise BootstrapError(f"CertificateSigningRequest {name} was deleted") from None
            status = csr.get("status") or {}
            conditions = {c.get("type"): c for c in status.get("conditions") or ()}
            for kind, what in ((DENIED, "denied"), (FAILED, "failed")):
                if kind in conditions:
                    c = conditions[kind]
                    raise BootstrapError(
                        f"CertificateSigningRequest {name} was {what}: "
                        f"{c.get('reason', '')} {c.get('message', '')}".rstrip()
                    )
            if status.get("certificate"):
                return base64.b64decode(status["certificate"])
            await trio.sleep(POLL)
    approved = "approved but not issued" if APPROVED in conditions else "not approved"
    raise BootstrapError(
        f"CertificateSigningRequest {name} was {approved} within {timeout:.0f}s: is the "
        "controller manager running csrapproving and csrsigning (with "
        "--cluster-signing-cert-file), and is the token's group bound to "
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient?"
    )


def write_current(cert_dir: Path, cert_pem: bytes, key: bytes) -> Path:
    """Write cert and key to kubelet-client-<time>.pem (0600) and point
    kubelet-client-current.pem at it, atomically; the current path."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d-%H-%M-%S-%f")
    dated = cert_dir / f"kubelet-client-{stamp}.pem"
    fd = os.open(dated, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(cert_pem.rstrip(b"\n") + b"\n" + key)
    current = cert_dir / CURRENT
    tmp = cert_dir / f".{CURRENT}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(dated.name)
    os.replace(tmp, current)
    # Only the one in use and the one before it are kept.
    for old in sorted(cert_dir.glob("kubelet-client-2*.pem"))[:-2]:
        old.unlink(missing_ok=True)
    return current


def load_current(cert_dir: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate((cert_dir / CURRENT).read_bytes())
    except (OSError, ValueError):
        return None


def kubeconfig_yaml(server: str, ca_pem: bytes, node: str, current: Path) -> str:
    """The kubelet's kubeconfig: the CA embedded, the rotating certificate by file name."""
    user = f"system:node:{node}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "default-cluster",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(current), "client-key": str(current)},
            }
        ],
        "contexts": [
            {"name": "default-context", "context": {"cluster": "default-cluster", "user": user}}
        ],
        "current-context": "default-context",
    }
    return yaml.safe_dump(doc, sort_keys=False)


def bootstrap_kubeconfig_yaml(server: str, ca_pem: bytes, token: str) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "default-cluster",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": "tls-bootstrap-token-user", "user": {"token": token}}],
        "contexts": [
            {
                "name": "tls-bootstrap-token-user@kubernetes",
                "context": {"cluster": "default-cluster", "user": "tls-bootstrap-token-user"},
            }
        ],
        "current-context": "tls-bootstrap-token-user@kubernetes",
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner reads (it holds a key or a token), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def rotation_deadline(cert: x509.Certificate, issued: datetime, rng: random.Random) -> datetime:
    """When to ask for the next certificate: 70-90% into its life (upstream's jitter).

    Upstream counts the life from notBefore, which the signer backdates 5 minutes against
    clock skew; k8slite counts it from when the certificate was written here (`issued`,
    never before notBefore), which for a year-long certificate is the same to within
    minutes and lets a certificate of seconds (--cluster-signing-duration, in tests)
    rotate at 70-90% of the seconds it was given rather than at once.
    """
    start = min(max(cert.not_valid_before_utc, issued), cert.not_valid_after_utc)
    life = (cert.not_valid_after_utc - start).total_seconds()
    return start + timedelta(seconds=life * (ROTATE_FROM + ROTATE_SPREAD * rng.random()))


async def rotate_forever(client: ApiClient, cert_dir: Path, node: str, timeout: float) -> None:
    """Renew CERT_DIR/kubelet-client-current.pem before it expires, forever, with `client`
    (whose credentials are that very certificate)."""
    rng = random.Random()
    delay = RETRY_START
    while True:
        current = load_current(cert_dir)
        if current is None:
            log.warning("no client certificate at %s to rotate", cert_dir / CURRENT)
            await trio.sleep(RETRY_MAX)
            continue
        try:
            written = datetime.fromtimestamp((cert_dir / CURRENT).stat().st_mtime, UTC)
        except OSError:
            written = current.not_valid_before_utc
        deadline = rotation_deadline(current, written, rng)
        wait = (deadline - datetime.now(UTC)).total_seconds()
        log.info(
            "client certificate expires %s; rotating at %s (in %.1fs)",
            current.not_valid_after_utc.isoformat(),
            deadline.isoformat(),
            max(0.0, wait),
        )
        await trio.sleep(max(0.0, wait))
        key = new_key()
        try:
            cert_pem = await request_certificate(client, node, key, timeout, name=_rotation_name())
        except (BootstrapError, ApiError, ApiConnectionError) as e:
            log.error("client certificate rotation failed: %s; retrying in %.0fs", e, delay)
            await trio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
            continue
        delay = RETRY_START
        write_current(cert_dir, cert_pem, key_pem(key))
        log.info("rotated the client certificate: %s", cert_dir / CURRENT)


def _rotation_name() -> str:
    # Upstream's renewals use generateName "csr-"; a random suffix of our own does the same.
    return f"csr-{os.urandom(4).hex()}{int(time.time()) % 100000:05d}"


def usable(cert_dir: Path, kubeconfig: Path) -> bool:
    """Whether the kubelet already has a kubeconfig and a certificate still valid."""
    cert = load_current(cert_dir)
    return kubeconfig.exists() and cert is not None and cert.not_valid_after_utc > datetime.now(UTC)


async def bootstrap(
    bootstrap_config: ClientConfig, kubeconfig: Path, cert_dir: Path, node: str, timeout: float
) -> Path:
    """TLS bootstrap: a client certificate for the node through a CSR made with the
    bootstrap credentials, then the kubeconfig that uses it; the kubeconfig's path."""
    key = new_key()
    async with ApiClient(bootstrap_config) as client:
        cert_pem = await request_certificate(client, node, key, timeout)
    current = write_current(cert_dir, cert_pem, key_pem(key))
    write_private(
        kubeconfig,
        kubeconfig_yaml(bootstrap_config.server, bootstrap_config.ca_data or b"", node, current),
    )
    log.info("wrote %s with the client certificate %s", kubeconfig, current)
    return kubeconfig
