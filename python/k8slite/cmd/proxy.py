"""k8slite-proxy: make Service addresses reach their endpoints (userspace or nftables)."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

import trio

from k8slite.client import KubeconfigError
from k8slite.cmd.common import report_fatal, run_until_signal
from k8slite.component.flags import add_component_flags, duration
from k8slite.component.logging import setup_logging
from k8slite.proxy.nftables import NftablesError
from k8slite.proxy.proxy import MODES, ProxyConfig, cleanup, run
from k8slite.proxy.routing import RoutingError

# Errors that mean "cannot run like this": one clear line and exit status 1.
_FATAL = (RoutingError, NftablesError, KubeconfigError, ValueError)


def parse_args(argv: list[str] | None) -> tuple[ProxyConfig, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="k8slite-proxy", description=__doc__)
    p.add_argument("--kubeconfig", type=Path, help="credentials (identity system:kube-proxy)")
    p.add_argument("--proxy-mode", choices=MODES, default="userspace")
    p.add_argument(
        "--hostname-override",
        default=socket.gethostname().lower(),
        help="this node's name (default: the host name)",
    )
    p.add_argument(
        "--service-cluster-ip-range",
        default="10.96.0.0/12",
        help="must match the API server's; routed to this host at start",
    )
    p.add_argument(
        "--cluster-cidr", help="pod CIDR; traffic to services from outside it is masqueraded"
    )
    p.add_argument(
        "--masquerade-all",
        action="store_true",
        help="masquerade all service traffic (nftables mode)",
    )
    p.add_argument(
        "--nodeport-addresses",
        default="",
        help="comma-separated CIDRs, or 'primary' (the Node's InternalIPs); "
        "NodePorts answer on this host's addresses in them (default: all)",
    )
    p.add_argument(
        "--metrics-bind-address",
        default="127.0.0.1:10249",
        help="host:port for /metrics (port 0 picks a free one)",
    )
    p.add_argument(
        "--healthz-bind-address",
        default="0.0.0.0:10256",
        help="host:port for /healthz (port 0 picks a free one)",
    )
    p.add_argument(
        "--min-sync-period",
        type=duration,
        default=0.1,
        help="minimum time between syncs; changes in between are batched",
    )
    p.add_argument("--sync-period", type=duration, default=30.0, help="full resync interval")
    p.add_argument(
        "--cleanup",
        action="store_true",
        help="remove the nftables table and the service range route, then exit",
    )
    add_component_flags(p)
    a = p.parse_args(argv)
    config = ProxyConfig(
        kubeconfig=a.kubeconfig,
        mode=a.proxy_mode,
        hostname=a.hostname_override,
        service_cluster_ip_range=a.service_cluster_ip_range,
        cluster_cidr=a.cluster_cidr,
        masquerade_all=a.masquerade_all,
        nodeport_addresses=[c.strip() for c in a.nodeport_addresses.split(",") if c.strip()],
        metrics_bind_address=a.metrics_bind_address,
        healthz_bind_address=a.healthz_bind_address,
        min_sync_period=a.min_sync_period,
        sync_period=a.sync_period,
    )
    return config, a


async def serve(
    config: ProxyConfig, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    async with trio.open_nursery() as nursery:
        serving = await nursery.start(run, config)
        # Lines for people and for scripts (tests wait for "ready").
        print(
            f"k8slite-proxy metrics on http://{serving.metrics[0]}:{serving.metrics[1]}", flush=True
        )
        print(
            f"k8slite-proxy healthz on http://{serving.healthz[0]}:{serving.healthz[1]}", flush=True
        )
        print(f"k8slite-proxy ready in {config.mode} mode", flush=True)
        task_status.started()


def main(argv: list[str] | None = None) -> int:
    config, args = parse_args(argv)
    setup_logging(args.verbosity, args.logging_format)

    def run_proxy() -> int:
        if args.cleanup:
            trio.run(cleanup, config)
            return 0
        return run_until_signal(serve, config)

    return report_fatal("k8slite-proxy", _FATAL, run_proxy)


if __name__ == "__main__":
    sys.exit(main())
