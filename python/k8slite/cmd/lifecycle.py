"""k8slite status, stop and logs: a `k8slite up` cluster of a data dir, from DIR/cluster.json."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import ssl
import sys
import time
from pathlib import Path

import httpx
import trio

from k8slite.cmd import runstate
from k8slite.cmd.runstate import ClusterInfo
from k8slite.cmd.up import (
    ALL_IN_ONE,
    DEFAULT_DATA_DIR,
    health_urls,
    stop_left_behind,
    stop_pods,
)
from k8slite.component.logging import setup_logging

# The ports each component serves on, by their keys in ClusterInfo.ports.
COMPONENT_PORTS = {
    # --single-process: every component below, as tasks of one process.
    "all-in-one": ("apiserver", "controller-manager", "scheduler", "kubelet", "kubelet-healthz")
    + ("proxy-metrics", "proxy-healthz", "dns", "dns-metrics", "metrics-server"),
    "apiserver": ("apiserver",),
    "controller-manager": ("controller-manager",),
    "scheduler": ("scheduler",),
    "kubelet": ("kubelet", "kubelet-healthz"),
    "proxy": ("proxy-metrics", "proxy-healthz"),
    "dns": ("dns", "dns-metrics"),
    "metrics-server": ("metrics-server",),
    "hollow-nodes": (),
}
# --ha's control plane, by name prefix: etcd members, API servers, the balancer (each
# serves on the port under its own name); controller-manager-2 and scheduler-2 sort after
# the first ones.
HA_ORDER = ("etcd-", "apiserver-", "load-balancer")


def component_order(name: str) -> tuple[int, str]:
    """Where a component sorts in `k8slite status`: the control plane first."""
    for i, prefix in enumerate(HA_ORDER):
        if name.startswith(prefix):
            return (i, name)
    order = list(COMPONENT_PORTS)
    base = name.removesuffix("-2")
    return (len(HA_ORDER) + (order.index(base) if base in order else len(order)), name)


def component_ports(name: str, ports: dict[str, int]) -> list[int]:
    if name == "load-balancer":
        keys: tuple[str, ...] = ("apiserver",)
    elif name in COMPONENT_PORTS:
        keys = COMPONENT_PORTS[name]
    else:
        keys = (name, f"{name}-peer")
    return [ports[k] for k in keys if k in ports]


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"k8slite {prog}", description=description)
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(DEFAULT_DATA_DIR),
        help="the cluster's data directory (default ./.k8slite)",
    )
    return p


def _admin_client(data_dir: Path, joined: bool = False) -> httpx.Client:
    """The admin's credentials; on a joined node the kubelet's (it may read its Node)."""
    pki_dir = data_dir / "pki"
    ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.pem"))
    if joined:
        ctx.load_cert_chain(pki_dir / "kubelet-client-current.pem")
    else:
        ctx.load_cert_chain(pki_dir / "client-admin.pem", pki_dir / "client-admin.key")
    return httpx.Client(verify=ctx, timeout=5)


def _health(client: httpx.Client, url: str) -> str:
    try:
        r = client.get(url)
    except httpx.HTTPError as e:
        return f"unreachable ({type(e).__name__})"
    return "ok" if r.status_code == 200 else f"{r.status_code} {r.text.strip()[:40]}"


def _node_readiness(client: httpx.Client, info: ClusterInfo) -> str:
    try:
        r = client.get(f"{info.server}/api/v1/nodes/{info.node}")
    except httpx.HTTPError as e:
        return f"unknown ({type(e).__name__})"
    if r.status_code != 200:
        return f"unknown ({r.status_code})"
    for c in (r.json().get("status") or {}).get("conditions") or ():
        if c.get("type") == "Ready":
            return "Ready" if c.get("status") == "True" else f"NotReady ({c.get('reason', '')})"
    return "NotReady (no Ready condition yet)"


def _age(seconds: float) -> str:
    """Roughly as kubectl shows ages: 42s, 5m, 3h, 2d."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"


