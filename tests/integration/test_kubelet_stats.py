"""The kubelet's resource usage: /stats/summary and /metrics/resource for a pod burning CPU
on the process and Docker runtimes, and the fake runtime's synthetic usage.

Each runtime has a kubelet of its own on the session API server; the admin's certificate
is authorized by a SubjectAccessReview (nodes/stats, nodes/metrics), as metrics-server is.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerHandle
from tests.integration.kubelet_harness import (
    BUSYBOX,
    KubeletProcess,
    Pods,
    docker_problem,
    remove_docker_leftovers,
    remove_process_leftovers,
    retire_node,
    unique_node,
    wait_idle,
)
from tests.polling import wait_for

BURN = ["sh", "-c", "while :; do :; done"]


def _kubelet(
    apiserver: ServerHandle, workdir: Path, node: str, runtime: str, *extra: str
) -> Iterator[KubeletProcess]:
    proc = KubeletProcess(apiserver, node, runtime, workdir, *extra)
    try:
        proc.start()
        yield proc
    finally:
        if proc.proc is not None:
            retire_node(apiserver, node)
            wait_idle(proc)
        proc.stop()


@pytest.fixture(scope="module")
def process_kubelet(
    apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeletProcess]:
    node = unique_node("kl-stat")
    workdir = tmp_path_factory.mktemp(node)
    try:
        yield from _kubelet(apiserver, workdir, node, "process")
    finally:
        remove_process_leftovers(workdir)


@pytest.fixture(scope="module")
def docker_kubelet(
    apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeletProcess]:
    problem = docker_problem()
    if problem:
        pytest.skip(problem)
    node = unique_node("kl-dstat")
    network = f"k8slite-t-{node}"
    try:
        yield from _kubelet(
            apiserver,
            tmp_path_factory.mktemp(node),
            node,
            "docker",
            "--docker-network",
            network,
        )
    finally:
        remove_docker_leftovers([node], network)


@pytest.fixture(scope="module")
def fake_kubelet(
    apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeletProcess]:
    node = unique_node("kl-fstat")
    yield from _kubelet(
        apiserver,
        tmp_path_factory.mktemp(node),
        node,
        "fake",
        "--synthetic-usage",
        "cpu=100m,memory=32Mi",
    )


def _get(kubelet: KubeletProcess, path: str, identity: str = "admin") -> httpx.Response:
    ctx = ssl.create_default_context(cafile=str(kubelet.server.ca))
    ctx.load_cert_chain(*kubelet.server.cert(identity))
    with httpx.Client(verify=ctx, trust_env=False, timeout=30) as client:
        return client.get(f"https://127.0.0.1:{kubelet.port}{path}")


def _pod_stats(kubelet: KubeletProcess, namespace: str, name: str) -> dict[str, Any] | None:
    r = _get(kubelet, "/stats/summary")
    assert r.status_code == 200, r.text
    summary = r.json()
    assert summary["node"]["nodeName"] == kubelet.node
    for pod in summary["pods"]:
        if pod["podRef"]["namespace"] == namespace and pod["podRef"]["name"] == name:
            return pod  # type: ignore[no-any-return]
    return None


def _sample(text: str, family: str, **labels: str) -> float | None:
    """The value of one sample of the Prometheus text (labels in upstream's order)."""
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    name = f"{family}{{{inner}}}" if inner else family
    m = re.search(rf"^{re.escape(name)} (\S+)( \d+)?$", text, re.M)
    return float(m.group(1)) if m else None


def _burning_pod_is_measured(kubelet: KubeletProcess, api: httpx.Client, namespace: str) -> None:
    pods = Pods(api, namespace, kubelet.node)
    pods.create(
        "burner",
        [{"name": "burn", "image": BUSYBOX, "command": BURN}],
    )
    pods.wait_phase("burner", "Running")

    def busy() -> dict[str, Any] | None:
        pod = _pod_stats(kubelet, namespace, "burner")
        if pod is None or not pod["containers"]:
            return None
        cpu = pod["containers"][0]["cpu"]
        # A spinning shell uses most of a core: half a CPU-second within a few seconds.
        return pod if cpu["usageCoreNanoSeconds"] > 500_000_000 else None

    pod = wait_for(busy, 60, interval=1.0, what="the burning pod's CPU time")
    (container,) = pod["containers"]
    assert container["name"] == "burn"
    # On a shared 2-core machine the spinner still gets a tenth of a core or more.
    assert container["cpu"]["usageNanoCores"] > 100_000_000
    assert container["memory"]["workingSetBytes"] > 0
    assert pod["cpu"]["usageCoreNanoSeconds"] >= container["cpu"]["usageCoreNanoSeconds"]
    assert pod["podRef"]["uid"] == pods.get("burner")["metadata"]["uid"]  # type: ignore[index]

    r = _get(kubelet, "/metrics/resource")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    labels = {"container": "burn", "namespace": namespace, "pod": "burner"}
    cpu = _sample(text, "container_cpu_usage_seconds_total", **labels)
    assert cpu is not None and cpu > 0.5, text
    assert (_sample(text, "container_memory_working_set_bytes", **labels) or 0) > 0
    assert (
        _sample(text, "pod_cpu_usage_seconds_total", namespace=namespace, pod="burner") or 0
    ) > 0
    assert (_sample(text, "node_cpu_usage_seconds_total") or 0) > 0
    assert (_sample(text, "node_memory_working_set_bytes") or 0) > 0
    assert _sample(text, "resource_scrape_error") == 0
    assert "# TYPE container_cpu_usage_seconds_total counter" in text
    pods.delete("burner", grace=0)


def test_process_pod_burning_cpu(
    process_kubelet: KubeletProcess, api: httpx.Client, namespace: str
) -> None:
    _burning_pod_is_measured(process_kubelet, api, namespace)


def test_docker_pod_burning_cpu(
    docker_kubelet: KubeletProcess, api: httpx.Client, namespace: str
) -> None:
    _burning_pod_is_measured(docker_kubelet, api, namespace)


def test_fake_runtime_reports_synthetic_usage(
    fake_kubelet: KubeletProcess, api: httpx.Client, namespace: str
) -> None:
    pods = Pods(api, namespace, fake_kubelet.node)
    container = {"name": "app", "image": BUSYBOX}
    pods.create("plain", [container])
    pods.create(
        "loaded",
        [container, {**container, "name": "side"}],
        metadata={"annotations": {"k8slite.io/synthetic-usage": "cpu=500m"}},
    )
    pods.wait_phase("plain", "Running")
    pods.wait_phase("loaded", "Running")
    plain = wait_for(lambda: _pod_stats(fake_kubelet, namespace, "plain"), 30, what="stats")
    loaded = wait_for(lambda: _pod_stats(fake_kubelet, namespace, "loaded"), 30, what="stats")
    assert plain["memory"]["workingSetBytes"] == 32 * 1024 * 1024
    # The annotation sets cpu; memory stays the node's synthetic figure.
    assert loaded["memory"]["workingSetBytes"] == 2 * 32 * 1024 * 1024
    assert [c["name"] for c in loaded["containers"]] == ["app", "side"]
    assert abs(plain["cpu"]["usageNanoCores"] - 100_000_000) < 5_000_000
    assert abs(loaded["cpu"]["usageNanoCores"] - 1_000_000_000) < 50_000_000
    text = _get(fake_kubelet, "/metrics/resource").text
    memory = _sample(
        text,
        "container_memory_working_set_bytes",
        container="side",
        namespace=namespace,
        pod="loaded",
    )
    assert memory == 32 * 1024 * 1024
    # A simulated node uses what its pods use.
    summary = _get(fake_kubelet, "/stats/summary").json()
    node_ws = summary["node"]["memory"]["workingSetBytes"]
    assert node_ws == sum(p["memory"]["workingSetBytes"] for p in summary["pods"])


def test_stats_need_nodes_stats_permission(
    fake_kubelet: KubeletProcess,
) -> None:
    # Another node's identity: the node authorizer grants nodes/* of its own node only.
    r = _get(fake_kubelet, "/stats/summary", identity="node-node1")
    assert r.status_code == 403, r.text
    assert "resource=nodes, subresource(s)=[stats]" in r.text
    r = _get(fake_kubelet, "/metrics/resource", identity="node-node1")
    assert r.status_code == 403 and "subresource(s)=[metrics]" in r.text, r.text
