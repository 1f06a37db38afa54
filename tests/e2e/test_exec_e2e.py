"""Into the pods with the real kubectl and the official Python client, on a whole cluster.

exec (with and without a TTY, stdin piped in, exit codes), attach, port-forward to a
busybox httpd pod through kubectl's SPDY-over-WebSocket tunnel and through the Python
client's channels, kubectl cp both ways, and the refusals: a user without pods/exec, and a
container that is not there. Pods are real Docker containers of busybox:1.35; traffic goes
only to loopback (the forwarded ports) and to the cluster's own API server and pods.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.stream import portforward, stream

from k8slite import pki
from tests.conftest import kubectl_path
from tests.e2e.cluster import Cluster, cluster_for_tests
from tests.polling import wait_for

pytestmark = pytest.mark.xdist_group("host-network")

IMAGE = "busybox:1.35"
# Serves "page-<port>" on 8080 and 8081.
HTTPD = (
    "for p in 8080 8081; do mkdir -p /www$p && echo page-$p > /www$p/index.html; done; "
    "httpd -p 8080 -h /www8080 && exec httpd -f -p 8081 -h /www8081"
)
TICKER = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.5; done"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster_for_tests(tmp_path_factory.mktemp("exec")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> Iterator[str]:
    name = f"exec-{os.urandom(3).hex()}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _pod(name: str, script: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": IMAGE, "command": ["sh", "-c", script]}],
            },
        }
    )


@pytest.fixture(scope="module")
def pods(cluster: Cluster, ns: str) -> dict[str, str]:
    """Running pods: `shell` (sleeps), `web` (httpd on 8080 and 8081), `ticker` (prints)."""
    scripts = {"shell": "sleep 3600", "web": HTTPD, "ticker": TICKER}
    for name, script in scripts.items():
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=_pod(name, script))
    for name in scripts:
        cluster.kubectl(
            "wait", "-n", ns, "--for=condition=Ready", f"pod/{name}", "--timeout=120s", timeout=150
        )
    return {name: name for name in scripts}


def test_exec_output_and_exit_code(cluster: Cluster, ns: str, pods: dict[str, str]) -> None:
    done = cluster.kubectl(
        "exec", "-n", ns, "shell", "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False
    )
    assert done.returncode == 3
    assert done.stdout == "out\n"
    assert "err\n" in done.stderr
    assert "command terminated with exit code 3" in done.stderr
    assert cluster.kubectl("exec", "-n", ns, "shell", "--", "echo", "hello").stdout == "hello\n"


def test_exec_stdin_piped(cluster: Cluster, ns: str, pods: dict[str, str]) -> None:
    done = cluster.kubectl(
        "exec", "-i", "-n", ns, "shell", "--", "sh", "-c", "cat; echo end", input="one\ntwo\n"
    )
    # cat ends because stdin ended: the v5 close signal reached the process.
    assert done.stdout == "one\ntwo\nend\n"


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a terminal")
def test_exec_tty_and_resize(cluster: Cluster, ns: str, pods: dict[str, str]) -> None:
    command = (
        f"stty cols 123 rows 45; {kubectl_path()} exec -it -n {ns} shell -- "
        # Docker applies the first size while the process starts: read it a moment later.
        "sh -c 'tty; sleep 1; stty size; exit 4'"
    )
    # stdin stays open (a pipe that ends after the test) so the terminal is not closed early.
    with subprocess.Popen(["sleep", "60"], stdout=subprocess.PIPE) as feeder:
        try:
            done = subprocess.run(
                ["script", "-qec", command, "/dev/null"],
                stdin=feeder.stdout,
                capture_output=True,
                text=True,
                timeout=60,
                env=dict(os.environ, KUBECONFIG=str(cluster.kubeconfig)),
                check=False,
            )
        finally:
            feeder.kill()
    lines = done.stdout.replace("\r", "").splitlines()
    assert lines[0].startswith("/dev/pts/"), done.stdout
    assert lines[1] == "45 123", done.stdout
    assert done.returncode == 4


def test_exec_refusals(cluster: Cluster, ns: str, pods: dict[str, str], tmp_path: Path) -> None:
    done = cluster.kubectl("exec", "-n", ns, "shell", "-c", "nope", "--", "true", check=False)
    assert done.returncode == 1
    assert "Error from server (BadRequest): container nope is not valid for pod shell" in (
        done.stderr
    )
    if cluster.data_dir is None:
        pytest.skip("needs the cluster's CA to make a user")
    pki_dir = cluster.data_dir / "pki"
    cert, key = pki.issue_client_cert(pki_dir, "exec-viewer", "exec-viewer")
    kubeconfig = tmp_path / "viewer.kubeconfig"
    server = json.loads(cluster.kubectl("config", "view", "-o", "json", "--raw").stdout)[
        "clusters"
    ][0]["cluster"]["server"]
    pki.write_kubeconfig(
        kubeconfig,
        server,
        (pki_dir / "ca.pem").read_bytes(),
        cert.read_bytes(),
        key.read_bytes(),
        "exec-viewer",
    )
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "exec-viewer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "exec-viewer"}
        ],
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(binding))
    done = subprocess.run(
        [str(kubectl_path()), "--kubeconfig", str(kubeconfig), "exec", "-n", ns, "shell"]
        + ["--", "true"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert (
        f'Error from server (Forbidden): pods "shell" is forbidden: User "exec-viewer" cannot '
        f'create resource "pods/exec" in API group "" in the namespace "{ns}"'
    ) in done.stderr


def test_attach(cluster: Cluster, ns: str, pods: dict[str, str]) -> None:
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig))
    with subprocess.Popen(
        [str(kubectl_path()), "attach", "-n", ns, "ticker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            # New lines arrive as the container prints them.
            seen = [proc.stdout.readline() for _ in range(3)]
        finally:
            proc.kill()
    numbers = [int(line.split()[1]) for line in seen]
    assert all(line.startswith("tick ") for line in seen), seen
    assert numbers == sorted(numbers) and len(set(numbers)) == 3


def test_port_forward_with_kubectl(cluster: Cluster, ns: str, pods: dict[str, str]) -> None:
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig))
    with subprocess.Popen(
        [str(kubectl_path()), "port-forward", "-n", ns, "pod/web", ":8080", ":8081"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            local: dict[int, int] = {}
            while len(local) < 2:
                line = proc.stdout.readline()
                assert line, proc.stderr.read() if proc.stderr else ""
                found = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
                if found:
                    local[int(found.group(2))] = int(found.group(1))
            for _ in range(2):  # connections one after another on the same tunnel
                for port, at in local.items():
                    page = httpx.get(f"http://127.0.0.1:{at}/index.html", timeout=30)
                    assert page.text == f"page-{port}\n"
        finally:
            proc.kill()


def test_cp_both_ways(cluster: Cluster, ns: str, pods: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_bytes(os.urandom(3000).hex().encode())
    cluster.kubectl("cp", "-n", ns, str(source), "shell:/tmp/copied.txt")
    back = tmp_path / "out.txt"
    cluster.kubectl("cp", "-n", ns, "shell:/tmp/copied.txt", str(back))
    assert back.read_bytes() == source.read_bytes()


@pytest.fixture(scope="module")
def core_api(cluster: Cluster) -> k8s.CoreV1Api:
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(str(cluster.kubeconfig), client_configuration=configuration)
    return k8s.CoreV1Api(k8s.ApiClient(configuration))


def test_python_client_exec(core_api: k8s.CoreV1Api, ns: str, pods: dict[str, str]) -> None:
    resp: Any = stream(
        core_api.connect_get_namespaced_pod_exec,
        "shell",
        ns,
        command=["sh", "-c", "echo out; echo err >&2; exit 7"],
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=30)
    assert resp.read_stdout() == "out\n"
    assert resp.read_stderr() == "err\n"
    assert resp.returncode == 7
    resp = stream(
        core_api.connect_get_namespaced_pod_exec,
        "shell",
        ns,
        command=["cat"],
        stdin=True,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    resp.write_stdin("echo me\n")
    echoed = wait_for(lambda: resp.update(timeout=1) or resp.peek_stdout(), 30, what="echo")
    assert echoed == "echo me\n"
    resp.close()
    preloaded = stream(
        core_api.connect_get_namespaced_pod_exec,
        "shell",
        ns,
        command=["echo", "whole"],
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
    )
    assert preloaded == "whole\n"


def _http_get(sock: Any, limit: float = 30.0) -> bytes:
    """A whole HTTP answer read off a forwarded socket: headers, then Content-Length bytes."""
    sock.setblocking(True)
    sock.settimeout(limit)
    sock.sendall(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")
    data = b""
    deadline = time.monotonic() + limit
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head) if sep else None
        if length and len(body) >= int(length.group(1)):
            return data
        assert time.monotonic() < deadline, data
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_python_client_port_forward(core_api: k8s.CoreV1Api, ns: str, pods: dict[str, str]) -> None:
    pf: Any = portforward(
        core_api.connect_get_namespaced_pod_portforward, "web", ns, ports="8080,8081"
    )
    try:
        for port in (8080, 8081):
            answer = _http_get(pf.socket(port))
            assert answer.startswith(b"HTTP/1.1 200 OK"), answer
            assert answer.endswith(f"page-{port}\n".encode())
            assert pf.error(port) is None
    finally:
        pf.close()
