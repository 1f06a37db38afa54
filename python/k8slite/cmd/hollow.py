"""k8slite hollow-nodes: run N simulated kubelets (fake runtime) in one process."""

from __future__ import annotations

import argparse
import sys
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path

import trio

from k8slite.client import ApiClient, load_kubeconfig
from k8slite.cmd.common import run_until_signal
from k8slite.component.flags import add_component_flags, duration
from k8slite.component.logging import setup_logging
from k8slite.kubelet.config import (
    KubeletConfig,
    parse_key_values,
    parse_node_labels,
    parse_taints,
)
from k8slite.kubelet.hollow import DEFAULT_POD_CIDR_BASE, HollowNodes, HollowNodesConfig


def parse_args(argv: list[str] | None) -> tuple[HollowNodesConfig, Path, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="k8slite hollow-nodes", description=__doc__)
    p.add_argument("--count", type=int, required=True, help="how many nodes")
    p.add_argument(
        "--kubeconfig",
        type=Path,
        default=Path(".k8slite/kubeconfig"),
        help="an identity that may act for all the nodes (e.g. the admin's)",
    )
    p.add_argument("--name-prefix", default="hollow-", help="nodes are PREFIX0, PREFIX1, ...")
    p.add_argument("--node-ip", default="127.0.0.1", help="every hollow node's InternalIP")
    p.add_argument(
        "--pod-cidr-base",
        default=DEFAULT_POD_CIDR_BASE,
        help="each node gets the next /24 of it as its pod CIDR",
    )
    p.add_argument("--max-pods", type=int, default=110)
    p.add_argument(
        "--capacity",
        type=parse_key_values,
        default={},
        help="what each node reports, e.g. cpu=8,memory=32Gi",
    )
    p.add_argument("--node-labels", type=parse_node_labels, default={})
    p.add_argument("--register-with-taints", type=parse_taints, default=[])
    p.add_argument("--node-lease-renew-interval", type=duration, default=10.0)
    p.add_argument("--node-lease-duration-seconds", type=int, default=40)
    p.add_argument("--node-status-update-frequency", type=duration, default=10.0)
    p.add_argument("--node-status-report-frequency", type=duration, default=60.0)
    p.add_argument("--concurrency", type=int, default=32, help="API requests in flight at once")
    p.add_argument(
        "--connections",
        type=int,
        default=8,
        help="HTTP/2 connections to the API server, the nodes spread over them",
    )
    p.add_argument(
        "--completion-time",
        type=duration,
        default=1.0,
        metavar="DURATION",
        help="how long containers of pods with restartPolicy Never or OnFailure (Jobs) run "
        "before they exit 0",
    )
    add_component_flags(p)
    a = p.parse_args(argv)
    template = KubeletConfig(
        node_name=a.name_prefix,
        runtime="fake",
        node_ip=a.node_ip,
        max_pods=a.max_pods,
        capacity=a.capacity,
        node_labels=a.node_labels,
        register_with_taints=a.register_with_taints,
        node_lease_renew_interval=a.node_lease_renew_interval,
        node_lease_duration_seconds=a.node_lease_duration_seconds,
        node_status_update_frequency=a.node_status_update_frequency,
        node_status_report_frequency=a.node_status_report_frequency,
    )
    config = HollowNodesConfig(
        count=a.count,
        template=template,
        pod_cidr_base=a.pod_cidr_base,
        concurrency=a.concurrency,
        completion_seconds=a.completion_time,
    )
    return config, a.kubeconfig, a


async def _run(config: HollowNodesConfig, kubeconfig: Path, connections: int) -> None:
    # A few HTTP/2 connections carry every node's requests (see kubelet/hollow.py for why
    # not one).
    client_config = replace(load_kubeconfig(kubeconfig), http2=True, qps=0)
    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        clients = [
            await stack.enter_async_context(ApiClient(client_config))
            for _ in range(max(1, connections))
        ]
        await nursery.start(HollowNodes(clients, config).run)
        print(f"k8slite hollow-nodes: {config.count} nodes ready", flush=True)


def main(argv: list[str] | None = None) -> int:
    config, kubeconfig, args = parse_args(argv)
    setup_logging(args.verbosity, args.logging_format)
    return run_until_signal(_run, config, kubeconfig, args.connections)


if __name__ == "__main__":
    sys.exit(main())
