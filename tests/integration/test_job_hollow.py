"""Jobs on hollow nodes: fake containers of run-to-completion pods exit, and Jobs finish."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import ServerHandle
from tests.integration.controller_harness import start_controller_manager
from tests.launch import REPO, stop
from tests.polling import wait_for


@pytest.fixture
def hollow(fresh_apiserver: ServerHandle) -> Iterator[str]:
    args = [
        sys.executable,
        "-m",
        "k8slite.cmd.k8slite",
        "hollow-nodes",
        "--count",
        "2",
        "--kubeconfig",
        str(fresh_apiserver.kubeconfig),
        "--completion-time",
        "200ms",
    ]
    log = (fresh_apiserver.data_dir / "hollow.log").open("ab")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, cwd=REPO)
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if b"nodes ready" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(60), "hollow nodes did not register in time"
        yield "hollow-0"
    finally:
        stop(proc, 20)


def test_jobs_complete_on_hollow_nodes(fresh_apiserver: ServerHandle, hollow: str) -> None:
    manager = start_controller_manager(fresh_apiserver)
    try:
        with fresh_apiserver.client() as api:
            container = {"name": "w", "image": "busybox:1.35", "command": ["true"]}
            job = {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "hollow-job"},
                "spec": {
                    "completions": 4,
                    "parallelism": 2,
                    "template": {
                        "spec": {
                            "nodeName": hollow,
                            "restartPolicy": "Never",
                            "containers": [container],
                        }
                    },
                },
            }
            path = "/apis/batch/v1/namespaces/default/jobs"
            assert api.post(path, json=job).status_code == 201
            # A pod that restarts forever keeps running on the same fake runtime.
            always = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "forever"},
                "spec": {"nodeName": hollow, "containers": [container]},
            }
            assert api.post("/api/v1/namespaces/default/pods", json=always).status_code == 201

            def complete() -> dict[str, object] | None:
                j = api.get(f"{path}/hollow-job").json()
                conditions = j["status"].get("conditions") or []
                done = any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)
                return j if done else None

            j = wait_for(complete, 60, what="the job to complete on hollow nodes")
            assert j["status"]["succeeded"] == 4  # type: ignore[index]
            pod = api.get("/api/v1/namespaces/default/pods/forever").json()
            assert pod["status"]["phase"] == "Running"
            assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    finally:
        manager.stop()
