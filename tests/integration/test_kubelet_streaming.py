"""Streaming on the process runtime with the real kubectl: exec (pipes and a terminal),
attach refused in words, and port-forward to a server on the node's loopback.

A process-runtime kubelet of its own on the session API server; the pods' commands are
host processes (the runtime's whole point), so no Docker is needed.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    port = _free_port()
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
