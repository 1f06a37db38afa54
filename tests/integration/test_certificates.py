"""CertificateSigningRequests over HTTPS with the real kubectl: validation, who asked,
the table, `kubectl certificate approve|deny` and the signer authorization of approval."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from k8slite import pki
from tests.conftest import ServerHandle, kubectl_path, start_apiserver
from tests.integration.csr_helpers import CLIENT_SIGNER, csr_object, csr_pem

CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    root = Path(tmp_path_factory.mktemp("certificates"))
    handle = start_apiserver(root / "data")
    # dora may update the approval subresource but approve for no signer.
    pki.issue_client_cert(handle.pki, "dora", "dora")
    # Group csr-makers may create requests, as upstream's node-bootstrapper role allows.
    r = _kubectl(
        handle,
        "create",
        "clusterrolebinding",
        "csr-makers",
        "--clusterrole=system:node-bootstrapper",
        "--group=csr-makers",
    )
    assert r.returncode == 0, r.stderr
    yield handle
    handle.stop()


def _kubectl(
    server: ServerHandle, *args: str, identity: str = "admin", stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(kubectl_path()), "--kubeconfig", str(server.kubeconfig_for(identity)), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        input=stdin,
    )


def _create(server: ServerHandle, obj: dict[str, Any], *flags: str) -> None:
    r = _kubectl(server, "create", "-f", "-", *flags, stdin=json.dumps(obj))
    assert r.returncode == 0, r.stderr


def _get(server: ServerHandle, name: str) -> dict[str, Any]:
    with server.client() as c:
        r = c.get(f"{CSRS}/{name}")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_requester_fills_spec_and_cannot_be_forged(server: ServerHandle) -> None:
    obj = csr_object("forged", csr_pem("carol"), username="mallory", groups=["system:masters"])
    _create(server, obj, "--as=carol", "--as-group=csr-makers")
    spec = _get(server, "forged")["spec"]
    assert spec["username"] == "carol"
    assert spec["groups"] == ["csr-makers", "system:authenticated"]
    # The spec is immutable: an update keeps the stored one.
    stored = _get(server, "forged")
    stored["spec"]["usages"] = ["server auth"]
    stored["metadata"]["labels"] = {"a": "b"}
    with server.client() as c:
        r = c.put(f"{CSRS}/forged", json=stored)
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["usages"] == ["digital signature", "client auth"]
    assert r.json()["metadata"]["labels"] == {"a": "b"}


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        (
            {"request": base64.b64encode(b"not a pem").decode()},
            "spec.request",
            "PEM block type must be CERTIFICATE REQUEST",
        ),
        (
            {"signerName": "nodomain"},
            "spec.signerName",
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ),
        ({"signerName": None}, "spec.signerName", "Required value"),
        ({"usages": []}, "spec.usages", "Required value: usages must be provided"),
        ({"usages": ["flying"]}, "spec.usages[0]", 'Unsupported value: "flying"'),
        (
            {"expirationSeconds": 599},
            "spec.expirationSeconds",
            "may not specify a duration less than 600 seconds (10 minutes)",
        ),
    ],
)
def test_invalid_requests_are_refused(
    server: ServerHandle, change: dict[str, Any], field: str, text: str
) -> None:
    obj = csr_object("bad", csr_pem("x"))
    obj["spec"].update(change)
    obj["spec"] = {k: v for k, v in obj["spec"].items() if v is not None}
    with server.client() as c:
        r = c.post(CSRS, json=obj)
        assert r.status_code == 422, r.text
        causes = r.json()["details"]["causes"]
        assert any(c["field"] == field and text in c["message"] for c in causes), causes
        assert c.get(f"{CSRS}/bad").status_code == 404


def test_tampered_signature_is_refused(server: ServerHandle) -> None:
    der = bytearray(x509.load_pem_x509_csr(csr_pem("x")).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0xFF  # inside the signature
    pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(der))
    pem += b"-----END CERTIFICATE REQUEST-----\n"
    with server.client() as c:
        r = c.post(CSRS, json=csr_object("tampered", pem))
    assert r.status_code == 422, r.text
    assert r.json()["details"]["causes"][0]["field"] == "spec.request"


def test_masters_group_is_refused_for_the_client_signer(server: ServerHandle) -> None:
    with server.client() as c:
        r = c.post(CSRS, json=csr_object("root", csr_pem("evil", ("system:masters",))))
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        'certificatesigningrequests.certificates.k8s.io "root" is forbidden: use of '
        "kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"
    )


def test_kubectl_table_approve_and_deny(server: ServerHandle) -> None:
    _create(
        server,
        csr_object("approve-me", csr_pem("alice"), expirationSeconds=3600),
        "--as=ann",
        "--as-group=csr-makers",
    )
    _create(server, csr_object("deny-me", csr_pem("bob")), "--as=ann", "--as-group=csr-makers")
    r = _kubectl(server, "get", "csr", "approve-me")
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.splitlines()
    assert header.split() == [
        "NAME",
        "AGE",
        "SIGNERNAME",
        "REQUESTOR",
        "REQUESTEDDURATION",
        "CONDITION",
    ]
    assert row.split()[2:] == [CLIENT_SIGNER, "ann", "60m", "Pending"]

    r = _kubectl(server, "certificate", "approve", "approve-me")
    assert r.returncode == 0, r.stderr
    assert "certificatesigningrequest.certificates.k8s.io/approve-me approved" in r.stdout
    r = _kubectl(server, "certificate", "deny", "deny-me")
    assert r.returncode == 0, r.stderr
    approved = _get(server, "approve-me")["status"]["conditions"]
    assert [(c["type"], c["status"], c["reason"]) for c in approved] == [
        ("Approved", "True", "KubectlApprove")
    ]
    assert approved[0]["lastUpdateTime"]
    assert _kubectl(server, "get", "csr", "deny-me").stdout.split()[-1] == "Denied"
    r = _kubectl(server, "get", "csr", "--field-selector=spec.signerName=example.com/none")
    assert r.returncode == 0 and "No resources found" in r.stderr, r.stderr
    r = _kubectl(
        server, "get", "csr", f"--field-selector=spec.signerName={CLIENT_SIGNER}", "-o", "name"
    )
    assert "certificatesigningrequest.certificates.k8s.io/deny-me" in r.stdout.split(), r.stderr
    assert _kubectl(server, "get", "csr", "approve-me").stdout.split()[-1] == "Approved"

    # Approved and Denied exclude each other; a condition may not be removed.
    r = _kubectl(server, "certificate", "deny", "--force", "approve-me")
    assert r.returncode != 0
    assert 'certificate signing request "approve-me" is already Approved' in r.stderr
    stored = _get(server, "approve-me")
    stored["status"]["conditions"].append({"type": "Denied", "status": "True"})
    with server.client() as c:
        r = c.put(f"{CSRS}/approve-me/approval", json=stored)
    assert r.status_code == 422, r.text
    assert "Approved and Denied conditions are mutually exclusive" in r.text
    stored = _get(server, "approve-me")
    stored["status"]["conditions"] = []
    with server.client() as c:
        r = c.put(f"{CSRS}/approve-me/approval", json=stored)
    assert r.status_code == 422, r.text
    assert "updates may not remove a condition of type" in r.text
    # The status subresource cannot approve.
    stored = _get(server, "deny-me")
    stored["status"]["conditions"].append({"type": "Approved", "status": "True"})
    with server.client() as c:
        r = c.put(f"{CSRS}/deny-me/status", json=stored)
    assert r.status_code == 200, r.text
    assert [x["type"] for x in r.json()["status"]["conditions"]] == ["Denied"]


def test_approval_needs_approve_on_the_signer(server: ServerHandle) -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "csr-approval-only"},
        "rules": [
            {
                "apiGroups": ["certificates.k8s.io"],
                "resources": ["certificatesigningrequests", "certificatesigningrequests/approval"],
                "verbs": ["get", "list", "update"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "dora-csr"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "csr-approval-only",
        },
        "subjects": [{"kind": "User", "name": "dora", "apiGroup": "rbac.authorization.k8s.io"}],
    }
    _create(server, role)
    _create(server, binding)
    _create(server, csr_object("dora-wants", csr_pem("dora")))
    r = _kubectl(server, "certificate", "approve", "dora-wants", identity="dora")
    assert r.returncode != 0
    assert (
        'certificatesigningrequests.certificates.k8s.io "dora-wants" is forbidden: user not '
        'permitted to approve requests with signerName "kubernetes.io/kube-apiserver-client"'
    ) in r.stderr
    assert "conditions" not in _get(server, "dora-wants")["status"]
    # upstream's approver role for the signer makes it work.
    r = _kubectl(
        server,
        "create",
        "clusterrolebinding",
        "dora-approver",
        "--clusterrole=system:certificates.k8s.io:kube-apiserver-client-approver",
        "--user=dora",
    )
    assert r.returncode == 0, r.stderr
    r = _kubectl(server, "certificate", "approve", "dora-wants", identity="dora")
    assert r.returncode == 0, r.stderr
    assert _get(server, "dora-wants")["status"]["conditions"][0]["type"] == "Approved"


def test_discovery_and_openapi(server: ServerHandle) -> None:
    r = _kubectl(server, "api-resources", "--api-group=certificates.k8s.io")
    assert r.returncode == 0, r.stderr
    row = r.stdout.splitlines()[1].split()
    assert row == [
        "certificatesigningrequests",
        "csr",
        "certificates.k8s.io/v1",
        "false",
        "CertificateSigningRequest",
    ]
    r = _kubectl(server, "explain", "csr.spec.expirationSeconds")
    assert r.returncode == 0, r.stderr
    assert "FIELD: expirationSeconds <integer>" in r.stdout
