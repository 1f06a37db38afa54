"""End to end: a pod on a real node finds its service-account credentials where upstream
puts them, and its token authenticates as its account, bound to it, until it is deleted."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from tests.e2e.cluster import Cluster, cluster_for_tests
from tests.polling import wait_for

pytestmark = pytest.mark.xdist_group("host-network")

MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster_for_tests(tmp_path_factory.mktemp("e2e-sa")) as cluster:
        yield cluster


def _review(cluster: Cluster, token: str) -> dict[str, object]:
    review = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token},
    }
    # --validate=false: the OpenAPI documents do not yet satisfy kubectl's validation for
    # create-only kinds (SelfSubjectReview alike).
    done = cluster.kubectl(
        "create", "--validate=false", "-o", "json", "-f", "-", input=json.dumps(review)
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout)["status"])


def test_pod_reads_its_credentials(cluster: Cluster) -> None:
    ns = f"sa-e2e-{os.urandom(3).hex()}"
    assert cluster.kubectl("create", "namespace", ns).returncode == 0
    script = f"cat {MOUNT}/namespace; echo; cat {MOUNT}/token; echo; cat {MOUNT}/ca.crt"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "reader", "namespace": ns},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox:1.35", "command": ["sh", "-c", script]}],
        },
    }
    done = cluster.kubectl("create", "-f", "-", input=json.dumps(pod))
    assert done.returncode == 0, done.stderr
    wait_for(
        lambda: (
            cluster.kubectl(
                "get", "pod", "reader", "-n", ns, "-o", "jsonpath={.status.phase}"
            ).stdout
            == "Succeeded"
        ),
        timeout=120,
        what="the pod to finish",
    )
    lines = cluster.kubectl("logs", "reader", "-n", ns).stdout.splitlines()
    assert lines[0] == ns
    token = lines[1]
    assert "\n".join(lines[2:]).startswith("-----BEGIN CERTIFICATE-----")
    status = _review(cluster, token)
    assert status["authenticated"] is True
    user = status["user"]
    assert isinstance(user, dict)
    assert user["username"] == f"system:serviceaccount:{ns}:default"
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == ["reader"]
    assert cluster.kubectl("delete", "pod", "reader", "-n", ns, "--wait").returncode == 0
    assert not _review(cluster, token).get("authenticated")
