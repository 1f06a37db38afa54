"""Mutual TLS, authentication over HTTP/1.1 and HTTP/2, limits, timeouts and the audit log."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from k8slite import pki
from tests.conftest import ServerHandle, kubectl_path, start_apiserver
from tests.integration.flowcontrol_helpers import (
    executing,
    kubelet_heartbeat,
    metric,
    tls_socket,
)
from tests.polling import wait_for


def _context(server: ServerHandle, cert: tuple[str, str] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(server.ca))
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return ctx


def _refused(server: ServerHandle, cert: tuple[str, str] | None) -> None:
    """The TLS layer refuses the connection: no HTTP answer of any kind comes back."""
    with (
        pytest.raises(httpx.TransportError),
        httpx.Client(base_url=server.url, verify=_context(server, cert), timeout=10) as c,
    ):
        c.get("/api/v1/namespaces")


def _refused_raw(server: ServerHandle, cert: tuple[str, str] | None) -> None:
    """Same through a bare TLS socket: the server aborts the handshake with an alert."""
    host, port = server.url.removeprefix("https://").rsplit(":", 1)
    ctx = _context(server, cert)
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        pytest.raises((ssl.SSLError, ConnectionError)),
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        # TLS 1.3 reports a refused client certificate at the first read.
        tls.sendall(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n\r\n")
        if not tls.recv(1024):
            raise ConnectionError("closed without an answer")


def test_no_client_certificate_nor_token_is_unauthorized(apiserver: ServerHandle) -> None:
    """No certificate: the connection stands (a bearer token may follow), but a request
    with neither gets upstream's 401 Status, never an anonymous answer."""
    with httpx.Client(base_url=apiserver.url, verify=_context(apiserver, None), timeout=10) as c:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic x"}):
            r = c.get("/api/v1/namespaces", headers=headers)
            assert r.status_code == 401, r.text
            assert r.json() == {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "Unauthorized",
                "reason": "Unauthorized",
                "code": 401,
            }


def test_certificate_of_a_foreign_ca_is_refused(apiserver: ServerHandle, tmp_path: Path) -> None:
    pki.ensure_pki(tmp_path)  # a second, unrelated cluster CA
    cert = (str(tmp_path / "client-admin.pem"), str(tmp_path / "client-admin.key"))
    _refused(apiserver, cert)
    _refused_raw(apiserver, cert)


def test_expired_certificate_is_refused(apiserver: ServerHandle) -> None:
    start = datetime.now(UTC) - timedelta(days=3)
    cert, key = pki.issue_client_cert(
        apiserver.pki, "expired-admin", "admin", ["system:masters"], days=1, not_before=start
    )
    _refused(apiserver, (str(cert), str(key)))
    _refused_raw(apiserver, (str(cert), str(key)))


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2"])
def test_identity_reaches_the_handlers(apiserver: ServerHandle, http2: bool) -> None:
    expected = {
        "admin": ("admin", ["system:masters", "system:authenticated"]),
        "node-node1": ("system:node:node1", ["system:nodes", "system:authenticated"]),
        "scheduler": ("system:kube-scheduler", ["system:authenticated"]),
    }
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    for identity, (user, groups) in expected.items():
        with apiserver.client(identity, http2=http2, http1=not http2) as c:
            for _ in range(3):  # several requests on one connection
                r = c.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", json=review)
                assert r.status_code == 201, r.text
                assert r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
                info = r.json()["status"]["userInfo"]
                assert (info["username"], info["groups"]) == (user, groups)


def test_identity_per_connection_under_concurrency(apiserver: ServerHandle) -> None:
    """Interleaved requests of two identities never see each other's identity."""
    results: dict[str, set[int]] = {"admin": set(), "node-node1": set()}

    def hammer(identity: str) -> None:
        with apiserver.client(identity, http2=True) as c:
            for _ in range(30):
                results[identity].add(c.get("/api/v1/namespaces/default/secrets").status_code)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {"admin": {200}, "node-node1": {403}}


