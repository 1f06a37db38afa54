"""A stateful chart end to end: the real helm installs a StatefulSet with volumeClaimTemplates
and its headless Service on a fresh `k8slite up` (see cluster.py), with no setup beyond it.

The pods come up in ordinal order, each with its own claim bound to a volume the local-path
provisioner made; a pod's data outlives its deletion; NAME-0.SERVICE resolves to pod 0's
address from another pod; `helm upgrade` with partition 2 updates only the last pod; `helm
uninstall` removes the set and keeps the claims, as upstream's. Traffic goes only to the
cluster's DNS Service (routed to this host by its proxy) and the cluster's pods.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import Cluster, cluster_for_tests, is_ready, real_node
from tests.e2e.test_cluster_e2e import IMAGE, helm, pods, ready_pods, routed_locally
from tests.polling import wait_for

pytestmark = pytest.mark.xdist_group("host-network")

CHART = str(Path(__file__).with_name("charts") / "stateful")
RELEASE = "db"
SELECTOR = f"app.kubernetes.io/instance={RELEASE}"
NAMES = [f"{RELEASE}-{i}" for i in range(3)]
DNS_IP = "10.96.0.10"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster_for_tests(tmp_path_factory.mktemp("sts-e2e")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def node(cluster: Cluster) -> str:
    return real_node(cluster)


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> Iterator[str]:
    name = f"sts-{os.urandom(3).hex()}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--timeout=180s", timeout=200, check=False)


def _get(cluster: Cluster, ns: str, *what: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl("get", *what, "-n", ns, "-o", "json").stdout)  # type: ignore[no-any-return]


def _pod(cluster: Cluster, ns: str, name: str) -> dict[str, Any] | None:
    done = cluster.kubectl("get", "pod", name, "-n", ns, "-o", "json", check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def _ready_since(pod: dict[str, Any]) -> str:
    for c in pod["status"].get("conditions") or ():
        if c["type"] == "Ready" and c["status"] == "True":
            return str(c["lastTransitionTime"])
    raise AssertionError(f"{pod['metadata']['name']} is not Ready")


def _exec(cluster: Cluster, ns: str, pod: str, script: str) -> str:
    return cluster.kubectl("exec", pod, "-n", ns, "--", "sh", "-c", script).stdout


def _helm(cluster: Cluster, home: Path, verb: str, ns: str, node: str, *values: str) -> None:
    """`helm install|upgrade` of the chart, waiting for the set to be Ready."""
    helm(
        cluster,
        home,
        verb,
        RELEASE,
        CHART,
        "-n",
        ns,
        f"--set=node={node}",
        *(f"--set={v}" for v in values),
        "--wait",
        "--timeout=4m",
    )


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm")


@pytest.fixture(scope="module")
def release(cluster: Cluster, ns: str, node: str, helm_home: Path) -> dict[str, dict[str, Any]]:
    """The chart installed (helm waits for every pod Ready); its pods by name."""
    _helm(cluster, helm_home, "install", ns, node)
    ready = wait_for(lambda: ready_pods(cluster, ns, SELECTOR, 3), 60, what="3 ready pods")
    return {p["metadata"]["name"]: p for p in ready}


def test_pods_in_order_each_with_its_claim(
    cluster: Cluster, ns: str, release: dict[str, dict[str, Any]]
) -> None:
    assert sorted(release) == NAMES
    # OrderedReady: each pod was created once the one before it was Ready.
    for prev, pod in zip(NAMES, NAMES[1:], strict=False):
        assert release[pod]["metadata"]["creationTimestamp"] >= _ready_since(release[prev])
    # One claim per ordinal, each bound to its own provisioned local-path volume.
    claims = {c["metadata"]["name"]: c for c in _get(cluster, ns, "pvc")["items"]}
    assert sorted(claims) == [f"data-{n}" for n in NAMES]
    volumes = {c["spec"]["volumeName"] for c in claims.values()}
    assert len(volumes) == 3 and all(c["status"]["phase"] == "Bound" for c in claims.values())
    for name in volumes:
        pv = json.loads(cluster.kubectl("get", "pv", name, "-o", "json").stdout)
        assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == (
            "rancher.io/local-path"
        )
        assert pv["spec"]["storageClassName"] == "local-path"
    for name in NAMES:
        assert _exec(cluster, ns, name, "cat /data/boots") == f"{name} v1\n"


def test_data_survives_pod_delete(
    cluster: Cluster, ns: str, release: dict[str, dict[str, Any]]
) -> None:
    """The recreated pod 1 finds its volume as the deleted one left it."""
    _exec(cluster, ns, NAMES[1], "echo kept > /data/mark")
    uid = release[NAMES[1]]["metadata"]["uid"]
    cluster.kubectl("delete", "pod", NAMES[1], "-n", ns, "--wait=false")

    def recreated() -> dict[str, Any] | None:
        pod = _pod(cluster, ns, NAMES[1])
        return pod if pod and pod["metadata"]["uid"] != uid and is_ready(pod) else None

    wait_for(recreated, 120, what=f"{NAMES[1]} recreated and Ready")
    assert _exec(cluster, ns, NAMES[1], "cat /data/mark /data/boots") == (
        f"kept\n{NAMES[1]} v1\n{NAMES[1]} v1\n"
    )


def test_stable_network_identity(
    cluster: Cluster, ns: str, node: str, release: dict[str, dict[str, Any]]
) -> None:
    """NAME-0.SERVICE answers pod 0's address, from another pod."""
    _check_stable_dns(cluster, ns, node)


