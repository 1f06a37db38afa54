"""A kopf operator (a subprocess, admin client certificate) against the API server: it
watches a custom resource, creates a Deployment it owns, patches the resource's status and
posts an event; deleting the resource takes the Deployment along through the garbage
collector of a running controller manager."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerHandle
from tests.integration.controller_harness import ManagerHandle, start_controller_manager
from tests.polling import wait_for

kopf = pytest.importorskip("kopf")

GROUP = "ops.example.com"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"webapps.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "webapps", "singular": "webapp", "kind": "WebApp"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"replicas": {"type": "integer", "default": 1}},
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}
# The operator, as tests/e2e/test_kopf_in_cluster_e2e.py also runs it inside a pod: its
# service account's credentials there, the kubeconfig here.
OPERATOR = """\
import kopf
from kubernetes import client, config

try:
    config.load_incluster_config()
except config.ConfigException:
    config.load_kube_config()


@kopf.on.create("ops.example.com", "v1", "webapps")
def create_fn(spec, name, namespace, body, **_):
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{name}-web", "labels": {"app": name}},
        "spec": {
            "replicas": spec.get("replicas", 1),
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "busybox:1.35", "command": ["sleep", "3600"]}
                    ]
                },
            },
        },
    }
    kopf.adopt(deployment)
    client.AppsV1Api().create_namespaced_deployment(namespace, deployment)
    kopf.info(body, reason="DeploymentCreated", message=f"created {name}-web")
    return {"deployment": f"{name}-web"}
"""


@pytest.fixture
def manager(module_apiserver: ServerHandle) -> Iterator[ManagerHandle]:
    handle = start_controller_manager(module_apiserver)
    yield handle
    handle.stop()


@pytest.fixture
def http(module_apiserver: ServerHandle) -> Iterator[httpx.Client]:
    with module_apiserver.client() as client:
        yield client


@pytest.fixture
def namespace(http: httpx.Client) -> str:
    name = f"kopf-{os.urandom(3).hex()}"
    r = http.post("/api/v1/namespaces", json={"metadata": {"name": name}})
    assert r.status_code == 201, r.text
    return name


@pytest.fixture
def operator(
    module_apiserver: ServerHandle, http: httpx.Client, namespace: str, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    r = http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=CRD)
    assert r.status_code == 201, r.text
    script = tmp_path / "operator.py"
    script.write_text(OPERATOR)
    log = (tmp_path / "kopf.log").open("wb")
    env = {**os.environ, "KUBECONFIG": str(module_apiserver.kubeconfig), "HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kopf", "run", "--standalone", "-n", namespace, str(script)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def test_kopf_operator_owns_a_deployment(
    manager: ManagerHandle,
    http: httpx.Client,
    namespace: str,
    operator: subprocess.Popen[bytes],
) -> None:
    base = f"/apis/{GROUP}/v1/namespaces/{namespace}/webapps"
    app = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "WebApp",
        "metadata": {"name": "shop"},
        "spec": {"replicas": 2},
    }
    r = http.post(base, json=app)
    assert r.status_code == 201, r.text
    uid = r.json()["metadata"]["uid"]
    deployments = f"/apis/apps/v1/namespaces/{namespace}/deployments"

    def owned() -> dict[str, object] | None:
        got = http.get(f"{deployments}/shop-web")
        return got.json() if got.status_code == 200 else None

    deployment = wait_for(owned, timeout=45, what="the operator's Deployment")
    refs = deployment["metadata"]["ownerReferences"]  # type: ignore[index]
    assert [(o["kind"], o["name"], o["uid"], o["controller"]) for o in refs] == [
        ("WebApp", "shop", uid, True)
    ]
    assert deployment["spec"]["replicas"] == 2  # type: ignore[index]

    def status() -> object:
        return http.get(f"{base}/shop").json().get("status", {}).get("create_fn")

    assert wait_for(status, timeout=30, what="the handler's status") == {"deployment": "shop-web"}

    def event() -> list[dict[str, object]]:
        items = http.get(f"/api/v1/namespaces/{namespace}/events").json()["items"]
        return [
            e
            for e in items
            if e.get("reason") == "DeploymentCreated" and e["involvedObject"].get("uid") == uid  # type: ignore[index,union-attr]
        ]

    posted = wait_for(event, timeout=30, what="the operator's event")
    assert posted[0]["involvedObject"]["kind"] == "WebApp"  # type: ignore[index]
    assert operator.poll() is None, "kopf exited"

    r = http.delete(f"{base}/shop")
    assert r.status_code == 200, r.text
    wait_for(
        lambda: http.get(f"{deployments}/shop-web").status_code == 404,
        timeout=45,
        what="the garbage collector to delete the owned Deployment",
    )
    assert http.get(f"{base}/shop").status_code == 404
    assert json.loads(http.get(base).text)["items"] == []


def test_namespace_deletion_takes_custom_resources(
    manager: ManagerHandle, http: httpx.Client, namespace: str
) -> None:
    crd = json.loads(json.dumps(CRD).replace("webapps", "gizmos").replace("WebApp", "Gizmo"))
    crd["spec"]["names"]["singular"] = "gizmo"
    r = http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    assert r.status_code == 201, r.text
    base = f"/apis/{GROUP}/v1/namespaces/{namespace}/gizmos"
    body = {"apiVersion": f"{GROUP}/v1", "kind": "Gizmo", "metadata": {"name": "g"}}
    assert http.post(base, json=body).status_code == 201
    assert http.delete(f"/api/v1/namespaces/{namespace}").status_code == 200
    wait_for(
        lambda: http.get(f"/api/v1/namespaces/{namespace}").status_code == 404,
        timeout=45,
        what="the namespace, custom resources and all, to go",
    )
    assert http.get(f"/apis/{GROUP}/v1/gizmos").json()["items"] == []
