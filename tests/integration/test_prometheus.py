"""The scrape config `k8slite up` writes, loaded by a real Prometheus: every target is up.

Prometheus is Debian's `prometheus` package (hack/install-deps installs it when it can); the
test skips, saying so, when it is not there. It listens on loopback and scrapes only the
cluster's components on loopback.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from k8slite.freeport import free_port
from tests.e2e.cluster import Cluster, cluster_for_tests
from tests.launch import stop
from tests.polling import wait_for

pytestmark = pytest.mark.xdist_group("host-network")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if shutil.which("prometheus") is None:
        pytest.skip(
            "prometheus is not installed (hack/install-deps installs Debian's "
            "`prometheus` package when apt can)"
        )
    with cluster_for_tests(tmp_path_factory.mktemp("prometheus")) as cluster:
        if not cluster.info:
            pytest.skip("needs a cluster started by the tests (its prometheus.yml)")
        yield cluster


def test_promtool_accepts_the_config(cluster: Cluster) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed")
    config = Path(cluster.info["data_dir"]) / "prometheus.yml"
    done = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_target_up(cluster: Cluster, tmp_path: Path) -> None:
    config = yaml.safe_load((Path(cluster.info["data_dir"]) / "prometheus.yml").read_text())
    # The written interval (15 s) is for people; the test scrapes every second to be quick.
    config["global"].update(scrape_interval="1s", scrape_timeout="1s")
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={path}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def targets() -> list[dict[str, Any]] | None:
            with httpx.Client(trust_env=False, timeout=5) as client:
                r = client.get(f"http://127.0.0.1:{port}/api/v1/targets")
            active = r.json()["data"]["activeTargets"]
            return active if active and all(t["health"] == "up" for t in active) else None

        try:
            active = wait_for(targets, 60, interval=1, what="every target to be up")
        except AssertionError as e:
            with httpx.Client(trust_env=False, timeout=5) as client:
                data = client.get(f"http://127.0.0.1:{port}/api/v1/targets").json()
            summary = [
                (t["labels"]["job"], t["health"], t.get("lastError"))
                for t in data["data"]["activeTargets"]
            ]
            raise AssertionError(
                f"targets not all up: {summary}\n"
                f"{(tmp_path / 'prometheus.log').read_text()[-2000:]}"
            ) from e
        jobs = {t["labels"]["job"] for t in active}
        expected = {"apiserver", "controller-manager", "scheduler", "kubelet", "dns"}
        if cluster.info.get("proxy"):
            expected.add("proxy")
        assert jobs == expected
        # And the data is there: a query over what was scraped.
        with httpx.Client(trust_env=False, timeout=5) as client:
            r = client.get(
                f"http://127.0.0.1:{port}/api/v1/query", params={"query": "sum by (job) (up)"}
            )
        assert {s["metric"]["job"] for s in r.json()["data"]["result"]} == expected
    finally:
        stop(proc)
