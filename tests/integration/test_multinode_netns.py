"""Issue 20's "Done means": `k8slite join` adds machines whose pods talk to every other pod
and Service by name. Three hosts are network namespaces on a test segment (podnet_harness):
`k8slite up --runtime process --pod-network bridge` in the first (control plane and a node),
the `k8slite join` command it printed in the two others. Nothing else starts a component.

Each node gets a pod CIDR of its own; a Deployment of 4 spreads over the joined nodes; a
pod on one joined node reaches a pod on the other with its own address seen, a Service
whose endpoint is on the other node by name (the name resolved through cluster DNS, which
runs on the control plane host, with the resolv.conf the kubelet wrote), and the
kubernetes Service; the API server reaches a joined node's kubelet (pod logs) with the
serving certificate the node got through a CSR; a node that leaves takes its routes with
it from every other host.
"""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from k8slite.cmd import runstate
from k8slite.network.cni import NETNS_ETC_DIR, netns_name
from tests.integration.podnet_harness import Host, Segment, free_subnets, require_hosts
from tests.polling import wait_for

pytestmark = pytest.mark.xdist_group("host-network")

K8SLITE = [sys.executable, "-m", "k8slite.cmd.k8slite"]
PORT = 8080
# Answers each connection with the address it came from.
ECHO = (
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
# argv: a pod's address on the other node, then a Service's name. The name goes through
# the C library's resolver and the pod's /etc/resolv.conf (nameserver 10.96.0.10, search
# NS.svc.cluster.local ..., ndots:5), as in a container. Retries while routes and the
# proxy's rules are being made; exits 0 only if every check passed.
CLIENT = (
    "import socket, sys, time\n"
    "def ask(host, port):\n"
    "    deadline = time.monotonic() + 30\n"
    "    while True:\n"
    "        try:\n"
    "            c = socket.create_connection((host, port), timeout=2)\n"
    "            seen, me = c.recv(100).decode(), c.getsockname()[0]\n"
    "            c.close()\n"
    "            return seen, me\n"
    "        except OSError as e:\n"
    "            if time.monotonic() > deadline: raise\n"
    "            print('retrying', host, e, flush=True)\n"
    "            time.sleep(0.3)\n"
    "seen, me = ask(sys.argv[1], 8080)\n"
    "print('pod-to-pod', me, seen, flush=True)\n"
    "assert seen == me, 'NAT between pods'\n"
    "ip = socket.gethostbyname(sys.argv[2])\n"
    "print('resolved', sys.argv[2], ip, flush=True)\n"
    "seen, me = ask(sys.argv[2], 80)\n"
    "print('service', sys.argv[2], me, seen, flush=True)\n"
    "print('kubernetes.default', socket.gethostbyname('kubernetes.default'), flush=True)\n"
)


@dataclass
class Cluster:
    server: str
    ctx: ssl.SSLContext
    segment: Segment
    cp: Host
    nodes: list[Host]
    data: dict[str, Path]
    cluster_cidr: str

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.server, verify=self.ctx, timeout=30, trust_env=False)

    def get(self, path: str) -> dict[str, Any]:
        with self.api() as c:
            r = c.get(path)
        return r.json() if r.status_code == 200 else {}  # type: ignore[no-any-return]

    def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        with self.api() as c:
            r = c.post(path, json=obj)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def pod_cidr(self, host: Host) -> str:
        return str(
            wait_for(
                lambda: self.get(f"/api/v1/nodes/{host.name}").get("spec", {}).get("podCIDR"),
                timeout=60,
                what=f"the pod CIDR of {host.name}",
            )
        )


