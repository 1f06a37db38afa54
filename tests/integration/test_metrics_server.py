"""The resource metrics API end to end: a fake-runtime kubelet with synthetic usage,
k8slite-metrics-server scraping it, registered by an APIService, and the real kubectl top
going through the API server's aggregation proxy.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ServerHandle
from tests.integration.kubelet_harness import (
    BUSYBOX,
    KubeletProcess,
    Pods,
    kubectl,
    retire_node,
    unique_node,
    wait_idle,
)
from tests.integration.metrics_harness import APISERVICE, APISERVICES, available
from tests.integration.metrics_harness import metrics_api as run_metrics_api
from tests.polling import wait_for


@pytest.fixture(scope="module")
def kubelet(
    apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeletProcess]:
    node = unique_node("ms-node")
    proc = KubeletProcess(
        apiserver,
        node,
        "fake",
        tmp_path_factory.mktemp(node),
        "--synthetic-usage",
        "cpu=100m,memory=32Mi",
    )
    try:
        proc.start()
        yield proc
    finally:
        if proc.proc is not None:
            retire_node(apiserver, node)
            wait_idle(proc)
        proc.stop()


@pytest.fixture(scope="module")
def metrics_api(
    apiserver: ServerHandle, kubelet: KubeletProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    """The metrics server, its Service and EndpointSlice, and the APIService."""
    with run_metrics_api(apiserver, tmp_path_factory.mktemp("metrics-server")) as port:
        yield port


def test_apiservice_available_and_group_discovered(
    apiserver: ServerHandle, api: httpx.Client, metrics_api: int
) -> None:
    condition = wait_for(lambda: available(api), 30, what="the APIService to be Available")
    assert (condition["reason"], condition["message"]) == ("Passed", "all checks passed")
    groups = api.get("/apis").json()["groups"]
    assert any(g["name"] == "metrics.k8s.io" for g in groups)
    resources = api.get("/apis/metrics.k8s.io/v1beta1").json()["resources"]
    assert {(r["name"], r["kind"], r["namespaced"]) for r in resources} == {
        ("nodes", "NodeMetrics", False),
        ("pods", "PodMetrics", True),
    }
    # Aggregated discovery lists the group too, and the OpenAPI documents still build.
    aggregated = api.get(
        "/apis",
        headers={"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"},
    ).json()
    assert "metrics.k8s.io" in {g["metadata"]["name"] for g in aggregated["items"]}
    assert api.get("/openapi/v2").status_code == 200
    assert api.get("/openapi/v3").status_code == 200
    listed = kubectl(apiserver, "get", "apiservices", APISERVICE)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "SERVICE", "AVAILABLE", "AGE"]
    assert row.split()[:3] == [APISERVICE, "kube-system/metrics-server", "True"]


def test_kubectl_top_nodes_and_pods(
    apiserver: ServerHandle,
    api: httpx.Client,
    namespace: str,
    kubelet: KubeletProcess,
    metrics_api: int,
) -> None:
    wait_for(lambda: available(api), 30, what="the APIService to be Available")
    pods = Pods(api, namespace, kubelet.node)
    container = {"name": "app", "image": BUSYBOX}
    pods.create("small", [container], metadata={"labels": {"tier": "web"}})
    pods.create(
        "big",
        [container, {**container, "name": "side"}],
        metadata={
            "labels": {"tier": "db"},
            "annotations": {"k8slite.io/synthetic-usage": "cpu=500m,memory=64Mi"},
        },
    )
    pods.wait_phase("small", "Running")
    pods.wait_phase("big", "Running")

    def top_pods() -> str | None:
        done = kubectl(apiserver, "top", "pods", "-n", namespace, "--containers")
        return done.stdout if done.returncode == 0 and "side" in done.stdout else None

    out = wait_for(top_pods, 60, interval=1.0, what="kubectl top pods")
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in out.splitlines()[1:]}
    assert out.splitlines()[0].split() == ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    # CPU is a rate between two scrapes: whole millicores give or take one (rounding).
    assert _milli(rows[("big", "side")][0]) == pytest.approx(500, abs=1)
    assert _milli(rows[("big", "app")][0]) == pytest.approx(500, abs=1)
    assert _milli(rows[("small", "app")][0]) == pytest.approx(100, abs=1)
    assert [rows[k][1] for k in (("big", "side"), ("big", "app"), ("small", "app"))] == [
        "64Mi",
        "64Mi",
        "32Mi",
    ]

    # Sorted by CPU, selected by label.
    done = kubectl(apiserver, "top", "pods", "-n", namespace, "--sort-by=cpu")
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()[1:]] == ["big", "small"]
    big = done.stdout.splitlines()[1].split()
    assert _milli(big[1]) == pytest.approx(1000, abs=2) and big[2] == "128Mi"
    done = kubectl(apiserver, "top", "pods", "-n", namespace, "-l", "tier=web")
    assert [line.split()[0] for line in done.stdout.splitlines()[1:]] == ["small"]

    def top_node() -> list[str] | None:
        done = kubectl(apiserver, "top", "nodes", kubelet.node)
        if done.returncode != 0:
            return None
        row = done.stdout.splitlines()[1].split()
        # A window that began before the pods ran shows less: wait for one after.
        return row if abs(_milli(row[1]) - 1100) <= 3 else None

    # The node uses what its pods do (a fake node).
    row = wait_for(top_node, 60, interval=1.0, what="kubectl top nodes to show 1100m")
    assert row[0] == kubelet.node and row[3] == "160Mi"

    # The API itself, through the aggregation proxy: upstream's shapes and errors.
    metrics = api.get(f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/big").json()
    assert metrics["kind"] == "PodMetrics"
    assert metrics["metadata"]["labels"] == {"tier": "db"}
    assert [c["name"] for c in metrics["containers"]] == ["app", "side"]
    assert metrics["window"].endswith("s")
    missing = api.get(f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/nope")
    assert missing.status_code == 404
    assert missing.json()["message"] == f'podmetrics.metrics.k8s.io "{namespace}/nope" not found'


def test_metrics_api_is_authorized_for_the_user(
    apiserver: ServerHandle, api: httpx.Client, metrics_api: int
) -> None:
    wait_for(lambda: available(api), 30, what="the APIService to be Available")
    # A node may not read pod metrics: RBAC in the API server refuses before the proxy.
    with apiserver.client("node-node1") as node:
        r = node.get("/apis/metrics.k8s.io/v1beta1/pods")
    assert r.status_code == 403, r.text
    # The metrics server trusts X-Remote-User only from the front-proxy certificate.
    url = f"https://127.0.0.1:{metrics_api}/apis/metrics.k8s.io/v1beta1"
    r = _direct(apiserver, "admin", f"{url}/nodes", {"X-Remote-User": "system:anonymous"})
    assert r.status_code == 200, r.text  # the admin itself, not the header's user
    r = _direct(
        apiserver,
        "node-node1",
        f"{url}/pods",
        {"X-Remote-User": "admin", "X-Remote-Group": "system:masters"},
    )
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        'pods.metrics.k8s.io is forbidden: User "system:node:node1" cannot list resource '
        '"pods" in API group "metrics.k8s.io" at the cluster scope'
    )


def _direct(server: ServerHandle, identity: str, url: str, headers: dict[str, str]) -> Any:
    """A request straight to the metrics server (its certificate is self-signed)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(*server.cert(identity))
    with httpx.Client(verify=ctx, trust_env=False, timeout=30) as client:
        return client.get(url, headers=headers)


