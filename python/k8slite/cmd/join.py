"""k8slite join: add this host to a cluster as a node, as `kubeadm join` does.

1. Discovery (tokendiscovery.py): the cluster's CA from kube-public/cluster-info, trusted
   through the token's signature and --discovery-token-ca-cert-hash. On failure nothing is
   written.
2. TLS bootstrap (kubelet/clientcert.py): a bootstrap kubeconfig with the token, then a
   CertificateSigningRequest for the node's client certificate (CN system:node:NAME, O
   system:nodes), approved by csrapproving and issued by csrsigning; the kubelet's
   kubeconfig names the certificate file, which the kubelet rotates before it expires.
3. The node's components (node_components) under the same supervisor as `k8slite up`, in
   the background: the kubelet and, as root, the proxy (as the node: see
   apiserver/clusterinfo.py JOIN_BINDINGS) and, when the cluster has a pod network
   (kube-system/k8slite-network, which `k8slite up --pod-network bridge` publishes and the
   node reads with its new credentials: network/clusterconfig.py), the node network agent,
   with the kubelet's --pod-network bridge. `k8slite join` returns once the node is
   Ready; `k8slite stop --data-dir DIR` stops it, `k8slite status` and `logs` see it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import httpx
import trio

from k8slite import datadir, pki
from k8slite.client import ApiConnectionError, ApiError, load_kubeconfig
from k8slite.cmd import runstate
from k8slite.cmd.common import leaves
from k8slite.cmd.detach import run_in_background
from k8slite.cmd.runstate import ClusterInfo, ProcessRecord
from k8slite.cmd.up import (
    NETAGENT_PORT,
    RUNTIMES,
    Component,
    UpError,
    detect_runtime,
    netagent_component,
    node_ready,
    restart,
    script,
    stop,
    stop_left_behind,
    stop_pods,
    supervise,
    valid_node_name,
    wait_healthy,
)
from k8slite.cmd.up import default_node_name as host_node_name
from k8slite.component.logging import setup_logging
from k8slite.dns import kubedns
from k8slite.freeport import free_port
from k8slite.kubelet import clientcert
from k8slite.network import clusterconfig
from k8slite.network.clusterconfig import PodNetworkConfig
from k8slite.tokendiscovery import DiscoveryError, discover

log = logging.getLogger("k8slite.join")

PROG = "k8slite join"
# As `k8slite up`'s, so that `k8slite status`, `logs` and `stop` find the node unflagged.
DEFAULT_DATA_DIR = ".k8slite"
# Upstream's ports of a node's components.
NODE_PORTS = {
    "kubelet": 10250,
    "kubelet-healthz": 10248,
    "proxy-metrics": 10249,
    "proxy-healthz": 10256,
    "netagent": NETAGENT_PORT,
}
BOOTSTRAP_KUBECONFIG = "bootstrap-kubelet.kubeconfig"
KUBELET_KUBECONFIG = "kubelet.kubeconfig"
# How long the kubelet and proxy may take to serve and the node to turn Ready.
START_TIMEOUT = 120.0


class JoinError(Exception):
    """The node cannot join; the message says why."""


@dataclass
class JoinOptions:
    server: str
    token: str
    ca_cert_hashes: list[str]
    skip_ca_verification: bool
    node_name: str
    runtime: str | None
    data_dir: Path
    node_ip: str
    kubelet_port: int
    proxy: bool
    proxy_mode: str
    docker_network: str | None
    discovery_timeout: float
    tls_bootstrap_timeout: float
    wait: float
    foreground: bool
    background: bool
    verbosity: int


def parse_args(argv: list[str]) -> JoinOptions:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--server", required=True, help="the API server, https://HOST:PORT")
    p.add_argument("--token", required=True, help="a bootstrap token, <id>.<secret>")
    p.add_argument(
        "--discovery-token-ca-cert-hash",
        action="append",
        default=[],
        metavar="sha256:HEX",
        help="the pinned public key of the cluster CA (`k8slite up` and `k8slite token "
        "create --print-join-command` print it); repeatable",
    )
    p.add_argument(
        "--discovery-token-unsafe-skip-ca-verification",
        action="store_true",
        help="trust the CA cluster-info names without a pinned hash (the token's signature "
        "alone vouches for it)",
    )
    p.add_argument("--node-name", default="", help="default: the host name")
    p.add_argument("--node-ip", default="", help="default: this host's address toward --server")
    p.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="the kubelet's runtime (default: docker when an engine answers and has the "
        "images, else process)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(DEFAULT_DATA_DIR),
        help=f"certificates, kubeconfigs, logs of this node (default ./{DEFAULT_DATA_DIR})",
    )
    p.add_argument(
        "--kubelet-port",
        type=int,
        default=NODE_PORTS["kubelet"],
        help="the kubelet API's port; 0 picks free ports for it, its healthz and the proxy's "
        "(several nodes on one host)",
    )
    p.add_argument(
        "--no-proxy",
        dest="proxy",
        action="store_false",
        help="do not run the proxy (it needs root: it routes the service range)",
    )
    p.add_argument("--proxy-mode", choices=("userspace", "nftables"), default="userspace")
    p.add_argument("--docker-network", help="the Docker network of the pods")
    p.add_argument(
        "--discovery-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long to wait for cluster-info to carry the token's signature (default 300)",
    )
    p.add_argument(
        "--tls-bootstrap-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long to wait for the client certificate (default 300)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=START_TIMEOUT,
        metavar="SECONDS",
        help=f"how long the node may take to turn Ready (default {START_TIMEOUT:.0f})",
    )
    p.add_argument(
        "--foreground",
        action="store_true",
        help="supervise the node's components in this terminal (Ctrl-C stops them) rather "
        "than in the background",
    )
    p.add_argument("--background", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-v", "--v", dest="verbosity", type=int, default=0)
    a = p.parse_args(argv)
    if not a.server.startswith("https://"):
        p.error("--server must be https://HOST:PORT")
    if a.node_name and not valid_node_name(a.node_name):
        p.error(f"--node-name {a.node_name!r} is not a lowercase RFC 1123 subdomain")
    return JoinOptions(
        server=a.server.rstrip("/"),
        token=a.token,
        ca_cert_hashes=a.discovery_token_ca_cert_hash,
        skip_ca_verification=a.discovery_token_unsafe_skip_ca_verification,
        node_name=a.node_name or host_node_name(),
        runtime=a.runtime,
        data_dir=a.data_dir,
        node_ip=a.node_ip,
        kubelet_port=a.kubelet_port,
        proxy=a.proxy,
        proxy_mode=a.proxy_mode,
        docker_network=a.docker_network,
        discovery_timeout=a.discovery_timeout,
        tls_bootstrap_timeout=a.tls_bootstrap_timeout,
        wait=a.wait,
        foreground=a.foreground,
        background=a.background,
        verbosity=a.verbosity,
    )


def address_toward(server: str) -> str:
    """This host's address on the route to the server (a UDP connect sends nothing)."""
    host = urlsplit(server).hostname or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((host, urlsplit(server).port or 443))
        return str(s.getsockname()[0])


