"""The real helm with a chart whose crds/ holds a CRD and whose templates make custom
resources of it: install, upgrade and uninstall."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import BIN, ServerHandle

CHART = Path(__file__).resolve().parents[1] / "e2e" / "charts" / "crontabs"
CRONTABS = "/apis/charts.example.com/v1/namespaces/{ns}/crontabs"


@pytest.fixture
def http(module_apiserver: ServerHandle) -> Iterator[httpx.Client]:
    with module_apiserver.client() as client:
        yield client


def helm(server: ServerHandle, home: Path, *args: str) -> str:
    if not (BIN / "helm").exists():
        pytest.skip("helm is not installed in .venv/bin")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "KUBECONFIG": str(server.kubeconfig),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    done = subprocess.run(
        [str(BIN / "helm"), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"helm {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def _crontabs(http: httpx.Client, ns: str) -> dict[str, dict[str, object]]:
    items = http.get(CRONTABS.format(ns=ns)).json()["items"]
    return {i["metadata"]["name"]: i["spec"] for i in items}


def test_helm_installs_upgrades_and_uninstalls_a_chart_with_a_crd(
    module_apiserver: ServerHandle, http: httpx.Client, tmp_path: Path
) -> None:
    ns = f"helm-crd-{os.urandom(2).hex()}"
    assert http.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).status_code == 201
    helm(module_apiserver, tmp_path, "install", "tabs", str(CHART), "-n", ns, "--wait")
    crd = http.get(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/crontabs.charts.example.com"
    ).json()
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["Established"] == "True"
    assert _crontabs(http, ns) == {
        "hourly": {"cronSpec": "0 3 * * *", "replicas": 1},
        "nightly": {"cronSpec": "0 3 * * *", "replicas": 1},
    }
    helm(
        module_apiserver,
        tmp_path,
        "upgrade",
        "tabs",
        str(CHART),
        "-n",
        ns,
        "--set=replicas=3",
        "--set=names={nightly,weekly}",
        "--wait",
    )
    assert _crontabs(http, ns) == {
        "nightly": {"cronSpec": "0 3 * * *", "replicas": 3},
        "weekly": {"cronSpec": "0 3 * * *", "replicas": 3},
    }
    listed = json.loads(helm(module_apiserver, tmp_path, "list", "-n", ns, "-o", "json"))
    assert [(r["name"], r["revision"], r["status"]) for r in listed] == [("tabs", "2", "deployed")]
    helm(module_apiserver, tmp_path, "uninstall", "tabs", "-n", ns, "--wait")
    assert _crontabs(http, ns) == {}
    # helm keeps the CRDs of crds/ on uninstall, as documented.
    assert (
        http.get(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/crontabs.charts.example.com"
        ).status_code
        == 200
    )
