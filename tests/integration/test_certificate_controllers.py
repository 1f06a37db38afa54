"""csrapproving and csrsigning in a real controller manager against a real API server: TLS
bootstrap of a node client certificate that then authenticates as the node, an admin's
`kubectl certificate approve`, denied and rule-breaking requests never signed."""

from __future__ import annotations

import base64
import datetime as dt
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from k8slite import pki
from tests.conftest import ServerHandle, kubectl_path, start_apiserver
from tests.integration.controller_harness import ManagerHandle, start_controller_manager
from tests.integration.csr_helpers import (
    KUBELET_CLIENT_SIGNER,
    KUBELET_SERVING_SIGNER,
    csr_object,
    csr_pem,
    key_pem,
    new_key,
)
from tests.polling import wait_for

CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
BOOTSTRAPPERS = "system:bootstrappers"


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerHandle, ManagerHandle]]:
    root = Path(tmp_path_factory.mktemp("csr-controllers"))
    server = start_apiserver(root / "data")
    # What kubeadm binds for TLS bootstrap: bootstrappers create CSRs and get node client
    # certificates auto-approved.
    for name, role in (
        ("kubelet-bootstrap", "system:node-bootstrapper"),
        (
            "node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        ),
    ):
        _kubectl(
            server,
            "create",
            "clusterrolebinding",
            name,
            f"--clusterrole={role}",
            f"--group={BOOTSTRAPPERS}",
        )
    # Nodes renew their own client certificates (kubeadm's node-autoapprove-certificate-rotation).
    _kubectl(
        server,
        "create",
        "clusterrolebinding",
        "node-autoapprove-certificate-rotation",
        "--clusterrole=system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        "--group=system:nodes",
    )
    # csr-makers may create requests, but not have node client ones auto-approved.
    _kubectl(
        server,
        "create",
        "clusterrolebinding",
        "csr-makers",
        "--clusterrole=system:node-bootstrapper",
        "--group=csr-makers",
    )
    ca_cert, ca_key = pki.cert_paths(server.pki, "ca")
    manager = start_controller_manager(
        server,
        "--controllers=csrapproving,csrsigning",
        f"--cluster-signing-cert-file={ca_cert}",
        f"--cluster-signing-key-file={ca_key}",
        "--cluster-signing-duration=48h",
    )
    yield server, manager
    manager.stop()
    server.stop()


def _kubectl(server: ServerHandle, *args: str) -> str:
    r = subprocess.run(
        [str(kubectl_path()), "--kubeconfig", str(server.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def _create(server: ServerHandle, obj: dict[str, Any], **headers: str) -> None:
    with server.client() as c:
        r = c.post(CSRS, json=obj, headers=headers)
    assert r.status_code == 201, r.text


def _as_bootstrapper(token_id: str) -> dict[str, str]:
    # The identity a bootstrap token authenticates as (impersonated by the admin here).
    return {"Impersonate-User": f"system:bootstrap:{token_id}", "Impersonate-Group": BOOTSTRAPPERS}


def _get(server: ServerHandle, name: str) -> dict[str, Any]:
    with server.client() as c:
        r = c.get(f"{CSRS}/{name}")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _certificate(server: ServerHandle, name: str) -> x509.Certificate:
    def issued() -> str | None:
        return _get(server, name)["status"].get("certificate")

    pem = base64.b64decode(wait_for(issued, timeout=90, what=f"csr {name} issued"))
    return x509.load_pem_x509_certificate(pem)


def _conditions(server: ServerHandle, name: str) -> list[str]:
    return [c["type"] for c in _get(server, name)["status"].get("conditions") or ()]


def test_bootstrap_node_client_certificate_works_as_the_node(
    cluster: tuple[ServerHandle, ManagerHandle], tmp_path: Path
) -> None:
    server, _ = cluster
    key = new_key()
    pem = csr_pem("system:node:joiner", ("system:nodes",), key)
    _create(
        server,
        csr_object("node-csr-joiner", pem, KUBELET_CLIENT_SIGNER),
        **_as_bootstrapper("abcdef"),
    )
    cert = _certificate(server, "node-csr-joiner")
    (approved,) = _get(server, "node-csr-joiner")["status"]["conditions"]
    assert (approved["type"], approved["reason"]) == ("Approved", "AutoApproved")
    assert approved["message"] == (
        "Auto approving kubelet client certificate after SubjectAccessReview."
    )
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == dt.timedelta(hours=48, minutes=5)  # --cluster-signing-duration
    # The certificate authenticates as the node.
    (tmp_path / "c.pem").write_bytes(
        base64.b64decode(_get(server, "node-csr-joiner")["status"]["certificate"])
    )
    (tmp_path / "c.key").write_bytes(key_pem(key))
    ctx = ssl.create_default_context(cafile=str(server.ca))
    ctx.load_cert_chain(str(tmp_path / "c.pem"), str(tmp_path / "c.key"))
    with httpx.Client(base_url=server.url, verify=ctx, timeout=30) as c:
        r = c.post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        assert r.status_code == 201, r.text
        who = r.json()["status"]["userInfo"]
        assert who["username"] == "system:node:joiner"
        assert "system:nodes" in who["groups"]


def test_requester_without_nodeclient_is_not_auto_approved(
    cluster: tuple[ServerHandle, ManagerHandle],
) -> None:
    server, _ = cluster
    pem = csr_pem("system:node:intruder", ("system:nodes",))
    _create(
        server,
        csr_object("node-csr-intruder", pem, KUBELET_CLIENT_SIGNER),
        **{"Impersonate-User": "mallory", "Impersonate-Group": "csr-makers"},
    )
    # A later request that is approved and issued: the intruder's was looked at by then.
    _create(
        server,
        csr_object(
            "node-csr-later", csr_pem("system:node:later", ("system:nodes",)), KUBELET_CLIENT_SIGNER
        ),
        **_as_bootstrapper("abcdef"),
    )
    _certificate(server, "node-csr-later")
    assert _conditions(server, "node-csr-intruder") == []


def test_admin_approves_a_client_certificate_with_its_duration(
    cluster: tuple[ServerHandle, ManagerHandle],
) -> None:
    server, _ = cluster
    _create(server, csr_object("alice", csr_pem("alice", ("devs",)), expirationSeconds=3600))
    assert "approved" in _kubectl(server, "certificate", "approve", "alice")
    cert = _certificate(server, "alice")
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(minutes=65)
    assert cert.subject.rfc4514_string() == "CN=alice,O=devs"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert [u._name for u in eku] == ["clientAuth"]
    assert _kubectl(server, "get", "csr", "alice").split()[-1] == "Approved,Issued"


def test_denied_and_rule_breaking_requests_are_never_signed(
    cluster: tuple[ServerHandle, ManagerHandle],
) -> None:
    server, _ = cluster
    _create(server, csr_object("denied", csr_pem("bob")))
    _kubectl(server, "certificate", "deny", "denied")
    # kubelet-serving for a name that is no node's, and one without server auth.
    serving = csr_object(
        "serving-stranger",
        csr_pem("system:node:ghost", ("system:nodes",), dns=("evil.example.com",)),
        KUBELET_SERVING_SIGNER,
    )
    serving["spec"]["usages"] = ["digital signature", "server auth"]
    _create(server, serving)
    no_server_auth = csr_object(
        "serving-client",
        csr_pem("system:node:ghost", ("system:nodes",), dns=("ghost",)),
        KUBELET_SERVING_SIGNER,
    )
    _create(server, no_server_auth)
    _kubectl(server, "certificate", "approve", "serving-stranger", "serving-client")

    def failed(name: str) -> dict[str, Any] | None:
        for c in _get(server, name)["status"].get("conditions") or ():
            if c["type"] == "Failed":
                return dict(c)
        return None

    for name, text in (
        ("serving-stranger", "node 'ghost' does not exist"),
        ("serving-client", "usages did not match"),
    ):
        cond = wait_for(lambda n=name: failed(n), timeout=90, what=f"{name} Failed")
        assert cond["reason"] == "SignerValidationFailure"
        assert text in cond["message"]
        assert "certificate" not in _get(server, name)["status"]
    # A later approved request is issued; the denied one stays unsigned.
    _create(server, csr_object("after-denied", csr_pem("carol")))
    _kubectl(server, "certificate", "approve", "after-denied")
    _certificate(server, "after-denied")
    assert "certificate" not in _get(server, "denied")["status"]
    assert _conditions(server, "denied") == ["Denied"]


def test_a_node_renews_its_own_client_certificate(
    cluster: tuple[ServerHandle, ManagerHandle],
) -> None:
    server, _ = cluster
    pem = csr_pem("system:node:node1", ("system:nodes",))
    with server.client("node-node1") as c:
        r = c.post(CSRS, json=csr_object("node-csr-renew", pem, KUBELET_CLIENT_SIGNER))
    assert r.status_code == 201, r.text
    cert = _certificate(server, "node-csr-renew")
    assert cert.subject.rfc4514_string() == "CN=system:node:node1,O=system:nodes"
    (approved,) = _get(server, "node-csr-renew")["status"]["conditions"]
    assert approved["message"] == (
        "Auto approving self kubelet client certificate after SubjectAccessReview."
    )


def test_a_nodes_own_serving_certificate_is_approved_only_with_its_own_names(
    cluster: tuple[ServerHandle, ManagerHandle],
) -> None:
    """K8s-Lite's csrapproving approves a node's kubelet-serving request for itself when
    every SAN is the node's name or an address its Node reports (upstream approves none)."""
    server, _ = cluster
    with server.client() as c:
        r = c.post(
            "/api/v1/nodes",
            json={"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"}},
        )
        assert r.status_code in (201, 409), r.text
        node = c.get("/api/v1/nodes/node1").json()
        node.setdefault("status", {})["addresses"] = [
            {"type": "InternalIP", "address": "192.0.2.9"},
            {"type": "Hostname", "address": "node1"},
        ]
        r = c.put("/api/v1/nodes/node1/status", json=node)
        assert r.status_code == 200, r.text
    usages = ["digital signature", "server auth"]
    stranger = csr_pem("system:node:node1", ("system:nodes",), dns=("evil.example",))
    own = csr_pem("system:node:node1", ("system:nodes",), dns=("node1",))
    with server.client("node-node1") as c:
        for name, pem in (("serving-stranger-san", stranger), ("serving-own", own)):
            body = csr_object(name, pem, KUBELET_SERVING_SIGNER, usages=usages)
            r = c.post(CSRS, json=body)
            assert r.status_code == 201, r.text
    cert = _certificate(server, "serving-own")
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["node1"]
    (approved,) = _get(server, "serving-own")["status"]["conditions"]
    assert approved["reason"] == "AutoApproved"
    assert "kubelet serving certificate" in approved["message"]
    # Made first, so looked at already; its SAN is no name of node1's: it stays for an
    # administrator (looked at again every 2 s, never approved).
    assert "Approved" not in _conditions(server, "serving-stranger-san")
