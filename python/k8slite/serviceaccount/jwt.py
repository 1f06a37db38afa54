"""Service-account JWTs: signing (RS256/ES256 by key type) and signature checks, as upstream."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

# The issuer legacy (Secret-based) tokens carry; upstream always accepts it too.
LEGACY_ISSUER = "kubernetes/serviceaccount"

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class InvalidToken(Exception):
    """The token is malformed, its signature does not verify, or its claims do not hold."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(key: PublicKey) -> str:
    """Upstream's kid: base64url of the SHA-256 of the public key's PKIX DER."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return b64url(hashlib.sha256(der).digest())


def _alg(key: PublicKey) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise ValueError("service-account keys must be RSA or EC P-256")


def load_private_key(path: Path) -> PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: service-account keys must be RSA or EC P-256")
    _alg(key.public_key())
    return key


def load_public_keys(path: Path) -> list[PublicKey]:
    """Every public key in a PEM file (public keys, or private keys whose public half counts)."""
    text = path.read_bytes()
    keys: list[PublicKey] = []
    for block in text.split(b"-----END ")[:-1]:
        begin = block.rfind(b"-----BEGIN ")
        kind = block[begin + 11 : block.index(b"-----", begin + 11)]
        pem = block[begin:] + b"-----END " + kind + b"-----\n"
        if b"PRIVATE KEY" in kind:
            key: Any = serialization.load_pem_private_key(pem, password=None).public_key()
        elif b"CERTIFICATE" in kind:
            continue
        else:
            key = serialization.load_pem_public_key(pem)
        if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            _alg(key)
            keys.append(key)
    if not keys:
        raise ValueError(f"{path}: no RSA or EC public key found")
    return keys


def sign(key: PrivateKey, claims: dict[str, Any]) -> str:
    public = key.public_key()
    header = {"alg": _alg(public), "kid": key_id(public)}
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    data = signing_input.encode()
    if isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return signing_input + "." + b64url(sig)


class Verifier:
    """Checks signatures against a set of public keys (their kid and alg worked out once)."""

    def __init__(self, keys: list[PublicKey]) -> None:
        self.keys = [(key_id(k), _alg(k), k) for k in keys]

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token signed by one of the keys; InvalidToken otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidToken("not a JWT")
        try:
            header = json.loads(_unb64url(parts[0]))
            claims = json.loads(_unb64url(parts[1]))
            sig = _unb64url(parts[2])
        except ValueError:
            raise InvalidToken("malformed JWT") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise InvalidToken("malformed JWT")
        alg, kid = header.get("alg"), header.get("kid")
        data = (parts[0] + "." + parts[1]).encode()
        for key_kid, key_alg, key in self.keys:
            if key_alg != alg or (kid and kid != key_kid):
                continue
            try:
                if isinstance(key, rsa.RSAPublicKey):
                    key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
                else:
                    if len(sig) != 64:
                        raise InvalidSignature
                    der = encode_dss_signature(
                        int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
                    )
                    key.verify(der, data, ec.ECDSA(hashes.SHA256()))
            except InvalidSignature:
                continue
            return claims
        raise InvalidToken("invalid signature")


def jwk(key: PublicKey) -> dict[str, str]:
    """The key as a JSON Web Key, for /openid/v1/jwks."""
    out = {"use": "sig", "kty": "", "kid": key_id(key), "alg": _alg(key)}
    if isinstance(key, rsa.RSAPublicKey):
        n = key.public_numbers()
        out["kty"] = "RSA"
        out["n"] = b64url(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big"))
        out["e"] = b64url(n.e.to_bytes((n.e.bit_length() + 7) // 8, "big"))
    else:
        p = key.public_numbers()
        out.update(
            kty="EC",
            crv="P-256",
            x=b64url(p.x.to_bytes(32, "big")),
            y=b64url(p.y.to_bytes(32, "big")),
        )
    return out
