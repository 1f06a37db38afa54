"""Cluster PKI: the CA, component certificates and kubeconfigs, created once per data dir."""

from __future__ import annotations

import argparse
import base64
import fcntl
import ipaddress
import os
import re
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from k8slite import datadir

CLUSTER_NAME = "k8slite"
DEFAULT_SERVER_URL = "https://127.0.0.1:8080"
DEFAULT_PKI_DIR = Path(".k8slite/pki")
# The seed's multi-process cluster runs one kubelet with this name.
DEFAULT_NODES = ("node1",)
# First address of the default service range 10.96.0.0/12: pods reach the API server there
# through the "kubernetes" Service, so it belongs in the serving certificate.
KUBERNETES_SERVICE_IP = "10.96.0.1"
KUBERNETES_SERVICE_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
CA_DAYS = 3650
CERT_DAYS = 365
# Clocks of other hosts and containers may lag a little behind the one that signs.
BACKDATE = timedelta(minutes=5)
# ensure_pki reissues a certificate that would expire sooner than this, so a cluster that is
# restarted now and then never meets an expired certificate.
RENEW_BEFORE = timedelta(days=30)

SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
KEY_MODE = 0o600
CERT_MODE = 0o644

# A Kubernetes node name is a DNS-1123 subdomain; it also ends up in file names here.
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_NAME = re.compile(
    r"^(\*\.)?[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$"
)
_LOOPBACK_SANS: tuple[x509.GeneralName, ...] = (
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    x509.IPAddress(ipaddress.ip_address("::1")),
)

KeyPair = tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]
# One extended key usage, or several (etcd's serving certificate is a client one too).
Usage = x509.ObjectIdentifier | tuple[x509.ObjectIdentifier, ...]
# Key types that can sign certificates: ours are EC, a CA brought along may be any of these.
# Not DSA: Go's crypto/x509 (so upstream's components) signs no certificate with it, and
# cryptography deprecates it (merely naming its key type warns on every start).
_SIGNING_KEY_TYPES = (
    ec.EllipticCurvePrivateKey,
    rsa.RSAPrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)