def status_main(argv: list[str]) -> int:
    p = _parser("status", "The cluster's supervisor, components, their health, node readiness.")
    data_dir = p.parse_args(argv).data_dir.resolve()
    info = runstate.read(data_dir)
    if info is None or not info.running():
        print(f"no cluster is running in {data_dir}")
        left = info.leftovers() if info is not None else {}
        if left:
            names = ", ".join(f"{n} (pid {r.pid})" for n, r in left.items())
            print(f"left behind by a supervisor that died: {names}; `k8slite stop` stops them")
        return 1
    assert info.supervisor is not None
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.supervisor.started))
    supervisor_log = data_dir / "logs" / ("join.log" if info.joined else "up.log")
    how = (
        f"in the background, its log {supervisor_log}"
        if info.detached
        else "in the foreground, its output in its terminal"
    )
    print(f"{'node' if info.joined else 'cluster':10} {data_dir}: {info.state}")
    print(f"supervisor pid {info.pid} since {since}, {how}")
    print(f"server     {info.server} ({info.runtime} runtime)")
    healthy = True
    # Loopback, to our own components; the controller manager's and scheduler's serving
    # certificates are self-signed, as upstream's are by default.
    with (
        _admin_client(data_dir, info.joined) as admin,
        httpx.Client(verify=False, timeout=5) as plain,
    ):
        urls = health_urls(info.ports, info.proxy, info.dns_address)
        readiness = _node_readiness(admin, info)
        print(f"node       {info.node}: {readiness}")
        healthy &= readiness == "Ready"
        print()
        rows = [("COMPONENT", "PID", "PORTS", "HEALTH", "RESTARTS", "AGE")]
        for name, rec in sorted(info.components.items(), key=lambda c: component_order(c[0])):
            # A proxy that does not run (not root, --no-proxy) still has its ports picked.
            shown = component_ports(
                name,
                {k: v for k, v in info.ports.items() if info.proxy or not k.startswith("proxy-")},
            )
            ports = ",".join(str(p) for p in shown)
            if not rec.alive():
                health = "not running"
            elif name == ALL_IN_ONE:
                # Healthy when every component it runs is.
                health = _health(admin, f"{info.server}/healthz")
                for part, url in urls.items():
                    if health != "ok":
                        break
                    if (part_health := _health(plain, url)) != "ok":
                        health = f"{part}: {part_health}"
            elif name in ("apiserver", "load-balancer"):
                health = _health(admin, f"{info.server}/healthz")
            elif name.startswith("apiserver-"):
                health = _health(admin, f"https://127.0.0.1:{info.ports[name]}/healthz")
            elif name in urls:
                health = _health(plain, urls[name])
            else:
                health = "running"
            healthy &= health in ("ok", "running")
            age = _age(time.time() - rec.started)
            rows.append((name, str(rec.pid), ports or "-", health, str(rec.restarts), age))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0 if healthy and info.state == "ready" else 1


def stop_main(argv: list[str]) -> int:
    p = _parser("stop", "Stop the cluster of a data directory, detached or in the foreground.")
    data_dir = p.parse_args(argv).data_dir.resolve()
    info = runstate.read(data_dir)
    if info is not None and info.running():
        assert info.supervisor is not None
        print(f"stopping the cluster in {data_dir} (supervisor pid {info.pid})", flush=True)
        # As Ctrl-C: the supervisor stops its components (the API server last), then pods.
        with contextlib.suppress(ProcessLookupError):
            os.kill(info.pid, signal.SIGTERM)
        if not runstate.wait_gone([info.supervisor], runstate.SUPERVISOR_STOP_TIMEOUT):
            print(
                f"k8slite stop: error: the supervisor (pid {info.pid}) is still running after "
                f"{runstate.SUPERVISOR_STOP_TIMEOUT:.0f}s; see {data_dir / 'logs' / 'up.log'}",
                file=sys.stderr,
            )
            return 1
        print("stopped")
        return 0
    left = info.leftovers() if info is not None else {}
    if not left:
        print(f"no cluster is running in {data_dir}")
        return 0
    assert info is not None
    setup_logging()
    stop_left_behind(info, data_dir)
    # The pods, as the supervisor would have stopped them.
    trio.run(
        stop_pods,
        info.runtime,
        info.node,
        data_dir,
        info.docker_network,
        "bridge" if info.pod_network else "host",
    )
    print("stopped")
    return 0


def logs_main(argv: list[str]) -> int:
    p = _parser("logs", "Print a component's log (DIR/logs/COMPONENT.log); -f follows it.")
    p.add_argument(
        "component",
        help="apiserver, controller-manager, scheduler, kubelet, proxy, dns, "
        "hollow-nodes, all-in-one (--single-process), or up (the supervisor's own log, "
        "with --detach; join on a joined node); with --ha also "
        "etcd-1..3, apiserver-1..3, load-balancer, controller-manager-2, scheduler-2",
    )
    p.add_argument("-f", "--follow", action="store_true", help="keep printing what is written")
    p.add_argument("--tail", type=int, default=-1, help="only the last N lines (default all)")
    a = p.parse_args(argv)
    logs = a.data_dir.resolve() / "logs"
    path = logs / f"{a.component}.log"
    if "/" in a.component or not path.is_file():
        there = sorted(f.stem for f in logs.glob("*.log"))
        print(
            f"k8slite logs: error: no log for {a.component!r} in {logs}"
            + (f"; there are: {', '.join(there)}" if there else ""),
            file=sys.stderr,
        )
        return 1
    try:
        _print_log(path, a.tail, a.follow)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        # `k8slite logs x | head`: stop quietly, as cat does.
        sys.stderr.close()
    return 0


def _print_log(path: Path, tail: int, follow: bool) -> None:
    out = sys.stdout.buffer
    f = path.open("rb")
    try:
        if tail >= 0:
            lines = f.read().splitlines(keepends=True)
            out.write(b"".join(lines[-tail:] if tail else []))
        else:
            while chunk := f.read(1 << 16):
                out.write(chunk)
        out.flush()
        while follow:
            chunk = f.read(1 << 16)
            if chunk:
                out.write(chunk)
                out.flush()
                continue
            # Truncated in place (logrotate's copytruncate), or replaced: from the start.
            try:
                st = path.stat()
            except FileNotFoundError:
                st = None
            if st is not None and (
                st.st_ino != os.fstat(f.fileno()).st_ino or st.st_size < f.tell()
            ):
                f.close()
                f = path.open("rb")
            time.sleep(0.25)
    finally:
        f.close()
