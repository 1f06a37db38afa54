"""`k8slite dashboard`: serve the dashboard on loopback with the user's kubeconfig."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import trio

from k8slite.client import ApiClient, KubeconfigError, load_kubeconfig
from k8slite.component.serving import ServingOptions, serve
from k8slite.dashboard.app import Dashboard
from k8slite.dashboard.hub import Hub
from k8slite.dashboard.metrics import Sampler
from k8slite.dashboard.security import SessionGuard, new_secret

log = logging.getLogger(__name__)

DEFAULT_PORT = 8001


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="k8slite dashboard",
        description="Serve a live web dashboard of the cluster on this machine, with your "
        "own kubeconfig's credentials (as kubectl proxy does).",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    p.add_argument("--address", default="127.0.0.1", help="loopback address to bind")
    p.add_argument("--kubeconfig", type=Path, help="default: $KUBECONFIG or ~/.kube/config")
    p.add_argument("--context", help="kubeconfig context (default: its current-context)")
    p.add_argument(
        "--scheduler-metrics",
        help="the scheduler's /metrics URL for the Metrics page (k8slite up passes it)",
    )
    p.add_argument(
        "--metrics-interval", type=float, default=5.0, help="seconds between metrics samples"
    )
    return p


async def run(
    args: argparse.Namespace, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until cancelled; reports the URL to open (it carries the session secret)."""
    config = load_kubeconfig(args.kubeconfig, args.context)
    async with ApiClient(config) as client, trio.open_nursery() as nursery:
        hub = Hub(client)
        await hub.start(nursery)
        # The Host values are known once the port is: the guard is filled in then.
        guard = SessionGuard(new_secret(), frozenset())
        sampler = Sampler(
            client,
            lambda: list(hub.caches["nodes"].objects),
            interval=args.metrics_interval,
            scheduler_url=args.scheduler_metrics,
        )
        dashboard = Dashboard(client, hub, guard, sampler, nursery)
        options = ServingOptions(bind_address=args.address, secure_port=args.port, secure=False)
        base, port = await nursery.start(serve, dashboard.server(), options)
        address = f"[{args.address}]" if ":" in args.address else args.address
        hosts = {f"{address}:{port}", f"localhost:{port}"}
        guard.hosts = frozenset(hosts)
        task_status.started(guard.url(base))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.address not in ("127.0.0.1", "::1", "localhost"):
        # Anyone who can reach it acts with your credentials: keep it on this machine.
        print("k8slite dashboard: --address must be a loopback address", file=sys.stderr)
        return 2
    if args.address == "localhost":
        args.address = "127.0.0.1"
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    async def _main() -> None:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(run, args)
            print(f"Dashboard: {url}", flush=True)

    try:
        trio.run(_main)
    except KubeconfigError as e:
        print(f"k8slite dashboard: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


async def serve_beside(
    kubeconfig: Path,
    port: int,
    scheduler_metrics: str | None = None,
    *,
    task_status: trio.TaskStatus[str | None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The dashboard inside another command's nursery (`k8slite up`): reports its URL, or
    None when it cannot start (its port taken); a failure never takes the caller down."""
    argv = ["--kubeconfig", str(kubeconfig), "--port", str(port)]
    if scheduler_metrics:
        argv += ["--scheduler-metrics", scheduler_metrics]
    args = parser().parse_args(argv)
    started = False

    async def _run(*, task_status: trio.TaskStatus[str]) -> None:
        await run(args, task_status=task_status)

    try:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(_run)
            started = True
            task_status.started(url)
    except Exception as e:  # noqa: BLE001 - the dashboard is optional; the cluster runs on
        log.warning("the dashboard stopped: %s", e)
        if not started:
            task_status.started(None)
