"""The kubelet side of service-account tokens, on Docker and the process runtime.

The projected token is renewed before it expires (the kubelet's --token-refresh-fraction
shortens the wait from upstream's 80% of the lifetime to 1% of the API server's 10-minute
minimum, about 6 s), the files swap atomically and a running Docker container reads the new
token through its mount, the official client's in-cluster loader reads them, and a deleted
pod's tokens stop working."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from k8slite import pki
from tests.conftest import ServerHandle, start_apiserver
from tests.integration.controller_harness import ManagerHandle, start_controller_manager
from tests.integration.kubelet_harness import (
    KubeletProcess,
    Pods,
    docker_problem,
    remove_docker_leftovers,
    remove_process_leftovers,
    retire_node,
    unique_node,
    wait_idle,
)
from tests.integration.test_serviceaccounts import claims_of
from tests.polling import wait_for

k8s = pytest.importorskip("kubernetes")
VOLUME = "token-vol"
MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
# Prints the token each time it changes (in Docker, where the mount is applied).
WATCH = f"last=; while true; do t=$(cat {MOUNT}/token 2>/dev/null); " + (
    '[ "$t" != "$last" ] && echo "$t" && last=$t; sleep 1; done'
)
_DOCKER = docker_problem()


@pytest.fixture(scope="module", params=["process", "docker"])
def cluster(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerHandle, ManagerHandle, KubeletProcess]]:
    runtime = request.param
    if runtime == "docker" and _DOCKER is not None:
        pytest.skip(_DOCKER)
    tmp = Path(tempfile.mkdtemp(prefix="k8slite-kltok-"))
    server = start_apiserver(tmp, "--enable-admission-plugins=ServiceAccount")
    manager = start_controller_manager(
        server,
        "--service-account-private-key-file",
        str(pki.service_account_key_paths(server.pki)[0]),
    )
    node = unique_node(f"kl-tok-{runtime[:4]}")
    network = f"k8slite-t-{node}"
    kubelet = KubeletProcess(
        server,
        node,
        runtime,
        tmp_path_factory.mktemp(node),
        "--docker-network",
        network,
        "--token-refresh-fraction",
        "0.01",
    )
    try:
        kubelet.start()
        yield server, manager, kubelet
    finally:
        if kubelet.proc is not None:
            retire_node(server, node)
            wait_idle(kubelet)
        kubelet.stop()
        if runtime == "docker":
            remove_docker_leftovers([node], network)
        else:
            remove_process_leftovers(kubelet.workdir)
        manager.stop()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _namespace(admin: httpx.Client) -> str:
    name = "kltok-" + uuid.uuid4().hex[:6]
    assert admin.post("/api/v1/namespaces", json={"metadata": {"name": name}}).status_code == 201
    wait_for(
        lambda: (
            admin.get(f"/api/v1/namespaces/{name}/configmaps/kube-root-ca.crt").status_code == 200
        ),
        what="the namespace's default account and root CA",
    )
    wait_for(
        lambda: admin.get(f"/api/v1/namespaces/{name}/serviceaccounts/default").status_code == 200,
        what="the default service account",
    )
    return name


def _grant_list_pods(admin: httpx.Client, ns: str) -> None:
    role = {
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
    }
    binding = {
        "metadata": {"name": "pod-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}],
    }
    base = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}"
    assert admin.post(f"{base}/roles", json=role).status_code == 201
    assert admin.post(f"{base}/rolebindings", json=binding).status_code == 201


def _volume_dir(kubelet: KubeletProcess, uid: str) -> Path:
    return kubelet.workdir / "root" / "pods" / uid / "volumes" / "kubernetes.io~projected" / VOLUME


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _logs(admin: httpx.Client, ns: str, pod: str) -> str:
    r = admin.get(f"/api/v1/namespaces/{ns}/pods/{pod}/log")
    return r.text if r.status_code == 200 else ""


def _who(server: ServerHandle, token: str) -> httpx.Response:
    with httpx.Client(base_url=server.url, verify=False, trust_env=False) as c:
        return c.post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            headers={"Authorization": f"Bearer {token}"},
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )


def test_token_renewed_read_in_cluster_and_dead_with_the_pod(
    cluster: tuple[ServerHandle, ManagerHandle, KubeletProcess],
) -> None:
    server, _, kubelet = cluster
    with server.client() as admin:
        ns = _namespace(admin)
        _grant_list_pods(admin, ns)
        pods = Pods(admin, ns, kubelet.node)
        # The projected volume as admission writes it, with the API server's shortest
        # lifetime instead of admission's 3607 s (which the server may extend to a year).
        volume = {
            "name": VOLUME,
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 600, "path": "token"}},
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        }
                    },
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {
                                        "apiVersion": "v1",
                                        "fieldPath": "metadata.namespace",
                                    },
                                }
                            ]
                        }
                    },
                ]
            },
        }
        mount = {"name": VOLUME, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
        created = pods.create(
            "p",
            [
                {
                    "name": "c",
                    "image": "busybox:1.35",
                    "command": ["sh", "-c", WATCH],
                    "volumeMounts": [mount],
                }
            ],
            automountServiceAccountToken=False,
            volumes=[volume],
        )
        uid = created["metadata"]["uid"]
        pods.wait_phase("p", "Running")
        vdir = _volume_dir(kubelet, uid)
        first = wait_for(lambda: _read(vdir / "token"), what="the token file")
        assert _read(vdir / "namespace") == ns
        assert (_read(vdir / "ca.crt") or "").startswith("-----BEGIN CERTIFICATE-----")
        # Upstream's atomic writer: the names are links through ..data to a timestamped dir.
        assert os.readlink(vdir / "token") == "..data/token"
        stamp = os.readlink(vdir / "..data")
        assert stamp.startswith("..") and (vdir / stamp / "token").is_file()
        c1 = claims_of(first)
        assert c1["exp"] - c1["iat"] == 600
        assert c1["kubernetes.io"]["pod"] == {"name": "p", "uid": uid}

        second = wait_for(
            lambda: (t := _read(vdir / "token")) != first and t,
            timeout=60,
            what="the kubelet to renew the token",
        )
        c2 = claims_of(second)
        assert c2["iat"] >= c1["iat"] and c2["jti"] != c1["jti"]
        assert os.readlink(vdir / "..data") != stamp
        if kubelet.runtime == "docker":
            # The container's bind mount of the directory sees the ..data link swap.
            wait_for(
                lambda: second in _logs(admin, ns, "p").split(),
                what="the running container to read the new token",
            )
            assert _logs(admin, ns, "p").split()[0] == first
        # The old directory is gone: only the live one is left.
        assert [p.name for p in vdir.iterdir() if p.name.startswith("..2")] == [
            os.readlink(vdir / "..data")
        ]

        # The official client's in-cluster loader, from this process: a host process of
        # the process runtime sees no mounts, so the files are read where the kubelet wrote
        # them, and the environment names the API server on loopback (in a cluster it is
        # KUBERNETES_SERVICE_HOST=10.96.0.1, as pods get it; see the e2e test).
        from kubernetes.config.incluster_config import InClusterConfigLoader

        host, port = server.url.removeprefix("https://").rsplit(":", 1)
        config = k8s.client.Configuration()
        InClusterConfigLoader(
            token_filename=str(vdir / "token"),
            cert_filename=str(vdir / "ca.crt"),
            environ={"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port},
        ).load_and_set(config)
        with k8s.client.ApiClient(config) as api:
            core = k8s.client.CoreV1Api(api)
            assert [p.metadata.name for p in core.list_namespaced_pod(ns).items] == ["p"]
            with pytest.raises(k8s.client.ApiException) as denied:
                core.list_namespaced_secret(ns)
            assert denied.value.status == 403
            assert json.loads(denied.value.body)["message"] == (
                f'secrets is forbidden: User "system:serviceaccount:{ns}:default" cannot '
                f'list resource "secrets" in API group "" in the namespace "{ns}"'
            )

        assert _who(server, second).status_code == 201
        pods.delete("p", grace=0)
        pods.wait_gone("p")
        # Bound to the pod: both its tokens die with it, and the kubelet drops its files.
        for token in (first, second):
            assert _who(server, token).status_code == 401
        wait_for(lambda: not vdir.exists(), what="the pod's volumes to be removed")
