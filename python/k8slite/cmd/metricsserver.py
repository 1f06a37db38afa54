"""k8slite-metrics-server: scrapes every kubelet's resource metrics and serves
metrics.k8s.io (kubectl top, the HorizontalPodAutoscaler), behind the API server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import trio

from k8slite.client import KubeconfigError
from k8slite.cmd.common import report_fatal, run_until_signal
from k8slite.component.flags import add_component_flags, duration
from k8slite.component.logging import setup_logging
from k8slite.component.serving import ServingOptions
from k8slite.metricsserver.component import MetricsServerConfig, run

_FATAL = (KubeconfigError, OSError, ValueError)


def parse_args(argv: list[str] | None) -> tuple[MetricsServerConfig, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="k8slite-metrics-server", description=__doc__)
    p.add_argument(
        "--kubeconfig",
        type=Path,
        help="credentials (identity system:serviceaccount:kube-system:metrics-server)",
    )
    p.add_argument(
        "--metric-resolution",
        type=duration,
        default=15.0,
        help="how often every kubelet is scraped (upstream's 15s)",
    )
    p.add_argument("--kubelet-request-timeout", type=duration, default=10.0)
    p.add_argument(
        "--requestheader-allowed-names",
        default="front-proxy-client",
        help="client certificate common names whose X-Remote-User/X-Remote-Group are trusted",
    )
    ServingOptions.add_flags(p, default_port=10250)
    add_component_flags(p)
    a = p.parse_args(argv)
    if a.metric_resolution <= 0:
        p.error("--metric-resolution must be positive")
    config = MetricsServerConfig(
        kubeconfig=a.kubeconfig,
        metric_resolution=a.metric_resolution,
        kubelet_request_timeout=a.kubelet_request_timeout,
        requestheader_allowed_names=frozenset(
            n.strip() for n in a.requestheader_allowed_names.split(",") if n.strip()
        ),
        serving=ServingOptions.from_args(a),
    )
    return config, a


async def serve(
    config: MetricsServerConfig, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    async with trio.open_nursery() as nursery:
        serving = await nursery.start(run, config)
        # One line for people and scripts (tests and `k8slite up` wait for "ready:").
        print(f"k8slite-metrics-server ready: serving on {serving.url}", flush=True)
        task_status.started()


def main(argv: list[str] | None = None) -> int:
    config, args = parse_args(argv)
    setup_logging(args.verbosity, args.logging_format)
    return report_fatal("k8slite-metrics-server", _FATAL, lambda: run_until_signal(serve, config))


if __name__ == "__main__":
    sys.exit(main())
