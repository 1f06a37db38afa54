"""Every component of a running cluster serves Prometheus text with upstream's metric names."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from k8slite.cmd.up import MONITORING_IDENTITY
from tests.e2e.cluster import Cluster, cluster_for_tests
from tests.polling import wait_for

pytestmark = pytest.mark.xdist_group("host-network")

# What every component's page has besides its own: the process collector's upstream names.
PROCESS = {
    "process_cpu_seconds",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
    "process_virtual_memory_bytes",
    "python_info",
}
# Families each component serves, named as upstream's (a counter's family name drops
# _total, which the exposition adds back).
EXPECTED = {
    "apiserver": {
        "apiserver_request",
        "apiserver_request_duration_seconds",
        "apiserver_registered_watchers",
        "apiserver_storage_objects",
        "etcd_request_duration_seconds",
        "apiserver_longrunning_requests",
    },
    "controller-manager": {
        "workqueue_adds",
        "workqueue_depth",
        "workqueue_queue_duration_seconds",
        "workqueue_work_duration_seconds",
        "workqueue_retries",
        "leader_election_master_status",
    },
    "scheduler": {
        "scheduler_schedule_attempts",
        "scheduler_pending_pods",
        "scheduler_scheduling_attempt_duration_seconds",
        "scheduler_pod_scheduling_sli_duration_seconds",
        "leader_election_master_status",
    },
    "kubelet": {
        "kubelet_running_pods",
        "kubelet_running_containers",
        "kubelet_pod_start_duration_seconds",
        "kubelet_pod_worker_duration_seconds",
        "kubelet_runtime_operations",
        "kubelet_runtime_operations_duration_seconds",
    },
    "proxy": {
        "kubeproxy_sync_proxy_rules_duration_seconds",
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
        "kubeproxy_network_programming_duration_seconds",
    },
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster_for_tests(tmp_path_factory.mktemp("metrics")) as cluster:
        if not cluster.info:
            pytest.skip("needs a cluster started by the tests (its ports and certificates)")
        yield cluster


def _client(pki: Path, identity: str | None) -> httpx.Client:
    if identity is None:
        # Self-signed serving certificates (controller manager, scheduler), as upstream's.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        ctx.load_cert_chain(pki / f"client-{identity}.pem", pki / f"client-{identity}.key")
    return httpx.Client(verify=ctx, timeout=10, trust_env=False)


def scrape(cluster: Cluster, component: str) -> str:
    ports, pki = cluster.info["ports"], Path(cluster.info["data_dir"]) / "pki"
    where = {
        "apiserver": (f"https://127.0.0.1:{ports['apiserver']}", MONITORING_IDENTITY),
        "controller-manager": (f"https://127.0.0.1:{ports['controller-manager']}", None),
        "scheduler": (f"https://127.0.0.1:{ports['scheduler']}", None),
        "kubelet": (f"https://127.0.0.1:{ports['kubelet']}", MONITORING_IDENTITY),
        "proxy": (f"http://127.0.0.1:{ports['proxy-metrics']}", None),
    }
    base, identity = where[component]
    with _client(pki, identity) as client:
        r = client.get(f"{base}/metrics")
    assert r.status_code == 200, f"{component}: {r.status_code} {r.text[:300]}"
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    return r.text


@pytest.mark.parametrize("component", list(EXPECTED))
def test_component_metrics_parse(cluster: Cluster, component: str) -> None:
    if component == "proxy" and not cluster.info.get("proxy"):
        pytest.skip("the cluster runs no proxy")

    # Some families appear only once they have a sample (a first request, a first sync).
    def families() -> set[str] | None:
        names = {f.name for f in text_string_to_metric_families(scrape(cluster, component))}
        return names if EXPECTED[component] | PROCESS <= names else None

    try:
        wait_for(families, 30, interval=1, what=f"{component}'s metric families")
    except AssertionError as e:
        names = {f.name for f in text_string_to_metric_families(scrape(cluster, component))}
        missing = (EXPECTED[component] | PROCESS) - names
        raise AssertionError(f"{component} lacks {sorted(missing)}; has {sorted(names)}") from e
    # Every sample parses to a number; the process metrics make sense.
    by_name = {f.name: f for f in text_string_to_metric_families(scrape(cluster, component))}
    assert by_name["process_resident_memory_bytes"].samples[0].value > 1_000_000
    assert by_name["process_start_time_seconds"].samples[0].value > 1_600_000_000


def test_apiserver_metrics_need_permission(cluster: Cluster) -> None:
    """The monitoring identity may read /metrics; a kubelet's identity may not."""
    pki = Path(cluster.info["data_dir"]) / "pki"
    url = f"https://127.0.0.1:{cluster.info['ports']['apiserver']}/metrics"
    with _client(pki, f"node-{cluster.info['node']}") as client:
        assert client.get(url).status_code == 403
    with _client(pki, MONITORING_IDENTITY) as client:
        assert client.get(url).status_code == 200
        assert client.get(url.replace("/metrics", "/api/v1/namespaces")).status_code == 403


def test_health_endpoints(cluster: Cluster) -> None:
    ports = cluster.info["ports"]
    with _client(Path(), None) as client:
        for url in (
            f"https://127.0.0.1:{ports['controller-manager']}/healthz",
            f"https://127.0.0.1:{ports['scheduler']}/healthz",
            f"http://127.0.0.1:{ports['kubelet-healthz']}/healthz",
        ):
            assert client.get(url).status_code == 200, url
        if cluster.info.get("proxy"):
            r = client.get(f"http://127.0.0.1:{ports['proxy-healthz']}/healthz")
            assert r.status_code == 200 and r.json()["nodeHealthy"] is True
