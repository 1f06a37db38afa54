"""k8slite-scheduler: place pending pods on nodes, with kube-scheduler's plugins and flags."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

import trio
from prometheus_client import REGISTRY, CollectorRegistry

from k8slite.client import ApiClient, load_kubeconfig
from k8slite.cmd.common import run_until_signal
from k8slite.component.flags import (
    add_component_flags,
    add_leader_election_flags,
    leader_election_config,
)
from k8slite.component.logging import setup_logging
from k8slite.component.serving import (
    PING,
    Check,
    ComponentServer,
    ServingOptions,
)
from k8slite.component.serving import serve as serve_component
from k8slite.leaderelection import LeaderElectionConfig, LeaderElectionLost, default_identity
from k8slite.scheduler.plugins import ConfigError, Profile, load_profile
from k8slite.scheduler.scheduler import DEFAULT_BIND_CONCURRENCY, Scheduler

log = logging.getLogger("k8slite.scheduler")


@dataclasses.dataclass
class Options:
    kubeconfig: Path | None
    master: str | None
    qps: float
    burst: int
    profile: Profile
    serving: ServingOptions
    leader_election: LeaderElectionConfig
    bind_concurrency: int


def parse_args(argv: list[str] | None) -> tuple[Options, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="k8slite-scheduler", description=__doc__)
    p.add_argument(
        "--kubeconfig",
        type=Path,
        help="kubeconfig with the API server and the scheduler's credentials",
    )
    p.add_argument("--master", help="API server URL (overrides the kubeconfig's)")
    p.add_argument(
        "--config",
        type=Path,
        help="a KubeSchedulerConfiguration file (profile, weights, scoring strategy)",
    )
    p.add_argument(
        "--scheduler-name",
        default=None,
        help="take only pods with this spec.schedulerName (default default-scheduler)",
    )
    p.add_argument(
        "--kube-api-qps",
        type=float,
        default=2000.0,
        help="client-side requests per second to the API server (0: unlimited)",
    )
    p.add_argument("--kube-api-burst", type=int, default=4000)
    p.add_argument(
        "--bind-concurrency",
        type=int,
        default=DEFAULT_BIND_CONCURRENCY,
        help="bindings in flight at once",
    )
    ServingOptions.add_flags(p, default_port=10259)
    add_leader_election_flags(p, default_name="kube-scheduler")
    add_component_flags(p)
    a = p.parse_args(argv)
    try:
        profile = load_profile(a.config) if a.config else Profile()
    except ConfigError as e:
        p.error(str(e))
    if a.scheduler_name:
        profile = dataclasses.replace(profile, scheduler_name=a.scheduler_name)
    serving = ServingOptions.from_args(a)
    options = Options(
        a.kubeconfig,
        a.master,
        a.kube_api_qps,
        a.kube_api_burst,
        profile,
        serving,
        leader_election_config(p, a),
        a.bind_concurrency,
    )
    return options, a


async def serve(
    options: Options,
    registry: CollectorRegistry = REGISTRY,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled, its metrics in registry (k8slite all-in-one gives each start
    a new one: a restart registers them again)."""
    config = load_kubeconfig(options.kubeconfig)
    config = dataclasses.replace(
        config, qps=options.qps, burst=options.burst, server=options.master or config.server
    )
    async with ApiClient(config) as client:
        scheduler = Scheduler(
            client, options.profile, registry=registry, bind_concurrency=options.bind_concurrency
        )
        synced = Check(
            "sched-handler-sync",
            lambda: None if scheduler.ready() else "waiting for handlers to sync",
        )
        app = ComponentServer(
            checks={"/healthz": (PING,), "/livez": (PING,), "/readyz": (PING, synced)},
            registry=registry,
            configz={"componentconfig": lambda: options},
            authorize=options.serving.authorizer(),
        )
        async with trio.open_nursery() as nursery:
            url, _ = await nursery.start(serve_component, app, options.serving)
            # A line for people and for scripts (tests read the URL from it).
            print(f"k8slite-scheduler listening on {url}", flush=True)
            task_status.started()

            async def lead(leader: trio.Nursery) -> None:
                await scheduler.run()

            await options.leader_election.run(
                client, lead, identity=default_identity(), metrics_registry=registry
            )
            nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    options, args = parse_args(argv)
    setup_logging(args.verbosity, args.logging_format)
    code = 0
    try:
        code = run_until_signal(serve, options)
    except* LeaderElectionLost as group:
        # Like kube-scheduler: a scheduler that lost its lease exits and is restarted.
        log.error("%s", group.exceptions[0])
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
