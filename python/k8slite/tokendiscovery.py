"""Bootstrap-token discovery, as `kubeadm join` does it: learn the cluster's CA from the API
server without trusting it beforehand.

1. GET kube-public/cluster-info over TLS without verifying the server (nothing is trusted
   yet) and without credentials (the token must not go to a server not yet trusted).
2. Check its jws-kubeconfig-<token id> entry, the bootstrap signer's detached JWS of the
   kubeconfig keyed by the token secret: only someone who knows the token could sign it.
3. Check that the CA in that kubeconfig has a pinned public key (sha256 of its DER
   SubjectPublicKeyInfo, --discovery-token-ca-cert-hash), unless told to skip that.
4. GET cluster-info again, now verifying the server with that CA, and check that it is the
   same, so the answer could not have come from a machine in the middle.
"""

from __future__ import annotations

import base64
import ssl
import time
from dataclasses import dataclass

import httpx
import yaml
from cryptography import x509

from k8slite import bootstraptoken as bt

# How often a cluster-info without our token's signature is asked for again (the bootstrap
# signer may not have signed a token created a moment ago).
RETRY_EVERY = 0.5


class DiscoveryError(Exception):
    """The cluster cannot be trusted (or reached) with what was given; says why."""


@dataclass
class Discovered:
    """What discovery learnt: the CA (PEM) the server is verified with, and its address."""

    ca_pem: bytes
    server: str


def _fetch(server: str, verify: ssl.SSLContext | bool) -> dict[str, object]:
    try:
        with httpx.Client(verify=verify, timeout=10) as c:
            r = c.get(server.rstrip("/") + bt.CLUSTER_INFO_PATH)
    except httpx.HTTPError as e:
        raise DiscoveryError(f"cannot get cluster-info from {server}: {e}") from None
    if r.status_code != 200:
        raise DiscoveryError(
            f"cannot get cluster-info from {server}: {r.status_code} {r.text.strip()[:200]}"
        )
    cm = r.json()
    data = cm.get("data") if isinstance(cm, dict) else None
    if not isinstance(data, dict):
        raise DiscoveryError(f"the cluster-info ConfigMap of {server} has no data")
    return data


def _insecure_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _ca_of(kubeconfig: str) -> bytes:
    try:
        doc = yaml.safe_load(kubeconfig) or {}
        data = doc["clusters"][0]["cluster"]["certificate-authority-data"]
        ca_pem = base64.b64decode(data)
        x509.load_pem_x509_certificate(ca_pem)
    except (yaml.YAMLError, KeyError, IndexError, TypeError, ValueError) as e:
        raise DiscoveryError(f"the cluster-info kubeconfig has no usable CA: {e}") from None
    return ca_pem


def discover(
    server: str,
    token: str,
    ca_cert_hashes: list[str],
    skip_ca_verification: bool = False,
    timeout: float = 300.0,
) -> Discovered:
    """Run discovery against server (https://HOST:PORT) with token; DiscoveryError if the
    cluster is not the one the token and hashes vouch for."""
    parsed = bt.parse(token)
    if parsed is None:
        raise DiscoveryError(f'the token "{token}" was not of the form "<id>.<secret>"')
    token_id, token_secret = parsed
    if not ca_cert_hashes and not skip_ca_verification:
        raise DiscoveryError(
            "using token-based discovery without --discovery-token-ca-cert-hash can be "
            "unsafe; set --discovery-token-unsafe-skip-ca-verification to continue"
        )
    for h in ca_cert_hashes:
        if not h.startswith("sha256:") or len(h) != len("sha256:") + 64:
            raise DiscoveryError(
                f'invalid --discovery-token-ca-cert-hash "{h}": the format is "sha256:<hex>"'
            )
    deadline = time.monotonic() + timeout
    while True:
        data = _fetch(server, _insecure_context())
        content = data.get(bt.KUBECONFIG_KEY)
        if not isinstance(content, str) or not content:
            raise DiscoveryError("there is no kubeconfig in the cluster-info ConfigMap")
        signature = data.get(bt.JWS_PREFIX + token_id)
        if isinstance(signature, str):
            break
        if time.monotonic() > deadline:
            raise DiscoveryError(
                f'token id "{token_id}" is invalid for this cluster or it has expired: there '
                "is no signature of cluster-info for it. Create a new token with "
                "`k8slite token create` on the control plane"
            )
        time.sleep(RETRY_EVERY)
    if not bt.verify_detached_jws(signature, content, token_id, token_secret):
        raise DiscoveryError(
            "failed to verify JWS signature of received cluster info object, can't trust "
            "this API Server: is the token right?"
        )
    ca_pem = _ca_of(content)
    actual = bt.ca_cert_hash(ca_pem)
    if not skip_ca_verification and actual not in [h.lower() for h in ca_cert_hashes]:
        raise DiscoveryError(
            f'cluster CA found in cluster-info ConfigMap is invalid: none of the public keys "'
            f'{actual}" are pinned (--discovery-token-ca-cert-hash)'
        )
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    try:
        again = _fetch(server, ctx)
    except DiscoveryError as e:
        raise DiscoveryError(f"{e} (now verifying the server with the cluster CA)") from None
    if again.get(bt.KUBECONFIG_KEY) != content:
        raise DiscoveryError(
            "cluster-info changed between the insecure and the secure request: not trusting it"
        )
    return Discovered(ca_pem, server.rstrip("/"))