class PKIError(Exception):
    """The PKI directory has no usable CA, and making a new one on the quiet would be wrong."""


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate: files client-<name>.pem/.key and, if wanted, <name>.kubeconfig."""

    name: str
    common_name: str
    organizations: tuple[str, ...] = ()
    kubeconfig: bool = True


def client_identities(nodes: Sequence[str] = ()) -> list[ClientIdentity]:
    """The upstream user and group names each component authenticates as."""
    identities = [
        ClientIdentity("admin", "admin", ("system:masters",)),
        ClientIdentity("controller-manager", "system:kube-controller-manager"),
        ClientIdentity("scheduler", "system:kube-scheduler"),
        ClientIdentity("proxy", "system:kube-proxy"),
        # Upstream's DNS runs as the ServiceAccount kube-system/kube-dns; the certificate
        # names that account, so upstream's system:kube-dns binding applies as it is.
        ClientIdentity(
            "dns",
            "system:serviceaccount:kube-system:kube-dns",
            ("system:serviceaccounts", "system:serviceaccounts:kube-system"),
        ),
        # Upstream's metrics-server runs as the ServiceAccount kube-system/metrics-server.
        ClientIdentity(
            "metrics-server",
            "system:serviceaccount:kube-system:metrics-server",
            ("system:serviceaccounts", "system:serviceaccounts:kube-system"),
        ),
        # The API server presents this one to aggregated API servers (the front proxy's
        # --proxy-client-cert-file), vouching for the user in X-Remote-User/X-Remote-Group.
        ClientIdentity("front-proxy-client", "front-proxy-client", kubeconfig=False),
        # The API server presents this one to kubelets (logs, exec, port-forward); it is
        # passed as --kubelet-client-certificate, never used through a kubeconfig.
        ClientIdentity(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            ("system:masters",),
            kubeconfig=False,
        ),
    ]
    identities += [
        ClientIdentity(f"node-{node}", f"system:node:{node}", ("system:nodes",)) for node in nodes
    ]
    return identities


def cert_paths(pki_dir: Path, stem: str) -> tuple[Path, Path]:
    """The certificate and key files of `stem` ("ca", "server", "client-admin", "kubelet-node1")."""
    pki_dir = Path(pki_dir)
    return pki_dir / f"{stem}.pem", pki_dir / f"{stem}.key"


def kubeconfig_path(pki_dir: Path, name: str) -> Path:
    """The kubeconfig of identity `name` ("admin", "scheduler", "node-node1", ...)."""
    return Path(pki_dir) / f"{name}.kubeconfig"


def parse_san(value: str) -> x509.GeneralName:
    """An IP address SAN if `value` is one (IPv6 may be bracketed), else a DNS name SAN."""
    text = value.strip()
    try:
        return x509.IPAddress(ipaddress.ip_address(text.removeprefix("[").removesuffix("]")))
    except ValueError:
        pass
    if not _DNS_NAME.match(text) or len(text) > 253:
        raise ValueError(
            f"subject alternative name {value!r} is neither an IP address nor a DNS name"
        )
    return x509.DNSName(text.lower())


def ensure_pki(
    pki_dir: Path,
    *,
    nodes: Sequence[str] = (),
    sans: Sequence[str] = (),
    server_url: str = DEFAULT_SERVER_URL,
) -> list[Path]:
    """Create whatever of the cluster PKI is missing or unfit in `pki_dir`; keep the rest.

    A certificate is kept while it chains to the CA, matches its key, has the wanted subject,
    usage and SANs, and is valid for more than RENEW_BEFORE; otherwise it is reissued. So a
    second run with the same arguments changes nothing, and a new `sans` entry or node takes
    effect without a reset. An existing CA is never replaced. Returns the files written.
    """
    pki_dir = Path(pki_dir)
    for node in nodes:
        _check_node_name(node)
    server_host = _server_host(server_url)
    extra_sans = [parse_san(s) for s in sans]
    host = _hostname_san()
    secure_dir(pki_dir)
    written: list[Path] = []
    with _locked(pki_dir):
        ca = _ensure_ca(pki_dir, written)
        _ensure_service_account_key(pki_dir, written)
        server_sans = [
            *_LOOPBACK_SANS,
            *host,
            x509.IPAddress(ipaddress.ip_address(KUBERNETES_SERVICE_IP)),
            *(x509.DNSName(name) for name in KUBERNETES_SERVICE_NAMES),
            parse_san(server_host),
            *extra_sans,
        ]
        server = _name("kube-apiserver")
        _ensure_leaf(pki_dir, "server", ca, server, SERVER_AUTH, server_sans, written)
        for node in nodes:
            kubelet = _name(f"system:node:{node}", ("system:nodes",))
            kubelet_sans = [*_LOOPBACK_SANS, x509.DNSName(node), *host, *extra_sans]
            _ensure_leaf(
                pki_dir, f"kubelet-{node}", ca, kubelet, SERVER_AUTH, kubelet_sans, written
            )
        ca_pem = cert_paths(pki_dir, "ca")[0].read_bytes()
        for ident in client_identities(nodes):
            stem = f"client-{ident.name}"
            subject = _name(ident.common_name, ident.organizations)
            _ensure_leaf(pki_dir, stem, ca, subject, CLIENT_AUTH, (), written)
            if ident.kubeconfig:
                cert_path, key_path = cert_paths(pki_dir, stem)
                path = kubeconfig_path(pki_dir, ident.name)
                data = _kubeconfig_bytes(
                    server_url, ca_pem, cert_path.read_bytes(), key_path.read_bytes(), ident.name
                )
                if _write_if_changed(path, data, KEY_MODE):
                    written.append(path)
    return written


# etcd's certificates, as kubeadm names them: the members' serving (and peer) certificate,
# and the API server's client certificate.
ETCD_SERVER = "etcd-server"
ETCD_CLIENT = "apiserver-etcd-client"


def ensure_etcd_pki(pki_dir: Path, sans: Sequence[str] = ()) -> list[Path]:
    """etcd's certificates from the cluster CA (made if missing); returns the files written.

    etcd's serving certificate carries client auth as well as server auth: its JSON gateway
    dials the member's own gRPC port presenting it, and members present it to each other.
    """
    pki_dir = Path(pki_dir)
    secure_dir(pki_dir)
    written: list[Path] = []
    with _locked(pki_dir):
        ca = _ensure_ca(pki_dir, written)
        server_sans = [*_LOOPBACK_SANS, *_hostname_san(), *(parse_san(s) for s in sans)]
        _ensure_leaf(
            pki_dir,
            ETCD_SERVER,
            ca,
            _name("kube-etcd"),
            (SERVER_AUTH, CLIENT_AUTH),
            server_sans,
            written,
        )
        client = _name("kube-apiserver-etcd-client")
        _ensure_leaf(pki_dir, ETCD_CLIENT, ca, client, CLIENT_AUTH, (), written)
    return written


def issue_client_cert(
    pki_dir: Path,
    name: str,
    common_name: str,
    organizations: Sequence[str] = (),
    days: int = CERT_DAYS,
    *,
    not_before: datetime | None = None,
) -> tuple[Path, Path]:
    """Sign a new client certificate for user `common_name` in groups `organizations`.

    Writes client-<name>.pem/.key in `pki_dir` (replacing any), signed by the CA there. The
    certificate is valid from `not_before` (default: now, backdated for clock skew) until
    `days` after it; tests make an expired one with e.g. not_before=now - 2 days, days=1.
    """
    pki_dir = Path(pki_dir)
    if "/" in name or name.startswith("."):
        raise ValueError(f"client name {name!r} must be a plain file name")
    now = datetime.now(UTC)
    start = not_before if not_before is not None else now - BACKDATE
    end = (not_before if not_before is not None else now) + timedelta(days=days)
    if end <= start:
        raise ValueError("the certificate would expire before it becomes valid")
    if not pki_dir.is_dir():
        raise PKIError(f"no PKI directory {pki_dir}: run `k8slite certs --dir {pki_dir}` first")
    with _locked(pki_dir):
        ca = _load_ca(pki_dir)
        if ca is None:
            raise PKIError(f"no CA in {pki_dir}: run `k8slite certs --dir {pki_dir}` first")
        key = _new_key()
        cert = _sign(
            _name(common_name, organizations),
            key.public_key(),
            ca[1],
            ca[0],
            start=start,
            end=end,
            usage=CLIENT_AUTH,
        )
        _write_pair(pki_dir, f"client-{name}", cert, key)
    return cert_paths(pki_dir, f"client-{name}")


def write_kubeconfig(
    path: Path, server_url: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, user: str
) -> None:
    """Write a single-context kubeconfig with the CA and client credentials embedded.

    Cluster and context are named "k8slite", the user `user`. The file is mode 0600 since
    it holds a private key, and is left untouched when its content would not change.
    """
    _write_if_changed(
        Path(path), _kubeconfig_bytes(server_url, ca_pem, cert_pem, key_pem, user), KEY_MODE
    )


def self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """A throwaway serving pair for `host` and loopback, as upstream's components make when
    given no --tls-cert-file: a leaf signed by its own one-off CA ("host-ca@time"), written
    to directory/serving.pem (leaf, then CA) and serving.key; returns those paths."""
    now = datetime.now(UTC)
    stamp = int(now.timestamp())
    start, end = now - BACKDATE, now + timedelta(days=CERT_DAYS)
    ca_key, key = _new_key(), _new_key()
    ca = _sign(_name(f"{host}-ca@{stamp}"), ca_key.public_key(), ca_key, None, start=start, end=end)
    try:
        sans = [parse_san(host), *_LOOPBACK_SANS]
    except ValueError:  # a host name that is no DNS name: loopback only
        sans = list(_LOOPBACK_SANS)
    subject = _name(f"{host}@{stamp}")
    leaf = _sign(
        subject, key.public_key(), ca_key, ca, start=start, end=end, usage=SERVER_AUTH, sans=sans
    )
    cert_path, key_path = directory / "serving.pem", directory / "serving.key"
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_atomic(key_path, key_pem, KEY_MODE)
    chain = leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(
        serialization.Encoding.PEM
    )
    _write_atomic(cert_path, chain, CERT_MODE)
    return cert_path, key_path


def certs_main(argv: list[str] | None = None) -> int:
    """`k8slite certs`: create the cluster PKI in --dir; existing valid files are kept."""
    parser = argparse.ArgumentParser(
        prog="k8slite certs",
        description="Create the cluster CA, component certificates and kubeconfigs. "
        "Existing files are kept while they are still valid and fit the arguments.",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_PKI_DIR,
        help=f"PKI directory (default: {DEFAULT_PKI_DIR})",
    )
    parser.add_argument(
        "--node",
        action="append",
        dest="nodes",
        metavar="NAME",
        help=f"node to issue kubelet certificates for; repeatable (default: {DEFAULT_NODES[0]})",
    )
    parser.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="NAME_OR_IP",
        help="extra subject alternative name of the API server and kubelets; repeatable",
    )
    parser.add_argument(
        "--server",
        default=DEFAULT_SERVER_URL,
        metavar="URL",
        help=f"API server URL written into the kubeconfigs (default: {DEFAULT_SERVER_URL})",
    )
    args = parser.parse_args(argv)
    try:
        written = ensure_pki(
            args.dir, nodes=args.nodes or DEFAULT_NODES, sans=args.san, server_url=args.server
        )
    except (PKIError, ValueError, OSError) as exc:
        print(f"k8slite certs: error: {exc}", file=sys.stderr)
        return 1
    if written:
        print(f"k8slite certs: wrote {len(written)} files in {args.dir}:")
        for path in written:
            print(f"  {path.name}")
    else:
        print(f"k8slite certs: {args.dir} is up to date")
    print(f"admin kubeconfig: {kubeconfig_path(args.dir, 'admin')}")
    return 0


def _check_node_name(node: str) -> None:
    if len(node) > 253 or not _NODE_NAME.match(node):
        raise ValueError(f"node name {node!r} is not a lowercase RFC 1123 subdomain")


def _server_host(server_url: str) -> str:
    parts = urlsplit(server_url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"server URL {server_url!r} must look like https://HOST:PORT")
    return parts.hostname


def _hostname_san() -> list[x509.GeneralName]:
    # A host name that is not a valid DNS name (rare, but containers allow odd ones) cannot
    # be a SAN; the loopback names still work then.
    try:
        return [parse_san(socket.gethostname())]
    except ValueError:
        return []


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: a key costs well under a millisecond (RSA-2048 costs ~100 ms, and a cluster has
    # dozens), and Go's crypto/tls, OpenSSL and every Kubernetes client accept it.
    return ec.generate_private_key(ec.SECP256R1())


def _sign(
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    signer: CertificateIssuerPrivateKeyTypes,
    issuer: x509.Certificate | None,
    *,
    start: datetime,
    end: datetime,
    usage: Usage | None = None,
    sans: Sequence[x509.GeneralName] = (),
) -> x509.Certificate:
    """A certificate for `public_key` signed by `signer`; a self-signed CA when no `issuer`."""
    is_ca = issuer is None
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                # Only RSA leaves encipher (TLS RSA key exchange); RFC 5480 forbids it for EC.
                key_encipherment=not is_ca and isinstance(public_key, rsa.RSAPublicKey),
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
    )
    # Strict verifiers (Python 3.13's default context, Go) want the authority key identifier.
    if issuer is None:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key())
    else:
        try:
            ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        except x509.ExtensionNotFound:  # a CA brought along without one
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key())
    builder = builder.add_extension(aki, False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(_usages(usage)), False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(_dedupe(sans)), False)
    return builder.sign(signer, _hash_for(signer))


def _hash_for(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    # Ed25519/Ed448 sign the message itself; every other key type signs a SHA-256 digest.
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    return hashes.SHA256()


def _dedupe(sans: Sequence[x509.GeneralName]) -> list[x509.GeneralName]:
    return list(dict.fromkeys(sans))


def _load_pair(cert_path: Path, key_path: Path) -> KeyPair | None:
    """The certificate and key in these files if both parse and belong together."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (FileNotFoundError, ValueError, TypeError, UnsupportedAlgorithm):
        return None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        return None
    if not isinstance(key, _SIGNING_KEY_TYPES):
        return None
    return cert, key