def test_upgrade_with_partition_updates_only_the_last_pod(
    cluster: Cluster, ns: str, node: str, helm_home: Path, release: dict[str, dict[str, Any]]
) -> None:
    _helm(cluster, helm_home, "upgrade", ns, node, "message=v2", "partition=2")
    sts = json.loads(cluster.kubectl("get", "sts", RELEASE, "-n", ns, "-o", "json").stdout)
    status = sts["status"]
    assert status["currentRevision"] != status["updateRevision"]
    assert status["updatedReplicas"] == 1 and status["readyReplicas"] == 3
    now = {p["metadata"]["name"]: p for p in pods(cluster, ns, SELECTOR)}
    revisions = {n: p["metadata"]["labels"]["controller-revision-hash"] for n, p in now.items()}
    assert revisions == {
        NAMES[0]: status["currentRevision"],
        NAMES[1]: status["currentRevision"],
        NAMES[2]: status["updateRevision"],
    }
    assert _exec(cluster, ns, NAMES[2], "cat /data/boots") == f"{NAMES[2]} v1\n{NAMES[2]} v2\n"
    assert _exec(cluster, ns, NAMES[0], "cat /data/boots") == f"{NAMES[0]} v1\n"


def test_uninstall_keeps_the_claims(
    cluster: Cluster, ns: str, helm_home: Path, release: dict[str, dict[str, Any]]
) -> None:
    """helm removes what the release made; the claims stay (whenDeleted: Retain)."""
    helm(cluster, helm_home, "uninstall", RELEASE, "-n", ns, "--wait", "--timeout=2m")
    wait_for(lambda: not pods(cluster, ns, SELECTOR), 120, what="the pods to go")
    left = cluster.kubectl("get", "statefulsets,services", "-n", ns, "-o", "name").stdout
    assert RELEASE not in left, left
    kept = _get(cluster, ns, "pvc")["items"]
    assert sorted(c["metadata"]["name"] for c in kept) == [f"data-{n}" for n in NAMES]
    assert all(c["status"]["phase"] == "Bound" for c in kept)


# busybox's nslookup asks for the name as given when it has a dot (no search list), so it
# gets the full name; ping resolves through the C library, which applies the search list to
# the short NAME-0.SERVICE, as an application in the pod would.
_LOOKUP = """\
echo "== nslookup"; nslookup {pod}.{svc}.{ns}.svc.cluster.local 2>&1
echo "== ping"; ping -c 1 -W 2 {pod}.{svc} 2>&1 | head -1
"""


def _check_stable_dns(cluster: Cluster, ns: str, node: str) -> None:
    if cluster.info and not cluster.info.get("proxy"):
        pytest.skip("the cluster runs no proxy, which cluster DNS needs")
    if cluster.started_here:
        assert routed_locally(DNS_IP), f"{DNS_IP} is not routed to this host"
    client = textwrap.dedent(
        f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: client}}
        spec:
          nodeSelector: {{kubernetes.io/hostname: {node}}}
          terminationGracePeriodSeconds: 1
          containers:
          - {{name: c, image: {IMAGE}, command: [sleep, "3600"]}}
        """
    )
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=client)
    wait_for(
        lambda: (_pod(cluster, ns, "client") or {}).get("status", {}).get("phase") == "Running",
        120,
        what="the client pod Running",
    )
    ip = (_pod(cluster, ns, NAMES[0]) or {})["status"]["podIP"]
    script = _LOOKUP.format(pod=NAMES[0], svc=RELEASE, ns=ns)

    def answered() -> str | None:
        out = _exec(cluster, ns, "client", script)
        return out if out.count(ip) >= 2 else None

    # The DNS server learns the pod's address from the Service's EndpointSlice: poll.
    out = wait_for(answered, 60, what=f"{NAMES[0]}.{RELEASE} to resolve to {ip}")
    nslookup, ping = out.split("== ping")
    assert f"Address: {ip}" in nslookup, out
    assert f"PING {NAMES[0]}.{RELEASE} ({ip})" in ping, out
    cluster.kubectl("delete", "pod", "client", "-n", ns, "--wait=false")
