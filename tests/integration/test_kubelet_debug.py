"""`kubectl debug` with ephemeral containers, on a Docker kubelet, with the real kubectl.

The API server's pods/ephemeralcontainers takes kubectl's strategic-merge patch; the
kubelet starts the container once in the pod's network namespace and, with --target, in
the target container's process namespace, with the stdin and terminal kubectl asked for,
and reports it in status.ephemeralContainerStatuses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

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

_PROBLEM = docker_problem()
pytestmark = pytest.mark.skipif(_PROBLEM is not None, reason=_PROBLEM or "")
# The target's process, recognisable in the debugger's `ps` by its argument.
MARKER = "sleep 3141"


@pytest.fixture(scope="module")
def kubelet(
    apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeletProcess]:
    node = unique_node("kl-dbg")
    with kubelet_of_its_own(apiserver, node, "docker", tmp_path_factory.mktemp(node)) as proc:
        yield proc


@pytest.fixture
def pods(api: httpx.Client, namespace: str, kubelet: KubeletProcess) -> Pods:
    return Pods(api, namespace, kubelet.node)


def _target(pods: Pods) -> dict[str, Any]:
    pods.create("app", [{"name": "main", "image": BUSYBOX, "command": ["sh", "-c", MARKER]}])
    return pods.wait_phase("app", "Running", timeout=120)


def _ephemeral_status(pods: Pods, name: str) -> dict[str, Any]:
    for st in pods.status("app").get("ephemeralContainerStatuses") or ():
        if st["name"] == name:
            return st  # type: ignore[no-any-return]
    return {}


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a terminal")
def test_debug_interactive_sees_the_targets_processes_and_network(
    apiserver: ServerHandle, pods: Pods, namespace: str
) -> None:
    status = _target(pods)
    env = dict(os.environ, KUBECONFIG=str(apiserver.kubeconfig))
    command = (
        f"{kubectl_path()} debug -it -n {namespace} app --image={BUSYBOX} --target=main "
        "--container=dbg"
    )
    # The debugger's shell reads these from the terminal kubectl attached; `exit` ends it.
    script = "ps -o pid,args; ip -o -4 addr show eth0; exit 7\n"
    done = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    out = done.stdout.replace("\r", "")
    # The target's process is seen from the debugger's PID namespace, as its pid 1.
    assert any(MARKER in line and line.split()[0] == "1" for line in out.splitlines()), out
    # The pod's network namespace: the pod's own address on eth0.
    assert f"inet {status['podIP']}/" in out, out
    st = wait_for(
        lambda: (s := _ephemeral_status(pods, "dbg")).get("state", {}).get("terminated") and s,
        60,
        what="the debugger to be reported terminated",
    )
    assert st["state"]["terminated"]["exitCode"] == 7
    assert st["restartCount"] == 0 and st["ready"] is False
    pod = pods.get("app") or {}
    (debugger,) = pod["spec"]["ephemeralContainers"]
    assert debugger["targetContainerName"] == "main"
    assert debugger["stdin"] is True and debugger["tty"] is True
    # Never restarted: the exited debugger stays exited, the pod keeps running.
    assert pods.status("app")["phase"] == "Running"
    assert _ephemeral_status(pods, "dbg")["state"]["terminated"]["exitCode"] == 7


def test_debug_detached_runs_and_is_reported(
    apiserver: ServerHandle, pods: Pods, namespace: str
) -> None:
    _target(pods)
    done = kubectl(
        apiserver,
        "debug",
        "-n",
        namespace,
        "app",
        f"--image={BUSYBOX}",
        "--container=sleeper",
        "--",
        "sleep",
        "1000",
    )
    assert done.returncode == 0, done.stderr
    wait_for(
        lambda: _ephemeral_status(pods, "sleeper").get("state", {}).get("running"),
        120,
        what="the ephemeral container to run",
    )
    shown = kubectl(
        apiserver,
        "get",
        "pod",
        "-n",
        namespace,
        "app",
        "-o",
        "jsonpath={.status.ephemeralContainerStatuses}",
    )
    assert shown.returncode == 0, shown.stderr
    (st,) = json.loads(shown.stdout)
    assert st["name"] == "sleeper" and "running" in st["state"]
    assert st["image"] == BUSYBOX and st["containerID"].startswith("docker://")
    # It runs in the pod: exec into it works like into any container.
    hello = kubectl(apiserver, "exec", "-n", namespace, "app", "-c", "sleeper", "--", "echo", "hi")
    assert (hello.returncode, hello.stdout) == (0, "hi\n"), hello.stderr
    # Deleting the pod stops the ephemeral container with the others.
    pods.delete("app")
    pods.wait_gone("app", timeout=120)
