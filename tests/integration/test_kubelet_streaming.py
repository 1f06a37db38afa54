"""Streaming on the process runtime with the real kubectl: exec (pipes and a terminal),
attach refused in words, and port-forward to a server on the node's loopback.

A process-runtime kubelet of its own on the session API server; the pods' commands are
host processes (the runtime's whole point), so no Docker is needed.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
import websocket

from k8slite.freeport import free_port
from tests.conftest import ServerHandle, kubectl_path
from tests.integration.kubelet_harness import (
    KubeletProcess,
    Pods,
    kubectl,
    remove_process_leftovers,
    retire_node,
    unique_node,
    wait_idle,
)
from tests.polling import wait_for


@pytest.fixture(scope="module")
def kubelet(
    apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeletProcess]:
    node = unique_node("kl-strm")
    proc = KubeletProcess(apiserver, node, "process", tmp_path_factory.mktemp(node))
    try:
        proc.start()
        yield proc
    finally:
        if proc.proc is not None:
            retire_node(apiserver, node)
            wait_idle(proc)
        proc.stop()
        remove_process_leftovers(proc.workdir)


@pytest.fixture
def pods(api: httpx.Client, namespace: str, kubelet: KubeletProcess) -> Pods:
    return Pods(api, namespace, kubelet.node)


def test_exec_pipes_exit_code_and_stdin(
    apiserver: ServerHandle, pods: Pods, namespace: str
) -> None:
    pods.create("shell", [{"name": "main", "image": "busybox:1.35", "command": ["sleep", "600"]}])
    pods.wait_phase("shell", "Running")
    done = kubectl(
        apiserver, "exec", "-n", namespace, "shell", "--", "sh", "-c", "echo o; echo e >&2; exit 3"
    )
    assert (done.returncode, done.stdout) == (3, "o\n")
    assert "e\n" in done.stderr and "command terminated with exit code 3" in done.stderr
    env = dict(os.environ, KUBECONFIG=str(apiserver.kubeconfig))
    piped = subprocess.run(
        [str(kubectl_path()), "exec", "-i", "-n", namespace, "shell", "--", "sh", "-c", "cat"],
        input="through\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert (piped.returncode, piped.stdout) == (0, "through\n"), piped.stderr
    if shutil.which("script") is None:
        return
    command = f"{kubectl_path()} exec -it -n {namespace} shell -- sh -c 'tty; exit 2'"
    with subprocess.Popen(["sleep", "60"], stdout=subprocess.PIPE) as feeder:
        try:
            tty = subprocess.run(
                ["script", "-qec", command, "/dev/null"],
                stdin=feeder.stdout,
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
                check=False,
            )
        finally:
            feeder.kill()
    assert tty.stdout.startswith("/dev/pts/"), tty.stdout + tty.stderr
    assert tty.returncode == 2


def test_attach_is_refused_in_words(apiserver: ServerHandle, pods: Pods, namespace: str) -> None:
    pods.create("quiet", [{"name": "main", "image": "busybox:1.35", "command": ["sleep", "600"]}])
    pods.wait_phase("quiet", "Running")
    done = kubectl(apiserver, "attach", "-n", namespace, "quiet")
    assert done.returncode == 1
    assert "keeps no streams of a container's main process to attach to" in done.stderr


def test_port_forward_to_the_node_loopback(
    apiserver: ServerHandle, pods: Pods, namespace: str
) -> None:
    port = free_port()
    server = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    pods.create("web", [{"name": "main", "image": "python", "command": server}])
    pods.wait_phase("web", "Running")
    # A refused connection ends kubectl's port-forward (as upstream's): wait for the server.
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/", timeout=5), 30, what="the server")
    env = dict(os.environ, KUBECONFIG=str(apiserver.kubeconfig))
    with subprocess.Popen(
        [str(kubectl_path()), "port-forward", "-n", namespace, "pod/web", f":{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            local = 0
            while not local:
                line = proc.stdout.readline()
                assert line, proc.stderr.read() if proc.stderr else ""
                found = re.match(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
                local = int(found.group(1)) if found else 0

            page = httpx.get(f"http://127.0.0.1:{local}/", timeout=30)
            assert "Directory listing" in page.text
        finally:
            proc.kill()


def _channel_exec(
    apiserver: ServerHandle, namespace: str, protocol: str, command: list[str]
) -> tuple[str, dict[int, bytes]]:
    """exec over a raw WebSocket: the negotiated protocol and what came on each channel."""
    cert, key = apiserver.cert("admin")
    query = "&".join(f"command={quote(c)}" for c in command) + "&stdout=true&stderr=true"
    ws = websocket.create_connection(
        f"wss{apiserver.url.removeprefix('https')}/api/v1/namespaces/{namespace}/pods/"
        f"shell/exec?{query}",
        subprotocols=[protocol],
        sslopt={"ca_certs": str(apiserver.ca), "certfile": str(cert), "keyfile": str(key)},
        timeout=30,
    )
    received: dict[int, bytes] = {}
    try:
        while True:
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            if protocol.startswith("base64"):
                text = data.decode()
                channel, payload = int(text[0]), base64.b64decode(text[1:])
            else:
                channel, payload = data[0], data[1:]
            received[channel] = received.get(channel, b"") + payload
    except websocket.WebSocketConnectionClosedException:
        pass
    finally:
        chosen = ws.subprotocol
        ws.close()
    return chosen, received


@pytest.mark.parametrize("protocol", ["channel.k8s.io", "base64.channel.k8s.io"])
def test_older_channel_protocols(
    apiserver: ServerHandle, pods: Pods, namespace: str, protocol: str
) -> None:
    pods.create("shell", [{"name": "main", "image": "busybox:1.35", "command": ["sleep", "600"]}])
    pods.wait_phase("shell", "Running")
    chosen, ok = _channel_exec(apiserver, namespace, protocol, ["sh", "-c", "echo hi; echo e >&2"])
    assert chosen == protocol
    assert (ok.get(1), ok.get(2), ok.get(3, b"")) == (b"hi\n", b"e\n", b"")
    _, failed = _channel_exec(apiserver, namespace, protocol, ["sh", "-c", "exit 9"])
    # Before v4 the error channel carries words, not a Status.
    assert failed[3] == b"command terminated with non-zero exit code: exit code 9"


def test_proxy_to_a_process_pod_is_refused(
    apiserver: ServerHandle, pods: Pods, namespace: str, api: httpx.Client
) -> None:
    """A process-runtime pod has its node's loopback address: pods/proxy refuses it as
    upstream refuses any pod address that is not global unicast."""
    port = free_port()
    server = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    pods.create("web", [{"name": "main", "image": "python", "command": server}])
    status = pods.wait_phase("web", "Running")
    assert status["podIP"] == "127.0.0.1"
    r = api.get(f"/api/v1/namespaces/{namespace}/pods/web:{port}/proxy/")
    assert r.status_code == 400, r.text
    assert (r.json()["reason"], r.json()["message"]) == ("BadRequest", "address not allowed")
