"""End to end with the real kubectl: a Deployment of busybox httpd pods on a whole cluster.

The cluster is `k8slite up` on a temporary directory (see cluster.py), or the one named by
K8SLITE_E2E_KUBECONFIG (hack/e2e). Everything goes through kubectl, as a user would: create
a Deployment, see its pods scheduled and Running, expose it as a Service and reach it from
the host (through the proxy) and from a pod, roll it forward and back, scale it, read logs,
and delete it with and without cascade. Traffic goes only to service addresses, which the
proxy routes to this host (checked before the first packet), and to loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BIN
from tests.e2e.cluster import Cluster, cluster_for_tests, is_ready, real_node
from tests.polling import wait_for

pytestmark = pytest.mark.xdist_group("host-network")

IMAGE = "busybox:1.35"
CHART = Path(__file__).with_name("charts") / "hello"
# The same image under another tag: a rollout needs a template change, and nothing may be
# pulled from outside the machine.
IMAGE_V2 = "busybox:1.35.0"
# Each pod says hello in its log, then serves its own name on :8080.
HTTPD = (
    'echo "serving $(hostname)"; mkdir -p /www && hostname > /www/index.html '
    "&& exec httpd -f -p 8080 -h /www"
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster_for_tests(tmp_path_factory.mktemp("e2e")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def node(cluster: Cluster) -> str:
    return real_node(cluster)


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> Iterator[str]:
    name = f"e2e-{os.urandom(3).hex()}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def deployment(name: str, node: str, replicas: int, image: str = IMAGE) -> str:
    return textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {name}
          labels: {{app: {name}}}
        spec:
          replicas: {replicas}
          selector:
            matchLabels: {{app: {name}}}
          strategy:
            rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
          template:
            metadata:
              labels: {{app: {name}}}
            spec:
              nodeSelector: {{kubernetes.io/hostname: {node}}}
              terminationGracePeriodSeconds: 1
              containers:
              - name: web
                image: {image}
                command: ["sh", "-c", {json.dumps(HTTPD)}]
                ports: [{{name: http, containerPort: 8080}}]
                readinessProbe:
                  httpGet: {{path: /, port: http}}
                  periodSeconds: 1
        """)


def pods(cluster: Cluster, ns: str, selector: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json").stdout
    return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]


def ready_pods(cluster: Cluster, ns: str, selector: str, n: int) -> list[dict[str, Any]] | None:
    """The pods if exactly n are live, scheduled, Running and Ready."""
    live = pods(cluster, ns, selector)
    ok = [
        p
        for p in live
        if p["spec"].get("nodeName") and p["status"].get("phase") == "Running" and is_ready(p)
    ]
    return ok if len(live) == n and len(ok) == n else None


def rollout(cluster: Cluster, ns: str, name: str) -> None:
    cluster.kubectl(
        "rollout", "status", f"deployment/{name}", "-n", ns, "--timeout=180s", timeout=200
    )


def cluster_ip(cluster: Cluster, ns: str, svc: str) -> str:
    return cluster.kubectl(
        "get", "service", svc, "-n", ns, "-o", "jsonpath={.spec.clusterIP}"
    ).stdout.strip()


def routed_locally(ip: str) -> bool:
    """The proxy's guard holds: a packet to `ip` stays on this host."""
    out = subprocess.run(
        ["ip", "route", "get", ip], capture_output=True, text=True, check=False
    ).stdout
    return out.startswith(f"local {ip} dev lo")


def spread_from_host(ip: str, n: int) -> Counter[str]:
    assert routed_locally(ip), f"{ip} is not routed to this host; refusing to send to it"
    seen: Counter[str] = Counter()
    # A fresh connection each time, so the proxy picks a backend each time; no proxies from
    # the environment.
    for _ in range(n):
        with httpx.Client(trust_env=False, timeout=5) as client:
            r = client.get(f"http://{ip}/")
        assert r.status_code == 200, r.text
        seen[r.text.strip()] += 1
    return seen


