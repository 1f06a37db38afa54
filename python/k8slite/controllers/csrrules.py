"""What the built-in signers accept and how they sign (upstream's csrapproving and csrsigning
rules for kubernetes.io/kube-apiserver-client, -client-kubelet and kubelet-serving)."""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from k8slite.api.certificates_v1 import (
    KUBE_APISERVER_CLIENT,
    KUBE_APISERVER_CLIENT_KUBELET,
    KUBELET_SERVING,
)
from k8slite.component.objects import Obj

NODES_GROUP = "system:nodes"
NODE_PREFIX = "system:node:"
# Upstream's exact usage sets of kubelet certificates (with and without key encipherment,
# which only RSA keys use).
_KUBELET_CLIENT_USAGES = (
    {"digital signature", "client auth"},
    {"digital signature", "key encipherment", "client auth"},
)
_KUBELET_SERVING_USAGES = (
    {"digital signature", "server auth"},
    {"digital signature", "key encipherment", "server auth"},
)
# The built-in signers backdate certificates against clock skew (upstream: 5 minutes).
BACKDATE = dt.timedelta(minutes=5)
SIGNERS = (KUBE_APISERVER_CLIENT, KUBE_APISERVER_CLIENT_KUBELET, KUBELET_SERVING)


def _orgs(req: x509.CertificateSigningRequest) -> list[str]:
    return [str(a.value) for a in req.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]


def common_name(req: x509.CertificateSigningRequest) -> str:
    names = req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _sans(req: x509.CertificateSigningRequest) -> x509.SubjectAlternativeName | None:
    try:
        return req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def _san_lists(
    req: x509.CertificateSigningRequest,
) -> tuple[list[str], list[str], list[str], list[str]]:
    sans = _sans(req)
    if sans is None:
        return [], [], [], []
    return (
        [str(v) for v in sans.get_values_for_type(x509.DNSName)],
        [str(v) for v in sans.get_values_for_type(x509.IPAddress)],
        [str(v) for v in sans.get_values_for_type(x509.RFC822Name)],
        [str(v) for v in sans.get_values_for_type(x509.UniformResourceIdentifier)],
    )


def kubelet_client_problem(req: x509.CertificateSigningRequest, usages: list[str]) -> str | None:
    """Upstream's ValidateKubeletClientCSR: None when req is a node's client certificate."""
    if _orgs(req) != [NODES_GROUP]:
        return "subject organization is not system:nodes"
    dns, ips, emails, uris = _san_lists(req)
    if dns:
        return "DNS subjectAltNames are not allowed"
    if emails:
        return "Email subjectAltNames are not allowed"
    if ips:
        return "IP subjectAltNames are not allowed"
    if uris:
        return "URI subjectAltNames are not allowed"
    if not common_name(req).startswith(NODE_PREFIX):
        return "subject common name does not begin with system:node:"
    if set(usages) not in _KUBELET_CLIENT_USAGES or len(set(usages)) != len(usages):
        return f"usages did not match {sorted(_KUBELET_CLIENT_USAGES[1])}"
    return None


def node_addresses(node: Obj | None) -> tuple[set[str], set[str]]:
    """The DNS names and IPs a node may put in its serving certificate: its name, and the
    addresses its kubelet reported."""
    if node is None:
        return set(), set()
    dns = {str((node.get("metadata") or {}).get("name") or "")}
    ips: set[str] = set()
    for addr in (node.get("status") or {}).get("addresses") or ():
        kind, value = addr.get("type"), str(addr.get("address") or "")
        if kind in ("InternalIP", "ExternalIP"):
            ips.add(value)
        elif kind in ("Hostname", "InternalDNS", "ExternalDNS"):
            dns.add(value)
    return dns, ips


