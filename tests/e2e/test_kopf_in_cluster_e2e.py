"""End to end: the kopf operator of tests/integration/test_kopf_operator.py runs inside the
cluster, as a Deployment whose pod runs the local image k8slite/python-kopf (hack/build-images)
with the operator's code from a ConfigMap, as a service account that a ClusterRole grants
exactly what the operator does. It logs in in-cluster (the mounted token and CA, the
`kubernetes` Service's address from the environment, through the proxy), reconciles a custom
resource in another namespace into a Deployment it owns, patches the resource's status and
posts an event; deleting the resource takes the Deployment along (owner references, the
garbage collector). Everything goes through the real kubectl."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.cluster import Cluster, cluster_for_tests
from tests.integration.test_kopf_operator import CRD, GROUP, OPERATOR
from tests.polling import wait_for

pytestmark = pytest.mark.xdist_group("host-network")

IMAGE = "k8slite/python-kopf:1.45.2"
RBAC = "rbac.authorization.k8s.io/v1"
# What the operator does, and nothing more: watch its resource everywhere and patch it and
# its status (kopf's progress annotations, the handler's result), create the Deployment
# it owns, post events.
RULES = [
    {"apiGroups": [GROUP], "resources": ["webapps"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": [GROUP], "resources": ["webapps/status"], "verbs": ["get", "patch"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]


def _image_problem() -> str | None:
    try:
        done = subprocess.run(
            ["docker", "image", "inspect", IMAGE], capture_output=True, check=False
        )
    except FileNotFoundError:
        return "docker not found"
    return f"image {IMAGE} missing (hack/build-images builds it)" if done.returncode else None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    problem = _image_problem()
    if problem and not os.environ.get("K8SLITE_E2E_KUBECONFIG"):
        pytest.skip(problem)
    with cluster_for_tests(tmp_path_factory.mktemp("e2e-kopf")) as cluster:
        yield cluster


def _create(cluster: Cluster, *objects: dict[str, Any]) -> None:
    # A YAML stream of JSON documents.
    cluster.kubectl("create", "-f", "-", input="\n---\n".join(map(json.dumps, objects)))


def _get(cluster: Cluster, *args: str) -> dict[str, Any] | None:
    done = cluster.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def _operator(name: str, ns: str) -> list[dict[str, Any]]:
    labels = {"app": name}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}},
        {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": name}, "rules": RULES},
        {
            "apiVersion": RBAC,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": RBAC.split("/")[0], "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns},
            "data": {"operator.py": OPERATOR},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": name,
                        "volumes": [{"name": "code", "configMap": {"name": name}}],
                        "containers": [
                            {
                                "name": "operator",
                                "image": IMAGE,
                                # Standalone: no peering objects to keep.
                                "command": [
                                    "python3",
                                    "-m",
                                    "kopf",
                                    "run",
                                    "--standalone",
                                    "--all-namespaces",
                                    "--verbose",
                                    "/operator/operator.py",
                                ],
                                "volumeMounts": [
                                    {"name": "code", "mountPath": "/operator", "readOnly": True}
                                ],
                            }
                        ],
                    },
                },
            },
        },
    ]


def test_kopf_operator_in_a_pod(cluster: Cluster) -> None:
    suffix = os.urandom(3).hex()
    ops, apps, name = f"kopf-ops-{suffix}", f"kopf-apps-{suffix}", f"webapp-operator-{suffix}"
    for ns in (ops, apps):
        cluster.kubectl("create", "namespace", ns)
    crd_name = str(CRD["metadata"]["name"])  # type: ignore[index]
    made_crd = _get(cluster, "crd", crd_name) is None
    if made_crd:
        _create(cluster, CRD)
    wait_for(
        lambda: cluster.kubectl("get", f"webapps.{GROUP}", "-A", check=False).returncode == 0,
        timeout=60,
        what="the WebApp endpoints",
    )
    try:
        _create(cluster, *_operator(name, ops))
        # Pod start can be slow on a loaded machine (image, volumes, kopf's imports).
        try:
            wait_for(
                lambda: (
                    (d := _get(cluster, "deployment", name, "-n", ops))
                    and (d.get("status") or {}).get("readyReplicas") == 1
                ),
                timeout=240,
                interval=1,
                what="the operator's pod to run",
            )
        except AssertionError as e:
            raise AssertionError(f"{e}\n{_describe(cluster, ops)}") from None
        _create(
            cluster,
            {
                "apiVersion": f"{GROUP}/v1",
                "kind": "WebApp",
                "metadata": {"name": "shop", "namespace": apps},
                "spec": {"replicas": 1},
            },
        )
        app = _get(cluster, "webapp", "shop", "-n", apps)
        assert app is not None
        uid = app["metadata"]["uid"]

        def reconciled() -> dict[str, Any] | None:
            return _get(cluster, "deployment", "shop-web", "-n", apps)

        try:
            deployment = wait_for(reconciled, timeout=180, interval=1, what="the Deployment")
        except AssertionError as e:
            raise AssertionError(f"{e}\noperator log:\n{_log(cluster, ops, name)}") from None
        refs = deployment["metadata"]["ownerReferences"]
        assert [(o["kind"], o["name"], o["uid"], o["controller"]) for o in refs] == [
            ("WebApp", "shop", uid, True)
        ]
        assert deployment["spec"]["replicas"] == 1

        def status() -> object:
            got = _get(cluster, "webapp", "shop", "-n", apps) or {}
            return (got.get("status") or {}).get("create_fn")

        assert wait_for(status, timeout=60, interval=1, what="the status") == {
            "deployment": "shop-web"
        }

        def event() -> list[dict[str, Any]]:
            items = (_get(cluster, "events", "-n", apps) or {}).get("items", [])
            return [
                e
                for e in items
                if e.get("reason") == "DeploymentCreated" and e["involvedObject"].get("uid") == uid
            ]

        posted = wait_for(event, timeout=60, interval=1, what="the operator's event")
        assert posted[0]["involvedObject"]["kind"] == "WebApp"
        assert posted[0]["message"] == "created shop-web"
        # The operator acted as its service account, allowed by RBAC and nothing else.
        who = f"system:serviceaccount:{ops}:{name}"
        can = cluster.kubectl("auth", "can-i", "create", "deployments", "-n", apps, "--as", who)
        assert can.stdout.strip() == "yes"
        cannot = cluster.kubectl(
            "auth", "can-i", "delete", "deployments", "-n", apps, "--as", who, check=False
        )
        assert cannot.stdout.strip() == "no"

        cluster.kubectl("delete", "webapp", "shop", "-n", apps, "--wait=true")
        wait_for(
            lambda: reconciled() is None,
            timeout=120,
            interval=1,
            what="the garbage collector to delete the owned Deployment",
        )
    finally:
        for ns in (apps, ops):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        cluster.kubectl("delete", "clusterrolebinding,clusterrole", name, check=False)
        if made_crd:
            cluster.kubectl("delete", "crd", crd_name, "--wait=false", check=False)


def _describe(cluster: Cluster, ns: str) -> str:
    return cluster.kubectl("get", "pods,events", "-n", ns, "-o", "wide", check=False).stdout


def _log(cluster: Cluster, ns: str, name: str) -> str:
    done = cluster.kubectl("logs", f"deployment/{name}", "-n", ns, "--tail=60", check=False)
    return done.stdout + done.stderr
