"""The seed's scripts under hack/: start and stop a secure cluster, verify-connect, readiness."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
from pathlib import Path

from k8slite import pki
from tests.conftest import ServerHandle
from tests.launch import REPO

HACK = REPO / "hack"


def hack(
    script: str, *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HACK / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
        env={**os.environ, **(env or {})},
    )


def verify_connect(server: ServerHandle, *args: str) -> subprocess.CompletedProcess[str]:
    return hack("verify-connect", "--data-dir", str(server.data_dir), "--server", server.url, *args)


# --------------------------------------------------------------------- verify-connect


def test_verify_connect_lists_nodes_and_pods(apiserver: ServerHandle) -> None:
    done = verify_connect(apiserver)
    assert done.returncode == 0, done.stderr
    assert "as 'admin' (system:masters)" in done.stdout
    assert "nodes:" in done.stdout and "pods:" in done.stdout


def test_verify_connect_no_server(apiserver: ServerHandle) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = hack(
        "verify-connect",
        "--data-dir",
        str(apiserver.data_dir),
        "--server",
        f"https://127.0.0.1:{port}",
    )
    assert done.returncode == 2
    assert f"no API server at https://127.0.0.1:{port} (connection refused)" in done.stderr


def test_verify_connect_server_certificate_from_another_ca(
    apiserver: ServerHandle, tmp_path: Path
) -> None:
    pki.ensure_pki(tmp_path / "pki")
    done = hack("verify-connect", "--data-dir", str(tmp_path), "--server", apiserver.url)
    assert done.returncode == 3
    assert "bad certificate: the server's certificate does not verify against" in done.stderr


def test_verify_connect_client_certificate_from_another_ca(
    apiserver: ServerHandle, tmp_path: Path
) -> None:
    pki.ensure_pki(tmp_path / "pki")
    done = verify_connect(
        apiserver,
        "--cert",
        str(tmp_path / "pki" / "client-admin.pem"),
        "--key",
        str(tmp_path / "pki" / "client-admin.key"),
    )
    assert done.returncode == 3
    assert "bad certificate: the server refused our client certificate" in done.stderr
    assert "it is not signed by" in done.stderr


def test_verify_connect_expired_certificate(apiserver: ServerHandle) -> None:
    cert, key = pki.issue_client_cert(
        apiserver.pki,
        "expired-admin",
        "admin",
        ["system:masters"],
        days=1,
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=2),
    )
    done = verify_connect(apiserver, "--cert", str(cert), "--key", str(key))
    assert done.returncode == 3
    assert "expired on" in done.stderr


def test_verify_connect_forbidden(apiserver: ServerHandle) -> None:
    cert, key = pki.issue_client_cert(apiserver.pki, "nobody", "nobody", ["nobodies"])
    done = verify_connect(apiserver, "--cert", str(cert), "--key", str(key))
    assert done.returncode == 4
    assert "forbidden: authenticated as 'nobody' (groups nobodies)" in done.stderr


# ------------------------------------------------------- start_cluster_secure and stop


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_start_and_stop_cluster_secure(tmp_path: Path) -> None:
    data = tmp_path / "data"
    started = hack(
        "start_cluster_secure",
        "--data-dir",
        str(data),
        "--port",
        "0",
        "--runtime",
        "fake",
        "--no-proxy",
    )
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"export KUBECONFIG={data}/kubeconfig" in started.stdout
        run = data / "run"
        names = {p.stem for p in run.glob("*.pid")}
        assert names == {
            "apiserver",
            "controller-manager-1",
            "controller-manager-2",
            "scheduler",
            "kubelet",
        }, names
        pids = {name: int((run / f"{name}.pid").read_text()) for name in names}
        assert all(_alive(pid) for pid in pids.values())
        for name in ("apiserver", "controller-manager-1", "kubelet"):
            assert (data / "logs" / f"{name}.log").stat().st_size > 0
        # The seed's node name, and both controller managers leader-elected.
        connected = hack("verify-connect", "--data-dir", str(data))
        assert connected.returncode == 0, connected.stderr
        assert "node1" in connected.stdout and "Ready" in connected.stdout
        for cm in ("controller-manager-1", "controller-manager-2"):
            assert "--leader-elect=true" in Path(
                f"/proc/{pids[cm]}/cmdline"
            ).read_bytes().decode().replace("\0", " ")
        again = hack(
            "start_cluster_secure",
            "--data-dir",
            str(data),
            "--port",
            "0",
            "--runtime",
            "fake",
            "--no-proxy",
        )
        assert again.returncode == 1 and "is already running" in again.stderr
    finally:
        stopped = hack("stop_cluster", "--data-dir", str(data))
    assert stopped.returncode == 0, stopped.stderr
    assert not any(_alive(pid) for pid in pids.values())
    assert not list((data / "run").glob("*.pid"))
    ca = (data / "pki" / "ca.pem").read_bytes()
    # It starts again on the same data and certificates.
    restarted = hack(
        "start_cluster_secure",
        "--data-dir",
        str(data),
        "--port",
        "0",
        "--runtime",
        "fake",
        "--no-proxy",
    )
    try:
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        assert (data / "pki" / "ca.pem").read_bytes() == ca
    finally:
        assert hack("stop_cluster", "--data-dir", str(data)).returncode == 0


def test_stop_cluster_with_nothing_running(tmp_path: Path) -> None:
    done = hack("stop_cluster", "--data-dir", str(tmp_path))
    assert done.returncode == 0 and "nothing to stop" in done.stdout


def test_help_of_every_script() -> None:
    for script in (
        "start_cluster_secure",
        "stop_cluster",
        "e2e",
        "verify-connect",
        "verify_production_readiness",
    ):
        done = hack(script, "--help", timeout=60)
        assert done.returncode == 0, (script, done.stderr)
        assert done.stdout.strip(), script


def test_verify_production_readiness() -> None:
    """The cluster part of the definitive check (build and unit tests run elsewhere)."""
    done = hack("verify_production_readiness", "--skip-build", "--skip-unit", timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "PASS: all checks passed" in done.stdout
    for check in (
        "security: no client certificate",
        "security: foreign CA",
        "security: node isolation",
        "functional",
        "HA failover",
        "persistence",
    ):
        assert any(
            line.startswith(check) and " PASS " in line for line in done.stdout.splitlines()
        ), (check, done.stdout)
