"""Services end to end: a Deployment of busybox httpd pods behind a Service, real components.

The API server, k8slite-controller-manager (ReplicaSets, EndpointSlices), k8slite-kubelet
(Docker pods on a bridge network of this test's own) and k8slite-proxy all run as child
processes. The proxy runs on the host, as it must for pods to use it, so these tests hold a
host-wide lock, route the service range locally (the proxy does that before anything else,
and the test checks it before it sends a packet) and remove the route and the nftables table
with `k8slite-proxy --cleanup` at the end. Traffic goes only to service addresses (routed to
this host), to the pods on this test's Docker network and to loopback.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import BIN, ServerHandle, start_apiserver
from tests.integration.proxy_harness import ProxyProcess, eventually
from tests.launch import REPO

NETWORK = "k8slite-e2e-services"
NODE = "node1"
KUBELET = BIN / "k8slite-kubelet"
CONTROLLER_MANAGER = BIN / "k8slite-controller-manager"
MODES = ["userspace", "nftables"]
LOCK = Path(os.environ.get("TMPDIR", "/tmp")) / "k8slite-e2e-services.lock"
BUSYBOX = "busybox:1.35"

# Each pod serves its own hostname (the pod name) and is ready while /tmp/ready exists.
HTTPD = (
    "mkdir -p /www && hostname > /www/index.html && touch /tmp/ready "
    "&& exec httpd -f -p 8080 -h /www"
)


def _docker(*args: str, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _requirements() -> str | None:
    """Why these tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (routes, nftables, Docker)"
    for tool in ("docker", "ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} not found (hack/install-deps installs ip and nft)"
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return "the Docker engine does not answer"
    if subprocess.run(
        ["docker", "image", "inspect", BUSYBOX], capture_output=True, check=False
    ).returncode:
        return f"image {BUSYBOX} missing (hack/build-images builds it)"
    for binary in (KUBELET, CONTROLLER_MANAGER):
        if not binary.exists():
            return f"{binary.name} is not installed yet (the e2e needs the real component)"
    return None


def _supported(binary: Path, flags: list[str]) -> list[str]:
    """The flags among `flags` ("--x=y") that `binary --help` lists."""
    text = subprocess.run(
        [str(binary), "--help"], capture_output=True, text=True, check=False
    ).stdout
    return [f for f in flags if f.split("=", 1)[0] in text]


@dataclass
class Cluster:
    server: ServerHandle
    api: httpx.Client
    tmp: Path
    namespaces: list[str] = field(default_factory=list)

    @property
    def subnet(self) -> str:
        info = json.loads(_docker("network", "inspect", NETWORK))[0]
        return str(info["IPAM"]["Config"][0]["Subnet"])

    @property
    def gateway(self) -> str:
        info = json.loads(_docker("network", "inspect", NETWORK))[0]
        config = info["IPAM"]["Config"][0]
        if config.get("Gateway"):
            return str(config["Gateway"])
        return str(ipaddress.ip_network(config["Subnet"]).network_address + 1)

    def proxy(self, mode: str, log: Path) -> ProxyProcess:
        argv = ProxyProcess.command(
            self.server.kubeconfig_for("proxy"),
            mode,
            "--nodeport-addresses",
            f"{self.subnet},127.0.0.0/8",
        )
        return ProxyProcess(argv, log)


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = _requirements()
    if reason:
        pytest.skip(reason)
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("w") as lock:
        # One test run at a time may own the host's service routes and nftables table.
        fcntl.flock(lock, fcntl.LOCK_EX)
        tmp = tmp_path_factory.mktemp("services-e2e")
        server = start_apiserver(tmp / "api")
        procs: list[subprocess.Popen[bytes]] = []
        try:
            procs.append(
                _start(
                    [
                        str(KUBELET),
                        "--node-name",
                        NODE,
                        "--runtime",
                        "docker",
                        "--kubeconfig",
                        str(server.kubeconfig_for(f"node-{NODE}")),
                        "--pki-dir",
                        str(server.pki),
                        "--root-dir",
                        str(tmp / "kubelet"),
                        "--docker-network",
                        NETWORK,
                        *_supported(KUBELET, ["--port=0", "--healthz-port=0"]),
                    ],
                    tmp / "kubelet.log",
                )
            )
            procs.append(
                _start(
                    [
                        str(CONTROLLER_MANAGER),
                        "--kubeconfig",
                        str(server.kubeconfig_for("controller-manager")),
                        *_supported(
                            CONTROLLER_MANAGER, ["--leader-elect=false", "--secure-port=0"]
                        ),
                    ],
                    tmp / "controller-manager.log",
                )
            )
            namespaces: list[str] = []
            with server.client() as api:
                _wait("node1 to be Ready", lambda: _node_ready(api), 90)
                yield Cluster(server, api, tmp, namespaces)
        finally:
            for proc in reversed(procs):
                _stop(proc)
            _remove_leftovers(namespaces)
            subprocess.run(
                [sys.executable, "-m", "k8slite.cmd.proxy", "--cleanup"],
                cwd=REPO,
                check=False,
                capture_output=True,
            )
            server.stop()


def _node_ready(api: httpx.Client) -> bool:
    r = api.get(f"/api/v1/nodes/{NODE}")
    conditions = r.json().get("status", {}).get("conditions", []) if r.status_code == 200 else []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _containers(namespace: str) -> list[str]:
    return _docker(
        "ps", "-aq", "--filter", f"label=io.kubernetes.pod.namespace={namespace}", check=False
    ).split()


def _remove_leftovers(namespaces: list[str]) -> None:
    """Containers of this test's pods and its Docker network, should the kubelet leave any."""
    for namespace in namespaces:
        ids = _containers(namespace)
        if ids:
            _docker("rm", "-f", *ids, check=False)
    _docker("network", "rm", NETWORK, check=False)


# ------------------------------------------------------------------------- workload


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    # Bound to our node directly, so no scheduler is needed.
                    "nodeName": NODE,
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "web",
                            "image": BUSYBOX,
                            "command": ["sh", "-c", HTTPD],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {
                                "exec": {"command": ["test", "-f", "/tmp/ready"]},
                                "periodSeconds": 1,
                                "failureThreshold": 1,
                            },
                        }
                    ],
                },
            },
        },
    }


