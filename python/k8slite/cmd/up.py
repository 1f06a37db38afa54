"""k8slite up: run a whole cluster on embedded defaults as supervised child processes."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import ipaddress
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import trio
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from k8slite import datadir, pki
from k8slite.bootstraptoken import CLUSTER_INFO_PATH
from k8slite.cmd import allinone, clusterdns, clustermetrics, runstate
from k8slite.cmd.child import Child, spawn
from k8slite.cmd.common import leaves
from k8slite.cmd.runstate import ClusterInfo, ProcessRecord
from k8slite.component.logging import setup_logging
from k8slite.dashboard.main import serve_beside
from k8slite.dns import kubedns
from k8slite.freeport import bindable, free_port
from k8slite.network import clusterconfig

log = logging.getLogger("k8slite.up")

# Restart backoff for a crashed component: doubles from 1 s up to 30 s.
_BACKOFF_START, _BACKOFF_MAX = 1.0, 30.0
# A component that stayed up this long counts as healthy again (backoff resets).
_HEALTHY_AFTER = 60.0
# How long a child may take to exit after SIGTERM before it gets SIGKILL.
STOP_GRACE = 5.0
# Grace of a pod's containers when the cluster stops: short, so that Ctrl-C is quick.
_POD_STOP_GRACE = 2.0
# How long the components may take to serve /healthz, and the node to be Ready, once the
# API server is ready; and how often `k8slite up` says what it still waits for.
START_TIMEOUT = 180.0
_REMIND_EVERY = 20.0
# The upstream ports each component serves on by default.
DEFAULT_PORTS = {
    "apiserver": 8080,
    "controller-manager": 10257,
    "scheduler": 10259,
    "kubelet": 10250,
    "kubelet-healthz": 10248,
    "proxy-metrics": 10249,
    "proxy-healthz": 10256,
    "metrics-server": clustermetrics.DEFAULT_PORT,
}
RUNTIMES = ("docker", "process", "fake")
DEFAULT_DATA_DIR = ".k8slite"
# The kubelet's default pod network.
DEFAULT_DOCKER_NETWORK = "k8slite-pods"
SANDBOX_IMAGE = "k8slite/pause:1.0"
WORKLOAD_IMAGE = "busybox:1.35"
# The pod network of `--pod-network bridge` (kubeadm's --pod-network-cidr, flannel's default)
# and the node network agent's metrics port.
DEFAULT_POD_NETWORK_CIDR = "10.244.0.0/16"
NETAGENT_PORT = 10271
# The identity Prometheus scrapes with: upstream's system:monitoring group may read the API
# server's /metrics, /healthz, /livez and /readyz, and the kubelet's /metrics, nothing else.
MONITORING_IDENTITY = "monitoring"


class UpError(Exception):
    """The cluster cannot come up; the message says why and what to do."""


@dataclass
class Component:
    """A child process to keep running: its name, command line and log file."""

    name: str
    argv: list[str]
    log_path: Path
    restarts: int = 0
    # The running child, if any; stop() ends it.
    proc: Child | None = field(default=None, repr=False)
    # Set by restart(): the next exit is asked for, and the child starts again at once.
    restarting: bool = field(default=False, repr=False)


def restart(component: Component) -> None:
    """Stop the running child so that its supervisor starts it again at once (new files
    to load: a kubelet's serving certificate)."""
    if component.proc is not None and component.proc.returncode is None:
        component.restarting = True
        component.proc.send_signal(signal.SIGTERM)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


async def supervise(component: Component, on_start: Callable[[Component], None]) -> None:
    """Run the component forever, restarting it with backoff whenever it exits; on_start
    is called after each start.

    Cancellation leaves the running child alone: stop() ends the children in an order
    (the API server last), which cancelling every supervisor at once could not.
    """
    delay = _BACKOFF_START
    started_once = False
    while True:
        started = trio.current_time()
        # Synchronous, in Trio's thread: no cancellation can come between the start and
        # component.proc, and the child's death signal is tied to a thread that lives.
        proc = component.proc = spawn(component.argv, component.log_path)
        if not started_once:
            started_once = True
            log.info("started %s (pid %d), log %s", component.name, proc.pid, component.log_path)
        else:
            log.info("restarted %s (pid %d)", component.name, proc.pid)
        on_start(component)
        code = await proc.wait()
        component.proc = None
        if component.restarting:
            component.restarting = False
            log.info("%s stopped to restart (%s)", component.name, _exit_reason(code))
            continue
        component.restarts += 1
        if trio.current_time() - started > _HEALTHY_AFTER:
            delay = _BACKOFF_START
        log.error(
            "%s %s; restarting it in %.0fs (restart %d). Last lines of %s:\n%s",
            component.name,
            _exit_reason(code),
            delay,
            component.restarts,
            component.log_path,
            _tail(component.log_path),
        )
        await trio.sleep(delay)
        delay = min(delay * 2, _BACKOFF_MAX)


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


async def stop(components: list[Component], grace: float = STOP_GRACE) -> None:
    """SIGTERM every running child of `components`, then SIGKILL those still there."""
    running = [(c, c.proc) for c in components if c.proc is not None]
    for _, proc in running:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    with trio.move_on_after(grace):
        for _, proc in running:
            await proc.wait()
    for c, proc in running:
        if proc.returncode is None:
            log.warning("%s did not stop within %.0fs; killing it", c.name, grace)
            proc.kill()
            await proc.wait()
        c.proc = None


def _admin_context(pki_dir: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.pem"))
    # The API server requires a client certificate (mutual TLS): present the admin's.
    ctx.load_cert_chain(pki_dir / "client-admin.pem", pki_dir / "client-admin.key")
    return ctx


async def _poll(
    client: httpx.AsyncClient, url: str, ok: Callable[[httpx.Response], bool], interval: float
) -> None:
    """GET url until ok(answer); a connection that fails counts as "not yet"."""
    while True:
        try:
            if ok(await client.get(url)):
                return
        except httpx.HTTPError:
            pass
        await trio.sleep(interval)


def _is_ok(r: httpx.Response) -> bool:
    return r.status_code == 200


async def wait_ready(url: str, ca: Path, timeout: float = 60.0) -> None:
    """Poll /readyz until the API server answers ok (the CA's directory holds the admin's
    client certificate)."""
    with trio.fail_after(timeout):
        async with httpx.AsyncClient(verify=_admin_context(ca.parent)) as client:
            await _poll(client, f"{url}/readyz", _is_ok, 0.2)


def node_ready(r: httpx.Response) -> bool:
    """Whether a GET of a Node answered with its Ready condition True (a 404 before it
    registers, or a body that is not an object, e.g. a proxy's answer, is "not yet")."""
    try:
        node = r.json() if r.status_code == 200 else {}
    except ValueError:
        return False
    if not isinstance(node, dict):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or ()
    )


async def wait_node_ready(url: str, pki_dir: Path, node: str, timeout: float = 120.0) -> None:
    """Poll the Node until its Ready condition is True."""
    with trio.fail_after(timeout):
        async with httpx.AsyncClient(verify=_admin_context(pki_dir), timeout=10) as client:
            await _poll(client, f"{url}/api/v1/nodes/{node}", node_ready, 0.3)


def health_urls(ports: dict[str, int], proxy: bool, dns_address: str = "") -> dict[str, str]:
    """Each component's /healthz (the controller manager, the scheduler and k8slite-dns serve
    HTTPS with a certificate of their own; the proxy plain HTTP, as upstream)."""
    urls: dict[str, str] = {
        name: f"https://127.0.0.1:{ports[name]}/healthz"
        for name in ("controller-manager", "scheduler", "controller-manager-2", "scheduler-2")
        if name in ports
    }
    urls["kubelet"] = f"http://127.0.0.1:{ports['kubelet-healthz']}/healthz"
    if "metrics-server" in ports:
        urls["metrics-server"] = f"https://127.0.0.1:{ports['metrics-server']}/healthz"
    if proxy:
        urls["proxy"] = f"http://127.0.0.1:{ports['proxy-healthz']}/healthz"
    if dns_address:
        urls["dns"] = f"https://{dns_address}:{ports['dns-metrics']}/healthz"
    if "netagent" in ports:
        urls["netagent"] = f"http://127.0.0.1:{ports['netagent']}/healthz"
    return urls


async def wait_healthy(
    urls: dict[str, str],
    timeout: float = 60.0,
    on_healthy: Callable[[str], None] = lambda _: None,
) -> None:
    """Poll every component's /healthz until each answers ok, so that "up" means every
    component serves (a controller manager still starting would delay the first
    Deployment); on_healthy(name) as each does. Raises TooSlowError naming the ones that
    never answered."""
    pending = dict(urls)

    async def one(client: httpx.AsyncClient, name: str, url: str) -> None:
        await _poll(client, url, _is_ok, 0.2)
        del pending[name]
        on_healthy(name)

    # Loopback only, to our own children: their serving certificates are self-signed.
    async with httpx.AsyncClient(verify=False, timeout=5) as client:
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                for name, url in urls.items():
                    nursery.start_soon(one, client, name, url)
    if pending:
        raise trio.TooSlowError(", ".join(sorted(pending)))


async def wait_started(
    url: str,
    pki_dir: Path,
    node: str,
    urls: dict[str, str],
    logs: Path,
    timeout: float,
    shared_log: Path | None = None,
) -> None:
    """Wait until every component serves /healthz and the node is Ready, saying so as each
    does, and every little while what it still waits for. An UpError names each that did
    not come up, with the end of its log (shared_log: the one log of them all)."""
    began = trio.current_time()
    pending = {*urls, "node"}

    def done(name: str) -> None:
        pending.discard(name)
        what = f"node {node} is Ready" if name == "node" else f"{name} is healthy"
        log.info("%s (%.0fs)", what, trio.current_time() - began)

    def log_of(name: str) -> str:
        path = shared_log or logs / f"{name}.log"
        return f"its log {path} ends with:\n{_tail(path)}"

    # What times out stays in pending, and is reported below.
    async def components() -> None:
        with contextlib.suppress(trio.TooSlowError):
            await wait_healthy(urls, timeout, done)

    async def node_ready() -> None:
        with contextlib.suppress(trio.TooSlowError):
            await wait_node_ready(url, pki_dir, node, timeout)
            done("node")

    async def remind() -> None:
        while True:
            await trio.sleep(_REMIND_EVERY)
            log.info(
                "still waiting, after %.0fs, for: %s",
                trio.current_time() - began,
                ", ".join(
                    f"node {node} to be Ready" if p == "node" else p for p in sorted(pending)
                ),
            )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(remind)
        async with trio.open_nursery() as waits:
            waits.start_soon(components)
            waits.start_soon(node_ready)
        nursery.cancel_scope.cancel()
    problems = [
        f"{name} did not answer {urls[name]} within {timeout:.0f}s; {log_of(name)}"
        for name in sorted(pending - {"node"})
    ]
    if "node" in pending:
        problems.append(
            f"node {node} did not become Ready within {timeout:.0f}s"
            # The kubelet registers the node and reports its readiness.
            + ("" if "kubelet" in pending else f"; the kubelet's {log_of('kubelet')}")
        )
    if problems:
        raise UpError("\n".join(problems))


def script(name: str) -> str:
    """The console script next to this interpreter (the venv's bin), else on PATH."""
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else (shutil.which(name) or name)


# A node name is a DNS-1123 subdomain (it also ends up in certificate file names).
_NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def valid_node_name(name: str) -> bool:
    return len(name) <= 253 and _NODE_NAME.fullmatch(name) is not None


def default_node_name() -> str:
    """The host name, lowercased, as the kubelet's own default; node1 if it cannot be one."""
    name = socket.gethostname().lower()
    return name if valid_node_name(name) else "node1"


def pick_ports(api_port: int) -> dict[str, int]:
    """Upstream's ports, or free ones for everything when the API port is 0."""
    if api_port == 0:
        return {name: free_port() for name in DEFAULT_PORTS}
    return {**DEFAULT_PORTS, "apiserver": api_port}


def check_ports_free(ports: dict[str, int]) -> None:
    """Fail early, and clearly, when another process holds one of our ports."""
    busy = [
        f"{port} ({name})" for name, port in ports.items() if bindable("127.0.0.1", port) is None
    ]
    if busy:
        raise UpError(
            f"port {', '.join(busy)} already in use: is another cluster running? "
            "Stop it (`k8slite stop --data-dir ITS_DIR`, or Ctrl-C where it runs), "
            "or run `k8slite up --port 0` to use free ports"
        )


def detect_runtime() -> tuple[str, str]:
    """(runtime, why): Docker when an engine answers and has the images, else process."""
    try:
        import docker
        import docker.errors
    except ImportError:
        return "process", "the docker SDK is not installed"
    try:
        client = docker.from_env(timeout=10)
    except docker.errors.DockerException as e:
        return "process", f"no Docker engine ({e})"
    try:
        try:
            version = client.version().get("Version", "?")
        except (docker.errors.DockerException, OSError) as e:
            return "process", f"the Docker engine does not answer ({e})"
        missing = []
        for image in (SANDBOX_IMAGE, WORKLOAD_IMAGE):
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                missing.append(image)
            except docker.errors.DockerException as e:
                return "process", f"the Docker engine does not answer ({e})"
        if missing:
            return "process", (
                f"Docker {version} answers but lacks {', '.join(missing)} "
                "(hack/build-images builds them)"
            )
        return "docker", f"Docker {version} with {SANDBOX_IMAGE} and {WORKLOAD_IMAGE}"
    finally:
        client.close()


def dns_listen_address(runtime: str, network: str) -> str:
    """Where k8slite-dns listens: the Docker pod network's gateway, which pods reach (and
    which no host resolver holds, so port 53 is usually free there); for pods that are host
    processes, loopback, which the proxy reaches from the host."""
    if runtime == "docker":
        return clusterdns.docker_gateway(network)
    return "127.0.0.1"


def process_runtime_warning(why: str) -> str:
    """The WARNING block `k8slite up` starts with when it falls back to the process runtime."""
    lines = [
        "*" * 72,
        "Pods will run as plain processes on this host (the process runtime), not in",
        "Docker containers.",
        f"Why: {why}.",
        "They share the host's network and files: three replicas of `httpd -p 8080`",
        "crash-loop, all but one finding port 8080 taken.",
        "For the Docker runtime, have a Docker engine that answers and build the images:",
        "    hack/build-images        (or `make up`, which runs it)",
        "then run `k8slite up` again. `--runtime process` keeps this runtime, silently.",
        "*" * 72,
    ]
    return "\n".join(f"WARNING: {line}" for line in lines)


def prometheus_config(
    data_dir: Path, ports: dict[str, int], proxy: bool = True, dns_address: str = ""
) -> str:
    """A Prometheus scrape configuration for every component of this cluster."""
    p = data_dir / "pki"

    def tls(identity: str | None) -> dict[str, Any]:
        if identity is None:
            # The controller manager and scheduler serve a self-signed certificate unless
            # given one, as upstream's do; there is nothing to verify it against.
            return {"insecure_skip_verify": True}
        return {
            "ca_file": str(p / "ca.pem"),
            "cert_file": str(p / f"client-{identity}.pem"),
            "key_file": str(p / f"client-{identity}.key"),
        }

    def job(
        name: str,
        port_key: str,
        identity: str | None,
        https: bool = True,
        host: str = "127.0.0.1",
    ) -> dict[str, Any]:
        config: dict[str, Any] = {
            "job_name": name,
            "scheme": "https" if https else "http",
            "static_configs": [{"targets": [f"{host}:{ports[port_key]}"]}],
        }
        if https:
            config["tls_config"] = tls(identity)
        return config

    jobs = [
        job("apiserver", "apiserver", MONITORING_IDENTITY),
        job("controller-manager", "controller-manager", None),
        job("scheduler", "scheduler", None),
        job("kubelet", "kubelet", MONITORING_IDENTITY),
    ]
    if proxy:
        jobs.append(job("proxy", "proxy-metrics", None, https=False))
    if dns_address:
        # Self-signed, as the controller manager's: where k8slite-dns listens.
        jobs.append(job("dns", "dns-metrics", None, host=dns_address))
    doc = {"global": {"scrape_interval": "15s", "scrape_timeout": "10s"}, "scrape_configs": jobs}
    header = (
        f"# Prometheus scrape configuration for the K8s-Lite cluster in {data_dir},\n"
        "# written by `k8slite up` (see docs/observability.md). Run e.g.\n"
        f"#   prometheus --config.file={data_dir / 'prometheus.yml'} "
        "--web.listen-address=127.0.0.1:9090\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False)


@dataclass
class UpOptions:
    data_dir: Path
    port: int = 8080
    runtime: str | None = None
    nodes: int = 0
    proxy_mode: str = "userspace"
    node_name: str = ""
    docker_network: str | None = None
    proxy: bool = True
    verbosity: int = 0
    # How long the components may take to serve, and the node to be Ready.
    wait: float = START_TIMEOUT
    # Run in the background (a supervisor of its own, logging to DIR/logs/up.log).
    detach: bool = False
    # Set in that background supervisor: nobody reads its standard output.
    background: bool = False
    # An existing etcd cluster to store in, instead of RocksDB in DIR/db: the API server's
    # --etcd-servers, and its client TLS flags (--etcd-cafile, --etcd-certfile, --etcd-keyfile).
    etcd_servers: list[str] = field(default_factory=list)
    etcd_tls_flags: list[str] = field(default_factory=list)
    # k8slite-dns's --upstream-dns (None: the host's resolvers; "": none).
    upstream_dns: str | None = None
    # Serve `k8slite dashboard` beside the cluster (0: a free port).
    dashboard: bool = True
    dashboard_port: int = 8001
    # A three-way control plane on this machine (see cmd/ha.py).
    ha: bool = False
    # Where the API server listens, and the address other hosts reach it at (in its
    # serving certificate and in cluster-info, so in the join command).
    bind_address: str = "127.0.0.1"
    advertise_address: str = ""
    # Create a bootstrap token and print the `k8slite join` command that uses it.
    join_token: bool = True
    # Every component as a task of one process, `k8slite all-in-one` (see cmd/allinone.py).
    single_process: bool = False
    # "bridge": a pod network across hosts (docs/networking.md#a-pod-network-across-hosts):
    # node IPAM from pod_network_cidr, the kubelet's --pod-network bridge, the node network
    # agent, and kube-system/k8slite-network for joining nodes. "host": none.
    pod_network: str = "host"
    pod_network_cidr: str = DEFAULT_POD_NETWORK_CIDR
    node_cidr_mask_size: int = 24
    pod_network_backend: str = "host-gw"


# The components that serve a self-signed certificate, as upstream's do when given none.
# `k8slite up` makes their pairs, afresh at each start, rather than each component: one
# handed its pair never loads cryptography (8 MiB of a process) just to make one.
SELF_SIGNED = ("controller-manager", "scheduler", "dns", "metrics-server")


def self_signed_dir(data_dir: Path, name: str) -> Path:
    return data_dir / "pki" / "self-signed" / name


def make_self_signed(data_dir: Path) -> None:
    """A new self-signed serving pair for each of SELF_SIGNED (DIR/pki/self-signed/NAME)."""
    host = socket.gethostname()
    for name in SELF_SIGNED:
        directory = self_signed_dir(data_dir, name)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        pki.self_signed(directory, host)


def _serving_pair(data_dir: Path, name: str) -> list[str]:
    directory = self_signed_dir(data_dir, name)
    return [
        "--tls-cert-file",
        str(directory / "serving.pem"),
        "--tls-private-key-file",
        str(directory / "serving.key"),
    ]


def components(
    opts: UpOptions,
    data_dir: Path,
    node: str,
    runtime: str,
    ports: dict[str, int],
    proxy: bool,
    dns_address: str,
) -> tuple[Component, list[Component]]:
    """The API server, and the rest (in start order), each with its own identity."""
    p, logs = data_dir / "pki", data_dir / "logs"
    verbosity = ["-v", str(opts.verbosity)] if opts.verbosity else []
    bridge = opts.pod_network == "bridge"

    def kubeconfig(identity: str) -> list[str]:
        return ["--kubeconfig", str(pki.kubeconfig_path(p, identity))]

    # Explicit TLS files: the API server then leaves the PKI (and the kubeconfigs, which
    # carry our port) to us.
    apiserver = Component(
        "apiserver",
        [
            script("k8slite-apiserver"),
            "--data-dir",
            str(data_dir),
            "--secure-port",
            str(ports["apiserver"]),
            "--bind-address",
            opts.bind_address,
            *(["--advertise-address", opts.advertise_address] if opts.advertise_address else []),
            "--tls-cert-file",
            str(p / "server.pem"),
            "--tls-private-key-file",
            str(p / "server.key"),
            "--client-ca-file",
            str(p / "ca.pem"),
            "--service-account-key-file",
            str(pki.service_account_key_paths(p)[1]),
            "--service-account-signing-key-file",
            str(pki.service_account_key_paths(p)[0]),
            # As kubeadm: bootstrap tokens let nodes join; cluster-info is readable
            # without credentials (and only it), for discovery.
            "--enable-bootstrap-token-auth",
            "--anonymous-auth-paths",
            CLUSTER_INFO_PATH,
            *_storage_flags(opts),
            *verbosity,
        ],
        logs / "apiserver.log",
    )
    rest = [
        Component(
            "controller-manager",
            [
                script("k8slite-controller-manager"),
                *kubeconfig("controller-manager"),
                "--root-ca-file",
                str(p / "ca.pem"),
                "--service-account-private-key-file",
                str(pki.service_account_key_paths(p)[0]),
                # kubeadm's choice: the default controllers and the two bootstrap-token ones.
                "--controllers",
                "*,bootstrapsigner,tokencleaner",
                "--cluster-signing-cert-file",
                str(pki.cert_paths(p, "ca")[0]),
                "--cluster-signing-key-file",
                str(pki.cert_paths(p, "ca")[1]),
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                str(ports["controller-manager"]),
                *_serving_pair(data_dir, "controller-manager"),
                *(
                    [
                        "--allocate-node-cidrs",
                        "--cluster-cidr",
                        opts.pod_network_cidr,
                        "--node-cidr-mask-size",
                        str(opts.node_cidr_mask_size),
                    ]
                    if bridge
                    else []
                ),
                *verbosity,
            ],
            logs / "controller-manager.log",
        ),
        Component(
            "scheduler",
            [
                script("k8slite-scheduler"),
                *kubeconfig("scheduler"),
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                str(ports["scheduler"]),
                *_serving_pair(data_dir, "scheduler"),
                *verbosity,
            ],
            logs / "scheduler.log",
        ),
        Component(
            "kubelet",
            [
                script("k8slite-kubelet"),
                "--node-name",
                node,
                "--runtime",
                runtime,
                *kubeconfig(f"node-{node}"),
                "--pki-dir",
                str(p),
                "--root-dir",
                str(data_dir / "kubelet" / node),
                "--port",
                str(ports["kubelet"]),
                "--healthz-port",
                str(ports["kubelet-healthz"]),
                *(["--docker-network", opts.docker_network] if opts.docker_network else []),
                # Other nodes route this node's pod CIDR to its InternalIP.
                *(["--pod-network", "bridge", "--node-ip", node_ip(opts)] if bridge else []),
                # Pods reach the kube-dns Service only through the proxy; without it they
                # get the host's resolvers (dnsPolicy Default), as upstream's kubelet does
                # without --cluster-dns.
                *(["--cluster-dns", kubedns.CLUSTER_IP] if proxy else []),
                *verbosity,
            ],
            logs / "kubelet.log",
        ),
        Component(
            "dns",
            [
                script("k8slite-dns"),
                *kubeconfig("dns"),
                "--bind-address",
                dns_address,
                "--dns-port",
                str(ports["dns"]),
                "--secure-port",
                str(ports["dns-metrics"]),
                *_serving_pair(data_dir, "dns"),
                *([] if opts.upstream_dns is None else ["--upstream-dns", opts.upstream_dns]),
                *verbosity,
            ],
            logs / "dns.log",
        ),
        Component(
            "metrics-server",
            [
                script("k8slite-metrics-server"),
                *kubeconfig("metrics-server"),
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                str(ports["metrics-server"]),
                *_serving_pair(data_dir, "metrics-server"),
                # Client certificates of the cluster: the API server's front-proxy one.
                "--client-ca-file",
                str(p / "ca.pem"),
                *verbosity,
            ],
            logs / "metrics-server.log",
        ),
    ]
    if proxy:
        rest.append(
            Component(
                "proxy",
                [
                    script("k8slite-proxy"),
                    *kubeconfig("proxy"),
                    "--proxy-mode",
                    opts.proxy_mode,
                    "--hostname-override",
                    node,
                    "--metrics-bind-address",
                    f"127.0.0.1:{ports['proxy-metrics']}",
                    "--healthz-bind-address",
                    f"127.0.0.1:{ports['proxy-healthz']}",
                    *(["--cluster-cidr", opts.pod_network_cidr] if bridge else []),
                    *verbosity,
                ],
                logs / "proxy.log",
            )
        )
    if bridge:
        rest.append(
            netagent_component(
                kubeconfig(f"node-{node}"),
                node,
                clusterconfig.PodNetworkConfig(opts.pod_network_cidr, opts.pod_network_backend),
                ports["netagent"],
                logs,
                verbosity,
            )
        )
    if opts.nodes > 0:
        rest.append(
            Component(
                "hollow-nodes",
                [
                    script("k8slite"),
                    "hollow-nodes",
                    "--count",
                    str(opts.nodes),
                    "--kubeconfig",
                    str(data_dir / "kubeconfig"),
                    *verbosity,
                ],
                logs / "hollow-nodes.log",
            )
        )
    return apiserver, rest


def netagent_component(
    kubeconfig: list[str],
    node: str,
    network: clusterconfig.PodNetworkConfig,
    port: int,
    logs: Path,
    verbosity: list[str],
) -> Component:
    """The node network agent, as the node (its credentials read Nodes and annotate its
    own): the pod bridge, routes to every other node's pod CIDR, masquerade."""
    return Component(
        "netagent",
        [
            script("k8slite"),
            "netagent",
            *kubeconfig,
            "--node-name",
            node,
            "--cluster-cidr",
            network.cluster_cidr,
            "--backend",
            network.backend,
            "--metrics-bind-address",
            f"127.0.0.1:{port}",
            *verbosity,
        ],
        logs / "netagent.log",
    )


def node_ip(opts: UpOptions) -> str:
    """This node's address for other hosts: the advertised one, else the bound one when
    specific, else loopback (a cluster of one host)."""
    if opts.advertise_address:
        return opts.advertise_address
    if opts.bind_address not in ("0.0.0.0", "::", ""):
        return opts.bind_address
    return "127.0.0.1"


ALL_IN_ONE = "all-in-one"


def single_process(
    apiserver: Component, rest: list[Component], logs: Path
) -> tuple[Component, list[Component]]:
    """The components as tasks of one `k8slite all-in-one` process, each with the flags
    (ports, certificates, kubeconfig) it has as a process of its own; and what stays a
    process (the hollow nodes, a test harness rather than a component)."""
    hosted = [apiserver, *(c for c in rest if c.name in allinone.COMPONENTS)]
    argv = [script("k8slite"), "all-in-one"]
    for c in hosted:
        argv += [allinone.SEPARATOR, c.name, *c.argv[1:]]
    others = [c for c in rest if c.name not in allinone.COMPONENTS]
    return Component(ALL_IN_ONE, argv, logs / f"{ALL_IN_ONE}.log"), others


async def stop_pods(
    runtime: str, node: str, data_dir: Path, network: str | None, pod_network: str = "host"
) -> None:
    """Stop and remove the node's pods' containers and sandboxes, so that nothing of the
    cluster keeps running; the next `k8slite up` starts the pods again. With pod_network
    "bridge", their network namespaces, veths and addresses go too."""
    if runtime == "fake":
        return
    from k8slite.kubelet.runtime import make_runtime

    rt = make_runtime(
        runtime,
        node_name=node,
        root_dir=data_dir / "kubelet" / node,
        docker_network=network,
        pod_network=pod_network,
    )

    # Whatever goes wrong with one pod (the engine gone, a container already removed), the
    # others are still stopped, and `k8slite up` still exits cleanly: it is logged, no more.
    async def remove_container(cid: str) -> None:
        try:
            await rt.stop_container(cid, _POD_STOP_GRACE)
            await rt.remove_container(cid)
        except Exception as e:  # noqa: BLE001
            log.warning("could not remove container %s: %s", cid, e)

    async def remove_sandbox(sid: str) -> None:
        try:
            await rt.stop_sandbox(sid)
            await rt.remove_sandbox(sid)
        except Exception as e:  # noqa: BLE001
            log.warning("could not remove pod sandbox %s: %s", sid, e)

    try:
        containers = await rt.list_containers()
        async with trio.open_nursery() as nursery:
            for c in containers:
                nursery.start_soon(remove_container, c.id)
        sandboxes = await rt.list_sandboxes()
        async with trio.open_nursery() as nursery:
            for s in sandboxes:
                nursery.start_soon(remove_sandbox, s.id)
        if containers or sandboxes:
            log.info("stopped %d containers in %d pod sandboxes", len(containers), len(sandboxes))
    except Exception as e:  # noqa: BLE001
        log.warning("could not stop the node's pods: %s", e)
    finally:
        await rt.aclose()


@contextlib.contextmanager
def _exclusive(data_dir: Path) -> Iterator[IO[str]]:
    """One `k8slite up` per data directory: two would share (and break) one RocksDB."""
    with (data_dir / "up.lock").open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UpError(f"another `k8slite up` is running on {data_dir}") from None
        yield f


def _usable_client_cert(pki_dir: Path, name: str) -> bool:
    """Whether client-<name>.pem exists, chains to the CA and has a while to live (the
    identities ensure_pki does not know about are renewed here, on the same terms)."""
    try:
        cert = x509.load_pem_x509_certificate((pki_dir / f"client-{name}.pem").read_bytes())
        ca = x509.load_pem_x509_certificate((pki_dir / "ca.pem").read_bytes())
        cert.verify_directly_issued_by(ca)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    return left > pki.RENEW_BEFORE and (pki_dir / f"client-{name}.key").exists()


async def up(opts: UpOptions) -> None:
    data_dir = opts.data_dir.resolve()
    # The data dir holds keys and the database, its logs the cluster's secrets in passing:
    # the owner's alone, as etcd keeps its data dir.
    datadir.private_data_dir(data_dir)
    datadir.private_tree(data_dir / "logs")
    # First, so that its WARNING heads the output.
    if opts.runtime is None:
        runtime, why = await trio.to_thread.run_sync(detect_runtime)
        if runtime == "process":
            print(process_runtime_warning(why), file=sys.stderr, flush=True)
    else:
        runtime, why = opts.runtime, "--runtime"
    with _exclusive(data_dir):
        previous = runstate.read(data_dir)
        if previous is not None:
            # Holding the lock, we know its supervisor is gone; its components may not be.
            await trio.to_thread.run_sync(stop_left_behind, previous, data_dir)
        await _up(opts, data_dir, runtime, why)


def stop_left_behind(previous: ClusterInfo, data_dir: Path) -> None:
    """Stop the components a supervisor that died (kill -9, OOM) left running, should their
    death signal not have ended them: they hold the ports and the database."""
    left = previous.leftovers()
    if not left:
        return
    log.warning(
        "the previous `k8slite up` on %s (pid %d) is gone but left %s running; stopping them",
        data_dir,
        previous.pid,
        ", ".join(f"{name} (pid {rec.pid})" for name, rec in left.items()),
    )

    # As a supervisor stops them: the API server(s) after the rest, etcd last.
    def rank(name: str) -> int:
        if name.startswith("etcd-"):
            return 3
        return 2 if name.startswith("apiserver") else 1 if name == "load-balancer" else 0

    for group in ({n: r for n, r in left.items() if rank(n) == i} for i in range(4)):
        for name in runstate.terminate(group, STOP_GRACE):
            log.warning("%s did not stop within %.0fs; killed it", name, STOP_GRACE)
    log.info("stopped what the previous `k8slite up` left behind")


async def _up(opts: UpOptions, data_dir: Path, runtime: str, why: str) -> None:
    node = opts.node_name or default_node_name()
    ports = pick_ports(opts.port)
    if opts.ha:
        from k8slite.cmd import ha

        ports.update(ha.pick_ports(data_dir, opts.port))
    bridge = opts.pod_network == "bridge"
    if bridge:
        if os.geteuid() != 0:
            raise UpError(
                "--pod-network bridge needs root: the node network agent makes a bridge, "
                "routes and nftables rules, the kubelet a network namespace per pod"
            )
        ports["netagent"] = free_port() if opts.port == 0 else NETAGENT_PORT
    check_ports_free(ports)
    url = local_server(opts, ports["apiserver"])
    pki_dir = data_dir / "pki"
    try:
        written = pki.ensure_pki(pki_dir, nodes=[node], server_url=url, sans=server_sans(opts))
        if not _usable_client_cert(pki_dir, MONITORING_IDENTITY):
            pki.issue_client_cert(
                pki_dir, MONITORING_IDENTITY, "system:monitoring:prometheus", ["system:monitoring"]
            )
        make_self_signed(data_dir)
    except (pki.PKIError, ValueError, OSError) as e:
        raise UpError(str(e)) from None
    # Kubeconfigs are rewritten whenever the port changes; certificates only when missing
    # or unfit (see pki.ensure_pki).
    made = [p.name for p in written if p.suffix in (".pem", ".key")]
    log.info("certificates in %s: %s", pki_dir, f"made {', '.join(made)}" if made else "reused")
    kubeconfig = data_dir / "kubeconfig"
    shutil.copyfile(pki.kubeconfig_path(pki_dir, "admin"), kubeconfig)
    kubeconfig.chmod(0o600)

    log.info("kubelet runtime: %s (%s)", runtime, why)
    proxy = opts.proxy
    if proxy and os.geteuid() != 0:
        log.warning(
            "not root: the proxy (which must route the service range on this host) "
            "is not started, so Services are not reachable from this host"
        )
        proxy = False
    try:
        if bridge:
            # Pods of every node reach it through their node's proxy (the kube-dns Service
            # at 10.96.0.10): on this node's address, which every node reaches.
            dns_address = node_ip(opts)
        else:
            dns_address = await trio.to_thread.run_sync(
                dns_listen_address, runtime, opts.docker_network or DEFAULT_DOCKER_NETWORK
            )
        dns_port, dns_metrics = clusterdns.pick_ports(dns_address, opts.port == 0)
    except clusterdns.ClusterDnsError as e:
        raise UpError(f"cluster DNS: {e}") from None
    ports = {**ports, "dns": dns_port, "dns-metrics": dns_metrics}
    if not proxy:
        log.warning(
            "cluster DNS needs the proxy (the kube-dns Service at %s): pods get the "
            "host's resolvers; k8slite-dns answers on %s port %d from this host",
            kubedns.CLUSTER_IP,
            dns_address,
            dns_port,
        )
    before = runstate.read(data_dir)
    previous_join = before.join_command if before is not None else ""
    me = os.getpid()
    info = ClusterInfo(
        str(data_dir),
        url,
        node,
        runtime,
        ports,
        proxy,
        opts.nodes,
        me,
        supervisor=ProcessRecord.of(
            me, sys.argv, str(data_dir / "logs" / "up.log") if opts.background else ""
        ),
        docker_network=opts.docker_network,
        dns_address=dns_address,
        detached=opts.background,
        single_process=opts.single_process,
        pod_network=(
            f"{opts.pod_network_cidr} {opts.pod_network_backend}"
            if opts.pod_network == "bridge"
            else ""
        ),
    )
    runstate.write(data_dir, info)
    (data_dir / "prometheus.yml").write_text(prometheus_config(data_dir, ports, proxy, dns_address))

    def record(c: Component) -> None:
        assert c.proc is not None
        info.components[c.name] = ProcessRecord.of(c.proc.pid, c.argv, str(c.log_path))
        info.components[c.name].restarts = c.restarts
        runstate.write(data_dir, info)

    apiserver, rest = components(opts, data_dir, node, runtime, ports, proxy, dns_address)
    shared_log = None
    if opts.single_process:
        # The supervisor sees one child: it starts, restarts and stops it as the API server.
        apiserver, rest = single_process(apiserver, rest, data_dir / "logs")
        shared_log = apiserver.log_path
    # What serves the API, in start order: the API server; with --ha etcd, three API
    # servers and the balancer in front of them, and second controller manager and scheduler.
    control = [apiserver]
    if opts.ha:
        from k8slite.cmd import ha

        control, rest = ha.control_plane(apiserver, rest, data_dir, ports, MONITORING_IDENTITY)
    try:
        async with trio.open_nursery() as nursery:
            for c in control:
                nursery.start_soon(supervise, c, record)
            try:
                await wait_ready(url, pki_dir / "ca.pem")
            except trio.TooSlowError:
                raise UpError(
                    f"the API server did not become ready at {url}; "
                    + "; ".join(
                        f"{c.name}'s log {c.log_path} ends with:\n{_tail(c.log_path)}"
                        for c in control
                    )
                ) from None
            log.info("API server ready at %s", url)
            try:
                await clusterdns.publish(
                    url, _admin_context(pki_dir), dns_address, dns_port, dns_metrics
                )
            except (clusterdns.ClusterDnsError, httpx.HTTPError) as e:
                raise UpError(f"cluster DNS: {e}") from None
            try:
                await clustermetrics.publish(
                    url, _admin_context(pki_dir), "127.0.0.1", ports["metrics-server"]
                )
            except (clustermetrics.ClusterMetricsError, httpx.HTTPError) as e:
                raise UpError(f"resource metrics: {e}") from None
            try:
                await publish_pod_network(url, pki_dir, opts)
            except (clusterconfig.ClusterConfigError, httpx.HTTPError) as e:
                raise UpError(f"pod network: {e}") from None
            for c in rest:
                nursery.start_soon(supervise, c, record)
            await wait_started(
                url,
                pki_dir,
                node,
                health_urls(ports, proxy, dns_address),
                data_dir / "logs",
                opts.wait,
                shared_log,
            )
            if opts.dashboard:
                port = 0 if opts.port == 0 else opts.dashboard_port
                # The Metrics page scrapes the scheduler where this cluster serves it.
                scheduler = f"https://127.0.0.1:{ports['scheduler']}/metrics"
                info.dashboard = (
                    await nursery.start(serve_beside, kubeconfig, port, scheduler) or ""
                )
            if opts.join_token:
                try:
                    info.join_command = await create_join_command(
                        url, pki_dir, join_server(opts, ports["apiserver"]), previous_join
                    )
                except httpx.HTTPError as e:
                    log.warning(
                        "could not create a bootstrap token for joining nodes: %s; once the "
                        "cluster is up, `k8slite token create --print-join-command` makes one",
                        e,
                    )
            info.state = "ready"
            runstate.write(data_dir, info)
            if opts.background:
                log.info("the cluster is up")
            else:
                print("\n".join(welcome(info, opts.data_dir)), flush=True)
                print(
                    f"Press Ctrl-C (or run `{command('stop', opts.data_dir)}`) to stop.",
                    flush=True,
                )
    finally:
        with trio.CancelScope(shield=True):
            await shutdown(
                control, rest, runtime, node, data_dir, opts.docker_network, opts.pod_network
            )
            info.state, info.components = "stopped", {}
            runstate.write(data_dir, info)


async def publish_pod_network(url: str, pki_dir: Path, opts: UpOptions) -> None:
    """kube-system/k8slite-network for joining nodes: the pod network they join, or none."""
    if opts.pod_network == "bridge":
        config = clusterconfig.PodNetworkConfig(opts.pod_network_cidr, opts.pod_network_backend)
        await clusterconfig.publish(url, _admin_context(pki_dir), config)
    else:
        await clusterconfig.remove(url, _admin_context(pki_dir))


def server_sans(opts: UpOptions) -> list[str]:
    """The serving certificate's extra names: the advertised address, and the bound one
    when it is a specific address (other hosts reach the API server there)."""
    sans = [opts.advertise_address] if opts.advertise_address else []
    if opts.bind_address not in ("127.0.0.1", "0.0.0.0", "::", "::1", ""):
        sans.append(opts.bind_address)
    return sans


def local_server(opts: UpOptions, port: int) -> str:
    """Where this host's components reach the API server: loopback, unless it listens on
    one specific address only."""
    host = "127.0.0.1" if opts.bind_address in ("0.0.0.0", "::", "") else opts.bind_address
    return f"https://{f'[{host}]' if ':' in host else host}:{port}"


def join_server(opts: UpOptions, port: int) -> str:
    """The address a joining node uses: the advertised one, else the bound one, else
    loopback (which only nodes on this host reach)."""
    host = opts.advertise_address or (
        opts.bind_address if opts.bind_address not in ("0.0.0.0", "::", "") else "127.0.0.1"
    )
    return f"https://{f'[{host}]' if ':' in host else host}:{port}"


async def create_join_command(url: str, pki_dir: Path, server: str, previous: str = "") -> str:
    """The `k8slite join` command for a bootstrap token: the previous run's, should its
    token still be there for an hour more (a restarted cluster does not pile up tokens),
    else a new one, as kubeadm init makes (24 h, signing and authentication, the default
    node group)."""
    from k8slite import bootstraptoken as bt
    from k8slite.cmd import token as tokens  # imports this module: not at the top

    ca_pem = (pki_dir / "ca.pem").read_bytes()
    now = dt.datetime.now(dt.UTC)
    async with httpx.AsyncClient(verify=_admin_context(pki_dir), timeout=10) as client:
        reused = re.search(r"--token (\S+)", previous)
        if reused and previous == tokens.join_command(server, reused[1], ca_pem):
            parsed = bt.parse(reused[1])
            if parsed is not None:
                r = await client.get(
                    f"{url}/api/v1/namespaces/{bt.NAMESPACE}/secrets/{bt.secret_name(parsed[0])}"
                )
                old = bt.from_secret(r.json()) if r.status_code == 200 else None
                at = old.expires_at() if old is not None else None
                lasting = at is None or at > now + dt.timedelta(hours=1)
                if old is not None and old.token == reused[1] and lasting:
                    return previous
        token = tokens.new_token(
            None,
            24 * 3600,
            list(bt.USAGES),
            [bt.DEFAULT_NODE_GROUP],
            "The default bootstrap token generated by 'k8slite up'.",
            now,
        )
        r = await client.post(
            f"{url}/api/v1/namespaces/{bt.NAMESPACE}/secrets", json=token.to_secret()
        )
        r.raise_for_status()
    return tokens.join_command(server, token.token, ca_pem)


def command(name: str, data_dir: Path) -> str:
    """`k8slite NAME`, with --data-dir unless it is the default."""
    if data_dir == Path(DEFAULT_DATA_DIR):
        return f"k8slite {name}"
    return f"k8slite {name} --data-dir {shlex.quote(str(data_dir.resolve()))}"


def welcome(info: ClusterInfo, data_dir: Path) -> list[str]:
    """What `k8slite up` prints once the cluster is up."""
    abs_dir = Path(info.data_dir)
    lines = [
        f"K8s-Lite is up: node {info.node} is Ready ({info.runtime} runtime), "
        f"API server at {info.server}.",
        f"Data in {abs_dir}, logs in {abs_dir / 'logs'}.",
        f"Prometheus scrape config: {abs_dir / 'prometheus.yml'}.",
    ]
    if "apiserver-1" in info.ports:
        lines.append(
            "High availability: three etcd members and three API servers behind a local "
            "load balancer at that address; two controller managers and two schedulers."
        )
    if info.single_process:
        lines.append(
            "Single process: every component runs as a task of one process "
            f"(`k8slite logs {ALL_IN_ONE}`)."
        )
    if info.runtime == "process" and info.pod_network:
        lines.append("Pods run as host processes, each in a network namespace of its own.")
    elif info.runtime == "process":
        lines.append("Pods run as host processes, sharing its ports: see the WARNING above.")
    dns_at = f"k8slite-dns on {info.dns_address} port {info.ports['dns']}"
    if info.proxy:
        lines.append(f"Cluster DNS: {kubedns.CLUSTER_IP} (Service kube-system/kube-dns), {dns_at}.")
    else:
        lines.append(
            f"Cluster DNS: {dns_at}; pods do not use it: it needs the proxy (run as root)."
        )
    if info.pod_network:
        lines.append(
            f"Pod network: {info.pod_network} (each node's pods on its pod CIDR, routed "
            "between nodes by k8slite netagent; joining nodes run it too)."
        )
    if info.dashboard:
        lines.append(f"Dashboard: {info.dashboard}")
    lines += [
        "",
        f"  export KUBECONFIG={abs_dir / 'kubeconfig'}",
        "  kubectl get nodes",
        "",
    ]
    if shutil.which("kubectl") is None and Path(script("kubectl")).exists():
        lines.insert(-1, f"(kubectl is {script('kubectl')})")
    if info.join_command:
        lines += [
            "To add a node, run on it (the token lasts 24 h; `k8slite token create "
            "--print-join-command` makes another):",
            "",
            f"  {info.join_command}",
            "",
        ]
        if "--server https://127.0.0.1:" in info.join_command:
            lines.insert(
                -1,
                "(the API server listens on loopback only: for other hosts, run `k8slite up` "
                "with --bind-address 0.0.0.0 --advertise-address THIS_HOST_IP)",
            )
    lines += [
        f"Status: {command('status', data_dir)}",
        f"Logs:   {command('logs', data_dir)} COMPONENT [-f]",
        f"Merge into ~/.kube/config: {command('kubeconfig', data_dir)} --merge",
    ]
    return lines


async def shutdown(
    control: list[Component],
    rest: list[Component],
    runtime: str,
    node: str,
    data_dir: Path,
    network: str | None,
    pod_network: str = "host",
) -> None:
    """Stop everything: the components first, then what serves the API (the API server;
    with --ha the balancer, the API servers, then etcd), then the pods."""
    running = [c for c in [*reversed(rest), *reversed(control)] if c.proc is not None]
    if running:
        log.info("stopping %s", ", ".join(c.name for c in running))
    await stop(list(reversed(rest)))
    for group in _stop_groups(control):
        await stop(group)
    await stop_pods(runtime, node, data_dir, network, pod_network)
    log.info("stopped")


async def _until_signal(opts: UpOptions) -> None:
    async with trio.open_nursery() as nursery:
        # SIGHUP too: the children have sessions of their own, so a closed terminal must
        # stop them through us.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:

            async def run() -> None:
                await up(opts)
                nursery.cancel_scope.cancel()

            nursery.start_soon(run)
            async for signum in signals:
                log.info("%s received, stopping the cluster", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def _stop_groups(control: list[Component]) -> list[list[Component]]:
    """The control plane in the order to stop it: the balancer, the API servers, etcd."""
    groups: list[list[Component]] = [[], [], []]
    for c in control:
        groups[0 if c.name == "load-balancer" else 2 if c.name.startswith("etcd") else 1].append(c)
    return [g for g in groups if g]


def _storage_flags(opts: UpOptions) -> list[str]:
    """The API server's storage: RocksDB in DIR/db, or the etcd cluster given."""
    if not opts.etcd_servers:
        return []
    return [
        "--storage-backend=etcd3",
        "--etcd-servers=" + ",".join(opts.etcd_servers),
        *opts.etcd_tls_flags,
    ]


def parse_args(argv: list[str] | None) -> UpOptions:
    p = argparse.ArgumentParser(prog="k8slite up", description=__doc__)
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(DEFAULT_DATA_DIR),
        help="database, certificates, logs and kubeconfig (default ./.k8slite); "
        "a second run reuses them",
    )
    p.add_argument(
        "-d",
        "--detach",
        action="store_true",
        help="return once the cluster is up, leaving it running in the background "
        "(its supervisor's log: DIR/logs/up.log); `k8slite stop` stops it",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=START_TIMEOUT,
        metavar="SECONDS",
        help="how long the components may take to serve /healthz and the node to be Ready, "
        f"once the API server is (default {START_TIMEOUT:.0f})",
    )
    # What --detach runs in the background: the supervisor itself.
    p.add_argument("--background", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--port",
        type=int,
        default=8080,
        help="the API server's HTTPS port; 0 picks free ports for it and for every "
        "other component (several clusters side by side)",
    )
    p.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="the kubelet's runtime (default: docker when an engine answers and "
        "has the images, else process)",
    )
    p.add_argument(
        "--nodes",
        type=int,
        default=0,
        metavar="N",
        help="add N hollow (simulated) nodes besides the real one",
    )
    p.add_argument("--proxy-mode", choices=("userspace", "nftables"), default="userspace")
    p.add_argument(
        "--node-name", default="", help="the kubelet's node name (default: the host name)"
    )
    p.add_argument(
        "--docker-network",
        help="the Docker network of the pods (default: the kubelet's, k8slite-pods)",
    )
    p.add_argument(
        "--upstream-dns",
        metavar="IP[:PORT],...",
        help="where cluster DNS forwards names outside the cluster "
        "(default: the host's resolvers; '' for none)",
    )
    p.add_argument(
        "--no-proxy",
        dest="proxy",
        action="store_false",
        help="do not run the proxy (it needs root: it routes the service range)",
    )
    p.add_argument(
        "--ha",
        action="store_true",
        help="a three-way control plane on this machine: three etcd members, three API "
        "servers behind a local load balancer on --port, two controller managers and "
        "two schedulers",
    )
    etcd = p.add_argument_group("storage on an existing etcd cluster (default: RocksDB in DIR/db)")
    etcd.add_argument(
        "--etcd-servers",
        default="",
        metavar="URL,...",
        help="store every object in this etcd cluster (the API server's --etcd-servers)",
    )
    for flag, what in (
        ("--etcd-cafile", "the CA bundle that verifies etcd"),
        ("--etcd-certfile", "the API server's client certificate for etcd"),
        ("--etcd-keyfile", "its key"),
        ("--etcd-prefix", "where the keys live in etcd (default /registry)"),
    ):
        etcd.add_argument(flag, help=what)
    p.add_argument(
        "--bind-address",
        default="127.0.0.1",
        help="the address the API server listens on (0.0.0.0: every interface, so that "
        "other hosts can join)",
    )
    p.add_argument(
        "--advertise-address",
        default="",
        help="the address other hosts reach the API server at: in its serving certificate, "
        "the kubernetes Service's endpoints, cluster-info and the join command",
    )
    net = p.add_argument_group("a pod network across hosts (docs/networking.md)")
    net.add_argument(
        "--pod-network",
        choices=("host", "bridge"),
        default="host",
        help="bridge: every node (this one and those that join) gets a pod CIDR of "
        "--pod-network-cidr, its pods addresses from it (process pods in network namespaces "
        "of their own), and runs the node network agent that routes between nodes "
        "(needs root); host: pods share the node's network or one Docker network (default)",
    )
    net.add_argument(
        "--pod-network-cidr",
        default=DEFAULT_POD_NETWORK_CIDR,
        metavar="CIDR",
        help=f"the whole pod network, as kubeadm's flag (default {DEFAULT_POD_NETWORK_CIDR})",
    )
    net.add_argument(
        "--node-cidr-mask-size",
        type=int,
        default=24,
        help="the size of each node's pod CIDR (default 24)",
    )
    net.add_argument(
        "--pod-network-backend",
        choices=("host-gw", "vxlan"),
        default="host-gw",
        help="host-gw: route pod CIDRs to nodes' addresses (nodes on one L2 segment); "
        "vxlan: through a VXLAN device (any IP network) (default host-gw)",
    )
    p.add_argument(
        "--no-join-token",
        dest="join_token",
        action="store_false",
        help="do not create a bootstrap token (nor print the `k8slite join` command)",
    )
    p.add_argument(
        "--single-process",
        action="store_true",
        help="run the API server, controller manager, scheduler, kubelet, proxy, DNS and "
        "metrics server as tasks of one process (`k8slite all-in-one`), each with its own "
        "ports and credentials, instead of a process each: a smaller footprint",
    )
    p.add_argument(
        "--no-dashboard",
        dest="dashboard",
        action="store_false",
        help="do not serve the web dashboard (k8slite dashboard) beside the cluster",
    )
    p.add_argument(
        "--dashboard-port",
        type=int,
        default=8001,
        help="the dashboard's port on 127.0.0.1 (with --port 0: a free one)",
    )
    p.add_argument(
        "-v",
        "--v",
        dest="verbosity",
        type=int,
        default=0,
        help="log verbosity passed to every component (4 or more: debug)",
    )
    a = p.parse_args(argv)
    if a.wait <= 0:
        p.error("--wait must be more than 0")
    if a.nodes < 0:
        p.error("--nodes must be 0 or more")
    if (a.etcd_cafile or a.etcd_certfile or a.etcd_keyfile or a.etcd_prefix) and not (
        a.etcd_servers
    ):
        p.error("the --etcd-* flags need --etcd-servers")
    if a.ha and a.single_process:
        p.error("--ha runs several API servers: it does not go with --single-process")
    if a.ha and a.etcd_servers:
        p.error("--ha runs its own etcd cluster: it does not go with --etcd-servers")
    if a.node_name and not valid_node_name(a.node_name):
        p.error(f"--node-name {a.node_name!r} is not a lowercase RFC 1123 subdomain")
    try:
        cidr = ipaddress.IPv4Network(a.pod_network_cidr)
    except ValueError as e:
        p.error(f"--pod-network-cidr {a.pod_network_cidr!r}: {e}")
    if not cidr.prefixlen < a.node_cidr_mask_size <= 30:
        p.error(f"--node-cidr-mask-size must be more than {cidr.prefixlen} and at most 30")
    return UpOptions(
        data_dir=a.data_dir,
        port=a.port,
        runtime=a.runtime,
        nodes=a.nodes,
        proxy_mode=a.proxy_mode,
        node_name=a.node_name,
        docker_network=a.docker_network,
        proxy=a.proxy,
        verbosity=a.verbosity,
        wait=a.wait,
        detach=a.detach,
        background=a.background,
        upstream_dns=a.upstream_dns,
        dashboard=a.dashboard,
        dashboard_port=a.dashboard_port,
        ha=a.ha,
        bind_address=a.bind_address,
        advertise_address=a.advertise_address,
        join_token=a.join_token,
        single_process=a.single_process,
        pod_network=a.pod_network,
        pod_network_cidr=str(cidr),
        node_cidr_mask_size=a.node_cidr_mask_size,
        pod_network_backend=a.pod_network_backend,
        etcd_servers=[u.strip() for u in a.etcd_servers.split(",") if u.strip()],
        etcd_tls_flags=[
            f"--{name.replace('_', '-')}={value}"
            for name in ("etcd_cafile", "etcd_certfile", "etcd_keyfile", "etcd_prefix")
            if (value := getattr(a, name))
        ],
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    opts = parse_args(argv)
    if opts.detach and not opts.background:
        from k8slite.cmd.detach import detach

        return detach(opts, argv)
    setup_logging()
    errors: list[UpError] = []
    try:
        trio.run(_until_signal, opts)
    except* UpError as group:
        errors += [e for e in leaves(group) if isinstance(e, UpError)]
    for e in errors:
        print(f"k8slite up: error: {e}", file=sys.stderr)
    return 1 if errors else 0
