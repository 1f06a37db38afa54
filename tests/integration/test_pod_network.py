"""The pod network across hosts: three hosts (network namespaces on one segment), each with
a process-runtime kubelet (--pod-network bridge) and the node network agent, an API server
on the segment's gateway and node IPAM in the controller manager.

Each node gets its pod CIDR, pods get addresses from their node's range in namespaces of
their own, a pod reaches a pod on another node with its own address seen (host-gw, and
VXLAN, and VXLAN across a router), a pod reaches a Service whose endpoint is on another node
through the nftables proxy, traffic leaving the pod network is masqueraded, a restarted
agent changes nothing, and a deleted node's routes go from every other host.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerHandle
from tests.integration.controller_harness import start_controller_manager
from tests.integration.podnet_harness import (
    Host,
    Segment,
    apiserver_on,
    free_subnets,
    kill_pod_processes,
    pod_json,
    require_hosts,
    start_agent,
    start_kubelet,
    start_proxy,
    stop_agent,
)
from tests.launch import stop
from tests.polling import wait_for

pytestmark = pytest.mark.xdist_group("host-network")

PODS = "/api/v1/namespaces/default/pods"
PORT = 8080
# A pod that answers each connection with the address it came from.
ECHO_PEER = (
    "import socket\n"
    "s = socket.socket()\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    f"s.bind(('0.0.0.0', {PORT}))\n"
    "s.listen()\n"
    "while True:\n"
    "    c, a = s.accept()\n"
    "    c.sendall(a[0].encode())\n"
    "    c.close()\n"
)
# A pod that connects (retrying while routes are being made), and succeeds only if the
# other end saw its own address: no NAT between pods.
ASK_PEER = (
    "import socket, sys, time\n"
    "deadline = time.monotonic() + 30\n"
    "while True:\n"
    "    try:\n"
    "        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)\n"
    "        break\n"
    "    except OSError:\n"
    "        if time.monotonic() > deadline: raise\n"
    "        time.sleep(0.2)\n"
    "seen, me = c.recv(100).decode(), c.getsockname()[0]\n"
    "print(me, seen)\n"
    "sys.exit(0 if seen == me or sys.argv[3] == 'any' else 3)\n"
)


@dataclass
class Cluster:
    server: ServerHandle
    segment: Segment
    hosts: list[Host]
    cluster_cidr: str
    workdir: Path
    kubelets: dict[str, Any]

    def api(self) -> httpx.Client:
        return self.server.client()

    def node(self, name: str) -> dict[str, Any] | None:
        with self.api() as c:
            r = c.get(f"/api/v1/nodes/{name}")
        return r.json() if r.status_code == 200 else None

    def pod_cidr(self, host: Host) -> str:
        def cidr() -> str | None:
            node = self.node(host.name)
            return (node or {}).get("spec", {}).get("podCIDR")

        return wait_for(cidr, timeout=60, what=f"the pod CIDR of {host.name}")

    def run_pod(
        self,
        host: Host,
        name: str,
        code: str,
        *args: str,
        never: bool,
        labels: dict[str, str] | None = None,
    ) -> None:
        spec = {"restartPolicy": "Never"} if never else {}
        body = pod_json(name, host.name, [sys.executable, "-c", code, *args], labels, **spec)
        with self.api() as c:
            r = c.post(PODS, json=body)
        assert r.status_code == 201, r.text

    def pod(self, name: str) -> dict[str, Any]:
        with self.api() as c:
            return c.get(f"{PODS}/{name}").json()  # type: ignore[no-any-return]

    def pod_ip(self, name: str) -> str:
        return wait_for(lambda: self.pod(name).get("status", {}).get("podIP"), what=f"{name}'s IP")

    def wait_phase(self, name: str, *phases: str) -> str:
        phase: str = wait_for(
            lambda: (p := self.pod(name).get("status", {}).get("phase")) in phases and p,
            timeout=60,
            what=f"pod {name} in {phases}",
        )
        return phase

    def delete_pods(self) -> None:
        with self.api() as c:
            for pod in c.get(PODS).json().get("items") or ():
                c.request(
                    "DELETE", f"{PODS}/{pod['metadata']['name']}", json={"gracePeriodSeconds": 0}
                )
            wait_for(lambda: not c.get(PODS).json()["items"], timeout=60, what="pods gone")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_hosts()
    workdir = tmp_path_factory.mktemp("podnet")
    (segment_net, remote_net), cluster_net = free_subnets(2, 24), free_subnets(1, 16)[0]
    segment = Segment(segment_net, remote_net)
    server = manager = None
    hosts: list[Host] = []
    try:
        server = apiserver_on(workdir / "data", segment.gateway)
        manager = start_controller_manager(
            server,
            "--controllers=nodeipam,endpointslice",
            "--allocate-node-cidrs",
            f"--cluster-cidr={cluster_net}",
            "--node-cidr-mask-size=24",
            "--leader-elect=false",
        )
        hosts = [segment.add_host(i) for i in range(3)]
        # At once: each start is mostly the wait for Python to import the package.
        with ThreadPoolExecutor(len(hosts)) as pool:
            list(pool.map(lambda h: start_kubelet(server, h, workdir / h.name), hosts))
        cluster = Cluster(server, segment, hosts, str(cluster_net), workdir, {})
        yield cluster
        cluster.delete_pods()
    finally:
        segment.delete()
        for host in segment.hosts:
            kill_pod_processes(workdir / host.name)
        if manager is not None:
            manager.stop()
        if server is not None:
            server.stop()


@pytest.fixture
def agents(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """A node network agent per host in the backend the test names; their metrics URLs."""
    backend = request.param
    started: list[tuple[Host, subprocess.Popen[bytes], str]] = []

    def start(host: Host) -> None:
        proc, url = start_agent(
            cluster.server, host, cluster.workdir / host.name, cluster.cluster_cidr, backend
        )
        started.append((host, proc, url))

    try:
        with ThreadPoolExecutor(len(cluster.hosts)) as pool:
            list(pool.map(start, cluster.hosts))
        yield {host.name: url for host, _, url in started}
    finally:
        # Every agent in the hosts, those a test restarted too.
        for host in cluster.segment.hosts:
            for proc in _procs(host, "netagent"):
                stop_agent(host, proc)


def _ready(url: str) -> bool:
    with httpx.Client(timeout=5, trust_env=False) as c:
        return c.get(f"{url}/readyz").status_code == 200


def _metric(url: str, name: str) -> float:
    with httpx.Client(timeout=5, trust_env=False) as c:
        for line in c.get(f"{url}/metrics").text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no metric {name} at {url}")


def _procs(host: Host, module: str) -> list[subprocess.Popen[bytes]]:
    return [p for p in host.procs if f"k8slite.cmd.{module}" in p.args]  # type: ignore[operator]


def _expect_routes(cluster: Cluster, hosts: list[Host], via_vtep: bool) -> None:
    """Each host routes every other host's pod CIDR: to its address, or its VTEP."""
    cidrs = {h.name: cluster.pod_cidr(h) for h in hosts}
    for host in hosts:
        want = {
            cidrs[o.name]: (
                str(ipaddress.IPv4Network(cidrs[o.name]).network_address) if via_vtep else o.ip
            )
            for o in hosts
            if o is not host
        }
        wait_for(
            lambda host=host, want=want: all(host.routes().get(k) == v for k, v in want.items()),
            timeout=30,
            what=f"routes on {host.name}: {want}",
        )