def pick_ports(kubelet_port: int) -> dict[str, int]:
    if kubelet_port == 0:
        return {name: free_port() for name in NODE_PORTS}
    return {**NODE_PORTS, "kubelet": kubelet_port}


# --------------------------------------------------------------------------- the files


def paths(data_dir: Path) -> dict[str, Path]:
    p = data_dir / "pki"
    return {
        "pki": p,
        "ca": p / "ca.pem",
        "bootstrap": data_dir / BOOTSTRAP_KUBECONFIG,
        "kubeconfig": data_dir / KUBELET_KUBECONFIG,
        "serving": p / "serving.pem",
        "serving-key": p / "serving.key",
        "current": p / clientcert.CURRENT,
    }


def joined(data_dir: Path) -> bool:
    """Whether this data dir already holds a node's credentials that still work."""
    f = paths(data_dir)
    return clientcert.usable(f["pki"], f["kubeconfig"]) and f["serving"].exists()


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def prepare(opts: JoinOptions, data_dir: Path) -> None:
    """Discovery and TLS bootstrap: DIR's CA, kubeconfigs, certificates. Nothing is written
    unless discovery trusts the cluster."""
    _say(f"[discovery] asking {opts.server} for cluster-info (its CA not yet trusted)")
    try:
        found = discover(
            opts.server,
            opts.token,
            opts.ca_cert_hashes,
            opts.skip_ca_verification,
            opts.discovery_timeout,
        )
    except DiscoveryError as e:
        raise JoinError(str(e)) from None
    pinned = "pinned" if opts.ca_cert_hashes else "NOT pinned (unsafe skip)"
    _say(
        "[discovery] cluster-info is signed by the token and its CA is "
        f"{pinned}: trusting the API server at {found.server}"
    )
    f = paths(data_dir)
    datadir.private_data_dir(data_dir)
    pki.secure_dir(f["pki"])
    clientcert.write_private(f["ca"], found.ca_pem.decode())
    f["ca"].chmod(0o644)
    clientcert.write_private(
        f["bootstrap"],
        clientcert.bootstrap_kubeconfig_yaml(found.server, found.ca_pem, opts.token),
    )
    node_ip = opts.node_ip or address_toward(opts.server)
    # The kubelet's serving certificate: self-signed, as upstream's kubelet makes without
    # --tls-cert-file (the API server does not verify kubelets' certificates by default).
    pki.self_signed(f["pki"], node_ip)
    _say(
        f"[kubelet-start] TLS bootstrap: asking for system:node:{opts.node_name}'s client "
        "certificate (CertificateSigningRequest, signer "
        "kubernetes.io/kube-apiserver-client-kubelet)"
    )
    try:
        trio.run(
            clientcert.bootstrap,
            load_kubeconfig(f["bootstrap"]),
            f["kubeconfig"],
            f["pki"],
            opts.node_name,
            opts.tls_bootstrap_timeout,
        )
    except clientcert.BootstrapError as e:
        raise JoinError(f"TLS bootstrap: {e}") from None
    except ApiError as e:
        raise JoinError(f"TLS bootstrap: the API server refused the request: {e}") from None
    except ApiConnectionError as e:
        raise JoinError(f"TLS bootstrap: cannot reach {opts.server}: {e}") from None
    _say(f"[kubelet-start] certificate issued: {f['current']}; kubeconfig {f['kubeconfig']}")


