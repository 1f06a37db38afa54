"""k8slite-kubelet: run the pods bound to one node on Docker, host processes, or nothing (fake)."""

from __future__ import annotations

import argparse
import socket
import sys
from dataclasses import replace
from pathlib import Path

import trio

from k8slite.client import ApiClient, ApiConnectionError, ApiError, load_kubeconfig
from k8slite.cmd.common import report_fatal, run_until_signal
from k8slite.component.flags import add_component_flags, duration
from k8slite.component.logging import setup_logging
from k8slite.kubelet.config import (
    KubeletConfig,
    parse_key_values,
    parse_node_labels,
    parse_taints,
)
from k8slite.kubelet.dns import default_resolv_conf
from k8slite.kubelet.kubelet import Kubelet
from k8slite.kubelet.runtime import RUNTIMES, make_runtime

# How long a client certificate request may wait for approval and issuance.
BOOTSTRAP_TIMEOUT = 300.0


def _port(text: str) -> int | None:
    value = int(text)
    return None if value < 0 else value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="k8slite-kubelet", description=__doc__)
    p.add_argument("--node-name", default=socket.gethostname().lower())
    p.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="docker",
        help="docker: real containers; process: host processes, no isolation "
        "(development); fake: nothing runs (hollow nodes)",
    )
    p.add_argument("--kubeconfig", type=Path, help="default: PKI_DIR/node-<node-name>.kubeconfig")
    p.add_argument(
        "--bootstrap-kubeconfig",
        type=Path,
        help="TLS bootstrap: when --kubeconfig does not exist (or its certificate has "
        "expired), get a client certificate with a CSR made with these (bootstrap token) "
        "credentials and write --kubeconfig",
    )
    p.add_argument(
        "--rotate-certificates",
        action="store_true",
        help="renew the client certificate (CERT_DIR/kubelet-client-current.pem) with a "
        "CSR at 70-90%% of its lifetime",
    )
    p.add_argument(
        "--cert-dir",
        type=Path,
        help="where the bootstrapped and rotated client certificate live (default PKI_DIR)",
    )
    p.add_argument(
        "--pki-dir",
        type=Path,
        default=Path(".k8slite/pki"),
        help="where the default kubeconfig, serving certificate and CA are",
    )
    p.add_argument(
        "--root-dir",
        type=Path,
        help="volumes and runtime state (default .k8slite/kubelet/<node-name>)",
    )
    p.add_argument("--node-ip", default="127.0.0.1")
    p.add_argument("--pod-cidr", help="the node's pod CIDR; for docker the pod network's subnet")
    p.add_argument(
        "--docker-network", default="k8slite-pods", help="the Docker network pods get their IPs on"
    )
    p.add_argument(
        "--pod-network",
        choices=("host", "bridge"),
        default="host",
        help="bridge: pods get addresses from the node's pod CIDR (--pod-cidr or the Node's "
        "spec.podCIDR), process pods in network namespaces of their own on --pod-bridge, "
        "Docker pods on a network of this node; the node network agent connects the nodes "
        "(default host: process pods share the node's network, Docker pods one network)",
    )
    p.add_argument(
        "--pod-bridge", default="k8slite0", help="the bridge of process pods (--pod-network bridge)"
    )
    p.add_argument("--max-pods", type=int, default=110)
    p.add_argument("--node-labels", type=parse_node_labels, default={}, help="k=v,...")
    p.add_argument(
        "--register-with-taints", type=parse_taints, default=[], help="key=value:Effect,..."
    )
    p.add_argument(
        "--capacity",
        type=parse_key_values,
        default={},
        help="override what the host reports, e.g. cpu=4,memory=8Gi,pods=50",
    )
    p.add_argument(
        "--synthetic-usage",
        type=parse_key_values,
        default={},
        help="fake runtime: what each running container uses, e.g. cpu=100m,memory=32Mi "
        "(a pod's annotation k8slite.io/synthetic-usage overrides it)",
    )
    p.add_argument("--address", default="127.0.0.1", help="the kubelet API's address")
    p.add_argument(
        "--port",
        type=_port,
        default=10250,
        help="kubelet API (HTTPS); 0 picks a free port, -1 serves none",
    )
    p.add_argument("--healthz-bind-address", default="127.0.0.1")
    p.add_argument(
        "--healthz-port",
        type=_port,
        default=10248,
        help="plain HTTP /healthz; 0 picks a free port, -1 serves none",
    )
    p.add_argument("--tls-cert-file", type=Path, help="default PKI_DIR/kubelet-<node>.pem")
    p.add_argument("--tls-private-key-file", type=Path, help="default PKI_DIR/kubelet-<node>.key")
    p.add_argument("--client-ca-file", type=Path, help="default PKI_DIR/ca.pem")
    p.add_argument("--node-status-update-frequency", type=duration, default=10.0)
    p.add_argument("--node-status-report-frequency", type=duration, default=60.0)
    p.add_argument("--node-lease-duration-seconds", type=int, default=40)
    p.add_argument("--node-lease-renew-interval", type=duration, default=10.0)
    p.add_argument("--sync-frequency", type=duration, default=60.0)
    p.add_argument("--pleg-relist-period", type=duration, default=1.0)
    p.add_argument(
        "--housekeeping-interval",
        type=duration,
        default=10.0,
        help="how often volume usage is measured against emptyDir sizeLimits (evictions)",
    )
    p.add_argument(
        "--crashloop-backoff-initial",
        type=duration,
        default=10.0,
        help="first CrashLoopBackOff and image pull back-off delay (doubles)",
    )
    p.add_argument("--crashloop-backoff-max", type=duration, default=300.0)
    p.add_argument(
        "--kube-api-qps",
        type=float,
        default=50.0,
        help="requests per second to the API server (0: unlimited)",
    )
    p.add_argument("--kube-api-burst", type=int, default=100)
    p.add_argument(
        "--cluster-dns",
        type=lambda s: [x for x in s.split(",") if x],
        default=[],
        help="comma-separated nameservers of ClusterFirst pods (default none: pods get "
        "the host's resolver configuration)",
    )
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument(
        "--resolv-conf",
        help="the host's resolver configuration, for pods with dnsPolicy Default ('' for "
        "none; default /etc/resolv.conf, or /run/systemd/resolve/resolv.conf when "
        "/etc/resolv.conf names only systemd-resolved's stub)",
    )
    p.add_argument(
        "--token-refresh-fraction",
        type=_fraction,
        default=0.8,
        help="renew a pod's service-account token after this share of its lifetime "
        "(upstream's fixed 0.8; a k8slite knob for tests that watch a renewal)",
    )
    p.add_argument(
        "--system-log-dir",
        default="/var/log",
        help="the directory the kubelet API serves on /logs/ (upstream's system log "
        "handler serves /var/log; '' turns it off, as enableSystemLogHandler: false)",
    )
    add_component_flags(p)
    return p


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1]")
    return value