def _pod_to_pod(cluster: Cluster, server_host: Host, client_host: Host, tag: str) -> None:
    server, client = f"echo-{tag}", f"ask-{tag}"
    cluster.run_pod(server_host, server, ECHO_PEER, never=False)
    server_ip = cluster.pod_ip(server)
    assert ipaddress.ip_address(server_ip) in ipaddress.ip_network(cluster.pod_cidr(server_host))
    cluster.wait_phase(server, "Running")
    cluster.run_pod(client_host, client, ASK_PEER, server_ip, str(PORT), "same", never=True)
    client_ip = cluster.pod_ip(client)
    assert ipaddress.ip_address(client_ip) in ipaddress.ip_network(cluster.pod_cidr(client_host))
    assert cluster.wait_phase(client, "Succeeded", "Failed") == "Succeeded", cluster.pod(client)


@pytest.mark.parametrize("agents", ["vxlan"], indirect=True)
def test_vxlan_pod_to_pod_across_nodes_and_subnets(
    cluster: Cluster, agents: dict[str, str]
) -> None:
    a, b = cluster.hosts[0], cluster.hosts[1]
    # A fourth host behind a router: no L2 segment shared with the others.
    far = cluster.segment.add_host(3, remote=True)
    start_kubelet(cluster.server, far, cluster.workdir / far.name)
    _, far_url = start_agent(
        cluster.server, far, cluster.workdir / far.name, cluster.cluster_cidr, "vxlan"
    )
    for url in [*agents.values(), far_url]:
        wait_for(lambda url=url: _ready(url), timeout=30, what=f"agent ready at {url}")
    # Each agent published its VTEP; every other host has a static entry for it.
    for host in (a, b):
        node = cluster.node(host.name) or {}
        annotations = node["metadata"].get("annotations") or {}
        assert annotations["network.k8slite.io/backend-type"] == "vxlan"
        mac = annotations["network.k8slite.io/vtep-mac"]
        other = b if host is a else a
        fdb = other.ip_cmd("-j", "-4", "neigh", "show", "dev", "k8slite.1")
        assert mac in fdb
    _expect_routes(cluster, [*cluster.hosts, far], via_vtep=True)
    _pod_to_pod(cluster, a, b, f"vx-{uuid.uuid4().hex[:4]}")
    _pod_to_pod(cluster, far, a, f"vx-{uuid.uuid4().hex[:4]}")

    # A restarted agent finds its device, neighbours, FDB entries and routes in place.
    stop_agent(b, _procs(b, "netagent")[-1])
    _, url = start_agent(cluster.server, b, cluster.workdir / b.name, cluster.cluster_cidr, "vxlan")
    wait_for(lambda: _ready(url), timeout=30, what="restarted agent ready")
    assert _metric(url, "k8slite_netagent_kernel_changes_total") == 0
    assert _metric(url, "k8slite_netagent_peer_nodes") == 3

    # The far node leaves: its VTEP's neighbour entry and route go everywhere.
    far_cidr = cluster.pod_cidr(far)
    for proc in list(far.procs):
        stop(proc, 20)
        far.procs.remove(proc)
    with cluster.api() as api:
        for pod in api.get(PODS).json()["items"]:
            if pod["spec"]["nodeName"] == far.name:
                api.request(
                    "DELETE", f"{PODS}/{pod['metadata']['name']}", json={"gracePeriodSeconds": 0}
                )
        assert api.delete(f"/api/v1/nodes/{far.name}").status_code == 200
    vtep = str(ipaddress.IPv4Network(far_cidr).network_address)
    for host in cluster.hosts:
        wait_for(
            lambda host=host: (
                far_cidr not in host.routes()
                and vtep not in host.ip_cmd("-4", "neigh", "show", "dev", "k8slite.1")
            ),
            timeout=30,
            what=f"{far.name}'s route and VTEP gone from {host.name}",
        )


