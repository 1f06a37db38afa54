"""End to end: a pod on a real node finds its service-account credentials where upstream
puts them, and its token authenticates as its account, bound to it, until it is deleted; the
real kubectl inside a pod works with no flags, as the pod's service account."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from tests.conftest import kubectl_path
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


# In the pod: the API server by the `kubernetes` Service's name, its certificate checked
# against the pod's ca.crt (kubectl, since busybox's wget offers no TLS cipher and signature
# algorithm that an OpenSSL 3 server accepts; an explicit --server drops the in-cluster
# config, so the token and CA go in as flags); then the real kubectl with no flags at all
# (in-cluster config: the env and the mounted files), allowed to list pods by a RoleBinding
# and refused secrets by RBAC.
IN_CLUSTER = """\
echo "env=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"
echo "== by name"; /kubectl --server=https://kubernetes.default.svc \\
  --certificate-authority={mount}/ca.crt --token="$(cat {mount}/token)" get --raw /api 2>&1
echo "rc=$?"
echo "== pods"; /kubectl get pods -o name 2>&1; echo "rc=$?"
echo "== secrets"; /kubectl get secrets 2>&1; echo "rc=$?"
"""


def test_kubectl_in_a_pod_uses_its_service_account(cluster: Cluster) -> None:
    ns = f"sa-e2e-{os.urandom(3).hex()}"
    assert cluster.kubectl("create", "namespace", ns).returncode == 0
    rbac = "rbac.authorization.k8s.io/v1"
    grant = [
        {
            "apiVersion": rbac,
            "kind": "Role",
            "metadata": {"name": "pod-reader", "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
        {
            "apiVersion": rbac,
            "kind": "RoleBinding",
            "metadata": {"name": "pod-reader", "namespace": ns},
            "roleRef": {"apiGroup": rbac.split("/")[0], "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}],
        },
    ]
    for obj in grant:
        done = cluster.kubectl("create", "-f", "-", input=json.dumps(obj))
        assert done.returncode == 0, done.stderr
    # kubectl is a static Go binary: the host's runs in busybox as it is.
    binary = os.path.realpath(kubectl_path())
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "incluster", "namespace": ns},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "kubectl", "hostPath": {"path": binary, "type": "File"}}],
            "containers": [
                {
                    "name": "c",
                    "image": "busybox:1.35",
                    "command": ["sh", "-c", IN_CLUSTER.format(mount=MOUNT)],
                    "volumeMounts": [{"name": "kubectl", "mountPath": "/kubectl"}],
                }
            ],
        },
    }
    done = cluster.kubectl("create", "-f", "-", input=json.dumps(pod))
    assert done.returncode == 0, done.stderr
    wait_for(
        lambda: (
            cluster.kubectl(
                "get", "pod", "incluster", "-n", ns, "-o", "jsonpath={.status.phase}"
            ).stdout
            in ("Succeeded", "Failed")
        ),
        timeout=120,
        what="the pod to finish",
    )
    out = cluster.kubectl("logs", "incluster", "-n", ns).stdout
    assert "env=10.96.0.1:443" in out, out
    by_name, rest = out.split("== by name", 1)[1].split("== pods", 1)
    assert json.loads(by_name.split("rc=")[0])["kind"] == "APIVersions", out
    pods_part, secrets_part = rest.split("== secrets", 1)
    assert "pod/incluster" in pods_part and "rc=0" in pods_part, out
    assert (
        f'Error from server (Forbidden): secrets is forbidden: User "system:serviceaccount:{ns}'
        f':default" cannot list resource "secrets" in API group "" in the namespace "{ns}"'
    ) in secrets_part, out
    assert "rc=1" in secrets_part, out
