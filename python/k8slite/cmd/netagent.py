"""k8slite netagent: the node network agent (pod CIDR bridge, host-gw or VXLAN routes)."""

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
from k8slite.network.agent import BACKENDS, AgentConfig, cleanup, run
from k8slite.network.ipcmd import NetworkError

_FATAL = (NetworkError, KubeconfigError, ValueError, OSError)


def parse_args(argv: list[str] | None) -> tuple[AgentConfig, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="k8slite netagent", description=__doc__)
    p.add_argument(
        "--kubeconfig",
        type=Path,
        help="credentials: the node's own (system:node:NAME) may read Nodes and annotate its own",
    )
    p.add_argument(
        "--node-name", default=socket.gethostname().lower(), help="this node (default: host name)"
    )
    p.add_argument(
        "--cluster-cidr",
        required=True,
        help="the whole pod network (the controller manager's --cluster-cidr); traffic from "
        "it to anywhere else is masqueraded",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="host-gw",
        help="host-gw: route each node's pod CIDR to its address (one L2 segment); "
        "vxlan: through a VXLAN device (any IP network)",
    )
    p.add_argument("--bridge", default="k8slite0", help="the pods' bridge on this node")
    p.add_argument(
        "--public-ip", help="the address other nodes reach this one at (default: its InternalIP)"
    )
    p.add_argument(
        "--vni", type=int, default=1, help="VXLAN network identifier (device k8slite.VNI)"
    )
    p.add_argument("--resync-period", type=duration, default=30.0)
    p.add_argument(
        "--metrics-bind-address",
        default="127.0.0.1:10271",
        help="host:port of /metrics, /healthz, /readyz, /configz (plain HTTP; port 0 picks one)",
    )
    p.add_argument(
        "--cleanup",
        action="store_true",
        help="remove the routes, VXLAN device, masquerade table and bridge, then exit",
    )
    add_component_flags(p)
    a = p.parse_args(argv)
    config = AgentConfig(
        node_name=a.node_name,
        cluster_cidr=a.cluster_cidr,
        kubeconfig=a.kubeconfig,
        backend=a.backend,
        bridge=a.bridge,
        public_ip=a.public_ip,
        vni=a.vni,
        resync_period=a.resync_period,
        metrics_bind_address=a.metrics_bind_address,
    )
    return config, a


async def _serve(config: AgentConfig) -> None:
    async with trio.open_nursery() as nursery:
        serving = await nursery.start(run, config)
        # A line for people and for scripts (tests wait for "ready").
        print(
            f"k8slite-netagent {config.node_name} ready in {config.backend} mode; "
            f"serving on {serving.url}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    config, args = parse_args(argv)
    setup_logging(args.verbosity, args.logging_format)

    def run_agent() -> int:
        if args.cleanup:
            trio.run(cleanup, config)
            return 0
        return run_until_signal(_serve, config)

    return report_fatal("k8slite-netagent", _FATAL, run_agent)


if __name__ == "__main__":
    sys.exit(main())
