"""The PKI with the real kubectl: it reads our kubeconfigs and completes mutual TLS with them."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from k8slite import pki
from tests.mtls import VersionHandler, kubeconfig_for, version_server

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".venv" / "bin" / "kubectl"


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cluster") / "pki"
    pki.ensure_pki(path, nodes=["node1"])
    return path


@pytest.fixture
def mtls_server(pki_dir: Path) -> Iterator[str]:
    with version_server(pki_dir) as url:
        yield url


@pytest.mark.skipif(not KUBECTL.exists(), reason="no .venv/bin/kubectl (run hack/get-kubectl)")
def test_kubectl_reads_kubeconfig(pki_dir: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [
            KUBECTL,
            "config",
            "view",
            "--raw",
            "-o",
            "json",
            "--kubeconfig",
            pki_dir / "admin.kubeconfig",
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "HOME": str(tmp_path)},
    ).stdout
    view = json.loads(out)
    assert view["current-context"] == "k8slite"
    assert view["users"][0]["name"] == "admin"
    assert view["users"][0]["user"]["client-key-data"]


@pytest.mark.skipif(not KUBECTL.exists(), reason="no .venv/bin/kubectl (run hack/get-kubectl)")
def test_kubectl_mtls(pki_dir: Path, mtls_server: str, tmp_path: Path) -> None:
    kubeconfig = kubeconfig_for(pki_dir, "admin", mtls_server, tmp_path)
    out = subprocess.run(
        [KUBECTL, "--kubeconfig", kubeconfig, "get", "--raw", "/version"],
        check=True,
        capture_output=True,
        env={**os.environ, "HOME": str(tmp_path)},
        timeout=60,
    ).stdout
    assert json.loads(out)["gitVersion"] == "v1.35.0"
    assert VersionHandler.peers[-1] == ("admin", ["system:masters"])
