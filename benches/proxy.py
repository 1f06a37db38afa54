"""Proxy benchmarks: userspace relay throughput and added latency; nftables rules sync time.

Run (as root): .venv/bin/python benches/proxy.py [--mib 256] [--rounds 3]
               [--services 1000 10000] [--flips 20]

Everything runs inside a network namespace the bench makes and deletes, so no route, rule
or packet touches the host. Userspace: a backend process (sink and echo), the userspace
proxier in a process of its own listening on a ClusterIP (the routing guard set first), and
the client in this process, on 2 cores; each figure is measured direct to the backend and
through the proxy in the same run, median of --rounds. nftables: N services with 2
endpoints each, rendered and applied with one `nft -f`: into a fresh table, then one
endpoint changed (a partial sync), then the whole table rewritten in place (the periodic
full sync), median of --rounds. Programming
latency: an API server and the real k8slite-proxy (each mode) run in the namespace; the
bench flips a Service's EndpointSlice between two backends --flips times and times each
flip from the update request to the first connection that reaches the new backend.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).parent))
import harness

from k8slite.proxy.nftables import NftablesConfig, render, render_changes
from k8slite.proxy.routing import ServiceRangeGuard, parse_ranges
from k8slite.proxy.serviceports import Endpoint, ServicePort, ServicePortName
from k8slite.proxy.userspace import UserspaceProxier

VIP, VPORT = "10.96.0.10", 80
BACKEND = ("127.0.0.2", 8080)
FLIP_BACKENDS = ("127.0.0.3", "127.0.0.4")
CHUNK = 1 << 20
PING_ROUNDS = 5000
CONNECT_ROUNDS = 1000


# ------------------------------------------------------------------- child processes


async def backend_main() -> None:
    """Sink (first byte b"S": count bytes until EOF, reply with the count) or echo."""

    async def handle(stream: trio.SocketStream) -> None:
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        first = await stream.receive_some(1)
        if first == b"S":
            total = 0
            while data := await stream.receive_some(CHUNK):
                total += len(data)
            await stream.send_all(str(total).encode())
        else:
            data = first
            while data:
                await stream.send_all(data)
                data = await stream.receive_some(65536)
        await stream.aclose()

    listeners = await trio.open_tcp_listeners(BACKEND[1], host=BACKEND[0])
    print("ready", flush=True)
    await trio.serve_listeners(handle, listeners)


async def userspace_main() -> None:
    await ServiceRangeGuard(parse_ranges("10.96.0.0/12")).ensure()
    proxier = UserspaceProxier()
    port = ServicePort(
        ServicePortName("bench", "web", "", "TCP"),
        VIP,
        VPORT,
        "TCP",
        None,
        None,
        (Endpoint(*BACKEND),),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(proxier.run)
        assert await proxier.sync([port], None)
        print("ready", flush=True)


def start_child(role: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, __file__, "--role", role], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        raise RuntimeError(f"the {role} process did not start")
    return proc


# -------------------------------------------------------------------------- client


def throughput(addr: tuple[str, int], mib: int) -> float:
    """MiB/s of a one-way bulk transfer to the sink."""
    payload = b"x" * CHUNK
    with socket.create_connection(addr) as s:
        start = time.perf_counter()
        s.sendall(b"S")
        for _ in range(mib):
            s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        reply = s.recv(100)
        elapsed = time.perf_counter() - start
    assert int(reply) == mib * CHUNK + 0, reply
    return mib / elapsed


def ping_pong(addr: tuple[str, int], rounds: int) -> list[float]:
    """Round-trip times (s) of 64-byte messages over one connection."""
    msg = b"p" * 64
    out = []
    with socket.create_connection(addr) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(rounds):
            start = time.perf_counter()
            s.sendall(msg)
            got = 0
            while got < len(msg):
                got += len(s.recv(4096))
            out.append(time.perf_counter() - start)
    return out


def connect_round_trip(addr: tuple[str, int], rounds: int) -> list[float]:
    """Connect, one 64-byte round trip, close: the cost a new short connection pays."""
    msg = b"c" * 64
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        with socket.create_connection(addr) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(msg)
            got = 0
            while got < len(msg):
                got += len(s.recv(4096))
        out.append(time.perf_counter() - start)
    return out


def bench_userspace(mib: int, rounds: int) -> dict[str, float]:
    backend = start_child("backend")
    proxy = start_child("userspace")
    try:
        paths = {"direct": BACKEND, "proxied": (VIP, VPORT)}
        tput: dict[str, list[float]] = {k: [] for k in paths}
        rtt: dict[str, list[float]] = {k: [] for k in paths}
        conn: dict[str, list[float]] = {k: [] for k in paths}
        for _ in range(rounds):
            for name, addr in paths.items():  # interleaved, so drift hits both alike
                tput[name].append(throughput(addr, mib))
                rtt[name].append(statistics.median(ping_pong(addr, PING_ROUNDS)))
                conn[name].append(statistics.median(connect_round_trip(addr, CONNECT_ROUNDS)))
    finally:
        for proc in (proxy, backend):
            proc.terminate()
            proc.wait(10)
    med = statistics.median
    return {
        "userspace_throughput_direct_mib_s": round(med(tput["direct"]), 1),
        "userspace_throughput_proxied_mib_s": round(med(tput["proxied"]), 1),
        "userspace_rtt_direct_us": round(med(rtt["direct"]) * 1e6, 1),
        "userspace_rtt_proxied_us": round(med(rtt["proxied"]) * 1e6, 1),
        "userspace_rtt_added_us": round((med(rtt["proxied"]) - med(rtt["direct"])) * 1e6, 1),
        "userspace_connect_rtt_direct_us": round(med(conn["direct"]) * 1e6, 1),
        "userspace_connect_rtt_proxied_us": round(med(conn["proxied"]) * 1e6, 1),
        "userspace_connect_rtt_added_us": round(
            (med(conn["proxied"]) - med(conn["direct"])) * 1e6, 1
        ),
    }


# ------------------------------------------------------------------------ nftables


def synthetic_ports(n: int) -> list[ServicePort]:
    base = ipaddress.ip_address("10.96.0.0")
    pods = ipaddress.ip_address("10.244.0.0")
    out = []
    for i in range(n):
        eps = (Endpoint(str(pods + 2 * i + 2), 8080), Endpoint(str(pods + 2 * i + 3), 8080))
        out.append(
            ServicePort(
                ServicePortName(f"ns{i % 50}", f"svc{i}", "http", "TCP"),
                str(base + 10 + i),
                80,
                "TCP",
                None,
                None,
                eps,
            )
        )
    return out


def _apply(text: str) -> None:
    subprocess.run(["nft", "-f", "-"], input=text.encode(), check=True)


def bench_nftables(sizes: list[int], rounds: int) -> dict[str, float]:
    """Render and apply, as NftablesProxier.sync does: a fresh table; one endpoint of one
    service changed (a partial sync); the periodic full rewrite of an existing table."""
    figures: dict[str, float] = {}
    config = NftablesConfig(parse_ranges("10.96.0.0/12"))
    for n in sizes:
        ports = synthetic_ports(n)
        changed = list(ports)
        first = changed[0]
        changed[0] = ServicePort(
            first.name,
            first.cluster_ip,
            first.port,
            first.protocol,
            None,
            None,
            first.endpoints[:1],
        )
        fresh, partial, full = [], [], []
        for _ in range(rounds):
            start = time.perf_counter()
            applied = render(ports, None, config, None)
            _apply(applied.text)
            fresh.append(time.perf_counter() - start)
            start = time.perf_counter()
            applied = render_changes(changed, None, config, applied)
            _apply(applied.text)
            partial.append(time.perf_counter() - start)
            start = time.perf_counter()
            _apply(render(ports, None, config, applied).text)
            full.append(time.perf_counter() - start)
            subprocess.run(["nft", "delete", "table", "ip", config.table], check=True)
        figures[f"nftables_sync_{n}_services_s"] = round(statistics.median(fresh), 3)
        figures[f"nftables_partial_sync_{n}_services_s"] = round(statistics.median(partial), 3)
        figures[f"nftables_full_resync_{n}_services_s"] = round(statistics.median(full), 3)
    return figures


# ------------------------------------------------------------ programming latency


def _slice(ready: str) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "flip", "labels": {"kubernetes.io/service-name": "flip"}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": ip == ready}} for ip in FLIP_BACKENDS
        ],
        "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
    }


async def _greeter(ip: str, *, task_status: trio.TaskStatus[None]) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(ip.encode())

    listeners = await trio.open_tcp_listeners(8080, host=ip)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started()


async def _answer(ip: str) -> str:
    try:
        with trio.fail_after(1):
            stream = await trio.open_tcp_stream(ip, 80)
            async with stream:
                return (await stream.receive_some(100)).decode()
    except (OSError, trio.BrokenResourceError, trio.TooSlowError):
        return ""


async def bench_programming(
    mode: str, flips: int, kubeconfig: Path, admin: Path
) -> dict[str, float]:
    from k8slite.client import ApiClient, load_kubeconfig
    from k8slite.client.resource import ENDPOINTSLICES, SERVICES

    argv = [
        sys.executable,
        "-m",
        "k8slite.cmd.proxy",
        "--kubeconfig",
        str(kubeconfig),
        "--proxy-mode",
        mode,
        "--metrics-bind-address",
        "127.0.0.1:0",
        "--healthz-bind-address",
        "127.0.0.1:0",
        "--hostname-override",
        "bench",
    ]
    samples: list[float] = []
    async with ApiClient(load_kubeconfig(admin)) as api, trio.open_nursery() as nursery:
        for ip in FLIP_BACKENDS:
            await nursery.start(_greeter, ip)
        svc = await api.create(
            SERVICES,
            {"metadata": {"name": "flip"}, "spec": {"ports": [{"port": 80, "targetPort": 8080}]}},
            namespace="default",
        )
        vip = svc["spec"]["clusterIP"]
        current = await api.create(ENDPOINTSLICES, _slice(FLIP_BACKENDS[0]), namespace="default")
        proc = await trio.lowlevel.open_process(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        try:
            assert proc.stdout is not None
            seen = b""
            while b" ready " not in seen:
                chunk = await proc.stdout.receive_some(4096)
                if not chunk:
                    raise RuntimeError(f"k8slite-proxy ({mode}) did not start")
                seen += chunk
            while await _answer(vip) != FLIP_BACKENDS[0]:
                await trio.sleep(0.01)
            for i in range(flips):
                target = FLIP_BACKENDS[(i + 1) % 2]
                body = _slice(target)
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                start = time.perf_counter()
                current = await api.update(ENDPOINTSLICES, body, namespace="default")
                with trio.fail_after(30):
                    while await _answer(vip) != target:
                        await trio.sleep(0.002)
                samples.append(time.perf_counter() - start)
                await trio.sleep(0.2)  # let the proxy's rate limiter cool down
        finally:
            proc.terminate()
            await proc.wait()
            await api.delete(SERVICES, "flip", namespace="default")
            await api.delete(ENDPOINTSLICES, "flip", namespace="default")
            nursery.cancel_scope.cancel()
    return {
        f"{mode}_programming_latency_p50_s": round(statistics.median(samples), 3),
        f"{mode}_programming_latency_max_s": round(max(samples), 3),
    }


def programming(flips: int, modes: list[str]) -> dict[str, float]:
    from k8slite import pki

    data = Path(tempfile.mkdtemp(prefix="k8slite-bench-proxy-"))
    try:
        pki.ensure_pki(data / "pki")
        server = harness.start_apiserver(data)
        try:
            kubeconfig, admin = data / "proxy.kubeconfig", data / "admin.kubeconfig"
            ca = (data / "pki" / "ca.pem").read_bytes()
            for path, who in ((kubeconfig, "proxy"), (admin, "admin")):
                pki.write_kubeconfig(
                    path,
                    server.url,
                    ca,
                    (data / "pki" / f"client-{who}.pem").read_bytes(),
                    (data / "pki" / f"client-{who}.key").read_bytes(),
                    who,
                )
            figures: dict[str, float] = {}
            for mode in modes:
                figures.update(trio.run(bench_programming, mode, flips, kubeconfig, admin))
            return figures
        finally:
            server.stop()
    finally:
        shutil.rmtree(data, ignore_errors=True)


# -------------------------------------------------------------------------- driver


def inside(args: argparse.Namespace) -> None:
    """Runs in the bench's namespace; prints the figures as the last line."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    figures: dict[str, object] = {"bench": "proxy"}
    print(
        f"userspace: {args.mib} MiB bulk, {PING_ROUNDS} ping-pongs, {CONNECT_ROUNDS} "
        f"connects, x{args.rounds}",
        file=sys.stderr,
    )
    figures.update(bench_userspace(args.mib, args.rounds))
    modes = ["userspace"]
    if shutil.which("nft"):
        print(f"nftables: {args.services} services, x{args.rounds}", file=sys.stderr)
        figures.update(bench_nftables(args.services, args.rounds))
        modes.append("nftables")
    else:
        figures["nftables"] = "skipped: nft not installed (hack/install-deps)"
    print(f"programming latency: {args.flips} flips per mode", file=sys.stderr)
    figures.update(programming(args.flips, modes))
    harness.emit(figures)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mib", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--services", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--flips", type=int, default=20)
    p.add_argument(
        "--role",
        choices=["main", "inside", "backend", "userspace"],
        default="main",
        help=argparse.SUPPRESS,
    )
    args = p.parse_args()
    if args.role == "backend":
        trio.run(backend_main)
        return
    if args.role == "userspace":
        trio.run(userspace_main)
        return
    if args.role == "inside":
        inside(args)
        return
    if os.geteuid() != 0 or shutil.which("ip") is None:
        harness.emit(
            {
                "bench": "proxy",
                "skipped": "needs root and iproute2 (network namespaces, routes, nftables)",
            }
        )
        return
    netns = f"k8slite-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        argv = [
            sys.executable,
            __file__,
            "--role",
            "inside",
            "--mib",
            str(args.mib),
            "--rounds",
            str(args.rounds),
            "--flips",
            str(args.flips),
            "--services",
            *map(str, args.services),
        ]
        sys.exit(subprocess.run(["ip", "netns", "exec", netns, *argv], check=False).returncode)
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


if __name__ == "__main__":
    main()