def _pod_to_service(cluster: Cluster, a: Host, b: Host) -> None:
    """A Service's ClusterIP, DNATed by the nftables proxy on the client's node to a pod on
    another node: the pod network carries it, and the backend sees the client pod's address."""
    with ThreadPoolExecutor(2) as pool:
        list(
            pool.map(
                lambda h: start_proxy(
                    cluster.server, h, cluster.workdir / h.name, cluster.cluster_cidr
                ),
                (a, b),
            )
        )
    try:
        tag = uuid.uuid4().hex[:4]
        cluster.run_pod(a, f"web-{tag}", ECHO_PEER, never=False, labels={"app": f"web-{tag}"})
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"web-{tag}"},
            "spec": {
                "selector": {"app": f"web-{tag}"},
                "ports": [{"port": 80, "targetPort": PORT, "protocol": "TCP"}],
            },
        }
        with cluster.api() as api:
            r = api.post("/api/v1/namespaces/default/services", json=service)
            assert r.status_code == 201, r.text
            cluster_ip = r.json()["spec"]["clusterIP"]
        cluster.wait_phase(f"web-{tag}", "Running")
        name = f"svc-{tag}"
        cluster.run_pod(b, name, ASK_PEER, cluster_ip, "80", "same", never=True)
        assert cluster.wait_phase(name, "Succeeded", "Failed") == "Succeeded", cluster.pod(name)
        with cluster.api() as api:
            api.delete(f"/api/v1/namespaces/default/services/web-{tag}")
    finally:
        for host in (a, b):
            for proc in _procs(host, "proxy"):
                stop(proc, 10)
                host.procs.remove(proc)