def test_seed_curl_command(apiserver: ServerHandle) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    cert, key = apiserver.cert("admin")
    url = apiserver.url.replace("127.0.0.1", "localhost") + "/api/v1/nodes"
    out = subprocess.run(
        [curl, "-sS", "--cert", cert, "--key", key, "--cacert", str(apiserver.ca), url],
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert json.loads(out.stdout)["kind"] == "NodeList"
    refused = subprocess.run(
        [curl, "-sS", "--cacert", str(apiserver.ca), url],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert json.loads(refused.stdout)["code"] == 401


def _kubectl(server: ServerHandle, identity: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(kubectl_path()), "--kubeconfig", str(server.kubeconfig_for(identity)), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_kubectl_admin_works_and_node_is_forbidden(apiserver: ServerHandle) -> None:
    forbidden = (
        'secrets is forbidden: User "system:node:node1" cannot list resource '
        '"secrets" in API group "" in the namespace "default"'
    )
    ok = _kubectl(apiserver, "admin", "get", "--raw", "/api/v1/namespaces")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["kind"] == "NamespaceList"
    denied = _kubectl(apiserver, "node-node1", "get", "--raw", "/api/v1/namespaces/default/secrets")
    assert denied.returncode == 1
    assert forbidden in denied.stderr
    ok = _kubectl(apiserver, "admin", "get", "namespaces", "-o", "name")
    assert ok.returncode == 0, ok.stderr
    assert "namespace/kube-system" in ok.stdout.split()
    denied = _kubectl(apiserver, "node-node1", "get", "secrets", "-n", "default")
    assert denied.returncode == 1
    assert f"Error from server (Forbidden): {forbidden}" in denied.stderr


def test_nonresource_paths_are_authorized(apiserver: ServerHandle) -> None:
    with apiserver.client("scheduler") as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/version").status_code == 200
        r = c.get("/metrics")
        assert r.status_code == 403
        assert (
            r.json()["message"]
            == 'forbidden: User "system:kube-scheduler" cannot get path "/metrics"'
        )
    with apiserver.client("admin") as c:
        assert c.get("/metrics").status_code == 200


# ------------------------------------------------------------- limits and audit


@pytest.fixture
def limited_server(tmp_path: Path) -> ServerHandle:
    server = start_apiserver(
        tmp_path / "data",
        "--max-requests-inflight=1",
        "--max-mutating-requests-inflight=1",
        "--request-timeout=2s",
        f"--audit-log-path={tmp_path / 'audit' / 'audit.log'}",
    )
    yield server  # type: ignore[misc]
    server.stop()


def _slow_list(client: httpx.Client, rv: int) -> httpx.Response:
    # A list at a future resourceVersion waits for it: a request that holds its seat.
    return client.get(f"/api/v1/namespaces/default/pods?resourceVersion={rv}")


def _revision(client: httpx.Client) -> int:
    return int(client.get("/api/v1/namespaces").json()["metadata"]["resourceVersion"])


@pytest.fixture
def one_seat_server(tmp_path: Path) -> Iterator[ServerHandle]:
    """The smallest seat total: every limited priority level has one seat. A request may
    wait in its queue for a quarter of the 30 s request timeout."""
    server = start_apiserver(
        tmp_path / "data",
        "--max-requests-inflight=1",
        "--max-mutating-requests-inflight=1",
        "--request-timeout=30s",
    )
    yield server
    server.stop()


def test_inflight_limit_answers_429(one_seat_server: ServerHandle) -> None:
    """A user whose level's seat is provably held waits in its queue, then gets 429, while
    other priority levels, system:masters and watches flow."""
    server = one_seat_server
    with server.client("admin") as admin:
        assert admin.post("/api/v1/nodes", json={"metadata": {"name": "node1"}}).status_code == 201
        ns = {"metadata": {"name": "flood"}}
        assert admin.post("/api/v1/namespaces", json=ns).status_code == 201
        rules = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch"]}]
        role = {"metadata": {"name": "reader"}, "rules": rules}
        binding = {
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "flooder"}
            ],
        }
        rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/flood"
        assert admin.post(f"{rbac}/roles", json=role).status_code == 201
        assert admin.post(f"{rbac}/rolebindings", json=binding).status_code == 201
        pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
        assert admin.post("/api/v1/namespaces/flood/pods", json=pod).status_code == 201
        # 16 MB of ConfigMaps: their list cannot fit in the two sockets' buffers.
        for i in range(18):
            cm = {"metadata": {"name": f"big-{i}"}, "data": {"d": "x" * 900_000}}
            r = admin.post("/api/v1/namespaces/flood/configmaps", json=cm)
            assert r.status_code == 201, r.text
    pki.issue_client_cert(server.pki, "flooder", "flooder")
    holder = tls_socket(server, "flooder", rcvbuf=4096)
    try:
        # The list's answer is never read, so the request keeps global-default's one seat
        # until the socket closes (or its 30 s deadline).
        holder.sendall(b"GET /api/v1/namespaces/flood/configmaps HTTP/1.1\r\nHost: x\r\n\r\n")
        with (
            server.client("admin") as admin,
            server.client("flooder") as flooder,
            server.client("node-node1") as kubelet,
            server.client("scheduler") as scheduler,
            server.client("controller-manager") as manager,
        ):
            wait_for(lambda: executing(admin, "global-default") == 1, what="a held seat")
            kubelet_heartbeat(kubelet, "node1")  # node-high
            binding = {"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "node1"}}
            r = scheduler.post("/api/v1/namespaces/flood/pods/p/binding", json=binding)
            assert r.status_code == 201, r.text  # workload-high
            lease = {
                "metadata": {"name": "kube-controller-manager"},
                "spec": {"holderIdentity": "manager-1", "leaseDurationSeconds": 15},
            }
            r = manager.post(
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases", json=lease
            )
            assert r.status_code == 201, r.text  # leader-election
            with flooder.stream("GET", "/api/v1/namespaces/flood/configmaps?watch=1") as w:
                assert w.status_code == 200  # watches take no seat
            r = flooder.get("/api/v1/namespaces/flood/configmaps?limit=1")
            assert r.status_code == 429, r.text
            assert r.headers["retry-after"] == "1"
            assert r.json()["reason"] == "TooManyRequests"
            assert r.json()["message"] == "Too many requests, please try again later."
            assert r.headers["x-kubernetes-pf-flowschema-uid"]
            rejected = metric(
                admin,
                "apiserver_flowcontrol_rejected_requests_total",
                priority_level="global-default",
                flow_schema="global-default",
                reason="time-out",
            )
            assert rejected == 1
            # The seat was held all along: the refusal was no race.
            assert executing(admin, "global-default") == 1
    finally:
        holder.close()
    with server.client("admin") as admin, server.client("flooder") as flooder:
        wait_for(lambda: executing(admin, "global-default") == 0, what="the seat freed")
        assert flooder.get("/api/v1/namespaces/flood/configmaps?limit=1").status_code == 200


def test_request_timeout_answers_504(limited_server: ServerHandle) -> None:
    with limited_server.client("admin") as admin:
        start = time.monotonic()
        r = _slow_list(admin, _revision(admin) + 1000)
        assert time.monotonic() - start < 2.9  # the 2 s deadline, not the list's own 3 s wait
        assert r.status_code == 504
        assert r.json()["reason"] == "Timeout"
        assert (
            r.json()["message"] == "Timeout: request did not complete within requested "
            "timeout - context deadline exceeded"
        )
        r = admin.get("/api/v1/namespaces?timeout=forever")
        assert r.status_code == 400


def test_audit_log_records_mutating_requests(limited_server: ServerHandle, tmp_path: Path) -> None:
    cm = {"metadata": {"generateName": "audited-"}, "data": {"a": "b"}}
    with limited_server.client("admin") as admin:
        created = admin.post("/api/v1/namespaces/default/configmaps", json=cm)
        assert created.status_code == 201
        name = created.json()["metadata"]["name"]
        assert admin.get(f"/api/v1/namespaces/default/configmaps/{name}").status_code == 200
        assert admin.delete(f"/api/v1/namespaces/default/configmaps/{name}").status_code == 200
    with limited_server.client("node-node1") as node:
        assert node.post("/api/v1/namespaces/default/configmaps", json=cm).status_code == 403
    # An event is written once its response is complete, so just after the client has it.
    deadline = time.monotonic() + 10
    while True:
        lines = (tmp_path / "audit" / "audit.log").read_text().split("\n")[:-1]  # whole lines
        events = [json.loads(line) for line in lines]
        mine = [e for e in events if e.get("objectRef", {}).get("resource") == "configmaps"]
        if len(mine) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [(e["verb"], e["responseStatus"]["code"], e["user"]["username"]) for e in mine] == [
        ("create", 201, "admin"),
        ("delete", 200, "admin"),
        ("create", 403, "system:node:node1"),
    ]
    first = mine[0]
    assert first["objectRef"] == {
        "resource": "configmaps",
        "namespace": "default",
        "name": name,
        "apiVersion": "v1",
    }
    assert first["user"]["groups"] == ["system:masters", "system:authenticated"]
    assert first["kind"] == "Event" and first["apiVersion"] == "audit.k8s.io/v1"
    assert float(first["annotations"]["k8slite.io/latency-seconds"]) >= 0
    assert first["requestReceivedTimestamp"] <= first["stageTimestamp"]
    assert all(e["verb"] != "get" for e in events)  # reads are not audited


# ------------------------------------------------------------------ input limits


def _nested(depth: int) -> str:
    return '{"a":' * (depth - 1) + "1" + "}" * (depth - 1)


def test_body_nesting_depth_is_limited(apiserver: ServerHandle) -> None:
    with apiserver.client("admin") as c:
        for depth, code in ((150, 400), (2000, 400)):
            body = '{"metadata":{"generateName":"deep-"},"data":{},"x":' + _nested(depth) + "}"
            r = c.post(
                "/api/v1/namespaces/default/configmaps",
                content=body,
                headers={"content-type": "application/json"},
            )
            assert r.status_code == code, r.text
        yaml_body = "metadata: {generateName: deep-}\nx: " + "[" * 150 + "]" * 150
        r = c.post(
            "/api/v1/namespaces/default/configmaps",
            content=yaml_body,
            headers={"content-type": "application/yaml"},
        )
        assert r.status_code == 400, r.text
        laughs = (
            "a: &a [x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n"
                for i in range(8)
            )
            + "metadata: {generateName: laughs-}\n"
        )
        r = c.post(
            "/api/v1/namespaces/default/configmaps",
            content=laughs,
            headers={"content-type": "application/yaml"},
        )
        assert r.status_code == 400, r.text
        assert "aliasing" in r.json()["message"]


def test_oversized_headers_and_bodies_are_refused(apiserver: ServerHandle) -> None:
    with apiserver.client("admin") as c:
        r = c.post(
            "/api/v1/namespaces/default/configmaps",
            content=b"x" * (4 << 20),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413
        try:
            r = c.get("/api/v1/namespaces", headers={"x-big": "y" * (200 << 10)})
            assert 400 <= r.status_code < 500
        except httpx.TransportError:
            pass  # closing the connection is an answer too
    with apiserver.client("admin") as c:
        assert c.get("/api/v1/namespaces").status_code == 200


def _read_response(tls: ssl.SSLSocket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = tls.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_refused_request_keeps_its_connection(limited_server: ServerHandle) -> None:
    """A refused write leaves the keep-alive connection usable; a withheld body closes it."""
    host, port = limited_server.url.removeprefix("https://").rsplit(":", 1)
    ctx = _context(limited_server, limited_server.cert("node-node1"))
    body = b'{"metadata":{"name":"x"}}'
    head = (
        b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with (
        socket.create_connection((host, int(port)), timeout=30) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(head)
        tls.sendall(body)
        first = _read_response(tls)
        assert first.startswith(b"HTTP/1.1 403")
        assert b"connection: close" not in first.lower()
        tls.sendall(b"GET /api/v1/nodes HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(tls).startswith(b"HTTP/1.1 200")
        # A client that holds its body back until it has the answer is told to go away once
        # the body's own deadline (a quarter of the 2 s request timeout) has passed; it
        # held no seat meanwhile.
        tls.sendall(head)
        late = _read_response(tls)
        assert late.startswith(b"HTTP/1.1 408")
        assert b"connection: close" in late.lower()
        assert b"the request body did not arrive within 0.5s" in late