def parse_args(argv: list[str] | None) -> tuple[KubeletConfig, argparse.Namespace]:
    a = parser().parse_args(argv)
    node = a.node_name
    pki = a.pki_dir
    config = KubeletConfig(
        node_name=node,
        runtime=a.runtime,
        kubeconfig=a.kubeconfig or pki / f"node-{node}.kubeconfig",
        root_dir=a.root_dir or Path(".k8slite/kubelet") / node,
        node_ip=a.node_ip,
        pod_cidr=a.pod_cidr,
        docker_network=a.docker_network,
        pod_network=a.pod_network,
        pod_bridge=a.pod_bridge,
        max_pods=a.max_pods,
        node_labels=a.node_labels,
        register_with_taints=a.register_with_taints,
        capacity=a.capacity,
        synthetic_usage=a.synthetic_usage,
        address=a.address,
        port=a.port,
        healthz_bind_address=a.healthz_bind_address,
        healthz_port=a.healthz_port,
        tls_cert_file=a.tls_cert_file or pki / f"kubelet-{node}.pem",
        tls_private_key_file=a.tls_private_key_file or pki / f"kubelet-{node}.key",
        client_ca_file=a.client_ca_file or pki / "ca.pem",
        node_status_update_frequency=a.node_status_update_frequency,
        node_status_report_frequency=a.node_status_report_frequency,
        node_lease_duration_seconds=a.node_lease_duration_seconds,
        node_lease_renew_interval=a.node_lease_renew_interval,
        sync_frequency=a.sync_frequency,
        pleg_relist_period=a.pleg_relist_period,
        housekeeping_period=a.housekeeping_interval,
        backoff_initial=a.crashloop_backoff_initial,
        backoff_max=a.crashloop_backoff_max,
        cluster_dns=a.cluster_dns,
        cluster_domain=a.cluster_domain,
        resolv_conf=(
            default_resolv_conf()
            if a.resolv_conf is None
            else (Path(a.resolv_conf) if a.resolv_conf else None)
        ),
        kube_api_qps=a.kube_api_qps,
        kube_api_burst=a.kube_api_burst,
        token_refresh_fraction=a.token_refresh_fraction,
        system_log_dir=Path(a.system_log_dir) if a.system_log_dir else None,
    )
    return config, a