def client_pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client"},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "client", "image": BUSYBOX, "command": ["sleep", "3600"]}],
        },
    }


def service(name: str, selector: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": selector},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            **spec,
        },
    }


def container_of(namespace: str, pod: str, container: str) -> str:
    ids = _docker(
        "ps",
        "-q",
        "--filter",
        f"label=io.kubernetes.pod.namespace={namespace}",
        "--filter",
        f"label=io.kubernetes.pod.name={pod}",
        "--filter",
        f"label=io.kubernetes.container.name={container}",
    ).split()
    assert ids, f"no running container {container} of pod {namespace}/{pod}"
    return ids[0]


def pod_names(api: httpx.Client, namespace: str, *, ready: bool = True) -> set[str]:
    pods = api.get(
        f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": "app=web"}
    ).json()["items"]
    return {
        p["metadata"]["name"]
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and (
            not ready
            or any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions", [])
            )
        )
    }


def ready_endpoints(api: httpx.Client, namespace: str, svc: str) -> int:
    slices = api.get(
        f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
        params={"labelSelector": f"kubernetes.io/service-name={svc}"},
    ).json()
    return sum(
        1
        for s in slices["items"]
        for e in s.get("endpoints") or ()
        if (e.get("conditions") or {}).get("ready") is not False
    )


async def get_from_host(ip: str, port: int) -> str:
    """GET / over a fresh connection; the body is the serving pod's name."""
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(ip, port)
        async with stream:
            await stream.send_all(f"GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode())
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], head
    return body.decode().strip()


async def spread_from_host(ip: str, port: int, n: int) -> Counter[str]:
    return Counter([await get_from_host(ip, port) for _ in range(n)])


def spread_from_pod(namespace: str, url: str, n: int) -> Counter[str]:
    # `timeout`, not wget's own -T: Debian's static busybox 1.35 wget crashes with -T.
    script = f"for i in $(seq {n}); do timeout 5 wget -qO- {url} || echo FAILED; done"
    out = _docker("exec", container_of(namespace, "client", "client"), "sh", "-c", script)
    return Counter(out.split())


async def refused_from_host(ip: str, port: int) -> bool:
    try:
        await get_from_host(ip, port)
    except (OSError, trio.BrokenResourceError):
        return True  # refused or reset; a timeout (TooSlowError) fails the test instead
    except AssertionError:
        return False
    return False


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("mode", MODES)
async def test_deployment_behind_a_service(cluster: Cluster, mode: str) -> None:
    api = cluster.api
    ns = f"svc-e2e-{mode}-{os.urandom(3).hex()}"
    assert api.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).status_code == 201
    cluster.namespaces.append(ns)
    try:
        await _scenario(cluster, ns, mode)
    finally:
        api.delete(f"/api/v1/namespaces/{ns}")
        # Let the kubelet take its containers down before the next test or the teardown.
        deadline = time.monotonic() + 60
        while (
            _docker(
                "ps", "-q", "--filter", f"label=io.kubernetes.pod.namespace={ns}", check=False
            ).split()
            and time.monotonic() < deadline
        ):
            await trio.sleep(0.5)


