"""Service-account token formats, the in-cluster client config and the admission's mounts."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from k8slite.apiserver.saadmission import MOUNT_PATH, _mount_token
from k8slite.client import kubeconfig
from k8slite.client.kubeconfig import FileTokenAuth, InClusterError, in_cluster_config
from k8slite.serviceaccount import claims
from k8slite.serviceaccount.jwt import (
    InvalidToken,
    Verifier,
    jwk,
    key_id,
    load_public_keys,
    sign,
)

ACCOUNT = {"metadata": {"name": "bot", "namespace": "ns", "uid": "u-1"}}


@pytest.mark.parametrize(
    "key",
    [
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec.generate_private_key(ec.SECP256R1()),
    ],
    ids=["RS256", "ES256"],
)
def test_sign_and_verify(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
    body = claims.bound(issuer="i", audiences=["a"], now=100, expires=4000, account=ACCOUNT)
    token = sign(key, body)
    assert Verifier([key.public_key()]).verify(token) == body
    header = token.split(".")[0]
    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    assert f'"alg":"{alg}"'.encode() in base64.urlsafe_b64decode(header + "==")
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(InvalidToken):
        Verifier([other.public_key()]).verify(token)
    payload = base64.urlsafe_b64encode(b'{"sub":"system:serviceaccount:ns:admin"}').rstrip(b"=")
    forged = ".".join([header, payload.decode(), token.split(".")[2]])
    with pytest.raises(InvalidToken):
        Verifier([key.public_key()]).verify(forged)
    for junk in ("", "a.b", "a.b.c", token + ".x"):
        with pytest.raises(InvalidToken):
            Verifier([key.public_key()]).verify(junk)
    assert jwk(key.public_key())["kid"] == key_id(key.public_key())


def test_claims_shapes() -> None:
    pod = {"metadata": {"name": "p", "uid": "u-p"}}
    node = {"metadata": {"name": "n", "uid": "u-n"}}
    body = claims.bound(
        issuer="i", audiences=["a"], now=1, expires=2, account=ACCOUNT, pod=pod, node=node
    )
    assert body["sub"] == "system:serviceaccount:ns:bot"
    assert body["kubernetes.io"] == {
        "namespace": "ns",
        "node": {"name": "n", "uid": "u-n"},
        "pod": {"name": "p", "uid": "u-p"},
        "serviceaccount": {"name": "bot", "uid": "u-1"},
    }
    assert claims.legacy(ACCOUNT, "bot-token") == {
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": "ns",
        "kubernetes.io/serviceaccount/secret.name": "bot-token",
        "kubernetes.io/serviceaccount/service-account.name": "bot",
        "kubernetes.io/serviceaccount/service-account.uid": "u-1",
        "sub": "system:serviceaccount:ns:bot",
    }


def test_public_keys_from_pem_files(tmp_path: Path) -> None:
    keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]
    pem = keys[0].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ) + keys[1].private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "keys.pem").write_bytes(pem)
    loaded = load_public_keys(tmp_path / "keys.pem")
    assert [key_id(k) for k in loaded] == [key_id(k.public_key()) for k in keys]
    (tmp_path / "empty.pem").write_text("nothing here\n")
    with pytest.raises(ValueError, match="no RSA or EC public key"):
        load_public_keys(tmp_path / "empty.pem")


def test_in_cluster_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(InClusterError, match="KUBERNETES_SERVICE_HOST"):
        in_cluster_config(tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(InClusterError, match="token"):
        in_cluster_config(tmp_path)
    (tmp_path / "token").write_text("one\n")
    (tmp_path / "namespace").write_text("team-a")
    config = in_cluster_config(tmp_path)
    assert config.server == "https://10.96.0.1:443"
    assert config.namespace == "team-a" and config.token == "one"
    assert config.token_file == tmp_path / "token"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    assert in_cluster_config(tmp_path).server == "https://[fd00::1]:443"


def test_file_token_is_reread_as_it_rotates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    auth = FileTokenAuth(path)
    request = httpx.Request("GET", "https://x/api")
    next(auth.auth_flow(request))
    assert request.headers["Authorization"] == "Bearer first"
    path.write_text("second\n")
    # Within the period the token read last is used; after it, the file is read again.
    assert auth.current() == "first"
    monkeypatch.setattr(kubeconfig, "TOKEN_FILE_PERIOD", 0.0)
    assert auth.current() == "second"
    path.unlink()
    assert auth.current() == "second"  # an unreadable file keeps the last token


def test_token_mounts_respect_existing_ones() -> None:
    spec = {
        "initContainers": [{"name": "i"}],
        "containers": [
            {"name": "a"},
            {"name": "b", "volumeMounts": [{"name": "mine", "mountPath": MOUNT_PATH}]},
        ],
        "volumes": [{"name": "mine", "emptyDir": {}}],
    }
    _mount_token(spec)
    (added,) = [v for v in spec["volumes"] if v["name"] != "mine"]
    mount = {"name": added["name"], "readOnly": True, "mountPath": MOUNT_PATH}
    assert spec["initContainers"][0]["volumeMounts"] == [mount]
    assert spec["containers"][0]["volumeMounts"] == [mount]
    assert spec["containers"][1]["volumeMounts"] == [{"name": "mine", "mountPath": MOUNT_PATH}]
    # Every container already mounting something there: no volume is added.
    spec = {"containers": [{"name": "b", "volumeMounts": [{"name": "x", "mountPath": MOUNT_PATH}]}]}
    _mount_token(spec)
    assert "volumes" not in spec