def _load_ca(pki_dir: Path) -> KeyPair | None:
    """The CA of `pki_dir`, None if it has none; PKIError if it is damaged or expired."""
    cert_path, key_path = cert_paths(pki_dir, "ca")
    if not cert_path.exists() and not key_path.exists():
        return None
    pair = _load_pair(cert_path, key_path)
    # Replacing a CA silently would invalidate every kubeconfig handed out, so stop instead.
    if pair is None:
        raise PKIError(
            f"{cert_path} and {key_path} are not a matching certificate and key; "
            f"restore them, or move {pki_dir} aside to start a new PKI"
        )
    if pair[0].not_valid_after_utc <= datetime.now(UTC):
        raise PKIError(f"the CA in {cert_path} has expired; move {pki_dir} aside to start anew")
    return pair


def _ensure_ca(pki_dir: Path, written: list[Path]) -> KeyPair:
    ca = _load_ca(pki_dir)
    if ca is not None:
        _fix_key_mode(cert_paths(pki_dir, "ca")[1])
        return ca
    key = _new_key()
    now = datetime.now(UTC)
    cert = _sign(
        _name(f"{CLUSTER_NAME}-ca"),
        key.public_key(),
        key,
        None,
        start=now - BACKDATE,
        end=now + timedelta(days=CA_DAYS),
    )
    written += _write_pair(pki_dir, "ca", cert, key)
    return cert, key


