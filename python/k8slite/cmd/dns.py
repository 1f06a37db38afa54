"""k8slite-dns: the cluster's DNS server (Services, EndpointSlices and Pods by name)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import trio

from k8slite.client import KubeconfigError
from k8slite.cmd.common import report_fatal, run_until_signal
from k8slite.component.flags import add_component_flags
from k8slite.component.logging import setup_logging
from k8slite.component.serving import ServingOptions
from k8slite.dns.component import DnsConfig, run
from k8slite.dns.forward import parse_upstreams, resolv_conf_nameservers
from k8slite.dns.resolve import PodMode

_FATAL = (KubeconfigError, OSError, ValueError)


def parse_args(argv: list[str] | None) -> tuple[DnsConfig, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="k8slite-dns", description=__doc__)
    p.add_argument(
        "--kubeconfig",
        type=Path,
        help="credentials (identity system:serviceaccount:kube-system:kube-dns)",
    )
    p.add_argument("--dns-port", type=int, default=53, help="UDP and TCP port (0 picks one)")
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument(
        "--upstream-dns",
        help="comma-separated resolvers for names outside the cluster, as IP or IP:port "
        "(default: the nameservers in /etc/resolv.conf)",
    )
    p.add_argument(
        "--pods",
        choices=[m.value for m in PodMode],
        default=PodMode.INSECURE.value,
        help="<dashed-ip>.<namespace>.pod.<domain> records: for any IP (insecure), only "
        "for pods' IPs (verified: watches Pods), or none",
    )
    p.add_argument(
        "--cache-size", type=int, default=10_000, help="answers kept in the cache (0: none)"
    )
    # --bind-address is the DNS listeners' address as well as the serving one.
    ServingOptions.add_flags(p, default_port=9153)
    add_component_flags(p)
    a = p.parse_args(argv)
    if not 0 <= a.dns_port < 65536:
        p.error(f"--dns-port {a.dns_port} out of range")
    try:
        upstreams = (
            parse_upstreams(a.upstream_dns)
            if a.upstream_dns is not None
            else resolv_conf_nameservers()
        )
    except ValueError as e:
        p.error(f"--upstream-dns: {e}")
    config = DnsConfig(
        kubeconfig=a.kubeconfig,
        bind_address=a.bind_address,
        dns_port=a.dns_port,
        cluster_domain=a.cluster_domain.strip(".").lower(),
        upstreams=upstreams,
        pods=PodMode(a.pods),
        cache_size=a.cache_size,
        serving=ServingOptions.from_args(a),
    )
    return config, a


async def serve(
    config: DnsConfig, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    async with trio.open_nursery() as nursery:
        serving = await nursery.start(run, config)
        host, port = serving.dns
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        # One line for people and for scripts (tests wait for "ready:" and read both ports).
        print(
            f"k8slite-dns ready: DNS on {address} (udp, tcp); serving on {serving.serving_url}",
            flush=True,
        )
        task_status.started()


def main(argv: list[str] | None = None) -> int:
    config, args = parse_args(argv)
    setup_logging(args.verbosity, args.logging_format)
    return report_fatal("k8slite-dns", _FATAL, lambda: run_until_signal(serve, config))


if __name__ == "__main__":
    sys.exit(main())
