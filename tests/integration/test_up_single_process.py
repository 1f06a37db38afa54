"""`k8slite up --single-process`: every component as a task of one child process.

As tests/integration/test_up.py, without the proxy (no root, no host route) on free ports;
the process runtime runs the pods as host processes, so a Deployment's pods really run.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tests.e2e.cluster import start_up, stop_up, up_command
from tests.integration.test_up import children, k8slite, running
from tests.polling import wait_for

HOSTED = ("apiserver", "controller-manager", "scheduler", "kubelet", "dns", "metrics-server")


def test_single_process_runs_a_deployment_and_stops(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cluster = start_up(
        up_command(data, "--no-proxy", "--single-process", "--runtime", "process"), data
    )
    assert cluster.proc is not None
    supervisor = cluster.proc.pid
    pods: list[int] = []
    try:
        out = "".join(cluster.output)
        assert "Single process: every component runs as a task of one process" in out, out
        info = json.loads((data / "cluster.json").read_text())
        assert info["single_process"] is True
        # The supervisor has one child, which runs every component.
        assert list(info["components"]) == ["all-in-one"]
        pid = info["components"]["all-in-one"]["pid"]
        assert list(children(supervisor)) == [pid]
        cmdline = children(supervisor)[pid]
        # Each component with its own flags: its own kubeconfig, so its own identity.
        segments = cmdline.split(" -- ")[1:]
        assert [s.split()[0] for s in segments] == list(HOSTED), cmdline
        node = info["node"]
        for name, identity in (
            ("controller-manager", "controller-manager"),
            ("scheduler", "scheduler"),
            ("kubelet", f"node-{node}"),
            ("dns", "dns"),
            ("metrics-server", "metrics-server"),
        ):
            [segment] = [s for s in segments if s.split()[0] == name]
            assert f"pki/{identity}.kubeconfig" in segment, segment

        name = f"web-{uuid.uuid4().hex[:6]}"
        cluster.kubectl(
            "create", "deployment", name, "--replicas=2", "--image=busybox:1.35", "--",
            "sh", "-c", "echo hello from $HOSTNAME; exec sleep 3600",
        )  # fmt: skip

        def running_pods() -> list[str] | None:
            doc = json.loads(
                cluster.kubectl("get", "pods", "-l", f"app={name}", "-o", "json").stdout
            )
            names = [
                p["metadata"]["name"]
                for p in doc["items"]
                if (p.get("status") or {}).get("phase") == "Running"
            ]
            return names if len(names) == 2 else None

        pod_names = wait_for(running_pods, 90, what="2 Running pods")
        # The API server reaches the kubelet (its client certificate, the kubelet's API).
        logs = wait_for(
            lambda: "hello from" in (o := cluster.kubectl("logs", pod_names[0]).stdout) and o,
            30,
            what="the pod's log",
        )
        assert pod_names[0] in logs or "hello from" in logs
        # Pods run under the kubelet, in the one process: its shims are its children.
        pods = list(children(pid))
        assert pods, "no pod processes under the all-in-one process"

        status = k8slite("status", "--data-dir", str(data))
        assert status.returncode == 0, status.stdout + status.stderr
        rows = {line.split()[0]: line.split() for line in status.stdout.splitlines() if line}
        assert rows["all-in-one"][1] == str(pid) and rows["all-in-one"][3] == "ok", status.stdout
        assert str(info["ports"]["kubelet"]) in rows["all-in-one"][2].split(",")

        log = k8slite("logs", "--data-dir", str(data), "all-in-one")
        for line in (
            "k8slite-apiserver listening on",
            "k8slite-controller-manager serving on",
            "k8slite-scheduler listening on",
            "API listening on",
            "k8slite-dns ready",
            "k8slite-metrics-server ready",
        ):
            assert line in log.stdout, line

        stopped = k8slite("stop", "--data-dir", str(data))
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert cluster.proc.wait(30) == 0, (data / "up.stderr").read_text()
        # Nothing stays behind: the process, and the pods it ran.
        wait_for(lambda: not [p for p in [pid, *pods] if running(p)], 15, what="everything gone")
        assert json.loads((data / "cluster.json").read_text())["state"] == "stopped"
    finally:
        stop_up(cluster)
        k8slite("stop", "--data-dir", str(data))
