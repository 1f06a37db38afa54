"""A cluster of hollow nodes for the benches that need one (density.py, node_lapse.py,
daemonset.py): a fresh API server, `k8slite hollow-nodes --count N`, a controller manager
and, if asked, the scheduler, each logging into the bench's temporary directory."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness


@dataclass
class Cluster:
    server: harness.Server
    # By component ("hollow", "scheduler", "manager"), in the order they were started.
    procs: dict[str, subprocess.Popen[bytes]]
    manager_url: str  # the controller manager's serving address, for its /metrics

    def stop(self) -> None:
        """The components in the reverse of their start order, then the API server."""
        for proc in reversed(self.procs.values()):
            harness.stop(proc, 30)
        self.server.stop()


def kubeconfig(data: Path, server: harness.Server, identity: str) -> Path:
    """The identity's kubeconfig, aimed at this server's port."""
    text = (data / "pki" / f"{identity}.kubeconfig").read_text()
    out = data / f"{identity}.bench.kubeconfig"
    out.write_text(text.replace("https://127.0.0.1:8080", server.url))
    return out


def wait_for_line(log: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"no {text!r} in {log}")


def start_cluster(
    tmp: Path,
    nodes: int,
    controllers: str,
    *,
    qps: int | None = None,
    scheduler: bool = True,
    manager_env: Mapping[str, str] | None = None,
) -> Cluster:
    """Start it all in tmp and wait until the controllers run. qps sets the controller
    manager's --kube-api-qps (and twice that as its burst); None leaves its defaults.
    manager_env is the controller manager's environment, to run it from another tree."""
    data = tmp / "data"
    server = harness.start_apiserver(data)
    cluster = Cluster(server, {}, "")
    try:
        hollow = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "k8slite.cmd.k8slite",
                "hollow-nodes",
                "--count",
                str(nodes),
                "--kubeconfig",
                str(kubeconfig(data, server, "admin")),
            ],
            stdout=subprocess.PIPE,
            stderr=(tmp / "hollow.log").open("ab"),
        )
        cluster.procs["hollow"] = hollow
        assert hollow.stdout is not None
        line = hollow.stdout.readline()
        if b"nodes ready" not in line:
            raise RuntimeError(f"hollow nodes did not start: {line!r}; see {tmp / 'hollow.log'}")
        common = ["--secure-port", "0", "--bind-address", "127.0.0.1", "--leader-elect=false"]

        def launch(
            name: str, component: str, identity: str, args: list[str], marker: str, **kw: Any
        ) -> tuple[subprocess.Popen[bytes], str]:
            """python -m k8slite.cmd.COMPONENT as identity, logging to NAME.log."""
            return harness.launch(
                [
                    sys.executable,
                    "-m",
                    f"k8slite.cmd.{component}",
                    "--kubeconfig",
                    str(kubeconfig(data, server, identity)),
                    *args,
                    *common,
                ],
                tmp / f"{name}.log",
                marker,
                what=component,
                timeout=600,
                **kw,
            )

        if scheduler:
            cluster.procs["scheduler"], _ = launch(
                "scheduler", "scheduler", "scheduler", [], "listening on "
            )
        limits = [f"--kube-api-qps={qps}", f"--kube-api-burst={2 * qps}"] if qps is not None else []
        cluster.procs["manager"], serving = launch(
            "manager",
            "controller_manager",
            "controller-manager",
            [f"--controllers={controllers}", *limits],
            "serving on ",
            env=manager_env,
        )
        cluster.manager_url = harness.after(serving, "serving on ")
        wait_for_line(tmp / "manager.log", "controllers running", 600)
    except BaseException:
        cluster.stop()
        raise
    return cluster
