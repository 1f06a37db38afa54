"""The built-in signers' and the approver's rules (controllers/csrrules.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from k8slite.controllers import csrrules
from tests.integration.csr_helpers import csr_pem

NODE = {
    "metadata": {"name": "n1"},
    "status": {
        "addresses": [
            {"type": "InternalIP", "address": "10.0.0.5"},
            {"type": "Hostname", "address": "n1.example"},
        ]
    },
}
CLIENT = ["digital signature", "client auth"]
SERVING = ["digital signature", "key encipherment", "server auth"]


def _req(
    cn: str, orgs: tuple[str, ...] = ("system:nodes",), dns: tuple[str, ...] = ()
) -> x509.CertificateSigningRequest:
    return x509.load_pem_x509_csr(csr_pem(cn, orgs, dns=dns))


@pytest.mark.parametrize(
    ("cn", "orgs", "usages", "problem"),
    [
        ("system:node:n1", ("system:nodes",), CLIENT, None),
        ("system:node:n1", ("system:nodes",), [*CLIENT, "key encipherment"], None),
        ("system:node:n1", ("system:masters",), CLIENT, "subject organization is not system:nodes"),
        (
            "system:node:n1",
            ("system:nodes", "x"),
            CLIENT,
            "subject organization is not system:nodes",
        ),
        ("n1", ("system:nodes",), CLIENT, "subject common name does not begin with system:node:"),
        ("system:node:n1", ("system:nodes",), ["client auth"], "usages did not match"),
        ("system:node:n1", ("system:nodes",), [*CLIENT, "server auth"], "usages did not match"),
    ],
)
def test_kubelet_client_rules(
    cn: str, orgs: tuple[str, ...], usages: list[str], problem: str | None
) -> None:
    found = csrrules.kubelet_client_problem(_req(cn, orgs), usages)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_kubelet_client_refuses_sans() -> None:
    req = _req("system:node:n1", dns=("n1",))
    assert csrrules.kubelet_client_problem(req, CLIENT) == "DNS subjectAltNames are not allowed"


def test_self_node_client_is_the_requester() -> None:
    req = _req("system:node:n1")
    assert csrrules.is_self_node_client(req, CLIENT, "system:node:n1")
    assert not csrrules.is_self_node_client(req, CLIENT, "system:bootstrap:abc")
    assert csrrules.is_node_client(req, CLIENT)


@pytest.mark.parametrize(
    ("dns", "usages", "node", "problem"),
    [
        (("n1", "n1.example"), SERVING, NODE, None),
        (("n1",), CLIENT, NODE, "usages did not match"),
        ((), SERVING, NODE, "DNS or IP subjectAltName is required"),
        (("other.example",), SERVING, NODE, "are not addresses of node 'n1'"),
        (("n1",), SERVING, None, "node 'n1' does not exist"),
    ],
)
def test_kubelet_serving_rules(
    dns: tuple[str, ...], usages: list[str], node: dict | None, problem: str | None
) -> None:
    found = csrrules.kubelet_serving_problem(_req("system:node:n1", dns=dns), usages, node)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_apiserver_client_usages() -> None:
    assert csrrules.apiserver_client_problem(["client auth", "key encipherment"]) is None
    assert csrrules.apiserver_client_problem(["digital signature"]) == (
        "missing required usage for client certificate: client auth"
    )
    assert csrrules.apiserver_client_problem(["client auth", "server auth"]) == (
        "invalid usage for client certificate: server auth"
    )


def test_duration_is_capped_by_the_flag() -> None:
    assert csrrules.certificate_duration(None, 3600.0) == dt.timedelta(hours=1)
    assert csrrules.certificate_duration(600, 3600.0) == dt.timedelta(minutes=10)
    assert csrrules.certificate_duration(7200, 3600.0) == dt.timedelta(hours=1)