def kubelet_serving_problem(
    req: x509.CertificateSigningRequest, usages: list[str], node: Obj | None
) -> str | None:
    """Upstream's ValidateKubeletServingCSR, and (a k8slite check, upstream leaves it to the
    approver) every SAN must be the requesting node's own name or reported address."""
    if _orgs(req) != [NODES_GROUP]:
        return "subject organization is not system:nodes"
    dns, ips, emails, uris = _san_lists(req)
    if emails:
        return "email subjectAltNames are not allowed"
    if uris:
        return "URI subjectAltNames are not allowed"
    if not dns and not ips:
        return "DNS or IP subjectAltName is required"
    cn = common_name(req)
    if not cn.startswith(NODE_PREFIX):
        return "subject common name does not begin with system:node:"
    if set(usages) not in _KUBELET_SERVING_USAGES or len(set(usages)) != len(usages):
        return f"usages did not match {sorted(_KUBELET_SERVING_USAGES[1])}"
    if node is None:
        return f"node {cn[len(NODE_PREFIX) :]!r} does not exist"
    known_dns, known_ips = node_addresses(node)
    strangers = [d for d in dns if d not in known_dns]
    strangers += [i for i in ips if str(ipaddress.ip_address(i)) not in known_ips]
    if strangers:
        return f"subjectAltNames {strangers} are not addresses of node {cn[len(NODE_PREFIX) :]!r}"
    return None


def apiserver_client_problem(usages: list[str]) -> str | None:
    """Upstream's validAPIServerClientUsages."""
    client_auth = False
    for usage in usages:
        if usage == "client auth":
            client_auth = True
        elif usage not in ("digital signature", "key encipherment"):
            return f"invalid usage for client certificate: {usage}"
    if not client_auth:
        return "missing required usage for client certificate: client auth"
    return None


def signer_problem(
    signer: str, req: x509.CertificateSigningRequest, usages: list[str], node: Obj | None
) -> str | None:
    """Why `signer` refuses this request, or None when it signs it."""
    if signer == KUBE_APISERVER_CLIENT:
        return apiserver_client_problem(usages)
    if signer == KUBE_APISERVER_CLIENT_KUBELET:
        return kubelet_client_problem(req, usages)
    if signer == KUBELET_SERVING:
        return kubelet_serving_problem(req, usages, node)
    return f"unknown signer {signer!r}"


def is_self_node_client(
    req: x509.CertificateSigningRequest, usages: list[str], username: str
) -> bool:
    """A node renewing its own client certificate (CN is the requester)."""
    return kubelet_client_problem(req, usages) is None and common_name(req) == username


def is_node_client(req: x509.CertificateSigningRequest, usages: list[str]) -> bool:
    return kubelet_client_problem(req, usages) is None


_KEY_USAGES = {
    "digital signature": "digital_signature",
    "signing": "digital_signature",
    "content commitment": "content_commitment",
    "key encipherment": "key_encipherment",
    "key agreement": "key_agreement",
    "data encipherment": "data_encipherment",
    "cert sign": "key_cert_sign",
    "crl sign": "crl_sign",
    "encipher only": "encipher_only",
    "decipher only": "decipher_only",
}
_EXT_USAGES = {
    "any": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING,
}


def certificate_duration(expiration_seconds: int | None, maximum: float) -> dt.timedelta:
    """spec.expirationSeconds honoured up to --cluster-signing-duration."""
    seconds = maximum if expiration_seconds is None else min(float(expiration_seconds), maximum)
    return dt.timedelta(seconds=seconds)


def sign(
    req: x509.CertificateSigningRequest,
    usages: list[str],
    ca_cert: x509.Certificate,
    ca_key: object,
    duration: dt.timedelta,
    now: dt.datetime | None = None,
) -> bytes:
    """The PEM certificate for req: its subject and SANs, the requested usages, never a CA,
    valid from BACKDATE ago for `duration`, and never past the CA's own end."""
    from cryptography.hazmat.primitives.serialization import Encoding

    now = now or dt.datetime.now(dt.UTC)
    not_after = min(now + duration, ca_cert.not_valid_after_utc)
    flags = {name: False for name in set(_KEY_USAGES.values())}
    for usage in usages:
        if usage in _KEY_USAGES:
            flags[_KEY_USAGES[usage]] = True
    builder = (
        x509.CertificateBuilder()
        .subject_name(req.subject)
        .issuer_name(ca_cert.subject)
        .public_key(req.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(**flags), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    ext = [_EXT_USAGES[u] for u in usages if u in _EXT_USAGES]
    if ext:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ext), critical=False)
    sans = _sans(req)
    if sans is not None and len(sans):
        builder = builder.add_extension(sans, critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    return cert.public_bytes(Encoding.PEM)