# --------------------------------------------------------------------------- supervision


def node_components(
    opts: JoinOptions,
    data_dir: Path,
    node_ip: str,
    runtime: str,
    ports: dict[str, int],
    network: PodNetworkConfig | None = None,
) -> list[Component]:
    """The node's components in start order; with the cluster's pod network, the kubelet
    puts pods on it and the node network agent joins it."""
    f, logs = paths(data_dir), data_dir / "logs"
    verbosity = ["-v", str(opts.verbosity)] if opts.verbosity else []
    components = [
        Component(
            "kubelet",
            [
                script("k8slite-kubelet"),
                "--node-name",
                opts.node_name,
                "--runtime",
                runtime,
                "--kubeconfig",
                str(f["kubeconfig"]),
                # A certificate that expired while the node was stopped is bootstrapped
                # again (while the token lasts), as upstream's kubelet does.
                "--bootstrap-kubeconfig",
                str(f["bootstrap"]),
                "--rotate-certificates",
                "--cert-dir",
                str(f["pki"]),
                "--pki-dir",
                str(f["pki"]),
                "--tls-cert-file",
                str(f["serving"]),
                "--tls-private-key-file",
                str(f["serving-key"]),
                "--client-ca-file",
                str(f["ca"]),
                "--root-dir",
                str(data_dir / "kubelet" / opts.node_name),
                "--node-ip",
                node_ip,
                "--address",
                node_ip,
                "--port",
                str(ports["kubelet"]),
                "--healthz-port",
                str(ports["kubelet-healthz"]),
                *(["--docker-network", opts.docker_network] if opts.docker_network else []),
                *(["--pod-network", "bridge"] if network else []),
                *(["--cluster-dns", kubedns.CLUSTER_IP] if opts.proxy else []),
                *verbosity,
            ],
            logs / "kubelet.log",
        )
    ]
    if opts.proxy:
        components.append(
            Component(
                "proxy",
                [
                    script("k8slite-proxy"),
                    # As the node: the kubelet's kubeconfig, whose rotated certificate the
                    # proxy's client loads again when it changes.
                    "--kubeconfig",
                    str(f["kubeconfig"]),
                    "--proxy-mode",
                    opts.proxy_mode,
                    "--hostname-override",
                    opts.node_name,
                    "--metrics-bind-address",
                    f"127.0.0.1:{ports['proxy-metrics']}",
                    "--healthz-bind-address",
                    f"127.0.0.1:{ports['proxy-healthz']}",
                    *(["--cluster-cidr", network.cluster_cidr] if network else []),
                    *verbosity,
                ],
                logs / "proxy.log",
            )
        )
    if network is not None:
        components.append(
            netagent_component(
                ["--kubeconfig", str(f["kubeconfig"])],
                opts.node_name,
                network,
                ports["netagent"],
                logs,
                verbosity,
            )
        )
    return components