@pytest.mark.parametrize("agents", ["host-gw"], indirect=True)
def test_host_gw_pods_services_masquerade_restart_and_node_removal(
    cluster: Cluster, agents: dict[str, str]
) -> None:
    a, b, c = cluster.hosts
    for url in agents.values():
        wait_for(lambda url=url: _ready(url), timeout=30, what=f"agent ready at {url}")
    cidrs = [cluster.pod_cidr(h) for h in cluster.hosts]
    assert len(set(cidrs)) == 3
    assert all(
        ipaddress.ip_network(x).subnet_of(ipaddress.ip_network(cluster.cluster_cidr))  # type: ignore[arg-type]
        for x in cidrs
    )
    _expect_routes(cluster, cluster.hosts, via_vtep=False)
    # The VXLAN device of the test before is gone; the bridge holds the gateway.
    assert "k8slite.1" not in a.ip_cmd("-o", "link", "show")
    gateway = str(next(ipaddress.ip_network(cidrs[0]).hosts()))
    assert f"inet {gateway}/24" in a.ip_cmd("-4", "addr", "show", "dev", "k8slite0")

    _pod_to_pod(cluster, a, b, f"gw-{uuid.uuid4().hex[:4]}")
    _pod_to_service(cluster, a, b)

    # Leaving the pod network, a pod's traffic carries its node's address.
    listener = socket.create_server((cluster.segment.gateway, 0))
    seen: list[str] = []

    def accept() -> None:
        conn, peer = listener.accept()
        seen.append(peer[0])
        conn.sendall(b"outside")
        conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        port = str(listener.getsockname()[1])
        name = f"out-{uuid.uuid4().hex[:4]}"
        cluster.run_pod(c, name, ASK_PEER, cluster.segment.gateway, port, "any", never=True)
        assert cluster.wait_phase(name, "Succeeded", "Failed") == "Succeeded"
        thread.join(10)
        assert seen == [c.ip]
    finally:
        listener.close()

    # A restarted agent finds everything in place: it changes nothing.
    stop_agent(a, _procs(a, "netagent")[-1])
    _, url = start_agent(
        cluster.server, a, cluster.workdir / a.name, cluster.cluster_cidr, "host-gw"
    )
    wait_for(lambda: _ready(url), timeout=30, what="restarted agent ready")
    assert _metric(url, "k8slite_netagent_kernel_changes_total") == 0
    assert _metric(url, "k8slite_netagent_peer_nodes") == 2

    # A deleted node's routes go from every other host (its kubelet stopped first, or it
    # would register the node again).
    for kubelet in _procs(c, "kubelet"):
        stop(kubelet, 20)
        c.procs.remove(kubelet)
    with cluster.api() as api:
        assert api.delete(f"/api/v1/nodes/{c.name}").status_code == 200
    for host in (a, b):
        wait_for(
            lambda host=host: cidrs[2] not in host.routes(),
            timeout=30,
            what=f"{c.name}'s route gone from {host.name}",
        )
    assert b.routes() == {cidrs[0]: a.ip}
