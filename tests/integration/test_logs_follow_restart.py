"""`kubectl logs -f` across a container restart, on a Docker kubelet, as upstream behaves.

Upstream's kubelet follows one container instance's log: new lines arrive as they are
written, and when the container exits the stream ends (kubectl exits 0) after its last
line; the restarted container is a new instance, followed by a new `kubectl logs -f`, and
the old one is `--previous`. The container here says hello, waits until the test tells it
to stop (a file made through exec, so no timing is guessed), says bye and exits 1.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ServerHandle, kubectl_path
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

SCRIPT = "echo hello; while [ ! -e /tmp/stop ]; do sleep 0.2; done; echo bye; exit 1"


@pytest.fixture(scope="module")
def kubelet(
    apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeletProcess]:
    problem = docker_problem()
    if problem:
        pytest.skip(problem)
    node = unique_node("kl-logf")
    with kubelet_of_its_own(apiserver, node, "docker", tmp_path_factory.mktemp(node)) as proc:
        yield proc


class Follower:
    """`kubectl logs -f` with its lines read in a thread, so a test waits for each one with
    a deadline instead of blocking forever on a line that does not come."""

    def __init__(self, server: ServerHandle, namespace: str) -> None:
        env = dict(os.environ, KUBECONFIG=str(server.kubeconfig))
        self.proc = subprocess.Popen(
            [str(kubectl_path()), "logs", "-f", "-n", namespace, "talker"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")  # the end of the stream

    def line(self, timeout: float = 60.0) -> str:
        return self.lines.get(timeout=timeout)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def test_logs_follow_one_instance_then_the_next(
    apiserver: ServerHandle, kubelet: KubeletProcess, api: httpx.Client, namespace: str
) -> None:
    pods = Pods(api, namespace, kubelet.node)
    pods.create("talker", [{"name": "main", "image": BUSYBOX, "command": ["sh", "-c", SCRIPT]}])
    pods.wait_phase("talker", "Running", timeout=120)
    follower = Follower(apiserver, namespace)
    try:
        assert follower.line() == "hello\n"
        stop = kubectl(apiserver, "exec", "-n", namespace, "talker", "--", "touch", "/tmp/stop")
        assert stop.returncode == 0, stop.stderr
        # The line written after the follow began, then the end of the stream.
        assert follower.line() == "bye\n"
        assert follower.line() == ""
        assert follower.proc.wait(timeout=60) == 0
    finally:
        follower.stop()

    def running_again() -> bool:
        status = pods.container("talker", "main")
        return status.get("restartCount", 0) >= 1 and "running" in (status.get("state") or {})

    wait_for(running_again, 120, what="the container to run again")
    previous = kubectl(apiserver, "logs", "--previous", "-n", namespace, "talker")
    assert (previous.returncode, previous.stdout) == (0, "hello\nbye\n"), previous.stderr
    follower = Follower(apiserver, namespace)
    try:
        # The new instance's log, which has not said bye (it waits again).
        assert follower.line() == "hello\n"
        assert follower.proc.poll() is None
    finally:
        follower.stop()
