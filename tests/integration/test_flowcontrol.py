"""API Priority and Fairness over real HTTPS: slow bodies, separate levels, the served objects."""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from k8slite import pki
from tests.conftest import ServerHandle, kubectl_path, start_apiserver
from tests.integration.flowcontrol_helpers import executing, kubelet_heartbeat, metric, tls_socket
from tests.polling import wait_for

_FLOWCONTROL = "/apis/flowcontrol.apiserver.k8s.io/v1"
_ATTACKERS = 200


@pytest.fixture
def patient_server(tmp_path: Path) -> Iterator[ServerHandle]:
    """A server that waits a minute for a request body (a quarter of its request timeout),
    so the attack below stays in place however slowly this machine opens its sockets."""
    server = start_apiserver(tmp_path / "data", "--request-timeout=240s")
    yield server
    server.stop()


def _body_reads(admin: httpx.Client) -> float:
    return metric(admin, "k8slite_apiserver_request_body_reads")


def test_slow_bodies_hold_no_seat(patient_server: ServerHandle) -> None:
    """A roleless user's 200 trickling bodies leave kubelets' writes and other users alone."""
    server = patient_server
    with server.client("admin") as admin:
        assert admin.post("/api/v1/nodes", json={"metadata": {"name": "node1"}}).status_code == 201
        ns = {"metadata": {"name": "target"}}
        assert admin.post("/api/v1/namespaces", json=ns).status_code == 201
    pki.issue_client_cert(server.pki, "mallory", "mallory")
    pki.issue_client_cert(server.pki, "bob", "bob")
    paths = (
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        "/api/v1/namespaces/target/configmaps",
    )
    attackers: list[ssl.SSLSocket] = []
    try:
        for i in range(_ATTACKERS):
            tls = tls_socket(server, "mallory")
            attackers.append(tls)
            tls.sendall(
                b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n{" % paths[i % 2].encode()
            )
        with (
            server.client("admin") as admin,
            server.client("node-node1") as kubelet,
            server.client("bob") as bob,
        ):
            # Every attacking request has reached the server and waits for its body.
            wait_for(lambda: _body_reads(admin) >= _ATTACKERS, what="the attack in place")
            for _ in range(5):
                kubelet_heartbeat(kubelet, "node1")
            review = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}},
            }
            r = bob.post(paths[0], json=review)  # same priority level as the attacker
            assert r.status_code == 201, r.text
            # None of the 200 holds a seat, and none has had an answer.
            assert _body_reads(admin) >= _ATTACKERS
            assert executing(admin, "global-default") == 0
            assert metric(admin, "apiserver_flowcontrol_rejected_requests_total") == 0
        for tls in attackers:
            tls.setblocking(False)
            with pytest.raises(ssl.SSLWantReadError):
                tls.recv(1)
    finally:
        for tls in attackers:
            tls.close()
    with server.client("admin") as admin:
        wait_for(lambda: _body_reads(admin) == 0, what="the attack's requests gone")
        # Nothing the attacker sent was stored.
        assert admin.get("/api/v1/namespaces/target/configmaps").json()["items"] == []


def test_requests_name_their_flow_schema_and_level(apiserver: ServerHandle) -> None:
    """The UID headers name the stored objects the request matched, by upstream's rules."""
    with apiserver.client("admin") as admin:
        uids = {
            (kind, o["metadata"]["name"]): o["metadata"]["uid"]
            for kind in ("flowschemas", "prioritylevelconfigurations")
            for o in admin.get(f"{_FLOWCONTROL}/{kind}").json()["items"]
        }
        r = admin.get("/api/v1/namespaces")
        assert r.headers["x-kubernetes-pf-flowschema-uid"] == uids[("flowschemas", "exempt")]
    expected = [
        ("node-node1", "/api/v1/nodes/node1", "system-node-high", "node-high"),
        ("node-node1", "/api/v1/namespaces/default/pods", "system-nodes", "system"),
        ("scheduler", "/api/v1/nodes", "kube-scheduler", "workload-high"),
        (
            "controller-manager",
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager",
            "system-leader-election",
            "leader-election",
        ),
        ("controller-manager", "/api/v1/endpoints", "kube-controller-manager", "workload-high"),
        ("scheduler", "/healthz", "probes", "exempt"),
    ]
    for identity, path, schema, level in expected:
        with apiserver.client(identity) as c:
            r = c.get(path)
            assert r.headers["x-kubernetes-pf-flowschema-uid"] == uids[("flowschemas", schema)]
            assert (
                r.headers["x-kubernetes-pf-prioritylevel-uid"]
                == uids[("prioritylevelconfigurations", level)]
            )
    with apiserver.client("admin") as admin:
        r = admin.delete(f"{_FLOWCONTROL}/flowschemas/exempt")
        assert r.status_code == 405  # upstream's defaults, served read-only


def test_kubectl_gets_flowschemas_and_priority_levels(apiserver: ServerHandle) -> None:
    kubeconfig = str(apiserver.kubeconfig)
    out = subprocess.run(
        [
            str(kubectl_path()),
            "--kubeconfig",
            kubeconfig,
            "get",
            "flowschemas,prioritylevelconfigurations",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "PRIORITYLEVEL",
        "MATCHINGPRECEDENCE",
        "DISTINGUISHERMETHOD",
        "AGE",
        "MISSINGPL",
    ]
    rows = {
        line.split()[0]: line.split()
        for line in lines
        if line.startswith(("flowschema", "priority"))
    }
    assert rows["flowschema.flowcontrol.apiserver.k8s.io/system-node-high"][1:4] == [
        "node-high",
        "400",
        "ByUser",
    ]
    assert rows["flowschema.flowcontrol.apiserver.k8s.io/exempt"][-1] == "False"
    assert rows["prioritylevelconfiguration.flowcontrol.apiserver.k8s.io/global-default"][1:6] == [
        "Limited",
        "20",
        "128",
        "6",
        "50",
    ]
    names = {n.rsplit("/", 1)[1] for n in rows if n.startswith("flowschema")}
    assert names == {
        "exempt",
        "probes",
        "system-leader-election",
        "endpoint-controller",
        "workload-leader-election",
        "system-node-high",
        "system-nodes",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-system-service-accounts",
        "service-accounts",
        "global-default",
        "catch-all",
    }
    out = subprocess.run(
        [
            str(kubectl_path()),
            "--kubeconfig",
            kubeconfig,
            "get",
            "prioritylevelconfiguration",
            "exempt",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["spec"]["type"] == "Exempt"