def _run(argv: list[str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def _cleanup_pods(data_dir: Path) -> None:
    """The pod namespaces (and their /etc/netns files) a node's kubelet left, if any."""
    for path in data_dir.glob("kubelet/*/process-runtime/sandboxes/*.json"):
        name = netns_name(path.stem)
        _run(["ip", "netns", "del", name], timeout=30)
        shutil.rmtree(NETNS_ETC_DIR / name, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_hosts()
    workdir = tmp_path_factory.mktemp("multinode")
    segment_net, cluster_net = free_subnets(1, 24)[0], free_subnets(1, 16)[0]
    segment = Segment(segment_net)
    tag = segment.tag
    data: dict[str, Path] = {}
    try:
        cp, n1, n2 = (segment.add_host(i) for i in range(3))
        data[cp.name] = workdir / "cp"
        up = _run(
            cp.argv(
                [*K8SLITE, "up", "--runtime", "process", "--pod-network", "bridge"]
                + ["--pod-network-cidr", str(cluster_net), "--node-name", cp.name]
                + ["--bind-address", cp.ip, "--advertise-address", cp.ip, "--port", "0"]
                # The network rule: cluster DNS forwards nowhere.
                + ["--upstream-dns", "", "--no-dashboard", "--detach"]
                + ["--data-dir", str(data[cp.name])]
            )
        )
        assert up.returncode == 0, up.stdout + up.stderr
        info = runstate.read(data[cp.name])
        assert info is not None and info.join_command, up.stdout
        assert {"netagent", "proxy", "dns"} <= set(info.components)
        join = info.join_command.split()
        assert join[3] == f"https://{cp.ip}:{info.ports['apiserver']}", info.join_command

        def join_node(host: Host) -> subprocess.CompletedProcess[str]:
            data[host.name] = workdir / host.name
            return _run(
                host.argv(
                    [*K8SLITE, *join[1:], "--node-name", host.name, "--runtime", "process"]
                    + ["--kubelet-port", "0", "--data-dir", str(data[host.name])]
                )
            )

        with ThreadPoolExecutor(2) as pool:
            for done in pool.map(join_node, (n1, n2)):
                assert done.returncode == 0, done.stdout + done.stderr
        pki = data[cp.name] / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        ctx.load_cert_chain(pki / "client-admin.pem", pki / "client-admin.key")
        yield Cluster(join[3], ctx, segment, cp, [n1, n2], data, str(cluster_net))
    finally:
        for d in data.values():
            state = runstate.read(d)
            if state is not None and state.running():
                _run([*K8SLITE, "stop", "--data-dir", str(d)], timeout=120)
            _cleanup_pods(d)
        segment.delete()
        assert tag  # the segment's names carry it: nothing of another run is touched


def _deployment(name: str, nodes: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    # The joined nodes only (the control plane's node runs pods too).
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchExpressions": [
                                            {
                                                "key": "kubernetes.io/hostname",
                                                "operator": "In",
                                                "values": nodes,
                                            }
                                        ]
                                    }
                                ]
                            }
                        }
                    },
                    "containers": [
                        {"name": "echo", "image": "python", "command": [sys.executable, "-c", ECHO]}
                    ],
                },
            },
        },
    }


def _service(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"port": 80, "targetPort": PORT}]},
    }