@pytest.fixture(scope="module")
def web(cluster: Cluster, ns: str, node: str) -> str:
    """Deployment `web` (3 pods) and its Service, created with kubectl."""
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=deployment("web", node, 3))
    rollout(cluster, ns, "web")
    cluster.kubectl("expose", "deployment", "web", "-n", ns, "--port=80", "--target-port=http")
    return "web"


# ---------------------------------------------------------------------------- tests


def test_nodes_ready(cluster: Cluster, node: str) -> None:
    out = cluster.kubectl("get", "nodes").stdout
    assert any(line.split()[:2] == [node, "Ready"] for line in out.splitlines()), out


def test_deployment_pods_scheduled_and_running(
    cluster: Cluster, ns: str, node: str, web: str
) -> None:
    running = wait_for(
        lambda: ready_pods(cluster, ns, "app=web", 3), 120, what="3 Running and Ready web pods"
    )
    for pod in running:
        # The scheduler placed it (the template names no node, only a selector).
        assert pod["spec"]["nodeName"] == node
        scheduled = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
        assert scheduled and scheduled[0]["status"] == "True"
        assert pod["status"]["podIP"]
    deploy = json.loads(cluster.kubectl("get", "deployment", "web", "-n", ns, "-o", "json").stdout)
    assert deploy["status"]["readyReplicas"] == 3
    assert deploy["status"]["updatedReplicas"] == 3
    table = cluster.kubectl("get", "pods", "-n", ns, "-o", "wide").stdout
    assert table.count("Running") == 3, table


def test_service_reached_from_the_host(cluster: Cluster, ns: str, web: str) -> None:
    if cluster.info and not cluster.info.get("proxy"):
        pytest.skip("the cluster runs no proxy")
    ip = cluster_ip(cluster, ns, "web")
    names = {p["metadata"]["name"] for p in pods(cluster, ns, "app=web")}
    wait_for(lambda: routed_locally(ip), 30, what=f"the route to {ip}")
    # Every backend answers, through the proxy, once the endpoints have reached it.
    wait_for(
        lambda: set(spread_from_host(ip, 30)) == names,
        60,
        what="every web pod to answer on the service address",
    )


def test_service_reached_from_a_pod(cluster: Cluster, ns: str, node: str, web: str) -> None:
    if cluster.info and not cluster.info.get("proxy"):
        pytest.skip("the cluster runs no proxy")
    names = {p["metadata"]["name"] for p in pods(cluster, ns, "app=web")}
    # The service's environment variables, as the kubelet sets them for pods made after it;
    # `timeout`, not wget's -T, which Debian's static busybox 1.35 wget crashes with.
    script = (
        "for i in $(seq 30); do timeout 5 wget -qO- "
        "http://$WEB_SERVICE_HOST:$WEB_SERVICE_PORT/ || echo FAILED; done"
    )
    pinned = {"spec": {"nodeSelector": {"kubernetes.io/hostname": node}}}
    cluster.kubectl(
        "run",
        "client",
        "-n",
        ns,
        f"--image={IMAGE}",
        "--restart=Never",
        f"--overrides={json.dumps(pinned)}",
        "--command",
        "--",
        "sh",
        "-c",
        script,
    )
    wait_for(
        lambda: _phase(cluster, ns, "client") in ("Succeeded", "Failed"),
        120,
        what="the client pod to finish",
    )
    out = cluster.kubectl("logs", "client", "-n", ns).stdout
    seen = Counter(out.split())
    assert "FAILED" not in seen, out
    assert set(seen) == names, out


def _phase(cluster: Cluster, ns: str, pod: str) -> str:
    return cluster.kubectl("get", "pod", pod, "-n", ns, "-o", "jsonpath={.status.phase}").stdout


def test_logs(cluster: Cluster, ns: str, web: str) -> None:
    for pod in pods(cluster, ns, "app=web"):
        name = pod["metadata"]["name"]
        out = cluster.kubectl("logs", name, "-n", ns, "-c", "web").stdout
        assert out.strip() == f"serving {name}", out
    # Through the Deployment, as users often do.
    out = cluster.kubectl("logs", "deployment/web", "-n", ns, "--tail=1").stdout
    assert out.startswith("serving web-"), out


