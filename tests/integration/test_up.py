"""`k8slite up`: a whole cluster from one command, supervised, stopped cleanly, restarted.

These runs leave out the proxy (--no-proxy) so that they need neither root nor the host's
service route; tests/e2e runs `k8slite up` with it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import trio
import yaml

from k8slite.cmd.up import DEFAULT_PORTS, free_port, prometheus_config, wait_healthy
from tests.conftest import BIN
from tests.e2e.cluster import Cluster, start_up, stop_up, up_command
from tests.launch import REPO
from tests.polling import wait_for


def children(pid: int) -> dict[int, str]:
    """The live child processes of pid: their command lines."""
    out: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
                out[int(stat.parent.name)] = cmdline.decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
    return out


def component_pid(cluster: Cluster, script: str) -> int | None:
    assert cluster.proc is not None
    for pid, cmd in children(cluster.proc.pid).items():
        if f"/{script} " in cmd:
            return pid
    return None


def up(tmp: Path, *extra: str, node: str = "") -> Cluster:
    argv = up_command(tmp, "--no-proxy", *extra, node=node or None)
    return start_up(argv, tmp)


def test_up_runs_stops_and_reuses(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cluster = up(data, "--runtime", "process")
    try:
        out = "".join(cluster.output)
        assert f"export KUBECONFIG={data / 'kubeconfig'}" in out, out
        assert "  kubectl get nodes" in out, out
        node, port = cluster.info["node"], cluster.info["ports"]["apiserver"]
        # Every kubeconfig points at the port chosen, the admin's is in DIR/kubeconfig.
        for name in (
            "kubeconfig",
            "pki/admin.kubeconfig",
            "pki/scheduler.kubeconfig",
            f"pki/node-{node}.kubeconfig",
        ):
            doc = yaml.safe_load((data / name).read_text())
            assert doc["clusters"][0]["cluster"]["server"] == f"https://127.0.0.1:{port}"
        assert oct((data / "kubeconfig").stat().st_mode & 0o777) == "0o600"
        nodes = cluster.kubectl("get", "nodes").stdout
        assert any(line.split()[:2] == [node, "Ready"] for line in nodes.splitlines()), nodes
        cluster.kubectl("create", "configmap", "survivor", "--from-literal=k=v")
        # One child per component, each its own console script with its own identity.
        assert cluster.proc is not None
        cmds = list(children(cluster.proc.pid).values())
        for script, identity in (
            ("k8slite-apiserver", None),
            ("k8slite-controller-manager", "controller-manager"),
            ("k8slite-scheduler", "scheduler"),
            ("k8slite-kubelet", f"node-{node}"),
        ):
            [cmd] = [c for c in cmds if f"/{script} " in c]
            if identity:
                assert f"pki/{identity}.kubeconfig" in cmd, cmd
        assert not any("k8slite-proxy" in c for c in cmds)
        # "Up" means every component serves, so each has written its start line by now.
        for log, line in (
            ("apiserver", "k8slite-apiserver listening on"),
            ("controller-manager", "k8slite-controller-manager serving on"),
            ("scheduler", "k8slite-scheduler listening on"),
            ("kubelet", "API listening on"),
        ):
            text = (data / "logs" / f"{log}.log").read_text()
            assert line in text, (log, text, (data / "up.stderr").read_text())
        pids = list(children(cluster.proc.pid))
        ca = (data / "pki" / "ca.pem").read_bytes()
        server_cert = (data / "pki" / "server.pem").read_bytes()
    finally:
        started = time.monotonic()
        code = stop_up(cluster)
    assert code == 0, (data / "up.stderr").read_text()
    # Quick (SIGTERM, then SIGKILL after 5 s at most), and nothing stays behind.
    assert time.monotonic() - started < 20
    assert not [
        p
        for p in pids
        if Path(f"/proc/{p}").exists()
        and "Z" not in Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1][:3]
    ]
    assert "stopped" in (data / "up.stderr").read_text()

    # Again on the same directory: same certificates, same data.
    cluster = up(data, "--runtime", "process", node=node)
    try:
        assert (data / "pki" / "ca.pem").read_bytes() == ca
        assert (data / "pki" / "server.pem").read_bytes() == server_cert
        assert f"certificates in {data / 'pki'}: reused" in (data / "up.stderr").read_text()
        value = cluster.kubectl("get", "configmap", "survivor", "-o", "jsonpath={.data.k}").stdout
        assert value == "v"
    finally:
        assert stop_up(cluster) == 0


def test_crashed_component_is_restarted_and_reported(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cluster = up(data, "--runtime", "fake")
    try:
        first = component_pid(cluster, "k8slite-scheduler")
        assert first is not None
        log = data / "logs" / "scheduler.log"
        assert log.read_text().count("k8slite-scheduler listening on") == 1, log.read_text()
        os.kill(first, signal.SIGKILL)
        second = wait_for(
            lambda: (p := component_pid(cluster, "k8slite-scheduler")) != first and p,
            30,
            what="a new scheduler",
        )
        assert second != first
        err = (data / "up.stderr").read_text()
        assert "scheduler was killed by SIGKILL; restarting it in 1s" in err, err
        # The new one serves again (taking the lease over waits for the old one's to
        # expire, as upstream: not waited for here).
        try:
            wait_for(
                lambda: log.read_text().count("k8slite-scheduler listening on") == 2,
                30,
                what="the new scheduler to serve",
            )
        except AssertionError as e:
            raise AssertionError(f"{e}\n{log}:\n{log.read_text()}") from None
    finally:
        assert stop_up(cluster) == 0


def test_hollow_nodes(tmp_path: Path) -> None:
    cluster = up(tmp_path / "data", "--runtime", "fake", "--nodes", "3")
    try:

        def all_ready() -> list[str] | None:
            out = cluster.kubectl("get", "nodes", "--no-headers").stdout
            ready = [line.split()[0] for line in out.splitlines() if line.split()[1] == "Ready"]
            return ready if len(ready) == 4 else None

        names = wait_for(all_ready, 60, what="4 Ready nodes")
        assert set(names) == {cluster.info["node"], "hollow-0", "hollow-1", "hollow-2"}, names
    finally:
        assert stop_up(cluster) == 0


def test_busy_port_is_reported(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        done = subprocess.run(
            [
                str(BIN / "k8slite"),
                "up",
                "--data-dir",
                str(tmp_path),
                "--port",
                str(port),
                "--no-proxy",
                "--runtime",
                "fake",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            check=False,
        )
    assert done.returncode == 1
    assert f"port {port} (apiserver) already in use" in done.stderr, done.stderr


def test_one_up_per_data_dir(tmp_path: Path) -> None:
    cluster = up(tmp_path / "data", "--runtime", "fake")
    try:
        done = subprocess.run(
            [
                str(BIN / "k8slite"),
                "up",
                "--data-dir",
                str(tmp_path / "data"),
                "--port",
                "0",
                "--no-proxy",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            check=False,
        )
        assert done.returncode == 1
        assert "another `k8slite up` is running on" in done.stderr, done.stderr
    finally:
        assert stop_up(cluster) == 0


def test_prometheus_config_names_every_component(tmp_path: Path) -> None:
    doc = yaml.safe_load(prometheus_config(tmp_path, DEFAULT_PORTS))
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert set(jobs) == {"apiserver", "controller-manager", "scheduler", "kubelet", "proxy"}
    assert jobs["apiserver"]["static_configs"][0]["targets"] == ["127.0.0.1:8080"]
    assert jobs["proxy"]["scheme"] == "http"
    assert jobs["kubelet"]["tls_config"]["cert_file"].endswith("client-monitoring.pem")
    assert json.dumps(doc)  # plain data, nothing YAML-specific


def test_help_lists_up() -> None:
    done = subprocess.run(
        [str(BIN / "k8slite"), "--help"], capture_output=True, text=True, check=True
    )
    assert "up:" in done.stdout
    done = subprocess.run(
        [str(BIN / "k8slite"), "up", "--help"], capture_output=True, text=True, check=True
    )
    for flag in ("--data-dir", "--runtime", "--nodes", "--port", "--proxy-mode"):
        assert flag in done.stdout


async def test_wait_healthy_names_what_never_answered() -> None:
    silent = free_port()  # nothing listens there
    with pytest.raises(trio.TooSlowError, match="^scheduler$"):
        await wait_healthy({"scheduler": f"https://127.0.0.1:{silent}/healthz"}, timeout=1)