def _ensure_service_account_key(pki_dir: Path, written: list[Path]) -> None:
    """sa.key (RSA 2048, as kubeadm makes it) signs service-account tokens; sa.pub checks them.

    Kept once made: replacing it would invalidate every token handed out.
    """
    key_path, pub_path = service_account_key_paths(pki_dir)
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (FileNotFoundError, ValueError, TypeError, UnsupportedAlgorithm):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_atomic(key_path, pem, KEY_MODE)
        written.append(key_path)
    _fix_key_mode(key_path)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if _write_if_changed(pub_path, public, CERT_MODE):
        written.append(pub_path)


def ensure_service_account_key(pki_dir: Path) -> list[Path]:
    """Only the service-account key pair, if missing (for a PKI made before it existed)."""
    written: list[Path] = []
    with _locked(pki_dir):
        _ensure_service_account_key(pki_dir, written)
    return written


def service_account_key_paths(pki_dir: Path) -> tuple[Path, Path]:
    """The service-account signing key and its public half: sa.key, sa.pub."""
    return pki_dir / "sa.key", pki_dir / "sa.pub"


def _ensure_leaf(
    pki_dir: Path,
    stem: str,
    ca: KeyPair,
    subject: x509.Name,
    usage: Usage,
    sans: Sequence[x509.GeneralName],
    written: list[Path],
) -> None:
    cert_path, key_path = cert_paths(pki_dir, stem)
    pair = _load_pair(cert_path, key_path)
    if pair is not None and _fits(pair[0], ca[0], subject, usage, sans):
        _fix_key_mode(key_path)
        return
    key = _new_key()
    now = datetime.now(UTC)
    cert = _sign(
        subject,
        key.public_key(),
        ca[1],
        ca[0],
        start=now - BACKDATE,
        end=now + timedelta(days=CERT_DAYS),
        usage=usage,
        sans=sans,
    )
    written += _write_pair(pki_dir, stem, cert, key)