def _images(cluster: Cluster, ns: str) -> set[str]:
    return {c["image"] for p in pods(cluster, ns, "app=web") for c in p["spec"]["containers"]}


def test_kubectl_top(cluster: Cluster, ns: str, node: str, web: str) -> None:
    """Resource metrics: the kubelet's, scraped by k8slite-metrics-server, through the API
    server's aggregation proxy to kubectl top; a pod spinning a shell uses CPU."""
    cluster.kubectl(
        "run",
        "burn",
        "-n",
        ns,
        f"--image={IMAGE}",
        "--image-pull-policy=IfNotPresent",
        f"--overrides={json.dumps({'spec': {'nodeName': node}})}",
        "--",
        "sh",
        "-c",
        "while :; do :; done",
    )

    def burning() -> list[str] | None:
        done = cluster.kubectl("top", "pods", "-n", ns, "--containers", check=False)
        rows = {tuple(line.split()[:2]): line.split()[2:] for line in done.stdout.splitlines()[1:]}
        cpu = rows.get(("burn", "burn"))
        web_rows = [k for k in rows if k[0].startswith("web-")]
        # A spinning shell gets a tenth of a core or more even on a busy 2-core machine.
        return cpu if cpu and int(cpu[0].removesuffix("m")) >= 100 and len(web_rows) == 3 else None

    usage = wait_for(burning, 120, interval=2.0, what="kubectl top to show the burning pod")
    assert usage[1].endswith(("Ki", "Mi")), usage

    def node_row() -> list[str] | None:
        done = cluster.kubectl("top", "nodes", check=False)
        for line in done.stdout.splitlines()[1:]:
            row = line.split()
            if row[0] == node and row[1] != "<unknown>":
                return row
        return None

    row = wait_for(node_row, 60, interval=2.0, what=f"kubectl top nodes to show {node}")
    assert row[1].endswith("m") and row[2].endswith("%") and row[3].endswith("Mi"), row
    cluster.kubectl("delete", "pod", "burn", "-n", ns, "--grace-period=0", "--force", check=False)


def test_hpa_scales_up_a_deployment_that_burns_cpu(cluster: Cluster, ns: str, node: str) -> None:
    """A Docker pod spinning a shell (limited to 200m, requesting 50m: far above a 50%
    target) makes the HPA scale its Deployment up, from the kubelet's Docker stats through
    the metrics server; the controller manager runs with upstream's defaults."""
    spin = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "spin"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "spin"}},
            "template": {
                "metadata": {"labels": {"app": "spin"}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "spin",
                            "image": IMAGE,
                            "command": ["sh", "-c", "while :; do :; done"],
                            "resources": {
                                "requests": {"cpu": "50m"},
                                "limits": {"cpu": "200m"},
                            },
                        }
                    ],
                },
            },
        },
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(spin))
    try:
        done = cluster.kubectl(
            "autoscale", "deployment", "spin", "-n", ns, "--min=1", "--max=3", "--cpu=50%"
        )
        assert "horizontalpodautoscaler.autoscaling/spin autoscaled" in done.stdout

        def scaled() -> dict[str, Any] | None:
            hpa = json.loads(cluster.kubectl("get", "hpa", "spin", "-n", ns, "-o", "json").stdout)
            status = hpa.get("status") or {}
            return hpa if status.get("desiredReplicas", 0) >= 3 else None

        hpa = wait_for(scaled, 300, interval=3.0, what="the HPA to scale spin up to 3")
        metric = hpa["status"]["currentMetrics"][0]["resource"]
        # A spinning shell gets well over its 50m request even on a busy machine.
        assert metric["name"] == "cpu" and metric["current"]["averageUtilization"] > 100
        replicas = cluster.kubectl(
            "get", "deployment", "spin", "-n", ns, "-o", "jsonpath={.spec.replicas}"
        ).stdout
        assert int(replicas) == 3
        events = cluster.kubectl(
            "get", "events", "-n", ns, "--field-selector", "reason=SuccessfulRescale"
        ).stdout
        assert "cpu resource utilization (percentage of request) above target" in events
    finally:
        # Three spinning pods cost CPU on a shared machine: stop them at once.
        cluster.kubectl("delete", "hpa", "spin", "-n", ns, check=False)
        cluster.kubectl(
            "delete", "deployment", "spin", "-n", ns, "--grace-period=0", "--force", check=False
        )


