"""k8slite-controller-manager: run the controllers that make workloads real, leader-elected."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import trio
from prometheus_client import REGISTRY, CollectorRegistry

from k8slite.cmd.common import run_until_signal
from k8slite.component.flags import (
    add_component_flags,
    add_leader_election_flags,
    duration,
    go_bool,
    leader_election_config,
)
from k8slite.component.logging import setup_logging
from k8slite.component.serving import ServingOptions
from k8slite.controllers.base import AutoscalerOptions, ControllerOptions
from k8slite.controllers.cidrset import CIDRSet, parse_cluster_cidrs
from k8slite.controllers.manager import (
    CONTROLLERS,
    LEASE_NAME,
    ControllerManager,
    ControllerManagerConfig,
    UnknownController,
    enabled_controllers,
)
from k8slite.leaderelection import LeaderElectionLost

log = logging.getLogger("k8slite.controller-manager")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="k8slite-controller-manager", description=__doc__)
    p.add_argument(
        "--kubeconfig",
        type=Path,
        help="kubeconfig with the API server's address and this component's "
        "credentials (default: $KUBECONFIG, then ~/.kube/config)",
    )
    p.add_argument(
        "--controllers",
        default="*",
        help="comma-separated controllers to run: '*' is all, 'foo' enables foo, "
        "'-foo' disables it; known: " + ", ".join(CONTROLLERS),
    )
    p.add_argument(
        "--kube-api-qps",
        type=float,
        default=20.0,
        help="queries per second to the API server, per controller",
    )
    p.add_argument("--kube-api-burst", type=int, default=30)
    ServingOptions.add_flags(p, default_port=10257)
    workers = p.add_argument_group("workers")
    for flag, default in (
        ("--concurrent-replicaset-syncs", 5),
        ("--concurrent-rc-syncs", 5),
        ("--concurrent-deployment-syncs", 5),
        ("--concurrent-daemonset-syncs", 2),
        ("--concurrent-cron-job-syncs", 5),
        ("--concurrent-statefulset-syncs", 5),
        ("--concurrent-endpoint-syncs", 5),
        ("--concurrent-service-endpoint-syncs", 5),
        ("--concurrent-gc-syncs", 20),
        ("--concurrent-namespace-syncs", 10),
        ("--concurrent-job-syncs", 5),
        ("--concurrent-ttl-after-finished-syncs", 5),
        ("--concurrent-horizontal-pod-autoscaler-syncs", 5),
    ):
        workers.add_argument(flag, type=_positive, default=default)
    nodes = p.add_argument_group("node lifecycle")
    nodes.add_argument(
        "--node-monitor-period",
        type=duration,
        default="5s",
        metavar="DURATION",
        help="how often node health is checked",
    )
    nodes.add_argument(
        "--node-monitor-grace-period",
        type=duration,
        default="40s",
        metavar="DURATION",
        help="how long a node may be silent before it is marked Unknown",
    )
    nodes.add_argument(
        "--node-startup-grace-period",
        type=duration,
        default="60s",
        metavar="DURATION",
        help="how long a new node may take to post its first status",
    )
    nodes.add_argument(
        "--node-eviction-rate",
        type=float,
        default=0.1,
        help="nodes a second whose pods are evicted (NoExecute-tainted) when their zone "
        "is healthy, or when it is fully disrupted but others are not",
    )
    nodes.add_argument(
        "--secondary-node-eviction-rate",
        type=float,
        default=0.01,
        help="nodes a second whose pods are evicted when their zone is unhealthy; 0 in a "
        "zone of no more than --large-cluster-size-threshold nodes",
    )
    nodes.add_argument(
        "--large-cluster-size-threshold",
        type=int,
        default=50,
        help="a zone of more nodes than this keeps evicting at the secondary rate when "
        "unhealthy; a smaller one stops",
    )
    nodes.add_argument(
        "--unhealthy-zone-threshold",
        type=float,
        default=0.55,
        help="the share of not-ready nodes (at least 3) from which a zone is unhealthy",
    )
    nodes.add_argument(
        "--pod-eviction-timeout",
        type=duration,
        metavar="DURATION",
        help="deprecated and ignored, as upstream: pods are evicted after "
        "their toleration of the node's NoExecute taint",
    )
    accounts = p.add_argument_group("service accounts")
    accounts.add_argument(
        "--root-ca-file",
        type=Path,
        help="CA bundle published as kube-root-ca.crt and put into token Secrets "
        "(default: the kubeconfig's certificate authority)",
    )
    accounts.add_argument(
        "--service-account-private-key-file",
        type=Path,
        help="PEM private key that signs legacy service-account token Secrets "
        "(without it the serviceaccount-token-controller stays off)",
    )
    ipam = p.add_argument_group("node IPAM")
    ipam.add_argument(
        "--allocate-node-cidrs",
        type=go_bool,
        nargs="?",
        const=True,
        default=False,
        help="give every node pod CIDRs from --cluster-cidr",
    )
    ipam.add_argument(
        "--cluster-cidr",
        default="",
        help="the pods' range: a CIDR, or an IPv4 and an IPv6 one comma-separated",
    )
    ipam.add_argument(
        "--node-cidr-mask-size",
        type=int,
        help="mask size of each node's range in a single-stack cluster "
        "(default 24 for IPv4, 64 for IPv6)",
    )
    ipam.add_argument("--node-cidr-mask-size-ipv4", type=int, help="default 24")
    ipam.add_argument("--node-cidr-mask-size-ipv6", type=int, help="default 64")
    certs = p.add_argument_group("certificates")
    certs.add_argument(
        "--cluster-signing-cert-file",
        type=Path,
        help="PEM CA certificate csrsigning issues cluster-scoped certificates with",
    )
    certs.add_argument(
        "--cluster-signing-key-file",
        type=Path,
        help="PEM private key of --cluster-signing-cert-file",
    )
    certs.add_argument(
        "--cluster-signing-duration",
        type=duration,
        default="8760h",
        metavar="DURATION",
        help="the longest a signed certificate lasts (spec.expirationSeconds may ask less)",
    )
    pods = p.add_argument_group("pods")
    pods.add_argument(
        "--terminated-pod-gc-threshold",
        type=int,
        default=12500,
        help="terminated pods that may exist before the oldest are deleted (0: no limit)",
    )
    pods.add_argument(
        "--job-pod-failure-backoff",
        type=duration,
        default="10s",
        metavar="DURATION",
        help="k8slite only (upstream fixes it at 10s): the first back-off before a failed "
        "Job pod is replaced; it doubles per failure up to 36 times this",
    )
    pods.add_argument(
        "--pod-gc-quarantine",
        type=duration,
        default="40s",
        metavar="DURATION",
        help="k8slite only (upstream fixes it at 40s): how long a node must be missing "
        "before the pod garbage collector deletes its pods",
    )
    hpa = p.add_argument_group("horizontal pod autoscaler")
    for flag, period, text in (
        ("sync-period", "15s", "how often each HPA is reconciled"),
        (
            "downscale-stabilization",
            "5m",
            "how far back the highest recommendation is kept when scaling down",
        ),
        (
            "cpu-initialization-period",
            "5m",
            "how long after a pod starts its CPU samples are checked against its readiness",
        ),
        (
            "initial-readiness-delay",
            "30s",
            "how long after a pod starts a readiness change counts as its first",
        ),
    ):
        hpa.add_argument(
            f"--horizontal-pod-autoscaler-{flag}",
            type=duration,
            default=period,
            metavar="DURATION",
            help=text,
        )
    hpa.add_argument(
        "--horizontal-pod-autoscaler-tolerance",
        type=float,
        default=0.1,
        help="the least change of the usage ratio (from 1.0) the autoscaler acts on",
    )
    add_leader_election_flags(p, default_name=LEASE_NAME)
    add_component_flags(p)
    return p


def parse_args(argv: list[str] | None) -> tuple[ControllerManagerConfig, argparse.Namespace]:
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        controllers = [c for c in a.controllers.split(",") if c.strip()]
        enabled_controllers(controllers)
    except UnknownController as e:
        parser.error(str(e))
    if a.allocate_node_cidrs:
        try:
            nets = parse_cluster_cidrs(a.cluster_cidr)
            mask = a.node_cidr_mask_size
            if len(nets) == 2 and mask is not None:
                parser.error(
                    "--node-cidr-mask-size is for single-stack clusters; use "
                    "--node-cidr-mask-size-ipv4 and --node-cidr-mask-size-ipv6"
                )
            for net in nets:
                size = (
                    a.node_cidr_mask_size_ipv4 if net.version == 4 else a.node_cidr_mask_size_ipv6
                )
                CIDRSet(net, size or mask or (24 if net.version == 4 else 64))
        except ValueError as e:
            parser.error(str(e))
    if a.pod_eviction_timeout is not None:
        # Worded as pflag words a deprecated flag; logging is not set up yet.
        print(
            "Flag --pod-eviction-timeout has been deprecated, it has no effect: pods are "
            "evicted after their toleration of the node's NoExecute taint",
            file=sys.stderr,
        )
    options = ControllerOptions(
        concurrent_replicaset_syncs=a.concurrent_replicaset_syncs,
        concurrent_rc_syncs=a.concurrent_rc_syncs,
        concurrent_deployment_syncs=a.concurrent_deployment_syncs,
        concurrent_daemonset_syncs=a.concurrent_daemonset_syncs,
        concurrent_cron_job_syncs=a.concurrent_cron_job_syncs,
        concurrent_statefulset_syncs=a.concurrent_statefulset_syncs,
        concurrent_endpoint_syncs=a.concurrent_endpoint_syncs,
        concurrent_service_endpoint_syncs=a.concurrent_service_endpoint_syncs,
        concurrent_gc_syncs=a.concurrent_gc_syncs,
        concurrent_namespace_syncs=a.concurrent_namespace_syncs,
        node_monitor_period=a.node_monitor_period,
        node_monitor_grace_period=a.node_monitor_grace_period,
        node_startup_grace_period=a.node_startup_grace_period,
        node_eviction_rate=a.node_eviction_rate,
        secondary_node_eviction_rate=a.secondary_node_eviction_rate,
        large_cluster_size_threshold=a.large_cluster_size_threshold,
        unhealthy_zone_threshold=a.unhealthy_zone_threshold,
        root_ca_file=a.root_ca_file,
        service_account_private_key_file=a.service_account_private_key_file,
        cluster_signing_cert_file=a.cluster_signing_cert_file,
        cluster_signing_key_file=a.cluster_signing_key_file,
        cluster_signing_duration=a.cluster_signing_duration,
        allocate_node_cidrs=a.allocate_node_cidrs,
        cluster_cidr=a.cluster_cidr,
        node_cidr_mask_size_ipv4=a.node_cidr_mask_size_ipv4 or a.node_cidr_mask_size or 24,
        node_cidr_mask_size_ipv6=a.node_cidr_mask_size_ipv6 or a.node_cidr_mask_size or 64,
        concurrent_job_syncs=a.concurrent_job_syncs,
        concurrent_ttl_after_finished_syncs=a.concurrent_ttl_after_finished_syncs,
        terminated_pod_gc_threshold=a.terminated_pod_gc_threshold,
        job_pod_failure_backoff=a.job_pod_failure_backoff,
        job_pod_failure_max_backoff=a.job_pod_failure_backoff * 36,
        pod_gc_quarantine=a.pod_gc_quarantine,
        pod_gc_period=min(20.0, a.pod_gc_quarantine),
        concurrent_horizontal_pod_autoscaler_syncs=a.concurrent_horizontal_pod_autoscaler_syncs,
        autoscaler=AutoscalerOptions(
            sync_period=a.horizontal_pod_autoscaler_sync_period,
            downscale_stabilization=a.horizontal_pod_autoscaler_downscale_stabilization,
            tolerance=a.horizontal_pod_autoscaler_tolerance,
            cpu_initialization_period=a.horizontal_pod_autoscaler_cpu_initialization_period,
            initial_readiness_delay=a.horizontal_pod_autoscaler_initial_readiness_delay,
        ),
    )
    leader_election = leader_election_config(parser, a)
    config = ControllerManagerConfig(
        kubeconfig=a.kubeconfig,
        controllers=controllers,
        leader_election=leader_election,
        options=options,
        serving=ServingOptions.from_args(a),
        kube_api_qps=a.kube_api_qps,
        kube_api_burst=a.kube_api_burst,
    )
    return config, a


async def serve(
    config: ControllerManagerConfig,
    registry: CollectorRegistry = REGISTRY,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled, its metrics in registry (k8slite all-in-one gives each start
    a new one: a restart registers them again)."""
    manager = ControllerManager(config, registry)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(manager.run)
        # A line for people and for scripts (tests read the URL from it).
        print(f"k8slite-controller-manager serving on {url}", flush=True)
        task_status.started()


def main(argv: list[str] | None = None) -> int:
    config, args = parse_args(argv)
    setup_logging(args.verbosity, args.logging_format)
    code = 0
    try:
        code = run_until_signal(serve, config)
    except* LeaderElectionLost as group:
        # Upstream exits too: a new process starts clean, as a standby.
        log.error("leader election lost: %s", group.exceptions[0])
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