async def serve(
    config: KubeletConfig,
    args: argparse.Namespace,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    assert config.kubeconfig is not None
    cert_dir = args.cert_dir or args.pki_dir
    if args.bootstrap_kubeconfig is not None or args.rotate_certificates:
        # Only a kubelet that makes its own certificates loads cryptography (see
        # tests/unit/test_lean_imports.py): the others are handed theirs.
        from k8slite.kubelet import clientcert
    if args.bootstrap_kubeconfig is not None and not clientcert.usable(cert_dir, config.kubeconfig):
        await clientcert.bootstrap(
            load_kubeconfig(args.bootstrap_kubeconfig),
            config.kubeconfig,
            cert_dir,
            config.node_name,
            BOOTSTRAP_TIMEOUT,
        )
    runtime = make_runtime(
        config.runtime,
        node_name=config.node_name,
        root_dir=config.root_dir,
        node_ip=config.node_ip,
        pod_cidr=config.pod_cidr,
        docker_network=config.docker_network,
        synthetic_usage=config.synthetic_usage,
        pod_network=config.pod_network,
        pod_bridge=config.pod_bridge,
    )
    try:
        client_config = replace(
            load_kubeconfig(config.kubeconfig), qps=config.kube_api_qps, burst=config.kube_api_burst
        )
        async with ApiClient(client_config) as client, trio.open_nursery() as nursery:
            serving = await nursery.start(Kubelet(config, client, runtime).run)
            if args.rotate_certificates:
                nursery.start_soon(
                    clientcert.rotate_forever, client, cert_dir, config.node_name, BOOTSTRAP_TIMEOUT
                )
            where = []
            if serving.port is not None:
                where.append(f"API listening on https://{config.address}:{serving.port}")
            if serving.healthz_port is not None:
                where.append(
                    f"healthz listening on http://{config.healthz_bind_address}:"
                    f"{serving.healthz_port}"
                )
            # A line for people and for scripts (tests read the ports from it).
            print(
                f"k8slite-kubelet {config.node_name} ready: {', '.join(where) or 'no API'}",
                flush=True,
            )
            task_status.started()
    finally:
        with trio.CancelScope(shield=True):
            await runtime.aclose()


def main(argv: list[str] | None = None) -> int:
    config, args = parse_args(argv)
    setup_logging(args.verbosity, args.logging_format)
    if config.port is not None:
        for path in (config.tls_cert_file, config.tls_private_key_file, config.client_ca_file):
            if path is None or not path.exists():
                print(
                    f"k8slite-kubelet: {path} does not exist: create the node's certificates "
                    f"with `k8slite certs --node {config.node_name}`, pass --tls-cert-file, "
                    "--tls-private-key-file and --client-ca-file, or serve no API (--port=-1)",
                    file=sys.stderr,
                )
                return 2
    if args.bootstrap_kubeconfig is None:
        return run_until_signal(serve, config, args)
    # TLS bootstrap: a refused, denied or unanswered CertificateSigningRequest, or a server
    # that cannot be reached with the bootstrap kubeconfig, is said in one line, not a trace.
    from k8slite.kubelet.clientcert import BootstrapError

    fatal = (BootstrapError, ApiError, ApiConnectionError)
    return report_fatal("k8slite-kubelet", fatal, lambda: run_until_signal(serve, config, args))


if __name__ == "__main__":
    sys.exit(main())
