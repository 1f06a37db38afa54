"""Jobs with real Docker containers, driven by the real kubectl: API server, scheduler,
controller manager and a Docker kubelet as child processes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerHandle
from tests.integration.controller_harness import ManagerHandle, start_controller_manager
from tests.integration.kubelet_harness import (
    KubeletProcess,
    docker_problem,
    kubectl,
    remove_docker_leftovers,
    retire_node,
    unique_node,
    wait_idle,
)
from tests.launch import launch, stop
from tests.polling import wait_for

_DOCKER = docker_problem()
pytestmark = pytest.mark.skipif(_DOCKER is not None, reason=_DOCKER or "")


@pytest.fixture(scope="module")
def cluster(
    module_apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerHandle]:
    """A scheduler, a controller manager and one Docker node on the module's API server."""
    node = unique_node("job-dock")
    network = f"k8slite-t-{node}"
    workdir: Path = tmp_path_factory.mktemp(node)
    kubelet = KubeletProcess(module_apiserver, node, "docker", workdir, "--docker-network", network)
    scheduler = launch(
        [
            sys.executable,
            "-m",
            "k8slite.cmd.scheduler",
            "--kubeconfig",
            str(module_apiserver.kubeconfig_for("scheduler")),
            "--secure-port",
            "0",
            "--bind-address",
            "127.0.0.1",
        ],
        workdir / "scheduler.log",
        "listening on ",
        what="scheduler",
        timeout=30,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )[0]
    manager: ManagerHandle | None = None
    try:
        manager = start_controller_manager(module_apiserver)
        kubelet.start()
        yield module_apiserver
    finally:
        if kubelet.proc is not None:
            retire_node(module_apiserver, node)
            wait_idle(kubelet)
        kubelet.stop()
        if manager is not None:
            manager.stop()
        stop(scheduler)
        remove_docker_leftovers([node], network)


def run(server: ServerHandle, *args: str) -> str:
    """The real kubectl; its stdout, or the test fails with its stderr."""
    result = kubectl(server, *args, timeout=120)
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def test_kubectl_create_job_wait_and_logs(cluster: ServerHandle) -> None:
    ns = f"jobd-{os.urandom(3).hex()}"
    run(cluster, "create", "namespace", ns)
    out = run(
        cluster,
        "create",
        "job",
        "hello",
        "-n",
        ns,
        "--image=busybox:1.35",
        "--",
        "sh",
        "-c",
        "echo hello from a job",
    )
    assert "job.batch/hello created" in out
    out = run(cluster, "wait", "--for=condition=complete", "job/hello", "-n", ns, "--timeout=90s")
    assert "condition met" in out
    assert run(cluster, "logs", "job/hello", "-n", ns).strip() == "hello from a job"
    table = run(cluster, "get", "jobs", "-n", ns, "--no-headers")
    assert table.split()[:3] == ["hello", "Complete", "1/1"]


def test_five_completions_two_at_a_time(cluster: ServerHandle, tmp_path: Path) -> None:
    ns = f"jobd-{os.urandom(3).hex()}"
    run(cluster, "create", "namespace", ns)
    manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "five"},
        "spec": {
            "completions": 5,
            "parallelism": 2,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "w", "image": "busybox:1.35", "command": ["sh", "-c", "sleep 1"]}
                    ],
                }
            },
        },
    }
    path = tmp_path / "five.json"
    path.write_text(json.dumps(manifest))
    run(cluster, "apply", "-n", ns, "-f", str(path))
    most = 0

    def complete() -> bool:
        nonlocal most
        job = json.loads(run(cluster, "get", "job", "five", "-n", ns, "-o", "json"))
        most = max(most, int(job["status"].get("active") or 0))
        return any(
            c["type"] == "Complete" and c["status"] == "True"
            for c in job["status"].get("conditions") or ()
        )

    wait_for(complete, 120, interval=0.5, what="the job to complete")
    assert most <= 2
    job = json.loads(run(cluster, "get", "job", "five", "-n", ns, "-o", "json"))
    assert job["status"]["succeeded"] == 5
    pods = json.loads(run(cluster, "get", "pods", "-n", ns, "-l", "job-name=five", "-o", "json"))
    assert len(pods["items"]) == 5
    assert all(p["status"]["phase"] == "Succeeded" for p in pods["items"])