def test_rolling_update_and_rollback(cluster: Cluster, ns: str, web: str) -> None:
    cluster.kubectl("set", "image", "deployment/web", f"web={IMAGE_V2}", "-n", ns)
    rollout(cluster, ns, "web")
    wait_for(lambda: ready_pods(cluster, ns, "app=web", 3), 120, what="3 ready pods")
    assert _images(cluster, ns) == {IMAGE_V2}
    history = cluster.kubectl("rollout", "history", "deployment/web", "-n", ns).stdout
    assert "1 " in history and "2 " in history, history
    rs = json.loads(
        cluster.kubectl("get", "replicasets", "-n", ns, "-l", "app=web", "-o", "json").stdout
    )["items"]
    assert sorted(r["spec"]["replicas"] for r in rs) == [0, 3], rs

    cluster.kubectl("rollout", "undo", "deployment/web", "-n", ns)
    rollout(cluster, ns, "web")
    wait_for(lambda: ready_pods(cluster, ns, "app=web", 3), 120, what="3 ready pods")
    assert _images(cluster, ns) == {IMAGE}
    revision = cluster.kubectl(
        "get",
        "deployment",
        "web",
        "-n",
        ns,
        "-o",
        "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
    )
    assert revision.stdout == "3"
    # The Service follows the new pods.
    if not cluster.info or cluster.info.get("proxy"):
        names = {p["metadata"]["name"] for p in pods(cluster, ns, "app=web")}
        ip = cluster_ip(cluster, ns, "web")
        wait_for(
            lambda: set(spread_from_host(ip, 30)) == names,
            60,
            what="the rolled-back pods to answer on the service address",
        )


def test_scale(cluster: Cluster, ns: str, web: str) -> None:
    cluster.kubectl("scale", "deployment/web", "--replicas=5", "-n", ns)
    wait_for(lambda: ready_pods(cluster, ns, "app=web", 5), 120, what="5 ready pods")
    cluster.kubectl("scale", "deployment/web", "--replicas=2", "-n", ns)
    wait_for(lambda: ready_pods(cluster, ns, "app=web", 2), 120, what="2 ready pods")
    # The Deployment's status catches up with its pods a moment later.
    wait_for(
        lambda: "2/2" in cluster.kubectl("get", "deployment", "web", "-n", ns).stdout,
        30,
        what="the Deployment to show 2/2",
    )


def _containers_of(ns: str) -> list[str]:
    done = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=io.kubernetes.pod.namespace={ns}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.split()


def test_delete_with_cascade(cluster: Cluster, ns: str, node: str) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=deployment("gone", node, 2))
    rollout(cluster, ns, "gone")
    cluster.kubectl(
        "delete",
        "deployment",
        "gone",
        "-n",
        ns,
        "--cascade=foreground",
        "--wait=true",
        "--timeout=120s",
        timeout=150,
    )

    def nothing_left() -> bool:
        rs = cluster.kubectl("get", "replicasets", "-n", ns, "-l", "app=gone", "-o", "name").stdout
        return not rs.strip() and not pods(cluster, ns, "app=gone")

    wait_for(nothing_left, 120, what="the ReplicaSet and pods of `gone` to be collected")

    # Orphaning keeps the ReplicaSet and its pods, without an owner.
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=deployment("kept", node, 1))
    rollout(cluster, ns, "kept")
    cluster.kubectl("delete", "deployment", "kept", "-n", ns, "--cascade=orphan")
    rs = json.loads(
        cluster.kubectl("get", "replicasets", "-n", ns, "-l", "app=kept", "-o", "json").stdout
    )["items"]
    assert len(rs) == 1 and not rs[0]["metadata"].get("ownerReferences"), rs
    assert len(pods(cluster, ns, "app=kept")) == 1
    cluster.kubectl("delete", "replicaset", "-n", ns, "-l", "app=kept")
    wait_for(
        lambda: not pods(cluster, ns, "app=kept"),
        120,
        what="the orphaned ReplicaSet's pod to be collected",
    )


