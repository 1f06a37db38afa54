"""The official `kubernetes` Python client against the API server."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ServerHandle

k8s = pytest.importorskip("kubernetes")
client: Any = k8s.client


@pytest.fixture(scope="module")
def core(apiserver: ServerHandle) -> Any:
    k8s.config.load_kube_config(str(apiserver.kubeconfig))
    return client.CoreV1Api()


@pytest.fixture
def ns(core: Any) -> Iterator[str]:
    name = "py-" + os.urandom(3).hex()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name


def configmap(name: str, labels: dict[str, str] | None = None) -> Any:
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, labels=labels), data={"k": "v"}
    )


def test_crud(core: Any, ns: str) -> None:
    created = core.create_namespaced_config_map(ns, configmap("a"))
    assert created.metadata.uid and created.data == {"k": "v"}
    assert created.metadata.managed_fields[0].manager == "OpenAPI-Generator"
    read = core.read_namespaced_config_map("a", ns)
    read.data["k2"] = "v2"
    replaced = core.replace_namespaced_config_map("a", ns, read)
    assert replaced.data == {"k": "v", "k2": "v2"}
    patched = core.patch_namespaced_config_map("a", ns, {"data": {"k3": "v3"}})
    assert patched.data == {"k": "v", "k2": "v2", "k3": "v3"}
    status = core.delete_namespaced_config_map("a", ns)  # typed "object": a dict
    assert status["kind"] == "Status" and status["status"] == "Success"
    assert core.list_namespaced_config_map(ns).items == []


def test_deployment_through_apps_api(apiserver: ServerHandle, ns: str) -> None:
    apps = client.AppsV1Api()
    body = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "web"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx")]),
            ),
        ),
    )
    created = apps.create_namespaced_deployment(ns, body)
    assert created.spec.strategy.type == "RollingUpdate"
    scale = apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 5}})
    assert scale.spec.replicas == 5


def test_list_with_selectors(core: Any, ns: str) -> None:
    core.create_namespaced_config_map(ns, configmap("x", {"tier": "db"}))
    core.create_namespaced_config_map(ns, configmap("y", {"tier": "web"}))
    names = [
        c.metadata.name for c in core.list_namespaced_config_map(ns, label_selector="tier=db").items
    ]
    assert names == ["x"]
    names = [
        c.metadata.name
        for c in core.list_namespaced_config_map(ns, field_selector="metadata.name=y").items
    ]
    assert names == ["y"]
    limited = core.list_namespaced_config_map(ns, limit=1)
    assert len(limited.items) == 1 and limited.metadata._continue


def test_watch_stream(core: Any, ns: str) -> None:
    def writer() -> None:
        time.sleep(0.5)
        core.create_namespaced_config_map(ns, configmap("w"))
        core.patch_namespaced_config_map("w", ns, {"data": {"k": "changed"}})
        core.delete_namespaced_config_map("w", ns)

    thread = threading.Thread(target=writer)
    thread.start()
    seen = []
    w = k8s.watch.Watch()
    for event in w.stream(core.list_namespaced_config_map, ns, timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        if event["type"] == "DELETED":
            w.stop()
    thread.join()
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_errors_are_api_exceptions_with_status_and_reason(core: Any, ns: str) -> None:
    with pytest.raises(client.ApiException) as e:
        core.read_namespaced_config_map("missing", ns)
    assert (e.value.status, e.value.reason) == (404, "Not Found")
    core.create_namespaced_config_map(ns, configmap("dup"))
    with pytest.raises(client.ApiException) as e:
        core.create_namespaced_config_map(ns, configmap("dup"))
    assert (e.value.status, e.value.reason) == (409, "Conflict")
    with pytest.raises(client.ApiException) as e:
        core.create_namespaced_config_map(ns, configmap("Not_Valid"))
    assert (e.value.status, e.value.reason) == (422, "Unprocessable Entity")
    assert '"reason":"Invalid"' in e.value.body