def health_urls(ports: dict[str, int], proxy: bool, netagent: bool = False) -> dict[str, str]:
    urls = {"kubelet": f"http://127.0.0.1:{ports['kubelet-healthz']}/healthz"}
    if proxy:
        urls["proxy"] = f"http://127.0.0.1:{ports['proxy-healthz']}/healthz"
    if netagent:
        urls["netagent"] = f"http://127.0.0.1:{ports['netagent']}/healthz"
    return urls


async def read_pod_network(server: str, data_dir: Path, timeout: float) -> PodNetworkConfig | None:
    """The cluster's pod network (kube-system/k8slite-network), read as the node; retried
    while the API server does not answer."""
    with trio.move_on_after(timeout):
        while True:
            try:
                return await trio.to_thread.run_sync(
                    clusterconfig.read, server, node_context(data_dir)
                )
            except (clusterconfig.ClusterConfigError, OSError, ssl.SSLError) as e:
                log.warning("%s; retrying", e)
            await trio.sleep(1.0)
    raise UpError(f"could not read the cluster's pod network settings within {timeout:.0f}s")


def serving_issued(data_dir: Path, node_ip: str) -> bool:
    """Whether the kubelet's serving certificate is the cluster CA's, for node_ip, and has
    a while to live (else it is the self-signed one `prepare` made)."""
    from datetime import UTC, datetime

    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    f = paths(data_dir)
    try:
        cert = x509.load_pem_x509_certificate(f["serving"].read_bytes())
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(f["ca"].read_bytes()))
        ips = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        addresses = {str(ip) for ip in ips.get_values_for_type(x509.IPAddress)}
    except (OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    left = cert.not_valid_after_utc - datetime.now(UTC)
    return node_ip in addresses and left > pki.RENEW_BEFORE


async def serve_with_issued_certificate(
    opts: JoinOptions, data_dir: Path, node_ip: str, kubelet: Component
) -> None:
    """Upstream's serverTLSBootstrap, once the Node reports its addresses: a serving
    certificate from the cluster CA (signer kubernetes.io/kubelet-serving, asked for as the
    node), so that the API server, which checks kubelets' certificates against the CA,
    reaches this kubelet for logs, exec and port-forward; then the kubelet serves with it."""
    from k8slite.client import ApiClient

    f = paths(data_dir)
    try:
        async with ApiClient(load_kubeconfig(f["kubeconfig"])) as client:
            cert, key = await clientcert.request_serving_certificate(
                client, opts.node_name, [node_ip], min(opts.tls_bootstrap_timeout, 60.0)
            )
    except (clientcert.BootstrapError, ApiError, ApiConnectionError) as e:
        # The node works without it; only the API server's calls to its kubelet fail.
        log.warning(
            "no serving certificate from the cluster CA (kubectl logs and exec will not reach "
            "this node): %s",
            e,
        )
        return
    clientcert.write_private(f["serving-key"], key.decode())
    clientcert.write_private(f["serving"], cert.decode())
    log.info("kubelet serving certificate issued by the cluster CA; restarting the kubelet")
    old = kubelet.proc.pid if kubelet.proc is not None else None
    restart(kubelet)
    with trio.fail_after(START_TIMEOUT):
        while kubelet.proc is None or kubelet.proc.pid == old:
            await trio.sleep(0.05)


def node_context(data_dir: Path) -> ssl.SSLContext:
    """TLS as the node: the cluster CA, the kubelet's current client certificate."""
    f = paths(data_dir)
    ctx = ssl.create_default_context(cafile=str(f["ca"]))
    ctx.load_cert_chain(f["current"])
    return ctx


async def wait_node_ready(server: str, data_dir: Path, node: str, timeout: float) -> None:
    url = f"{server}/api/v1/nodes/{node}"
    with trio.fail_after(timeout):
        while True:
            # The context afresh each time: the certificate may rotate while we wait.
            try:
                async with httpx.AsyncClient(verify=node_context(data_dir), timeout=10) as c:
                    if node_ready(await c.get(url)):
                        return
            except (httpx.HTTPError, OSError, ssl.SSLError):
                pass
            await trio.sleep(0.2)


@contextlib.contextmanager
def _exclusive(data_dir: Path) -> Iterator[IO[str]]:
    """One supervisor per node data directory."""
    with (data_dir / "join.lock").open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UpError(f"another `k8slite join` supervises {data_dir}") from None
        yield f


async def run_node(opts: JoinOptions, data_dir: Path, runtime: str) -> None:
    """Supervise the node's components until cancelled; ClusterInfo in DIR/cluster.json."""
    datadir.private_tree(data_dir / "logs")
    with _exclusive(data_dir):
        previous = runstate.read(data_dir)
        if previous is not None:
            await trio.to_thread.run_sync(stop_left_behind, previous, data_dir)
        await _run_node(opts, data_dir, runtime)


async def _run_node(opts: JoinOptions, data_dir: Path, runtime: str) -> None:
    ports = pick_ports(opts.kubelet_port)
    node_ip = opts.node_ip or address_toward(opts.server)
    proxy = opts.proxy
    if proxy and os.geteuid() != 0:
        log.warning("not root: the proxy (which routes the service range) is not started")
        proxy = False
    opts.proxy = proxy
    network = await read_pod_network(opts.server, data_dir, opts.wait)
    if network is not None:
        if os.geteuid() != 0:
            raise UpError(
                f"the cluster's pod network ({network.cluster_cidr}, {network.backend}) needs "
                "root here: the node network agent makes a bridge, routes and nftables rules"
            )
        log.info(
            "the cluster's pod network: %s, %s backend (kube-system/%s)",
            network.cluster_cidr,
            network.backend,
            clusterconfig.NAME,
        )
    me = os.getpid()
    info = ClusterInfo(
        str(data_dir),
        opts.server,
        opts.node_name,
        runtime,
        ports,
        proxy,
        0,
        me,
        supervisor=ProcessRecord.of(
            me, sys.argv, str(data_dir / "logs" / "join.log") if opts.background else ""
        ),
        docker_network=opts.docker_network,
        detached=opts.background,
        joined=True,
        pod_network=f"{network.cluster_cidr} {network.backend}" if network else "",
    )
    runstate.write(data_dir, info)

    def record(c: Component) -> None:
        assert c.proc is not None
        info.components[c.name] = ProcessRecord.of(c.proc.pid, c.argv, str(c.log_path))
        info.components[c.name].restarts = c.restarts
        runstate.write(data_dir, info)

    components = node_components(opts, data_dir, node_ip, runtime, ports, network)
    began = trio.current_time()
    try:
        async with trio.open_nursery() as nursery:
            for c in components:
                nursery.start_soon(supervise, c, record)
            try:
                await wait_healthy(health_urls(ports, proxy, network is not None), opts.wait)
                await wait_node_ready(opts.server, data_dir, opts.node_name, opts.wait)
            except trio.TooSlowError:
                raise UpError(
                    f"node {opts.node_name} did not turn Ready within {opts.wait:.0f}s; "
                    f"see {data_dir / 'logs' / 'kubelet.log'}"
                ) from None
            log.info(
                "node %s is Ready (%.1fs after its kubelet started)",
                opts.node_name,
                trio.current_time() - began,
            )
            if not serving_issued(data_dir, node_ip):
                await serve_with_issued_certificate(opts, data_dir, node_ip, components[0])
                await wait_healthy(health_urls(ports, proxy, network is not None), opts.wait)
            info.state = "ready"
            runstate.write(data_dir, info)
            if not opts.background:
                print("\n".join(welcome(info, opts.data_dir)), flush=True)
    finally:
        with trio.CancelScope(shield=True):
            await stop(list(reversed(components)))
            await stop_pods(
                runtime,
                opts.node_name,
                data_dir,
                opts.docker_network,
                "bridge" if network is not None else "host",
            )
            info.state, info.components = "stopped", {}
            runstate.write(data_dir, info)
            log.info("stopped")


async def _until_signal(opts: JoinOptions, data_dir: Path, runtime: str) -> None:
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:

            async def run() -> None:
                await run_node(opts, data_dir, runtime)
                nursery.cancel_scope.cancel()

            nursery.start_soon(run)
            async for signum in signals:
                log.info("%s received, stopping the node", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def _data_dir_flag(data_dir: Path) -> str:
    if data_dir == Path(DEFAULT_DATA_DIR):
        return ""
    return f" --data-dir {data_dir.resolve()}"


def welcome(info: ClusterInfo, data_dir: Path) -> list[str]:
    flag = _data_dir_flag(data_dir)
    return [
        "",
        "This node has joined the cluster:",
        f"* node {info.node} is Ready ({info.runtime} runtime), its API server {info.server}",
        "* its client certificate was issued through a CertificateSigningRequest and is "
        "rotated before it expires",
        "",
        "Run 'kubectl get nodes' on the control plane to see this node.",
        f"Status: k8slite status{flag}    Logs: k8slite logs{flag} kubelet    "
        f"Stop: k8slite stop{flag}",
    ]


def _detach(opts: JoinOptions, argv: list[str], data_dir: Path) -> int:
    """The supervisor as a session of its own logging to DIR/logs/join.log; its log echoed
    here until the node is Ready (or the supervisor gives up)."""
    log_path = data_dir / "logs" / "join.log"
    datadir.private_tree(log_path.parent)
    started = run_in_background("join", argv, data_dir, log_path, PROG, "the node")
    if isinstance(started, int):
        return started
    info, pid = started
    print("\n".join(welcome(info, opts.data_dir)))
    print(f"It runs in the background: supervisor pid {pid}, its log {log_path}.")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    opts = parse_args(argv)
    data_dir = opts.data_dir.resolve()
    if opts.background:
        setup_logging(opts.verbosity)
        assert opts.runtime is not None
        return _supervise(opts, data_dir, opts.runtime)
    previous = runstate.read(data_dir)
    if (previous is not None and not previous.joined) or (
        data_dir / "pki" / "client-admin.pem"
    ).exists():
        print(
            f"{PROG}: error: {data_dir} holds a control plane (`k8slite up`'s): give the "
            "node a data directory of its own (--data-dir)",
            file=sys.stderr,
        )
        return 1
    if previous is not None and previous.running():
        print(
            f"{PROG}: error: a node already runs from {data_dir} (supervisor pid "
            f"{previous.pid}); `k8slite stop --data-dir {data_dir}` stops it",
            file=sys.stderr,
        )
        return 1
    try:
        if joined(data_dir):
            _say(f"[preflight] {data_dir} already holds this node's credentials: reusing them")
        else:
            prepare(opts, data_dir)
    except JoinError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    if opts.runtime is None:
        runtime, why = detect_runtime()
        _say(f"[kubelet-start] runtime {runtime} ({why})")
    else:
        runtime = opts.runtime
    if opts.foreground:
        setup_logging(opts.verbosity)
        return _supervise(opts, data_dir, runtime)
    return _detach(opts, [*argv, "--runtime", runtime], data_dir)


def _supervise(opts: JoinOptions, data_dir: Path, runtime: str) -> int:
    errors: list[UpError] = []
    try:
        trio.run(_until_signal, opts, data_dir, runtime)
    except* UpError as group:
        errors += [e for e in leaves(group) if isinstance(e, UpError)]
    for e in errors:
        print(f"{PROG}: error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
