"""pods/proxy, services/proxy and nodes/proxy with the real kubectl and a real Docker pod.

An API server of the module's own, the endpoints controller (so a Service's Endpoints are
the real thing), and a Docker kubelet running a busybox httpd pod whose CGI scripts echo
the request (its environment: method, query, headers) and its body. Requests go through the
API server over HTTPS, or through `kubectl proxy` on loopback; the API server reaches the
pod at its address on the kubelet's own Docker network, and the kubelet over mutual TLS.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websocket

from k8slite import pki
from tests.conftest import ServerHandle, kubectl_path
from tests.integration.controller_harness import ManagerHandle, start_controller_manager
from tests.integration.kubelet_harness import (
    BUSYBOX,
    KubeletProcess,
    Pods,
    docker_problem,
    kubectl,
    kubelet_of_its_own,
    unique_node,
)
from tests.polling import wait_for

# index.html, a directory (busybox answers /dir with a redirect to /dir/), a page with
# links, and CGI scripts:
# env (the request as CGI sees it, with a CORS header and one of its own in the answer)
# sum (the body's MD5), and slow and go (an answer that waits for another request).
ENV_CGI = (
    "#!/bin/sh\n"
    'echo "Content-Type: text/plain"\n'
    'echo "Access-Control-Allow-Origin: *"\n'
    'echo "X-Backend: env"\n'
    "echo\n"
    "env | sort\n"
)
SUM_CGI = '#!/bin/sh\necho "Content-Type: text/plain"\necho\nmd5sum\n'
# Says "first", then waits until /cgi-bin/go has been called before it says "second".
SLOW_CGI = (
    "#!/bin/sh\n"
    'echo "Content-Type: text/plain"\n'
    "echo\n"
    "echo first\n"
    "while [ ! -e /tmp/go ]; do sleep 0.1; done\n"
    "echo second\n"
)
GO_CGI = '#!/bin/sh\ntouch /tmp/go\necho "Content-Type: text/plain"\necho\necho go\n'
# A 12 MiB page (past the 3 MiB an API request body may have) whose bytes a test can know.
BIG_LINE = b"k8slite proxy streams this line\n"
BIG_SIZE = 12 * 1024 * 1024
_SERVE = "exec httpd -f -p 8080 -h /www"
HTTPD = f"""
mkdir -p /www/dir /www/cgi-bin
echo index-page > /www/index.html
echo in-dir > /www/dir/index.html
echo '<a href="/dir/">dir</a> <a href="rel">rel</a>' > /www/links.html
cat > /www/cgi-bin/env <<'EOF'
{ENV_CGI}EOF
cat > /www/cgi-bin/sum <<'EOF'
{SUM_CGI}EOF
cat > /www/cgi-bin/slow <<'EOF'
{SLOW_CGI}EOF
cat > /www/cgi-bin/go <<'EOF'
{GO_CGI}EOF
yes '{BIG_LINE.decode().strip()}' | head -c {BIG_SIZE} > /www/big
chmod +x /www/cgi-bin/*
{_SERVE}
"""


@pytest.fixture(scope="module")
def manager(module_apiserver: ServerHandle) -> Iterator[ManagerHandle]:
    handle = start_controller_manager(module_apiserver, "--controllers", "endpoints-controller")
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def kubelet(
    module_apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeletProcess]:
    problem = docker_problem()
    if problem:
        pytest.skip(problem)
    node = unique_node("kl-proxy")
    workdir = tmp_path_factory.mktemp(node)
    # The node's log directory, served on the kubelet's /logs/ (upstream: /var/log).
    (workdir / "syslogs" / "pods").mkdir(parents=True)
    (workdir / "syslogs" / "messages").write_text("node booted\n")
    with kubelet_of_its_own(
        module_apiserver, node, "docker", workdir, "--system-log-dir", str(workdir / "syslogs")
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def ns(module_apiserver: ServerHandle) -> str:
    name = f"proxy-{os.urandom(3).hex()}"
    with module_apiserver.client() as api:
        r = api.post("/api/v1/namespaces", json={"metadata": {"name": name}})
        assert r.status_code == 201, r.text
    return name


@pytest.fixture(scope="module")
def web(
    module_apiserver: ServerHandle, manager: ManagerHandle, kubelet: KubeletProcess, ns: str
) -> dict[str, object]:
    """The running httpd pod (its object), its Service `web` (80 -> 8080, port name http)
    with the pod in its Endpoints, and a Service `empty` that selects nothing."""
    with module_apiserver.client() as api:
        pods = Pods(api, ns, kubelet.node)
        container = {
            "name": "httpd",
            "image": BUSYBOX,
            "command": ["sh", "-c", HTTPD],
            "ports": [{"name": "http", "containerPort": 8080}],
        }
        pods.create("web", [container], metadata={"labels": {"app": "web"}})
        for name, selector in (("web", {"app": "web"}), ("empty", {"app": "none"})):
            service = {
                "metadata": {"name": name},
                "spec": {
                    "selector": selector,
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
                },
            }
            r = api.post(f"/api/v1/namespaces/{ns}/services", json=service)
            assert r.status_code == 201, r.text
        wait_for(lambda: pods.condition("web", "Ready") == "True", 120, what="the pod Ready")

        def endpoints() -> list[object] | None:
            r = api.get(f"/api/v1/namespaces/{ns}/endpoints/web")
            subsets = r.json().get("subsets") if r.status_code == 200 else None
            return subsets if subsets and subsets[0].get("addresses") else None

        wait_for(endpoints, 60, what="the web Service's endpoints")
        # The httpd answers once it has started: ask it through the proxy until it does.
        wait_for(
            lambda: api.get(f"/api/v1/namespaces/{ns}/pods/web/proxy/").status_code == 200,
            60,
            what="the httpd to answer",
        )
        pod = pods.get("web")
        assert pod is not None
        return pod


def _env(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_pod_proxy_passes_method_query_and_headers(
    module_apiserver: ServerHandle, web: dict[str, object], ns: str
) -> None:
    base = f"/api/v1/namespaces/{ns}/pods"
    with module_apiserver.client() as api:
        # No port: the pod's first declared container port; the names with a port and a
        # scheme reach the same server.
        for name in ("web", "web:8080", "http:web:8080"):
            r = api.get(f"{base}/{name}/proxy/")
            assert (r.status_code, r.text) == (200, "index-page\n"), name
        r = api.post(
            f"{base}/web:8080/proxy/cgi-bin/env",
            params={"a": "1", "b": "two words"},
            headers={"X-Custom": "kept", "Connection": "close, X-Hop", "X-Hop": "dropped"},
            content=b"",
        )
    assert r.status_code == 200, r.text
    env = _env(r.text)
    assert env["REQUEST_METHOD"] == "POST"
    assert env["QUERY_STRING"] == "a=1&b=two+words"
    assert env["HTTP_X_CUSTOM"] == "kept"
    # A header the Connection header names is hop-by-hop: not passed on.
    assert "HTTP_X_HOP" not in env
    assert env["HTTP_X_FORWARDED_URI"] == f"{base}/web:8080/proxy/cgi-bin/env"
    assert env["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    # The backend's own header comes back; its CORS header does not (upstream drops it).
    assert r.headers["x-backend"] == "env"
    assert "access-control-allow-origin" not in r.headers


def test_redirects_and_links_are_rewritten_to_the_proxy_path(
    module_apiserver: ServerHandle, web: dict[str, object], ns: str
) -> None:
    base = f"/api/v1/namespaces/{ns}/pods/web:8080/proxy"
    with module_apiserver.client() as api:
        # busybox answers /dir with "Location: /dir/": back under the proxy path.
        r = api.get(f"{base}/dir")
        assert r.status_code == 302, r.text
        assert r.headers["location"] == f"{base}/dir/"
        assert api.get(r.headers["location"]).text == "in-dir\n"
        # The proxy's root without its slash: upstream's 301 to it, query kept.
        r = api.get(base, params={"x": "1"})
        assert (r.status_code, r.headers["location"]) == (301, f"{base}/?x=1")
        # An HTML page's absolute links go back through the proxy; relative ones need not.
        r = api.get(f"{base}/links.html")
        assert r.headers["content-type"].startswith("text/html")
        assert r.text == f'<a href="{base}/dir/">dir</a> <a href="rel">rel</a>\n'


def test_large_bodies_stream_both_ways(
    module_apiserver: ServerHandle, web: dict[str, object], ns: str
) -> None:
    """12 MiB up and 12 MiB down, past the 3 MiB limit of an API request body."""
    data = os.urandom(BIG_SIZE)
    base = f"/api/v1/namespaces/{ns}/pods/web:8080/proxy"

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), 256 * 1024):
            yield data[start : start + 256 * 1024]

    with module_apiserver.client() as api:
        # busybox's CGI wants a Content-Length (it reads no chunked body).
        up = api.post(
            f"{base}/cgi-bin/sum",
            content=chunks(),
            headers={"Content-Length": str(len(data))},
            timeout=120,
        )
        assert up.status_code == 200, up.text
        assert up.text.split()[0] == hashlib.md5(data).hexdigest()
        got = hashlib.sha256()
        size = 0
        with api.stream("GET", f"{base}/big", timeout=120) as down:
            assert down.status_code == 200
            assert down.headers["content-length"] == str(BIG_SIZE)
            for chunk in down.iter_raw():
                got.update(chunk)
                size += len(chunk)
    expected = (BIG_LINE * (BIG_SIZE // len(BIG_LINE) + 1))[:BIG_SIZE]
    assert size == BIG_SIZE
    assert got.hexdigest() == hashlib.sha256(expected).hexdigest()


def test_answers_are_relayed_as_they_come(
    module_apiserver: ServerHandle, web: dict[str, object], ns: str
) -> None:
    """The first line of an answer arrives while the backend still waits to send the rest
    (for a request that only comes after it): a proxy that buffered would never pass it."""
    base = f"/api/v1/namespaces/{ns}/pods/web:8080/proxy"
    with module_apiserver.client() as api, api.stream("GET", f"{base}/cgi-bin/slow") as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        assert next(lines) == "first"
        assert api.get(f"{base}/cgi-bin/go").text == "go\n"
        assert next(lines) == "second"


def test_service_proxy_through_kubectl_proxy(
    module_apiserver: ServerHandle, web: dict[str, object], ns: str
) -> None:
    env = dict(os.environ, KUBECONFIG=str(module_apiserver.kubeconfig))
    with subprocess.Popen(
        [str(kubectl_path()), "proxy", "--port=0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            found = re.match(r"Starting to serve on 127\.0\.0\.1:(\d+)", line)
            assert found, line + (proc.stderr.read() if proc.stderr else "")
            local = f"http://127.0.0.1:{found.group(1)}"
            base = f"{local}/api/v1/namespaces/{ns}/services"
            # By port number, by port name, with the scheme, and without (the port's name).
            for name in ("web:80", "web:http", "http:web:80", "web:http"):
                r = httpx.get(f"{base}/{name}/proxy/", timeout=30)
                assert (r.status_code, r.text) == (200, "index-page\n"), name
            r = httpx.get(f"{base}/web:80/proxy/dir", timeout=30)
            assert r.headers["location"] == f"/api/v1/namespaces/{ns}/services/web:80/proxy/dir/"
            r = httpx.get(f"{base}/empty:80/proxy/", timeout=30)
            assert r.status_code == 503
            assert r.json()["message"] == 'no endpoints available for service "empty"'
        finally:
            proc.kill()


def test_service_proxy_picks_only_ready_endpoints(
    module_apiserver: ServerHandle, kubelet: KubeletProcess, web: dict[str, object], ns: str
) -> None:
    """A second pod of the Service that serves but never passes its readiness probe is in
    the Endpoints' notReadyAddresses, and services/proxy never picks it."""
    with module_apiserver.client() as api:
        pods = Pods(api, ns, kubelet.node)
        sick = {
            "name": "httpd",
            "image": BUSYBOX,
            "command": ["sh", "-c", "mkdir /www; echo sick-page > /www/index.html; " + _SERVE],
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1},
        }
        pods.create("sick", [sick], metadata={"labels": {"app": "web"}})
        try:

            def not_ready() -> bool:
                subsets = api.get(f"/api/v1/namespaces/{ns}/endpoints/web").json()["subsets"]
                return any(
                    a["targetRef"]["name"] == "sick"
                    for s in subsets
                    for a in s.get("notReadyAddresses") or ()
                )

            wait_for(not_ready, 120, what="the sick pod among the not-ready addresses")
            # It does serve: straight to the pod, it answers.
            wait_for(
                lambda: (
                    api.get(f"/api/v1/namespaces/{ns}/pods/sick:8080/proxy/").text == "sick-page\n"
                ),
                60,
                what="the sick pod's httpd",
            )
            # One ready address: each pick is it (a pick among all would miss ~half the time).
            for _ in range(20):
                r = api.get(f"/api/v1/namespaces/{ns}/services/web:80/proxy/")
                assert (r.status_code, r.text) == (200, "index-page\n")
        finally:
            pods.delete("sick", grace=0)


def test_refusals_are_upstream_statuses(
    module_apiserver: ServerHandle, web: dict[str, object], ns: str
) -> None:
    with module_apiserver.client() as api:
        cases = {
            f"/api/v1/namespaces/{ns}/services/nope:80/proxy/": (404, 'services "nope" not found'),
            f"/api/v1/namespaces/{ns}/services/nope:http/proxy/": (
                404,
                'endpoints "nope" not found',
            ),
            f"/api/v1/namespaces/{ns}/services/web:81/proxy/": (
                503,
                'no service port 81 found for service "web"',
            ),
            f"/api/v1/namespaces/{ns}/services/web:other/proxy/": (
                503,
                'no endpoints available for service "web:other"',
            ),
            f"/api/v1/namespaces/{ns}/pods/gone/proxy/": (404, 'pods "gone" not found'),
            f"/api/v1/namespaces/{ns}/pods/ftp:web:80/proxy/": (
                400,
                'invalid pod request "ftp:web:80"',
            ),
            "/api/v1/nodes/no-such-node/proxy/": (404, 'nodes "no-such-node" not found'),
        }
        for path, (code, message) in cases.items():
            r = api.get(path)
            assert (r.status_code, r.json()["message"]) == (code, message), path
            assert r.json()["kind"] == "Status"
        # Nothing listens on 9999 in the pod: the backend refuses, upstream's 503.
        r = api.get(f"/api/v1/namespaces/{ns}/pods/web:9999/proxy/")
    assert r.status_code == 503, r.text
    status = web["status"]
    assert isinstance(status, dict)
    assert r.json()["message"] == (
        f"error trying to reach service: dial tcp {status['podIP']}:9999: connect: "
        "connection refused"
    )


def test_node_proxy_reaches_the_kubelet(
    module_apiserver: ServerHandle, kubelet: KubeletProcess, web: dict[str, object], ns: str
) -> None:
    done = kubectl(
        module_apiserver, "get", "--raw", f"/api/v1/nodes/{kubelet.node}/proxy/stats/summary"
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["node"]["nodeName"] == kubelet.node
    assert any(
        p["podRef"] == {**p["podRef"], "name": "web", "namespace": ns} for p in summary["pods"]
    )
    done = kubectl(module_apiserver, "get", "--raw", f"/api/v1/nodes/{kubelet.node}/proxy/metrics")
    assert done.returncode == 0, done.stderr
    assert "# TYPE " in done.stdout
    # The node's port given explicitly is the kubelet too.
    done = kubectl(
        module_apiserver,
        "get",
        "--raw",
        f"/api/v1/nodes/{kubelet.node}:{kubelet.port}/proxy/pods",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kind"] == "PodList"
    # The node's log directory: a listing, a file, a directory's redirect to itself with "/".
    base = f"/api/v1/nodes/{kubelet.node}/proxy/logs"
    with module_apiserver.client() as api:
        listing = api.get(f"{base}/")
        assert listing.status_code == 200, listing.text
        assert '<a href="messages">messages</a>' in listing.text
        assert '<a href="pods/">pods/</a>' in listing.text
        assert api.get(f"{base}/messages").text == "node booted\n"
        moved = api.get(f"{base}/pods")
        assert (moved.status_code, moved.headers["location"]) == (301, "pods/")


def test_a_user_without_the_proxy_subresource_is_refused(
    module_apiserver: ServerHandle,
    kubelet: KubeletProcess,
    web: dict[str, object],
    ns: str,
    tmp_path: Path,
) -> None:
    user = "proxy-viewer"
    pki_dir = module_apiserver.pki
    cert, key = pki.issue_client_cert(pki_dir, user, user)
    kubeconfig = tmp_path / "viewer.kubeconfig"
    pki.write_kubeconfig(
        kubeconfig,
        module_apiserver.url,
        module_apiserver.ca.read_bytes(),
        cert.read_bytes(),
        key.read_bytes(),
        user,
    )
    binding = {
        "metadata": {"name": user},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    with module_apiserver.client() as api:
        r = api.post(
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", json=binding
        )
        assert r.status_code == 201, r.text

    def raw(path: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(kubectl_path()), "--kubeconfig", str(kubeconfig), "get", "--raw", path],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    # The viewer may read the pod, so the binding is in force; not proxy to it.
    assert raw(f"/api/v1/namespaces/{ns}/pods/web").returncode == 0
    done = raw(f"/api/v1/namespaces/{ns}/pods/web:8080/proxy/")
    assert done.returncode == 1
    assert (
        f'Error from server (Forbidden): pods "web:8080" is forbidden: User "{user}" cannot get '
        f'resource "pods/proxy" in API group "" in the namespace "{ns}"'
    ) in done.stderr
    done = raw(f"/api/v1/namespaces/{ns}/services/web:80/proxy/")
    assert (
        f'services "web:80" is forbidden: User "{user}" cannot get resource "services/proxy" '
        f'in API group "" in the namespace "{ns}"'
    ) in done.stderr
    done = raw(f"/api/v1/nodes/{kubelet.node}/proxy/stats/summary")
    assert (
        f'nodes "{kubelet.node}" is forbidden: User "{user}" cannot get resource "nodes/proxy" '
        'in API group "" at the cluster scope'
    ) in done.stderr


def _websocket(server: ServerHandle, path: str, protocol: str) -> websocket.WebSocket:
    cert, key = server.cert("admin")
    return websocket.create_connection(
        f"wss{server.url.removeprefix('https')}{path}",
        subprotocols=[protocol],
        sslopt={"ca_certs": str(server.ca), "certfile": str(cert), "keyfile": str(key)},
        timeout=30,
    )


def test_websockets_pass_through(
    module_apiserver: ServerHandle, kubelet: KubeletProcess, web: dict[str, object], ns: str
) -> None:
    """A WebSocket through nodes/proxy to the kubelet's own /exec, and a backend that does
    not speak WebSocket: its answer comes back as it gave it."""
    path = (
        f"/api/v1/nodes/{kubelet.node}/proxy/exec/{ns}/web/httpd"
        "?command=echo&command=through&output=1"
    )
    ws = _websocket(module_apiserver, path, "v4.channel.k8s.io")
    received: dict[int, bytes] = {}
    try:
        assert ws.subprotocol == "v4.channel.k8s.io"
        while True:
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            received[data[0]] = received.get(data[0], b"") + data[1:]
    except websocket.WebSocketConnectionClosedException:
        pass
    finally:
        ws.close()
    assert received[1] == b"through\n"
    assert json.loads(received[3])["status"] == "Success"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        _websocket(module_apiserver, f"/api/v1/namespaces/{ns}/pods/web:8080/proxy/", "chat")
    assert refused.value.status_code == 200
    assert refused.value.resp_body == b"index-page\n"
