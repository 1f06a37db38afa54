"""Streaming through the cluster: exec round trips and port-forward throughput, against Docker.

Run: .venv/bin/python benches/exec.py [--execs 200] [--mib 64] [--kubeconfig PATH]

Without --kubeconfig it starts `k8slite up` on a temporary directory (root, Docker and
hack/build-images needed, as the end-to-end tests). Exec: `true` run N times one after
another with the official Python client's stream() (API server, kubelet, Docker exec),
against the same N through the Docker SDK directly (exec_create + exec_start). Port-
forward: a file of --mib MiB fetched from busybox httpd through the Python client's
portforward(), against the same fetch from the pod's IP directly.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import docker
import httpx
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.stream import portforward, stream

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
import harness

from tests.e2e.cluster import start_up, stop_up, up_command

NS = "default"


def kubectl(kubeconfig: Path, *args: str, input: str | None = None) -> str:
    return subprocess.run(
        [str(Path(sys.executable).parent / "kubectl"), "--kubeconfig", str(kubeconfig), *args],
        input=input,
        capture_output=True,
        text=True,
        check=True,
        timeout=180,
    ).stdout


def make_pod(kubeconfig: Path, name: str, script: str) -> dict[str, Any]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "main", "image": "busybox:1.35", "command": ["sh", "-c", script]}
            ],
        },
    }
    kubectl(kubeconfig, "apply", "-n", NS, "-f", "-", input=json.dumps(pod))
    kubectl(kubeconfig, "wait", "-n", NS, "--for=condition=Ready", f"pod/{name}", "--timeout=120s")
    return json.loads(kubectl(kubeconfig, "get", "pod", "-n", NS, name, "-o", "json"))


def exec_rate(api: k8s.CoreV1Api, pod: str, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        resp: Any = stream(
            api.connect_get_namespaced_pod_exec,
            pod,
            NS,
            command=["true"],
            stdin=False,
            stdout=True,
            stderr=True,
            tty=False,
            _preload_content=False,
        )
        resp.run_forever(timeout=30)
        assert resp.returncode == 0
    return n / (time.perf_counter() - start)


def docker_exec_rate(container_id: str, n: int) -> float:
    api = docker.APIClient(version="auto")
    start = time.perf_counter()
    for _ in range(n):
        exec_id = api.exec_create(container_id, ["true"], stdout=True, stderr=True)["Id"]
        api.exec_start(exec_id)
        assert api.exec_inspect(exec_id)["ExitCode"] == 0
    return n / (time.perf_counter() - start)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def components(root: int) -> dict[str, int]:
    """The API server's and the kubelet's pids among the descendants of `k8slite up`."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except OSError:
                continue
    found: dict[str, int] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid != parent:
                continue
            frontier.append(pid)
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            for name in ("apiserver", "kubelet"):
                if any(arg.endswith(f"k8slite-{name}".encode()) for arg in argv):
                    found[name] = pid
    return found


def forwarded_mib_s(api: k8s.CoreV1Api, pod: str, size: int) -> float:
    pf: Any = portforward(api.connect_get_namespaced_pod_portforward, pod, NS, ports="8080")
    try:
        sock = pf.socket(8080)
        sock.setblocking(True)
        sock.settimeout(60)
        start = time.perf_counter()
        sock.sendall(b"GET /big HTTP/1.0\r\nHost: pod\r\n\r\n")
        received = 0
        while chunk := sock.recv(1 << 20):
            received += len(chunk)
        elapsed = time.perf_counter() - start
    finally:
        pf.close()
    assert received > size, received
    return size / (1 << 20) / elapsed


def direct_mib_s(ip: str, size: int) -> float:
    start = time.perf_counter()
    with httpx.stream("GET", f"http://{ip}:8080/big", timeout=60) as response:
        received = sum(len(c) for c in response.iter_raw(1 << 20))
    elapsed = time.perf_counter() - start
    assert received == size, received
    return size / (1 << 20) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execs", type=int, default=200)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--kubeconfig", type=Path)
    args = parser.parse_args()
    size = args.mib << 20
    with ExitStack() as stack:
        kubeconfig = args.kubeconfig
        cluster_pid = 0
        if kubeconfig is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-exec-")))
            argv = up_command(tmp / "cluster")
            # Its Docker network outlives `k8slite up`: removed after it, or pod CIDRs run out.
            network = argv[argv.index("--docker-network") + 1]
            stack.callback(
                subprocess.run, ["docker", "network", "rm", network], capture_output=True
            )
            cluster = start_up(argv, tmp / "cluster")
            stack.callback(stop_up, cluster)
            cluster_pid = cluster.proc.pid if cluster.proc else 0
            kubeconfig = cluster.kubeconfig
        shell = make_pod(kubeconfig, "bench-shell", "sleep 3600")
        web = make_pod(
            kubeconfig,
            "bench-web",
            f"mkdir -p /www && dd if=/dev/zero of=/www/big bs=1M count={args.mib} 2>/dev/null "
            "&& exec httpd -f -p 8080 -h /www",
        )
        stack.callback(kubectl, kubeconfig, "delete", "pod", "-n", NS, "bench-shell", "bench-web")
        configuration = k8s.Configuration()
        k8s_config.load_kube_config(str(kubeconfig), client_configuration=configuration)
        api = k8s.CoreV1Api(k8s.ApiClient(configuration))
        container = shell["status"]["containerStatuses"][0]["containerID"].split("://", 1)[-1]
        figures: dict[str, Any] = {
            "exec_per_s": round(exec_rate(api, "bench-shell", args.execs), 1),
            "docker_exec_per_s": round(docker_exec_rate(container, args.execs), 1),
        }
        # CPU time per MiB forwarded, per component: unlike MiB/s, barely moved by what
        # else the machine runs (known only for a cluster this run started).
        pids = components(cluster_pid) if cluster_pid else {}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        figures["port_forward_mib_s"] = round(forwarded_mib_s(api, "bench-web", size), 1)
        for name, pid in pids.items():
            spent = cpu_seconds(pid) - before[name]
            figures[f"port_forward_{name}_cpu_ms_per_mib"] = round(spent * 1000 / args.mib, 2)
        figures["direct_mib_s"] = round(direct_mib_s(web["status"]["podIP"], size), 1)
        figures.update(execs=args.execs, mib=args.mib)
        print(
            f"exec `true`: {figures['exec_per_s']}/s through the cluster, "
            f"{figures['docker_exec_per_s']}/s with Docker directly; "
            f"{args.mib} MiB: {figures['port_forward_mib_s']} MiB/s forwarded, "
            f"{figures['direct_mib_s']} MiB/s direct"
        )
        harness.emit(figures)


if __name__ == "__main__":
    main()