def test_joined_nodes_pods_reach_pods_and_services_by_name(cluster: Cluster) -> None:
    n1, n2 = cluster.nodes
    hosts = [cluster.cp, n1, n2]
    for host in hosts:
        node = cluster.get(f"/api/v1/nodes/{host.name}")
        addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
        assert addresses["InternalIP"] == host.ip, addresses
    # A pod CIDR each, in the cluster's; every host routes the others' to them (host-gw).
    cidrs = {h.name: cluster.pod_cidr(h) for h in hosts}
    assert len(set(cidrs.values())) == 3
    whole = ipaddress.IPv4Network(cluster.cluster_cidr)
    assert all(ipaddress.IPv4Network(c).subnet_of(whole) for c in cidrs.values())
    for host in hosts:
        want = {cidrs[o.name]: o.ip for o in hosts if o is not host}
        wait_for(
            lambda host=host, want=want: all(host.routes().get(k) == v for k, v in want.items()),
            timeout=30,
            what=f"routes on {host.name}: {want}",
        )

    tag = uuid.uuid4().hex[:4]
    pods = "/api/v1/namespaces/default/pods"
    web = f"web-{tag}"
    cluster.create(
        "/apis/apps/v1/namespaces/default/deployments", _deployment(web, [n1.name, n2.name])
    )

    def running() -> list[dict[str, Any]] | None:
        items = cluster.get(f"{pods}?labelSelector=app%3D{web}").get("items") or []
        ok = [p for p in items if p.get("status", {}).get("phase") == "Running"]
        return ok if len(ok) == 4 and all(p["status"].get("podIP") for p in ok) else None

    replicas = wait_for(running, timeout=90, what=f"4 {web} pods running")
    by_node: dict[str, list[str]] = {}
    for p in replicas:
        node, ip = p["spec"]["nodeName"], p["status"]["podIP"]
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(cidrs[node]), (node, ip)
        by_node.setdefault(node, []).append(ip)
    assert set(by_node) == {n1.name, n2.name}, by_node

    # A Service whose one endpoint is a pod on n2; the client runs on n1.
    far = f"far-{tag}"
    cluster.create(
        pods,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": far, "labels": {"app": far}},
            "spec": {
                "nodeName": n2.name,
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {"name": "echo", "image": "python", "command": [sys.executable, "-c", ECHO]}
                ],
            },
        },
    )
    cluster.create("/api/v1/namespaces/default/services", _service(far, {"app": far}))
    client = f"client-{tag}"
    cluster.create(
        pods,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": client},
            "spec": {
                "nodeName": n1.name,
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "c",
                        "image": "python",
                        "command": [sys.executable, "-c", CLIENT, by_node[n2.name][0], far],
                    }
                ],
            },
        },
    )
    phase = wait_for(
        lambda: (
            p
            if (p := cluster.get(f"{pods}/{client}").get("status", {}).get("phase"))
            in ("Succeeded", "Failed")
            else None
        ),
        timeout=90,
        what=f"{client} done",
    )
    with cluster.api() as c:
        logs = c.get(f"{pods}/{client}/log").text
    assert phase == "Succeeded", logs
    service_ip = cluster.get(f"/api/v1/namespaces/default/services/{far}")["spec"]["clusterIP"]
    assert f"resolved {far} {service_ip}" in logs, logs
    assert "kubernetes.default 10.96.0.1" in logs, logs

    # The API server reached n1's kubelet for those logs, verifying its serving certificate
    # against the cluster CA: the one n1 asked for, which csrapproving approved (SANs checked).
    csrs = cluster.get("/apis/certificates.k8s.io/v1/certificatesigningrequests")["items"]
    serving = [
        c
        for c in csrs
        if c["spec"]["signerName"] == "kubernetes.io/kubelet-serving"
        and c["spec"]["username"] == f"system:node:{n1.name}"
    ]
    assert serving and serving[0]["status"].get("certificate"), serving
    assert any(x["type"] == "Approved" for x in serving[0]["status"]["conditions"])

    # n2 leaves: its kubelet stopped, its Node deleted; its route goes from every host.
    sandboxes = cluster.data[n2.name].glob("kubelet/*/process-runtime/sandboxes/*.json")
    namespaces = {netns_name(p.stem) for p in sandboxes}
    assert namespaces  # the echo pods and far
    stop = _run([*K8SLITE, "stop", "--data-dir", str(cluster.data[n2.name])], timeout=120)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    # Its pods' network namespaces (and /etc/netns files) went with them.
    assert not [n for n in namespaces if (Path("/run/netns") / n).exists()], namespaces
    assert not [n for n in namespaces if (NETNS_ETC_DIR / n).exists()], namespaces
    with cluster.api() as c:
        assert c.delete(f"/api/v1/nodes/{n2.name}").status_code == 200
    for host in (cluster.cp, n1):
        wait_for(
            lambda host=host: cidrs[n2.name] not in host.routes(),
            timeout=30,
            what=f"{n2.name}'s route gone from {host.name}",
        )
    assert n1.routes() == {cidrs[cluster.cp.name]: cluster.cp.ip}