def _milli(cpu: str) -> int:
    return int(cpu.removesuffix("m")) if cpu.endswith("m") else int(float(cpu) * 1000)


def test_apiservice_unavailable_in_upstream_words(api: httpx.Client) -> None:
    """No Service, then a Service without endpoints: Available False with the reason."""
    name = f"v1.{os.urandom(3).hex()}.example.com"
    group = name.removeprefix("v1.")
    svc = f"nowhere-{os.urandom(3).hex()}"
    body = {
        "metadata": {"name": name},
        "spec": {
            "group": group,
            "version": "v1",
            "service": {"namespace": "default", "name": svc},
            "insecureSkipTLSVerify": True,
            "groupPriorityMinimum": 1000,
            "versionPriority": 15,
        },
    }
    assert api.post(APISERVICES, json=body).status_code == 201
    try:

        def condition(reason: str) -> dict[str, Any] | None:
            obj = api.get(f"{APISERVICES}/{name}").json()
            for c in (obj.get("status") or {}).get("conditions") or ():
                if c["type"] == "Available" and c["reason"] == reason:
                    return c  # type: ignore[no-any-return]
            return None

        gone = wait_for(lambda: condition("ServiceNotFound"), 30, what="ServiceNotFound")
        assert gone["status"] == "False"
        assert gone["message"] == f'service/{svc} in "default" is not present'
        r = api.post(
            "/api/v1/namespaces/default/services",
            json={"metadata": {"name": svc}, "spec": {"ports": [{"port": 443}]}},
        )
        assert r.status_code == 201, r.text
        empty = wait_for(lambda: condition("MissingEndpoints"), 30, what="MissingEndpoints")
        assert empty["message"] == (
            f'endpoints for service/{svc} in "default" have no addresses with port name ""'
        )
        # A wrong name is refused as upstream's validation does.
        bad = api.post(APISERVICES, json={**body, "metadata": {"name": f"v2.{group}"}})
        assert bad.status_code == 422
        assert f"must be v1.{group}" in bad.json()["message"]
    finally:
        api.delete(f"{APISERVICES}/{name}")
        api.delete(f"/api/v1/namespaces/default/services/{svc}")
