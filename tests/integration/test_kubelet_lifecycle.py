"""Pod lifecycle through a real kubelet, on Docker and on the process runtime alike.

Each runtime gets one kubelet child process (its own node name) on the session API
server; pods are bound to it at creation. What needs isolation (pod IPs, volumes inside
containers, image pulls) is in test_kubelet_docker.py.
"""

from __future__ import annotations

import ssl
import stat
import subprocess
import time
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
    remove_process_leftovers,
    retire_node,
    unique_node,
    wait_idle,
)
from tests.polling import wait_for

_DOCKER = docker_problem()


@pytest.fixture(scope="module", params=["docker", "process"])
def kubelet(
    request: pytest.FixtureRequest,
    apiserver: ServerHandle,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[KubeletProcess]:
    runtime = request.param
    if runtime == "docker" and _DOCKER is not None:
        pytest.skip(_DOCKER)
    node = unique_node(f"kl-{runtime[:4]}")
    with kubelet_of_its_own(
        apiserver,
        node,
        runtime,
        tmp_path_factory.mktemp(node),
        "--node-labels",
        "tier=test,zone=a",
        "--register-with-taints",
        "dedicated=tests:PreferNoSchedule",
        "--capacity",
        "cpu=3",
    ) as proc:
        yield proc


@pytest.fixture
def pods(api: httpx.Client, namespace: str, kubelet: KubeletProcess) -> Pods:
    return Pods(api, namespace, kubelet.node)


def sh(name: str, script: str, **extra: object) -> dict[str, object]:
    return {"name": name, "image": BUSYBOX, "command": ["sh", "-c", script], **extra}


MARK_ENV = [
    {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
    {"name": "MARK", "value": "/tmp/k8slite-mark-$(UID)"},
]


def test_node_registers_with_status_and_lease(api: httpx.Client, kubelet: KubeletProcess) -> None:
    node = api.get(f"/api/v1/nodes/{kubelet.node}").json()
    status = node["status"]
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == kubelet.node
    assert node["metadata"]["labels"]["kubernetes.io/os"] == "linux"
    for key in ("cpu", "memory", "ephemeral-storage", "pods"):
        assert key in status["capacity"] and key in status["allocatable"]
    assert status["capacity"]["pods"] == "110" and status["capacity"]["cpu"] == "3"
    assert node["metadata"]["labels"]["tier"] == "test"
    assert node["spec"]["taints"] == [
        {"key": "dedicated", "value": "tests", "effect": "PreferNoSchedule"}
    ]
    info = status["nodeInfo"]
    assert info["kubeletVersion"].startswith("v1.35.")
    assert info["containerRuntimeVersion"].startswith(f"{kubelet.runtime}://")
    assert info["operatingSystem"] == "linux" and info["kernelVersion"] and info["osImage"]
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == kubelet.port
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Ready"]["reason"] == "KubeletReady"
    for pressure in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert conditions[pressure]["status"] == "False"
    if kubelet.runtime == "docker":
        names = {n for image in status["images"] for n in image["names"]}
        assert "busybox:1.35" in names

    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{kubelet.node}"
    first = api.get(lease_path).json()
    assert first["spec"]["holderIdentity"] == kubelet.node
    assert first["spec"]["leaseDurationSeconds"] == 40
    assert first["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]
    wait_for(
        lambda: api.get(lease_path).json()["spec"]["renewTime"] != first["spec"]["renewTime"],
        what="a lease renewal",
    )


def test_root_dir_is_the_owners_alone(kubelet: KubeletProcess) -> None:
    # Secret and token volumes are under it; the test's umask (022) would leave it 0755.
    assert stat.S_IMODE((kubelet.workdir / "root").stat().st_mode) == 0o700


def test_pod_runs_and_reports_status(pods: Pods, kubelet: KubeletProcess) -> None:
    pods.create("web", [sh("main", "echo started; sleep 600")])
    status = pods.wait_phase("web", "Running")
    assert status["hostIP"] == "127.0.0.1"
    assert status["podIP"] and status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["startTime"] and status["qosClass"] == "BestEffort"
    types = [c["type"] for c in status["conditions"]]
    assert types[:5] == [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    assert all(c["status"] == "True" for c in status["conditions"])
    (cs,) = status["containerStatuses"]
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
    assert cs["containerID"].startswith(f"{kubelet.runtime}://")
    assert cs["image"] == BUSYBOX and cs["imageID"]
    assert "running" in cs["state"] and cs["lastState"] == {}
    pods.wait_events("web", "reason", "Created", "Started")


def test_completed_pod_succeeds(pods: Pods) -> None:
    pods.create("job", [sh("main", "echo done")], restartPolicy="Never")
    status = pods.wait_phase("job", "Succeeded")
    term = status["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "PodCompleted"

    pods.create("fails", [sh("main", "exit 3")], restartPolicy="Never")
    status = pods.wait_phase("fails", "Failed")
    term = status["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error"


def test_init_containers_run_in_order(pods: Pods) -> None:
    pods.create(
        "init",
        [sh("main", "sleep 600")],
        initContainers=[sh("first", "sleep 1"), sh("second", "sleep 0.2")],
    )
    # While the first init container runs, the rest wait: kubectl shows Init:0/2.
    status = wait_for(
        lambda: (
            (s := pods.status("init")).get("initContainerStatuses")
            and "running" in s["initContainerStatuses"][0]["state"]
            and s
        ),
        what="the first init container to run",
    )
    assert status["phase"] == "Pending"
    assert status["initContainerStatuses"][1]["state"]["waiting"]["reason"] == "PodInitializing"
    assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    initialized = {c["type"]: c for c in status["conditions"]}["Initialized"]
    assert initialized["status"] == "False"
    assert initialized["message"] == "containers with incomplete status: [first second]"

    status = pods.wait_phase("init", "Running")
    first, second = (s["state"]["terminated"] for s in status["initContainerStatuses"])
    assert first["reason"] == second["reason"] == "Completed"
    assert first["finishedAt"] <= second["startedAt"]
    main = status["containerStatuses"][0]["state"]["running"]
    assert second["finishedAt"] <= main["startedAt"]


def test_sidecar_init_container_runs_alongside(pods: Pods) -> None:
    # An init container with restartPolicy Always is a sidecar: the next init container
    # starts once it runs, and it keeps running next to the main container.
    pods.create(
        "sidecar",
        [sh("main", "sleep 600")],
        initContainers=[sh("proxy", "sleep 600", restartPolicy="Always"), sh("setup", "true")],
    )
    status = pods.wait_phase("sidecar", "Running")
    proxy, setup = status["initContainerStatuses"]
    assert "running" in proxy["state"] and proxy["started"] is True
    assert setup["state"]["terminated"]["reason"] == "Completed"
    assert "running" in status["containerStatuses"][0]["state"]
    wait_for(lambda: pods.condition("sidecar", "Ready") == "True", what="Ready")
    pods.delete("sidecar")
    pods.wait_gone("sidecar")


def test_crashloop_backoff_grows(pods: Pods) -> None:
    pods.create("crash", [sh("main", "echo crashing; exit 1")])
    seen: list[str] = []

    def backoffs() -> bool:
        state = pods.container("crash", "main").get("state") or {}
        message = (state.get("waiting") or {}).get("message", "")
        if state.get("waiting", {}).get("reason") == "CrashLoopBackOff":
            delay = message.split(" ")[1]
            if not seen or seen[-1] != delay:
                seen.append(delay)
        return len(seen) >= 3

    wait_for(backoffs, timeout=60, interval=0.05, what="three CrashLoopBackOff delays")
    # --crashloop-backoff-initial=1s: the first restart is at once, then 1s, 2s, 4s, ...
    assert seen[:3] == ["1s", "2s", "4s"], seen
    cs = pods.container("crash", "main")
    assert cs["restartCount"] >= 3
    last = cs["lastState"]["terminated"]
    assert last["exitCode"] == 1 and last["reason"] == "Error"
    assert pods.status("crash")["phase"] == "Running"
    pods.wait_events("crash", "reason", "BackOff")


def test_liveness_failure_restarts_container(pods: Pods) -> None:
    pods.create(
        "live",
        [
            sh(
                "main",
                'touch "$MARK"; sleep 2; rm -f "$MARK"; sleep 600',
                env=MARK_ENV,
                livenessProbe={
                    "exec": {"command": ["sh", "-c", 'test -f "$MARK"']},
                    "periodSeconds": 1,
                    "failureThreshold": 1,
                },
            )
        ],
    )
    # Between the kill and the restart the container waits in CrashLoopBackOff with
    # restartCount already 1 and, as upstream, the dead container's ID in containerID: the
    # restart is the new container running.
    cs = wait_for(
        lambda: (
            (c := pods.container("live", "main")).get("restartCount", 0) >= 1
            and "running" in c["state"]
            and c
        ),
        timeout=60,
        what="a liveness restart",
    )
    assert cs["lastState"]["terminated"]["containerID"] != cs.get("containerID")
    pods.wait_events(
        "live",
        "message",
        lambda ms: any(m.startswith("Liveness probe failed") for m in ms),
        lambda ms: any("failed liveness probe, will be restarted" in m for m in ms),
    )


def test_readiness_gates_ready_condition(pods: Pods) -> None:
    pods.create(
        "ready",
        [
            sh(
                "main",
                'sleep 2; touch "$MARK"; sleep 3; rm -f "$MARK"; sleep 600',
                env=MARK_ENV,
                readinessProbe={
                    "exec": {"command": ["sh", "-c", 'test -f "$MARK"']},
                    "periodSeconds": 1,
                },
            )
        ],
    )
    pods.wait_phase("ready", "Running")
    assert pods.condition("ready", "Ready") == "False"
    assert pods.container("ready", "main")["ready"] is False
    wait_for(lambda: pods.condition("ready", "Ready") == "True", what="Ready")
    assert pods.condition("ready", "ContainersReady") == "True"
    assert pods.container("ready", "main")["ready"] is True
    wait_for(lambda: pods.condition("ready", "Ready") == "False", what="not Ready again")
    assert pods.container("ready", "main")["restartCount"] == 0


def test_deletion_honours_grace_period(pods: Pods) -> None:
    # One container stops on SIGTERM within a second; one ignores it and is killed.
    pods.create(
        "polite",
        [sh("main", "trap 'echo bye; exit 0' TERM; while true; do sleep 0.2; done")],
        terminationGracePeriodSeconds=30,
    )
    pods.create(
        "stubborn",
        [sh("main", "trap '' TERM; while true; do sleep 0.2; done")],
        terminationGracePeriodSeconds=4,
    )
    pods.wait_phase("polite", "Running")
    pods.wait_phase("stubborn", "Running")
    started = time.monotonic()
    pods.delete("polite")
    pods.wait_gone("polite", timeout=20)
    # Well within its 30 s grace period: the container went when told.
    assert time.monotonic() - started < 20

    started = time.monotonic()
    pods.delete("stubborn")
    time.sleep(1.5)
    pod = pods.get("stubborn")
    assert pod is not None and pod["metadata"]["deletionTimestamp"]
    assert pod["metadata"]["deletionGracePeriodSeconds"] == 4
    pods.wait_gone("stubborn", timeout=30)
    assert time.monotonic() - started >= 3.5
    pods.wait_events("stubborn", "reason", "Killing")


def test_kubectl_logs(apiserver: ServerHandle, pods: Pods) -> None:
    ns = pods.namespace
    pods.create("talk", [sh("a", "echo a1; echo a2; sleep 600"), sh("b", "echo b-run; exit 1")])
    wait_for(
        lambda: pods.container("talk", "b").get("restartCount", 0) >= 1,
        timeout=60,
        what="a restart of b",
    )
    out = kubectl(apiserver, "-n", ns, "logs", "talk", "-c", "a")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "a1\na2\n"
    out = kubectl(apiserver, "-n", ns, "logs", "talk", "-c", "b", "--previous")
    assert out.returncode == 0 and out.stdout == "b-run\n", out.stderr
    out = kubectl(apiserver, "-n", ns, "logs", "talk", "-c", "a", "--tail", "1", "--timestamps")
    stamp, _, text = out.stdout.strip().partition(" ")
    assert text == "a2" and stamp.endswith("Z"), out.stdout
    out = kubectl(apiserver, "-n", ns, "logs", "talk", "-c", "a", "--previous")
    assert out.returncode != 0
    assert 'previous terminated container "a" in pod "talk" not found' in out.stderr

    # Without -c, kubectl picks the first container and says so.
    out = kubectl(apiserver, "-n", ns, "logs", "talk")
    assert out.stdout == "a1\na2\n" and "Defaulted container" in out.stderr

    # -f follows until the container ends.
    pods.create(
        "follow",
        [sh("main", "for i in 1 2 3; do echo line $i; sleep 0.5; done")],
        restartPolicy="Never",
    )
    wait_for(
        lambda: pods.container("follow", "main").get("containerID"), what="the container to start"
    )
    out = kubectl(apiserver, "-n", ns, "logs", "-f", "follow")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "line 1\nline 2\nline 3\n"


def test_logs_of_a_waiting_container(apiserver: ServerHandle, pods: Pods) -> None:
    pods.create("slowinit", [sh("main", "sleep 600")], initContainers=[sh("init", "sleep 600")])
    wait_for(
        lambda: "running" in pods.container("slowinit", "init", init=True).get("state", {}),
        what="the init container to run",
    )
    out = kubectl(apiserver, "-n", pods.namespace, "logs", "slowinit", "-c", "main")
    assert out.returncode != 0
    assert 'container "main" in pod "slowinit" is waiting to start: PodInitializing' in out.stderr
    r = pods.api.get(f"/api/v1/namespaces/{pods.namespace}/pods/slowinit/log")
    assert r.status_code == 400
    assert r.json()["message"] == (
        "a container name must be specified for pod slowinit, choose "
        "one of: [main] or one of the init containers: [init]"
    ) or r.json()["message"].startswith('container "main" in pod "slowinit" is waiting')


def _tls(server: ServerHandle, identity: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(server.ca))
    ctx.load_cert_chain(
        str(server.pki / f"client-{identity}.pem"), str(server.pki / f"client-{identity}.key")
    )
    return ctx


def test_kubelet_api_authorizes_through_the_api_server(
    apiserver: ServerHandle, pods: Pods, kubelet: KubeletProcess
) -> None:
    pods.create("listed", [sh("main", "sleep 600")])
    pods.wait_phase("listed", "Running")
    url = f"https://127.0.0.1:{kubelet.port}"
    # Anyone but the API server is asked about with a SubjectAccessReview, so RBAC decides:
    # the admin (system:masters) may; kube-proxy's role has no nodes/* subresource.
    with httpx.Client(verify=_tls(apiserver, "admin"), trust_env=False) as admin:
        r = admin.get(f"{url}/pods")
        assert r.status_code == 200, r.text
        assert "listed" in [p["metadata"]["name"] for p in r.json()["items"]]
    with httpx.Client(verify=_tls(apiserver, "proxy"), trust_env=False) as proxy:
        r = proxy.get(f"{url}/pods")
        assert r.status_code == 403
        assert r.text.strip() == (
            "Forbidden (user=system:kube-proxy, verb=get, resource=nodes, "
            "subresource(s)=[pods proxy])"
        )
    # A role with nodes/proxy opens everything under the proxy fallback, not /metrics.
    node = kubelet.node
    role = f"kubelet-proxy-{node}"
    admin_api = pods.api
    assert (
        admin_api.post(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            json={
                "metadata": {"name": role},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["nodes/proxy"],
                        "verbs": ["get"],
                        "resourceNames": [node],
                    }
                ],
            },
        ).status_code
        == 201
    )
    assert (
        admin_api.post(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            json={
                "metadata": {"name": role},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role,
                },
                "subjects": [
                    {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "User",
                        "name": "system:kube-scheduler",
                    }
                ],
            },
        ).status_code
        == 201
    )
    try:
        with httpx.Client(verify=_tls(apiserver, "scheduler"), trust_env=False) as granted:
            assert granted.get(f"{url}/pods").status_code == 200
            assert granted.get(f"{url}/healthz").text.strip() == "ok"
            r = granted.get(f"{url}/metrics")
            assert r.status_code == 403
            assert "subresource(s)=[metrics]" in r.text
    finally:
        admin_api.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{role}")
        admin_api.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{role}")
    with httpx.Client(
        verify=_tls(apiserver, "apiserver-kubelet-client"), trust_env=False
    ) as client:
        body = client.get(f"{url}/pods").json()
        assert body["kind"] == "PodList"
        assert "listed" in [p["metadata"]["name"] for p in body["items"]]
        metrics = client.get(f"{url}/metrics").text
        for name in (
            "kubelet_running_pods",
            "kubelet_running_containers",
            "kubelet_pod_start_duration_seconds",
            "kubelet_pod_worker_duration_seconds",
            "kubelet_runtime_operations_total",
            "kubelet_runtime_operations_duration_seconds",
        ):
            assert name in metrics, name
        assert client.get(f"{url}/healthz").text.strip() == "ok"
    with httpx.Client(trust_env=False) as plain:
        assert plain.get(f"http://127.0.0.1:{kubelet.healthz_port}/healthz").text.strip() == "ok"


def _running_ids(kubelet: KubeletProcess, uid: str) -> list[str]:
    """Ids of the runtime's containers of a pod, asked of the runtime itself."""
    if kubelet.runtime == "docker":
        out = subprocess.run(
            [
                "docker",
                "ps",
                "-q",
                "--no-trunc",
                "--filter",
                f"label=io.kubernetes.pod.uid={uid}",
                "--filter",
                "label=io.kubernetes.docker.type=container",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.split()
    root = kubelet.workdir / "root" / "process-runtime" / "containers"
    ids = []
    for config in root.glob("*/config.json"):
        if uid in config.read_text() and not (config.parent / "exit.json").exists():
            ids.append(config.parent.name)
    return ids


def test_restarted_kubelet_adopts_running_containers(pods: Pods, kubelet: KubeletProcess) -> None:
    pods.create("keep", [sh("main", "sleep 600")])
    gone = pods.create("gone", [sh("main", "sleep 600")])
    pods.wait_phase("keep", "Running")
    pods.wait_phase("gone", "Running")
    before = pods.container("keep", "main")
    kubelet.stop()
    try:
        # Removed for good while no kubelet runs: the next one must clean up after it.
        pods.delete("gone", grace=0)
        pods.wait_gone("gone")
    finally:
        kubelet.start()
    wait_for(
        lambda: not _running_ids(kubelet, gone["metadata"]["uid"]),
        what="the containers of the deleted pod to be removed",
    )
    time.sleep(2)  # a few relists and syncs
    after = pods.container("keep", "main")
    assert after["containerID"] == before["containerID"]
    assert after["restartCount"] == 0
    assert after["state"]["running"]["startedAt"] == before["state"]["running"]["startedAt"]
    assert after["ready"] is True
    assert pods.condition("keep", "Ready") == "True"
    assert "adopted" in kubelet.log_text()


def test_max_pods_rejects_the_extra_pod(
    api: httpx.Client, namespace: str, apiserver: ServerHandle, tmp_path: Path
) -> None:
    # Admission does not depend on the runtime: one process-runtime kubelet of its own.
    node = unique_node("kl-max")
    small = KubeletProcess(apiserver, node, "process", tmp_path, "--max-pods", "1")
    small.start()
    try:
        pods = Pods(api, namespace, node)
        pods.create("one", [sh("main", "sleep 600")])
        pods.wait_phase("one", "Running")
        pods.create("two", [sh("main", "sleep 600")])
        status = pods.wait_phase("two", "Failed")
        assert status["reason"] == "OutOfpods"
        assert status["message"].startswith("Pod was rejected: Node didn't have enough resource")
        for name in ("one", "two"):
            pods.delete(name)
            pods.wait_gone(name)
    finally:
        retire_node(apiserver, node)
        wait_idle(small)
        small.stop()
        remove_process_leftovers(small.workdir)
