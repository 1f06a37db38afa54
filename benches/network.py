"""Pod network benchmark: pod-to-pod TCP throughput and round trip, on one node and across
two nodes (host-gw and VXLAN), against a raw veth pair in the same run.

Run (as root): .venv/bin/python benches/network.py [--mib 512] [--rounds 5] [--pings 2000]

The hosts are network namespaces on a segment of their own (tests/integration/
podnet_harness.py): an API server on the segment's gateway, node IPAM in the controller
manager, a process-runtime kubelet with --pod-network bridge and the node network agent in
each of two hosts. The pods are real: their namespaces, veths, bridge and addresses are the
kubelet's. A server pod on host A sinks bulk data and echoes 64-byte messages; the client
runs in the namespace of a pod on host A (one node) or host B (across nodes; the agents run
in host-gw mode, then in VXLAN mode), and in one namespace of a plain veth pair (raw veth),
each measured --rounds times, interleaved, medians reported. The client and server are
small Python programs (bulk: 1 MiB sendall / recv_into; round trip: a 64-byte echo on an
open connection). Nothing leaves the namespaces the bench made; all are deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.controller_harness import start_controller_manager  # noqa: E402
from tests.integration.podnet_harness import (  # noqa: E402
    Host,
    Segment,
    apiserver_on,
    free_subnets,
    kill_pod_processes,
    pod_json,
    start_agent,
    start_kubelet,
    stop_agent,
)
from tests.launch import stop  # noqa: E402

PORT = 5201
SERVER = f"""
import socket, threading
def serve(c):
    with c:
        mode = c.recv(1)
        if mode == b"T":
            buf, n = bytearray(1 << 20), 0
            while True:
                got = c.recv_into(buf)
                if not got:
                    break
                n += got
            c.sendall(n.to_bytes(8, "big"))
        else:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                m = c.recv(64)
                if not m:
                    break
                c.sendall(m)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {PORT}))
s.listen()
print("ready", flush=True)
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
"""
CLIENT = """
import json, socket, sys, time
ip, port, mib, pings = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
c = socket.create_connection((ip, port), timeout=30)
c.sendall(b"T")
chunk = bytes(1 << 20)
start = time.perf_counter()
for _ in range(mib):
    c.sendall(chunk)
c.shutdown(socket.SHUT_WR)
got = int.from_bytes(c.recv(8), "big")
seconds = time.perf_counter() - start
assert got == mib << 20, got
c.close()
c = socket.create_connection((ip, port), timeout=30)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
c.sendall(b"R")
msg, rtts = b"x" * 64, []
for _ in range(pings):
    t = time.perf_counter()
    c.sendall(msg)
    n = 0
    while n < 64:
        n += len(c.recv(64 - n))
    rtts.append(time.perf_counter() - t)