def _fits(
    cert: x509.Certificate,
    ca_cert: x509.Certificate,
    subject: x509.Name,
    usage: Usage,
    sans: Sequence[x509.GeneralName],
) -> bool:
    """Whether an existing leaf can stay: same CA, subject, usage, SANs, not near expiry."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    if cert.subject != subject:
        return False
    if cert.not_valid_after_utc - datetime.now(UTC) < RENEW_BEFORE:
        return False
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    try:
        have = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        have = set()
    return set(_usages(usage)) <= set(usages) and set(sans) <= have


def _usages(usage: Usage) -> list[x509.ObjectIdentifier]:
    return [usage] if isinstance(usage, x509.ObjectIdentifier) else list(usage)


def _write_pair(
    pki_dir: Path, stem: str, cert: x509.Certificate, key: CertificateIssuerPrivateKeyTypes
) -> list[Path]:
    cert_path, key_path = cert_paths(pki_dir, stem)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Key first: if we die in between, the old certificate no longer matches the key and the
    # next run reissues both, instead of keeping a certificate whose key is lost.
    _write_atomic(key_path, key_pem, KEY_MODE)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), CERT_MODE)
    return [cert_path, key_path]


def _kubeconfig_bytes(
    server_url: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, user: str
) -> bytes:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": server_url, "certificate-authority-data": b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)},
            }
        ],
        "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": CLUSTER_NAME,
        "preferences": {},
    }
    text: str = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    return text.encode()


def _write_if_changed(path: Path, data: bytes, mode: int) -> bool:
    try:
        if path.read_bytes() == data:
            if mode == KEY_MODE:
                _fix_key_mode(path)
            return False
    except FileNotFoundError:
        pass
    _write_atomic(path, data, mode)
    return True


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write via a temporary file and rename, so readers never see half a key or cert."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # The umask may have narrowed `mode`; certificates must stay world-readable.
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def secure_dir(pki_dir: Path) -> None:
    """The PKI directory 0700 (made if missing), its keys and kubeconfigs 0600."""
    datadir.private_dir(pki_dir)
    for pattern in ("*.key", "*.kubeconfig"):
        for path in pki_dir.glob(pattern):
            _fix_key_mode(path)


def _fix_key_mode(path: Path) -> None:
    # A copied or restored key may have come back readable by others; tighten, never widen.
    if path.stat().st_mode & 0o077:
        os.chmod(path, KEY_MODE)


@contextmanager
def _locked(pki_dir: Path) -> Iterator[None]:
    """Serialize writers, e.g. `k8slite up` and an API server starting at the same moment."""
    with open(pki_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


if __name__ == "__main__":
    sys.exit(certs_main())
