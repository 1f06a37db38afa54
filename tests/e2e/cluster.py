"""A whole cluster for end-to-end tests: `k8slite up` on a temporary directory, or a given one.

Without K8SLITE_E2E_KUBECONFIG, start_cluster() runs `k8slite up` as a child process on a
data directory of its own, on free ports, with a node name and Docker network of its own,
so that it disturbs no other cluster on the machine. Its proxy routes the service range on
the host, so it holds the host-wide lock that the other host-network tests hold too.
With K8SLITE_E2E_KUBECONFIG (hack/e2e sets it from KUBECONFIG), the tests run against that
cluster instead and start nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from k8slite.client import load_kubeconfig
from tests.conftest import BIN, kubectl_path
from tests.launch import REPO

T = TypeVar("T")
ENV_KUBECONFIG = "K8SLITE_E2E_KUBECONFIG"
# Shared with tests/e2e/test_services_e2e.py: one test at a time may own the host's service
# route, its nftables table and its service address listeners.
HOST_NETWORK_LOCK = Path(os.environ.get("TMPDIR", "/tmp")) / "k8slite-e2e-services.lock"
IMAGES = ("busybox:1.35", "k8slite/pause:1.0")


@dataclass
class Cluster:
    """A running cluster: its admin kubeconfig and, when we started it, its `k8slite up`."""

    kubeconfig: Path
    data_dir: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    output: list[str] = field(default_factory=list)

    @property
    def started_here(self) -> bool:
        return self.proc is not None

    def api(self) -> httpx.Client:
        config = load_kubeconfig(self.kubeconfig)
        return httpx.Client(base_url=config.server, verify=config.ssl_context or True, timeout=30)

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 120.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        done = subprocess.run(
            [str(kubectl_path()), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=input,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )
        return done

    def logs(self) -> str:
        """The end of every component's log, for a failure message."""
        if self.data_dir is None:
            return ""
        parts = []
        for path in sorted((self.data_dir / "logs").glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()[-15:]
            parts.append(f"--- {path.name}\n" + "\n".join(lines))
        return "\n".join(parts)


def requirements() -> str | None:
    """Why a local cluster with real pods and a host proxy cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (the proxy routes the service range on the host)"
    for tool in ("docker", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} not found (hack/install-deps installs ip; Docker is needed)"
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode:
        return "the Docker engine does not answer"
    for image in IMAGES:
        if subprocess.run(
            ["docker", "image", "inspect", image], capture_output=True, check=False
        ).returncode:
            return f"image {image} missing (hack/build-images builds it)"
    return None


@contextmanager
def host_network_lock() -> Iterator[None]:
    HOST_NETWORK_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with HOST_NETWORK_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def up_command(
    data_dir: Path, *extra: str, node: str | None = None, network: str | None = None
) -> list[str]:
    """`k8slite up` on free ports with a node and a Docker network of its own, its cluster
    DNS without upstream resolvers (no name a test looks up leaves the machine)."""
    suffix = uuid.uuid4().hex[:6]
    return [
        str(BIN / "k8slite"),
        "up",
        "--data-dir",
        str(data_dir),
        "--port",
        "0",
        "--node-name",
        node or f"e2e-{suffix}",
        "--docker-network",
        network or f"k8slite-e2e-{suffix}",
        "--upstream-dns",
        "",
        *extra,
    ]


def start_up(argv: list[str], data_dir: Path, timeout: float = 180.0) -> Cluster:
    """Run `k8slite up` and wait for the lines it prints once the node is Ready."""
    data_dir.mkdir(parents=True, exist_ok=True)
    err = (data_dir / "up.stderr").open("ab")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, cwd=REPO)
    cluster = Cluster(data_dir / "kubeconfig", data_dir, proc=proc)

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            cluster.output.append(raw.decode(errors="replace"))

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not any("export KUBECONFIG=" in line for line in cluster.output):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_up(cluster)
            raise RuntimeError(
                f"k8slite up did not come up (exit {proc.returncode}):\n"
                f"{(data_dir / 'up.stderr').read_text(errors='replace')}\n"
                f"{cluster.logs()}"
            )
        time.sleep(0.1)
    cluster.info = json.loads((data_dir / "cluster.json").read_text())
    return cluster


def stop_up(cluster: Cluster, timeout: float = 60.0) -> int | None:
    """SIGTERM `k8slite up` (as Ctrl-C would) and wait for it; its exit status."""
    proc = cluster.proc
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@contextmanager
def cluster_for_tests(tmp: Path, *extra: str) -> Iterator[Cluster]:
    """The cluster named by K8SLITE_E2E_KUBECONFIG, else one of our own for the duration."""
    given = os.environ.get(ENV_KUBECONFIG)
    if given:
        yield Cluster(Path(given))
        return
    reason = requirements()
    if reason:
        pytest.skip(f"cannot start a local cluster: {reason}")
    with host_network_lock():
        cluster = start_up(up_command(tmp / "cluster", *extra), tmp / "cluster")
        try:
            yield cluster
        finally:
            stop_up(cluster)
            network = _arg(cluster.proc.args if cluster.proc else [], "--docker-network")
            if network:
                subprocess.run(
                    ["docker", "network", "rm", network], capture_output=True, check=False
                )


def _arg(argv: Any, flag: str) -> str | None:
    args = list(argv)
    return args[args.index(flag) + 1] if flag in args else None


def is_ready(obj: dict[str, Any]) -> bool:
    """A pod or node with condition Ready True."""
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (obj.get("status") or {}).get("conditions") or ()
    )


def real_node(cluster: Cluster) -> str:
    """A Ready node with a real runtime (not a hollow one) for the workloads."""
    if cluster.info:
        return str(cluster.info["node"])
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    for n in nodes:
        info = (n.get("status") or {}).get("nodeInfo") or {}
        if "hollow" not in info.get("osImage", "") and is_ready(n):
            return str(n["metadata"]["name"])
    pytest.fail("no Ready node with a real runtime in the cluster")