def helm(cluster: Cluster, home: Path, *args: str) -> str:
    # helm's cache, config and data under the test's own directory, not the user's home.
    env = dict(
        os.environ,
        KUBECONFIG=str(cluster.kubeconfig),
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
    )
    done = subprocess.run(
        [str(BIN / "helm"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert done.returncode == 0, f"helm {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def test_helm_chart(cluster: Cluster, ns: str, node: str, tmp_path: Path) -> None:
    """The README's chart: install, upgrade, rollback and uninstall with the real helm."""
    chart = str(CHART)
    helm(
        cluster,
        tmp_path,
        "install",
        "hello",
        chart,
        "-n",
        ns,
        f"--set=nodeName={node}",
        "--wait",
        "--timeout=2m",
    )
    wait_for(
        lambda: ready_pods(cluster, ns, "app.kubernetes.io/instance=hello", 2),
        60,
        what="2 ready hello pods",
    )
    if not cluster.info or cluster.info.get("proxy"):
        ip = cluster_ip(cluster, ns, "hello")
        assert set(spread_from_host(ip, 5)) == {"hello from K8s-Lite"}
    helm(
        cluster,
        tmp_path,
        "upgrade",
        "hello",
        chart,
        "-n",
        ns,
        f"--set=nodeName={node}",
        "--set=replicas=3",
        "--set=message=upgraded",
        "--wait",
        "--timeout=2m",
    )
    wait_for(
        lambda: ready_pods(cluster, ns, "app.kubernetes.io/instance=hello", 3),
        60,
        what="3 ready hello pods",
    )
    assert (
        "upgraded"
        in cluster.kubectl(
            "get", "configmap", "hello", "-n", ns, "-o", "jsonpath={.data.message}"
        ).stdout
    )
    helm(cluster, tmp_path, "rollback", "hello", "1", "-n", ns, "--wait", "--timeout=2m")
    wait_for(
        lambda: ready_pods(cluster, ns, "app.kubernetes.io/instance=hello", 2),
        60,
        what="2 ready hello pods after the rollback",
    )
    history = helm(cluster, tmp_path, "history", "hello", "-n", ns)
    assert "Rollback to 1" in history, history
    helm(cluster, tmp_path, "uninstall", "hello", "-n", ns, "--wait", "--timeout=2m")
    assert "hello" not in helm(cluster, tmp_path, "list", "-n", ns, "-q")
    wait_for(
        lambda: not pods(cluster, ns, "app.kubernetes.io/instance=hello"),
        60,
        what="the hello pods to go",
    )
    left = cluster.kubectl(
        "get", "deployments,services,configmaps,secrets", "-n", ns, "-o", "name"
    ).stdout
    assert "hello" not in left.replace("kube-root-ca.crt", ""), left


def test_namespace_delete_removes_containers(cluster: Cluster, ns: str) -> None:
    """Last: deleting the namespace takes every pod, and (locally) their containers."""
    cluster.kubectl("delete", "namespace", ns, "--timeout=180s", timeout=200)
    if cluster.started_here:
        wait_for(lambda: not _containers_of(ns), 60, what=f"the containers of {ns} to go")


def test_cluster_logs_exist(cluster: Cluster) -> None:
    if cluster.data_dir is None:
        pytest.skip("not a cluster of ours")
    logs = {p.name for p in Path(cluster.data_dir, "logs").glob("*.log")}
    assert {
        "apiserver.log",
        "controller-manager.log",
        "scheduler.log",
        "kubelet.log",
        "proxy.log",
    } <= logs, logs
