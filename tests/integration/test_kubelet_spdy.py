"""exec, attach and port-forward over plain SPDY/3.1, with the real kubectl forced to it.

KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false and KUBECTL_PORT_FORWARD_WEBSOCKETS=false make
kubectl 1.35 speak what older clients speak: an `Upgrade: SPDY/3.1` request offering the
channel protocols (v5.channel.k8s.io ... channel.k8s.io) or portforward.k8s.io. The API
server answers it itself (apiserver/spdystreams.py); the pods are Docker containers of a
kubelet of the test's own. Traffic goes only to loopback and the test's pods.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import zlib
from collections.abc import Iterator
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from k8slite.kubelet import spdy
from tests.conftest import ServerHandle, kubectl_path
from tests.integration.kubelet_harness import (
    BUSYBOX,
    KubeletProcess,
    Pods,
    docker_problem,
    kubelet_of_its_own,
    unique_node,
)

_PROBLEM = docker_problem()
pytestmark = pytest.mark.skipif(_PROBLEM is not None, reason=_PROBLEM or "")
SPDY_ONLY = {
    "KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false",
    "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false",
}
HTTPD = (
    "for p in 8080 8081; do mkdir -p /www$p && echo page-$p > /www$p/index.html; done; "
    "seq 1 200000 > /www8080/big; "
    "httpd -p 8080 -h /www8080 && exec httpd -f -p 8081 -h /www8081"
)
TICKER = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.5; done"


@pytest.fixture(scope="module")
def kubelet(
    apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeletProcess]:
    node = unique_node("kl-spdy")
    with kubelet_of_its_own(apiserver, node, "docker", tmp_path_factory.mktemp(node)) as proc:
        yield proc


@pytest.fixture
def pods(api: httpx.Client, namespace: str, kubelet: KubeletProcess) -> Pods:
    return Pods(api, namespace, kubelet.node)


def _env(server: ServerHandle) -> dict[str, str]:
    return dict(os.environ, KUBECONFIG=str(server.kubeconfig), **SPDY_ONLY)


def _kubectl(
    server: ServerHandle, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    # -v=6 logs each request with its verb and status.
    return subprocess.run(
        [str(kubectl_path()), "-v=6", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=90,
        env=_env(server),
        check=False,
    )


def _start(pods: Pods, name: str, script: str) -> None:
    pods.create(name, [{"name": "main", "image": BUSYBOX, "command": ["sh", "-c", script]}])
    pods.wait_phase(name, "Running", timeout=120)


def test_exec_exit_code_stdin_and_stderr(
    apiserver: ServerHandle, pods: Pods, namespace: str
) -> None:
    _start(pods, "shell", "sleep 3600")
    done = _kubectl(
        apiserver, "exec", "-n", namespace, "shell", "--", "sh", "-c", "echo o; echo e >&2; exit 3"
    )
    assert (done.returncode, done.stdout) == (3, "o\n"), done.stderr
    assert "e\n" in done.stderr and "command terminated with exit code 3" in done.stderr
    # A SPDY upgrade is a POST (a WebSocket one a GET).
    assert re.search(r'verb="POST" url="[^"]*/pods/shell/exec\?[^"]*" status="101', done.stderr)
    # stdin piped in, its end reaching the process (cat ends), a large enough body to take
    # several frames both ways.
    data = "".join(f"line {i}\n" for i in range(20000))
    piped = _kubectl(apiserver, "exec", "-i", "-n", namespace, "shell", "--", "cat", stdin=data)
    assert piped.returncode == 0, piped.stderr[-2000:]
    assert piped.stdout == data


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a terminal")
def test_exec_tty_and_resize(apiserver: ServerHandle, pods: Pods, namespace: str) -> None:
    _start(pods, "term", "sleep 3600")
    command = (
        f"stty cols 111 rows 33; {kubectl_path()} exec -it -n {namespace} term -- "
        # Docker applies the first size while the process starts: read it a moment later.
        "sh -c 'tty; sleep 1; stty size; exit 5'"
    )
    with subprocess.Popen(["sleep", "60"], stdout=subprocess.PIPE) as feeder:
        try:
            done = subprocess.run(
                ["script", "-qec", command, "/dev/null"],
                stdin=feeder.stdout,
                capture_output=True,
                text=True,
                timeout=90,
                env=_env(apiserver),
                check=False,
            )
        finally:
            feeder.kill()
    lines = done.stdout.replace("\r", "").splitlines()
    assert lines[0].startswith("/dev/pts/"), done.stdout + done.stderr
    assert lines[1] == "33 111", done.stdout
    assert done.returncode == 5


def test_attach(apiserver: ServerHandle, pods: Pods, namespace: str) -> None:
    _start(pods, "ticker", TICKER)
    with subprocess.Popen(
        [str(kubectl_path()), "attach", "-n", namespace, "ticker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(apiserver),
    ) as proc:
        try:
            assert proc.stdout is not None
            seen = [proc.stdout.readline() for _ in range(3)]
        finally:
            proc.kill()
    assert all(line.startswith("tick ") for line in seen), seen
    numbers = [int(line.split()[1]) for line in seen]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3


def test_port_forward_two_ports_and_the_error_stream(
    apiserver: ServerHandle, pods: Pods, namespace: str
) -> None:
    _start(pods, "web", HTTPD)
    nothing = 8099  # nobody listens there in the pod
    with subprocess.Popen(
        [str(kubectl_path()), "port-forward", "-n", namespace, "pod/web"]
        + [":8080", ":8081", f":{nothing}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(apiserver),
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            local: dict[int, int] = {}
            while len(local) < 3:
                line = proc.stdout.readline()
                assert line, proc.stderr.read()
                found = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
                if found:
                    local[int(found.group(2))] = int(found.group(1))
            for _ in range(2):  # connections one after another on the same session
                for port in (8080, 8081):
                    page = httpx.get(f"http://127.0.0.1:{local[port]}/index.html", timeout=30)
                    assert page.text == f"page-{port}\n"
            big = httpx.get(f"http://127.0.0.1:{local[8080]}/big", timeout=60)
            assert big.text == "".join(f"{i}\n" for i in range(1, 200001))
            # The pod's refusal comes back on that connection's error stream.
            with pytest.raises(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{local[nothing]}/", timeout=30)
            proc.wait(timeout=60)
            errors = proc.stderr.read()
        finally:
            proc.kill()
    assert f"error forwarding port {nothing} to pod" in errors, errors


def test_protocol_negotiation_refusal(
    api: httpx.Client, pods: Pods, namespace: str, apiserver: ServerHandle
) -> None:
    _start(pods, "idle", "sleep 3600")
    url = f"/api/v1/namespaces/{namespace}/pods/idle/exec"
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "SPDY/3.1",
        "X-Stream-Protocol-Version": "v9.channel.k8s.io",
    }
    r = api.post(url, params={"command": "true", "stdout": "true"}, headers=headers)
    assert r.status_code == 403, r.text
    assert r.text == (
        "unable to upgrade: unable to negotiate protocol: client supports "
        "[v9.channel.k8s.io], server accepts [v5.channel.k8s.io v4.channel.k8s.io "
        "v3.channel.k8s.io v2.channel.k8s.io channel.k8s.io]\n"
    )
    assert r.headers["x-accepted-stream-protocol-versions"].startswith("v5.channel.k8s.io, ")
    # Without any upgrade: upstream's refusal.
    r = api.post(url, params={"command": "true", "stdout": "true"})
    assert (r.status_code, r.json()["message"]) == (400, "Upgrade request required")


def _raw_exec(
    server: ServerHandle, path: str, command: list[str], protocol: str
) -> tuple[str, dict[str, bytes]]:
    """A SPDY/3.1 exec by hand, offering one protocol: (the one answered, data by stream).

    The client side of what kubectl does: the upgrade, then SYN_STREAMs for the error,
    stdout and stderr streams (header blocks compressed with SPDY/3's dictionary), then
    reading frames until the server closes.
    """
    url = urlsplit(server.url)
    ctx = ssl.create_default_context(cafile=str(server.ca))
    ctx.load_cert_chain(*server.cert("admin"))
    query = urlencode([("command", c) for c in command] + [("stdout", "1"), ("stderr", "1")])
    request = (
        f"POST {path}?{query} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Length: 0\r\n"
        "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        f"X-Stream-Protocol-Version: {protocol}\r\n\r\n"
    )
    with (
        socket.create_connection((url.hostname, url.port), timeout=60) as tcp,
        ctx.wrap_socket(tcp, server_hostname=url.hostname) as sock,
    ):
        sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, head
            head += chunk
        head, rest = head.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        assert lines[0] == "HTTP/1.1 101 Switching Protocols", head
        headers = dict(line.split(": ", 1) for line in lines[1:])
        deflate = zlib.compressobj(zdict=spdy.DICTIONARY)
        names = {1: "error", 3: "stdout", 5: "stderr"}
        for stream_id, kind in names.items():
            block = deflate.compress(spdy.encode_headers({"streamType": kind}))
            block += deflate.flush(zlib.Z_SYNC_FLUSH)
            body = struct.pack(">IIH", stream_id, 0, 0) + block
            sock.sendall(struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, len(body)) + body)
        data: dict[str, bytes] = dict.fromkeys(names.values(), b"")
        buf = rest
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 8:
                first, second = struct.unpack(">II", buf[:8])
                length = second & 0xFFFFFF
                if len(buf) < 8 + length:
                    break
                body, buf = buf[8 : 8 + length], buf[8 + length :]
                if not first & 0x80000000 and first in names:
                    data[names[first]] += body
    return headers.get("X-Stream-Protocol-Version", ""), data


@pytest.mark.parametrize("protocol", ["v4.channel.k8s.io", "channel.k8s.io"])
def test_older_protocols_by_hand(
    apiserver: ServerHandle, pods: Pods, namespace: str, protocol: str
) -> None:
    _start(pods, "old", "sleep 3600")
    command = ["sh", "-c", "echo out; echo err >&2; exit 7"]
    path = f"/api/v1/namespaces/{namespace}/pods/old/exec"
    answered, data = _raw_exec(apiserver, path, command, protocol)
    assert answered == protocol
    assert (data["stdout"], data["stderr"]) == (b"out\n", b"err\n")
    message = (
        "command terminated with non-zero exit code: error executing command "
        "[sh -c echo out; echo err >&2; exit 7], exit code 7"
    )
    if protocol.startswith("v4."):
        status = json.loads(data["error"])
        assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
        assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]
        assert status["message"] == message
    else:
        # Before v4 the error stream carries the message alone.
        assert data["error"].decode() == message