async def _scenario(cluster: Cluster, ns: str, mode: str) -> None:
    api = cluster.api
    assert (
        api.post(
            f"/apis/apps/v1/namespaces/{ns}/deployments", json=deployment("web", 3)
        ).status_code
        == 201
    )
    svc = api.post(f"/api/v1/namespaces/{ns}/services", json=service("web", "web")).json()
    np = api.post(
        f"/api/v1/namespaces/{ns}/services", json=service("web-np", "web", type="NodePort")
    ).json()
    empty = api.post(f"/api/v1/namespaces/{ns}/services", json=service("none", "nothing")).json()
    assert api.post(f"/api/v1/namespaces/{ns}/pods", json=client_pod()).status_code == 201
    ip, node_port = svc["spec"]["clusterIP"], np["spec"]["ports"][0]["nodePort"]
    _wait("3 ready pods", lambda: len(pod_names(api, ns)) == 3, 120)
    _wait("3 ready endpoints", lambda: ready_endpoints(api, ns, "web") == 3, 60)
    _wait(
        "the client pod",
        lambda: _docker(
            "ps",
            "-q",
            "--filter",
            f"label=io.kubernetes.pod.namespace={ns}",
            "--filter",
            "label=io.kubernetes.container.name=client",
        ),
        60,
    )
    pods = pod_names(api, ns)

    proxy = cluster.proxy(mode, cluster.tmp / f"proxy-{mode}.log")
    await proxy.start()
    try:
        # The guard first: before any packet goes to a service address, it must be local.
        route = (
            await trio.run_process(["ip", "route", "get", ip], capture_stdout=True)
        ).stdout.decode()
        assert route.startswith(f"local {ip} dev lo"), route

        # From the host and from a pod, every backend answers.
        assert set(await spread_from_host(ip, 80, 30)) == pods
        from_pod = spread_from_pod(ns, f"http://{ip}/", 30)
        assert set(from_pod) == pods, from_pod
        # A NodePort answers on the node: on its address on the pod network, from host and
        # pod, and (userspace mode) on loopback.
        gateway = cluster.gateway
        assert set(await spread_from_host(gateway, node_port, 20)) <= pods
        assert set(spread_from_pod(ns, f"http://{gateway}:{node_port}/", 10)) <= pods
        if mode == "userspace":
            assert set(await spread_from_host("127.0.0.1", node_port, 10)) <= pods
        # A service without endpoints refuses at once.
        assert await refused_from_host(empty["spec"]["clusterIP"], 80)

        # A pod failing readiness gets no traffic.
        sick = min(pods)
        _docker("exec", container_of(ns, sick, "web"), "rm", "/tmp/ready")
        _wait("the sick pod's endpoint to go", lambda: ready_endpoints(api, ns, "web") == 2)

        async def without_sick() -> bool:
            return sick not in await spread_from_host(ip, 80, 20)

        await eventually(without_sick, what="traffic to avoid the unready pod")
        assert set(spread_from_pod(ns, f"http://{ip}/", 20)) == pods - {sick}

        # A proxy restart restores the service.
        assert await proxy.stop() == 0
        await proxy.start()
        assert set(await spread_from_host(ip, 80, 20)) == pods - {sick}

        # Scaling to 1 sends everything to the one left.
        r = api.patch(
            f"/apis/apps/v1/namespaces/{ns}/deployments/web",
            json={"spec": {"replicas": 1}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code == 200, r.text
        _wait("one ready endpoint", lambda: ready_endpoints(api, ns, "web") == 1, 60)

        async def single() -> bool:
            return len(await spread_from_host(ip, 80, 10)) == 1

        await eventually(single, what="traffic to go to one pod")
        (left,) = await spread_from_host(ip, 80, 10)
        assert left in pod_names(api, ns)

        # Deleting the service removes its listener or rules.
        assert api.delete(f"/api/v1/namespaces/{ns}/services/web").status_code == 200
        await eventually(lambda: refused_from_host(ip, 80), what="the service to go")
    finally:
        await proxy.stop()