rtts.sort()
print(json.dumps({"mib_s": mib / seconds, "rtt_us": rtts[len(rtts) // 2] * 1e6}))
"""


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


class RawVeth:
    """Two namespaces joined by one veth pair: the floor every pod path is compared to."""

    def __init__(self, tag: str) -> None:
        self.a, self.b = f"kpr-{tag}-a", f"kpr-{tag}-b"
        _run("ip", "netns", "add", self.a)
        _run("ip", "netns", "add", self.b)
        _run("ip", "-n", self.a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
             "netns", self.b)  # fmt: skip
        for ns, ip in ((self.a, "192.168.77.1/30"), (self.b, "192.168.77.2/30")):
            _run("ip", "-n", ns, "addr", "add", ip, "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        self.server = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.a}", "--", sys.executable, "-c", SERVER],
            stdout=subprocess.PIPE,
        )
        assert self.server.stdout is not None
        self.server.stdout.readline()

    def delete(self) -> None:
        self.server.kill()
        self.server.wait()
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def measure(netns: str, ip: str, mib: int, pings: int) -> dict[str, float]:
    out = _run(
        "nsenter", f"--net=/run/netns/{netns}", "--",
        sys.executable, "-c", CLIENT, ip, str(PORT), str(mib), str(pings),
    )  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def pod_netns(workdir: Path, ip: str) -> str:
    """The network namespace of the pod with this address (from the kubelet's state)."""
    from k8slite.network.cni import netns_name

    for path in (workdir / "root" / "process-runtime" / "sandboxes").glob("*.json"):
        if json.loads(path.read_text())["ip"] == ip:
            return netns_name(path.stem)
    raise RuntimeError(f"no sandbox with address {ip} under {workdir}")


def api_get(server: Any, path: str) -> Any:
    with server.client() as c:
        return c.get(path).json()


def wait(fn: Any, what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mib", type=int, default=512, help="bulk transfer per measurement")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--pings", type=int, default=2000, help="64-byte round trips per measurement")
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="k8slite-netbench-"))
    segment = Segment(free_subnets(1, 24)[0])
    cluster_cidr = str(free_subnets(1, 16)[0])
    raw = RawVeth(segment.tag)
    server = manager = None
    hosts: list[Host] = []
    try:
        server = apiserver_on(workdir / "data", segment.gateway)
        manager = start_controller_manager(
            server,
            "--controllers=nodeipam",
            "--allocate-node-cidrs",
            f"--cluster-cidr={cluster_cidr}",
            "--node-cidr-mask-size=24",
            "--leader-elect=false",
        )
        hosts = [segment.add_host(i) for i in range(2)]
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda h: start_kubelet(server, h, workdir / h.name), hosts))
        a, b = hosts
        for host in hosts:
            wait(
                lambda host=host: (
                    api_get(server, f"/api/v1/nodes/{host.name}").get("spec", {}).get("podCIDR")
                ),
                f"{host.name}'s pod CIDR",
            )
        pods = {
            "server": (a, [sys.executable, "-c", SERVER]),
            "local": (a, ["sleep", "infinity"]),
            "remote": (b, ["sleep", "infinity"]),
        }
        with server.client() as c:
            for name, (host, command) in pods.items():
                body = pod_json(name, host.name, command)
                r = c.post("/api/v1/namespaces/default/pods", json=body)
                assert r.status_code == 201, r.text

        def running_ip(name: str) -> str | None:
            st = api_get(server, f"/api/v1/namespaces/default/pods/{name}").get("status", {})
            return st.get("podIP") if st.get("phase") == "Running" else None

        ips = {name: wait(lambda name=name: running_ip(name), f"pod {name}") for name in pods}
        local_ns = pod_netns(workdir / a.name, ips["local"])
        remote_ns = pod_netns(workdir / b.name, ips["remote"])
        results: dict[str, list[dict[str, float]]] = {}

        def sample(path: str, netns: str, ip: str) -> None:
            # Wait until the path works (routes being made), then measure.
            wait(lambda: _reachable(netns, ip), f"{path} reachable", timeout=60)
            results.setdefault(path, []).append(measure(netns, ip, args.mib, args.pings))

        for backend in ("host-gw", "vxlan"):
            agents = [
                start_agent(server, h, workdir / h.name, cluster_cidr, backend) for h in hosts
            ]
            try:
                for _ in range(args.rounds):
                    sample("raw_veth", raw.b, "192.168.77.1")
                    sample("same_node", local_ns, ips["server"])
                    sample(backend.replace("-", "_"), remote_ns, ips["server"])
                    print(f"{backend}: round done", file=sys.stderr, flush=True)
            finally:
                for host, (proc, _) in zip(hosts, agents, strict=True):
                    stop_agent(host, proc)
        summary: dict[str, Any] = {
            "mib": args.mib,
            "rounds": args.rounds,
            "pings": args.pings,
            # The machine's load during the run: the figures' noise.
            "loadavg_1m": round(os.getloadavg()[0], 1),
        }
        for path, samples in results.items():
            summary[f"{path}_mib_s"] = round(statistics.median(s["mib_s"] for s in samples), 1)
            summary[f"{path}_rtt_us"] = round(statistics.median(s["rtt_us"] for s in samples), 1)
        raw_tput = summary["raw_veth_mib_s"]
        for path in ("same_node", "host_gw", "vxlan"):
            summary[f"{path}_vs_raw"] = round(summary[f"{path}_mib_s"] / raw_tput, 3)
        print("path        MiB/s   rtt(us)  vs raw", file=sys.stderr)
        for path in ("raw_veth", "same_node", "host_gw", "vxlan"):
            print(
                f"{path:10} {summary[f'{path}_mib_s']:7.1f} {summary[f'{path}_rtt_us']:8.1f}"
                f"  {summary[f'{path}_mib_s'] / raw_tput:.2f}",
                file=sys.stderr,
            )
        print(json.dumps(summary), flush=True)
        with server.client() as c:
            for name in pods:
                c.request(
                    "DELETE",
                    f"/api/v1/namespaces/default/pods/{name}",
                    json={"gracePeriodSeconds": 0},
                )
        return 0
    finally:
        raw.delete()
        segment.delete()
        for host in hosts:
            kill_pod_processes(workdir / host.name)
        if manager is not None:
            manager.stop()
        if server is not None:
            stop(server.proc)
        shutil.rmtree(workdir, ignore_errors=True)


def _reachable(netns: str, ip: str) -> bool:
    probe = (
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection((sys.argv[1], {PORT}), timeout=1).close()\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
    )
    argv = ["nsenter", f"--net=/run/netns/{netns}", "--", sys.executable, "-c", probe, ip]
    return subprocess.run(argv, check=False, capture_output=True).returncode == 0


if __name__ == "__main__":
    sys.exit(main())
