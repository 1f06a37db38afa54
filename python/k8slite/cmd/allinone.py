"""k8slite all-in-one: the components of `k8slite up --single-process` as Trio tasks of one
process, as k3s runs its parts in one binary.

    k8slite all-in-one -- apiserver ARGS... -- controller-manager ARGS... -- kubelet ARGS...

Each `-- NAME ARGS` is one component with the very flags its own command takes (so its own
ports, serving certificate, metrics and kubeconfig: each still authenticates as itself and
is authorized as itself). The API server starts first; the others once it serves. A
component that fails is logged and restarted, alone, after a back-off (1 s doubling to
30 s, reset after a minute up), as `k8slite up` restarts a component's process; SIGTERM or
SIGINT stops them all.

Each component's module is imported only when it is named, so the process holds what its
components use and no more. What sharing one process changes: one log (DIR/logs/
all-in-one.log), one -v (the API server's), the process_* metrics of every component are
the one process's, and the umask is left as it is (the API server's own command sets 077
for RocksDB's files; here its data directory is 0700, which covers them, and the kubelet's
volume files keep their usual modes).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from k8slite.cmd.common import run_until_signal
from k8slite.component.logging import setup_logging

log = logging.getLogger("k8slite.all-in-one")

_BACKOFF_START, _BACKOFF_MAX = 1.0, 30.0
_HEALTHY_AFTER = 60.0
SEPARATOR = "--"


@dataclass
class Task:
    """One component: its name, and how to run it once (a fresh serve call per start)."""

    name: str
    start: Callable[..., Awaitable[None]]
    args: argparse.Namespace


def _apiserver(argv: list[str]) -> Task:
    from k8slite.cmd import apiserver

    config, args = apiserver.parse_args(argv)
    return Task("apiserver", lambda **kw: apiserver.serve(config, **kw), args)


def _controller_manager(argv: list[str]) -> Task:
    from k8slite.cmd import controller_manager
    from k8slite.metrics import component_registry

    config, args = controller_manager.parse_args(argv)
    # A registry of its own per start: the scheduler's leader election metrics share its
    # names, and a restart registers its metrics again.
    return Task(
        "controller-manager",
        lambda **kw: controller_manager.serve(config, component_registry(), **kw),
        args,
    )


def _scheduler(argv: list[str]) -> Task:
    from k8slite.cmd import scheduler
    from k8slite.metrics import component_registry

    options, args = scheduler.parse_args(argv)
    return Task(
        "scheduler", lambda **kw: scheduler.serve(options, component_registry(), **kw), args
    )


def _kubelet(argv: list[str]) -> Task:
    from k8slite.cmd import kubelet

    config, args = kubelet.parse_args(argv)
    return Task("kubelet", lambda **kw: kubelet.serve(config, args, **kw), args)


def _proxy(argv: list[str]) -> Task:
    from k8slite.cmd import proxy

    config, args = proxy.parse_args(argv)
    return Task("proxy", lambda **kw: proxy.serve(config, **kw), args)


def _dns(argv: list[str]) -> Task:
    from k8slite.cmd import dns

    config, args = dns.parse_args(argv)
    return Task("dns", lambda **kw: dns.serve(config, **kw), args)


def _metrics_server(argv: list[str]) -> Task:
    from k8slite.cmd import metricsserver

    config, args = metricsserver.parse_args(argv)
    return Task("metrics-server", lambda **kw: metricsserver.serve(config, **kw), args)


COMPONENTS: dict[str, Callable[[list[str]], Task]] = {
    "apiserver": _apiserver,
    "controller-manager": _controller_manager,
    "scheduler": _scheduler,
    "kubelet": _kubelet,
    "proxy": _proxy,
    "dns": _dns,
    "metrics-server": _metrics_server,
}


def split_argv(argv: list[str]) -> list[tuple[str, list[str]]]:
    """`-- NAME ARGS -- NAME ARGS ...` as [(NAME, ARGS), ...]; ValueError when malformed."""
    if not argv or argv[0] != SEPARATOR:
        raise ValueError(f"expected `{SEPARATOR} COMPONENT ARGS...`, got {argv[:1]}")
    parts: list[tuple[str, list[str]]] = []
    for token in argv:
        if token == SEPARATOR:
            parts.append(("", []))
        elif not parts[-1][0]:
            if token not in COMPONENTS:
                raise ValueError(f"unknown component {token!r} (known: {', '.join(COMPONENTS)})")
            parts[-1] = (token, [])
        else:
            parts[-1][1].append(token)
    names = [name for name, _ in parts]
    if "" in names:
        raise ValueError(f"a `{SEPARATOR}` without a component name after it")
    if len(set(names)) != len(names):
        raise ValueError("a component is named twice")
    return parts


class _Served:
    """Passes started() on to the nursery, and remembers that it was called."""

    def __init__(self, status: trio.TaskStatus[None]) -> None:
        self.status, self.done = status, False

    def started(self, value: None = None) -> None:
        self.done = True
        self.status.started(value)


async def keep_running(
    task: Task, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the component, restarting it with back-off whenever it fails or returns;
    started once its first start serves. A first start that fails before it serves fails
    the whole process, as a component's own process would exit (the supervisor restarts)."""
    served = _Served(task_status)
    delay = _BACKOFF_START
    while True:
        began = trio.current_time()
        try:
            if served.done:
                await task.start()
            else:
                await task.start(task_status=served)
            log.error("%s stopped; restarting it in %.0fs", task.name, delay)
        except Exception as e:
            if not served.done:
                raise
            log.error("%s failed; restarting it in %.0fs", task.name, delay, exc_info=e)
        if trio.current_time() - began > _HEALTHY_AFTER:
            delay = _BACKOFF_START
        await trio.sleep(delay)
        delay = min(delay * 2, _BACKOFF_MAX)


async def run_all(tasks: list[Task]) -> None:
    """The API server first; the rest once it serves, each restarted on its own."""
    async with trio.open_nursery() as nursery:
        api = [t for t in tasks if t.name == "apiserver"]
        for t in api:
            await nursery.start(keep_running, t)
        for t in tasks:
            if t.name != "apiserver":
                nursery.start_soon(keep_running, t)
        log.info("running %s in one process", ", ".join(t.name for t in tasks))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    try:
        parts = split_argv(argv)
    except ValueError as e:
        print(f"k8slite all-in-one: error: {e}", file=sys.stderr)
        return 2
    tasks = [COMPONENTS[name](args) for name, args in parts]
    first = tasks[0].args
    setup_logging(first.verbosity, first.logging_format)
    return run_until_signal(run_all, tasks)


if __name__ == "__main__":
    sys.exit(main())
