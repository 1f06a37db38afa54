"""What only real containers show: pod IPs that answer, env and volumes inside, image pulls."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerHandle
from tests.integration.kubelet_harness import (
    BUSYBOX,
    KubeletProcess,
    Pods,
    docker_problem,
    kubectl,
    kubelet_of_its_own,
    unique_node,
)
from tests.polling import wait_for

_PROBLEM = docker_problem()
pytestmark = pytest.mark.skipif(_PROBLEM is not None, reason=_PROBLEM or "")
# A registry on a loopback port nobody listens on: a pull fails at once, and no packet
# leaves the machine.
MISSING_IMAGE = "127.0.0.1:9/k8slite-test/missing:1.0"


@pytest.fixture(scope="module")
def kubelet(
    apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeletProcess]:
    node = unique_node("kl-dock")
    with kubelet_of_its_own(apiserver, node, "docker", tmp_path_factory.mktemp(node)) as proc:
        yield proc


@pytest.fixture
def pods(api: httpx.Client, namespace: str, kubelet: KubeletProcess) -> Pods:
    return Pods(api, namespace, kubelet.node)


def _create(api: httpx.Client, namespace: str, plural: str, body: dict[str, object]) -> None:
    r = api.post(f"/api/v1/namespaces/{namespace}/{plural}", json=body)
    assert r.status_code == 201, r.text


def test_httpd_pod_answers_at_its_pod_ip(api: httpx.Client, namespace: str, pods: Pods) -> None:
    _create(
        api,
        namespace,
        "configmaps",
        {"metadata": {"name": "site"}, "data": {"index.html": "hello from a pod\n"}},
    )
    pods.create(
        "httpd",
        [
            {
                "name": "web",
                "image": BUSYBOX,
                "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                "ports": [{"containerPort": 8080, "name": "http"}],
                "volumeMounts": [{"name": "site", "mountPath": "/www"}],
                "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
            }
        ],
        volumes=[{"name": "site", "configMap": {"name": "site"}}],
    )
    pods.create("other", [{"name": "main", "image": BUSYBOX, "command": ["sleep", "600"]}])
    wait_for(lambda: pods.condition("httpd", "Ready") == "True", what="httpd ready")
    ip = pods.status("httpd")["podIP"]
    assert ip != pods.wait_phase("other", "Running")["podIP"]
    with httpx.Client(trust_env=False) as client:
        r = client.get(f"http://{ip}:8080/index.html", timeout=5)
    assert r.status_code == 200 and r.text == "hello from a pod\n"


def _logs(server: ServerHandle, pods: Pods, name: str) -> str:
    out = kubectl(server, "-n", pods.namespace, "logs", name)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_env_and_volumes_inside_the_container(
    apiserver: ServerHandle, api: httpx.Client, namespace: str, pods: Pods, tmp_path: Path
) -> None:
    _create(
        api,
        namespace,
        "configmaps",
        {
            "metadata": {"name": "settings"},
            "data": {"mode": "fast", "color": "blue", "app.conf": "x=1\n"},
        },
    )
    _create(
        api,
        namespace,
        "secrets",
        {
            "metadata": {"name": "creds"},
            "data": {
                "password": base64.b64encode(b"s3cret").decode(),
                "user": base64.b64encode(b"ann").decode(),
            },
        },
    )
    _create(
        api,
        namespace,
        "services",
        {
            "metadata": {"name": "my-db"},
            "spec": {"ports": [{"name": "sql", "port": 5432, "targetPort": 5432}]},
        },
    )
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    (host_dir / "from-host.txt").write_text("host data\n")
    script = (
        "env | sort; echo ---; "
        "cat /config/mode; echo; cat /config/renamed.conf /secret/password; echo; "
        "stat -L -c '%a %n' /config/renamed.conf /secret/password; "
        "cat /host/from-host.txt; echo written > /host/from-pod.txt; "
        "echo scratch > /scratch/x && cat /scratch/x; "
        "cat /info/labels; echo; cat /info/name; echo; echo ---end; sleep 600"
    )
    pods.create(
        "envvol",
        [
            {
                "name": "main",
                "image": BUSYBOX,
                "command": ["sh", "-c", script],
                "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
                "env": [
                    {
                        "name": "MODE_REF",
                        "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}},
                    },
                    # $(VAR) sees the variables defined before it, and only those.
                    {"name": "PLAIN", "value": "value-$(MODE_REF) $(LATER)"},
                    {"name": "LATER", "value": "x"},
                    {
                        "name": "PASSWORD",
                        "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
                    },
                    {
                        "name": "MISSING_OK",
                        "valueFrom": {
                            "configMapKeyRef": {"name": "nope", "key": "x", "optional": True}
                        },
                    },
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {
                        "name": "POD_NS",
                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                    },
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {
                        "name": "TIER",
                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}},
                    },
                    {
                        "name": "SA",
                        "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}},
                    },
                    {
                        "name": "MEM_MI",
                        "valueFrom": {
                            "resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}
                        },
                    },
                    {
                        "name": "CPU_M",
                        "valueFrom": {
                            "resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}
                        },
                    },
                ],
                "envFrom": [
                    {"prefix": "CFG_", "configMapRef": {"name": "settings"}},
                    {"secretRef": {"name": "creds"}},
                ],
                "volumeMounts": [
                    {"name": "config", "mountPath": "/config"},
                    {"name": "secret", "mountPath": "/secret"},
                    {"name": "host", "mountPath": "/host"},
                    {"name": "scratch", "mountPath": "/scratch"},
                    {"name": "info", "mountPath": "/info"},
                ],
            }
        ],
        metadata={"labels": {"tier": "backend", "app": "envvol"}},
        volumes=[
            {
                "name": "config",
                "configMap": {
                    "name": "settings",
                    "items": [
                        {"key": "mode", "path": "mode"},
                        {"key": "app.conf", "path": "renamed.conf", "mode": 0o600},
                    ],
                },
            },
            {"name": "secret", "secret": {"secretName": "creds", "defaultMode": 0o400}},
            {"name": "host", "hostPath": {"path": str(host_dir), "type": "Directory"}},
            {"name": "scratch", "emptyDir": {}},
            {
                "name": "info",
                "downwardAPI": {
                    "items": [
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                    ]
                },
            },
        ],
    )
    status = pods.wait_phase("envvol", "Running")
    text = wait_for(
        lambda: (t := _logs(apiserver, pods, "envvol")).endswith("---end\n") and t,
        what="the container's report",
    )
    env_part, files = text.split("---\n", 1)
    env = dict(line.split("=", 1) for line in env_part.splitlines() if "=" in line)
    assert env["PLAIN"] == "value-fast $(LATER)"
    assert env["MODE_REF"] == "fast" and env["PASSWORD"] == "s3cret"
    assert "MISSING_OK" not in env
    assert env["POD_NAME"] == "envvol" and env["POD_NS"] == namespace
    assert env["POD_IP"] == status["podIP"] and env["NODE"] == pods.node
    assert env["TIER"] == "backend" and env["SA"] == "default"
    assert env["MEM_MI"] == "64" and env["CPU_M"] == "500"
    assert env["CFG_mode"] == "fast" and env["CFG_color"] == "blue"
    assert env["user"] == "ann" and env["password"] == "s3cret"
    # Service links: our namespace's services and the API server's own.
    assert env["MY_DB_SERVICE_PORT"] == "5432" and env["MY_DB_SERVICE_PORT_SQL"] == "5432"
    host = env["MY_DB_SERVICE_HOST"]
    assert env["MY_DB_PORT"] == f"tcp://{host}:5432"
    assert env["MY_DB_PORT_5432_TCP_ADDR"] == host and env["MY_DB_PORT_5432_TCP_PROTO"] == "tcp"
    assert "KUBERNETES_SERVICE_HOST" in env
    lines = files.splitlines()
    assert lines[:3] == ["fast", "x=1", "s3cret"]
    assert lines[3].startswith("600 ") and lines[4].startswith("400 ")
    assert lines[5] == "host data" and lines[6] == "scratch"
    assert lines[7:9] == ['app="envvol"', 'tier="backend"']
    assert lines[9] == "envvol"
    assert (host_dir / "from-pod.txt").read_text() == "written\n"


def test_configmap_volume_update_reaches_the_container(
    api: httpx.Client, namespace: str, pods: Pods, kubelet: KubeletProcess, apiserver: ServerHandle
) -> None:
    _create(api, namespace, "configmaps", {"metadata": {"name": "live"}, "data": {"k": "v1"}})
    pods.create(
        "watcher",
        [
            {
                "name": "main",
                "image": BUSYBOX,
                "command": ["sh", "-c", "while true; do cat /c/k; echo; sleep 0.5; done"],
                "volumeMounts": [{"name": "c", "mountPath": "/c"}],
            }
        ],
        volumes=[{"name": "c", "configMap": {"name": "live"}}],
    )
    pods.wait_phase("watcher", "Running")
    r = api.patch(
        f"/api/v1/namespaces/{namespace}/configmaps/live",
        json={"data": {"k": "v2"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    # Seen at the next periodic sync (--sync-frequency=5s in these tests).
    wait_for(
        lambda: "v2" in _logs(apiserver, pods, "watcher"),
        timeout=30,
        what="the new value inside the container",
    )


def test_missing_config_is_a_config_error_until_it_exists(
    api: httpx.Client, namespace: str, pods: Pods
) -> None:
    pods.create(
        "needs",
        [
            {
                "name": "main",
                "image": BUSYBOX,
                "command": ["sleep", "600"],
                "env": [
                    {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "later", "key": "x"}}}
                ],
            }
        ],
    )
    wait_for(
        lambda: (
            pods.container("needs", "main")["state"].get("waiting", {}).get("reason")
            == "CreateContainerConfigError"
        ),
        what="CreateContainerConfigError",
    )
    waiting = pods.container("needs", "main")["state"]["waiting"]
    assert waiting["message"] == 'configmap "later" not found'
    _create(api, namespace, "configmaps", {"metadata": {"name": "later"}, "data": {"y": "1"}})
    wait_for(
        lambda: (
            pods.container("needs", "main")["state"].get("waiting", {}).get("message")
            == f"couldn't find key x in ConfigMap {namespace}/later"
        ),
        what="the missing key",
    )
    r = api.patch(
        f"/api/v1/namespaces/{namespace}/configmaps/later",
        json={"data": {"x": "1"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    pods.wait_phase("needs", "Running")


def test_missing_image_is_err_image_pull_then_back_off(pods: Pods) -> None:
    pods.create("noimage", [{"name": "main", "image": MISSING_IMAGE, "imagePullPolicy": "Always"}])
    reasons: list[str] = []

    def seen() -> bool:
        waiting = pods.container("noimage", "main").get("state", {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason and (not reasons or reasons[-1] != reason):
            reasons.append(reason)
            if reason == "ErrImagePull":
                assert "no image registry answers" in waiting["message"]
                assert "hack/build-images" in waiting["message"]
        return "ErrImagePull" in reasons and reasons[-1] == "ImagePullBackOff"

    wait_for(seen, timeout=60, interval=0.05, what="ErrImagePull then ImagePullBackOff")
    assert reasons.index("ErrImagePull") < len(reasons) - 1
    assert pods.status("noimage")["phase"] == "Pending"
    pods.create("never", [{"name": "main", "image": MISSING_IMAGE, "imagePullPolicy": "Never"}])
    wait_for(
        lambda: (
            pods.container("never", "main").get("state", {}).get("waiting", {}).get("reason")
            == "ErrImageNeverPull"
        ),
        what="ErrImageNeverPull",
    )


def test_prestop_hook_runs_before_the_stop_signal(pods: Pods, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    pods.create(
        "hooked",
        [
            {
                "name": "main",
                "image": BUSYBOX,
                "command": [
                    "sh",
                    "-c",
                    ("trap 'echo term >> /m/order; exit 0' TERM; while true; do sleep 0.1; done"),
                ],
                "volumeMounts": [{"name": "m", "mountPath": "/m"}],
                "lifecycle": {
                    "preStop": {"exec": {"command": ["sh", "-c", "echo prestop >> /m/order"]}},
                    "postStart": {"exec": {"command": ["sh", "-c", "echo poststart >> /m/order"]}},
                },
            }
        ],
        volumes=[{"name": "m", "hostPath": {"path": str(marks)}}],
        terminationGracePeriodSeconds=10,
    )
    pods.wait_phase("hooked", "Running")
    pods.delete("hooked")
    pods.wait_gone("hooked")
    assert (marks / "order").read_text().split() == ["poststart", "prestop", "term"]
