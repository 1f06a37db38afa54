"""What every component's main shares: a clean stop on SIGINT or SIGTERM, plain fatal errors."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio


async def _until_signal(main: Callable[..., Awaitable[Any]], *args: Any) -> None:
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            nursery.start_soon(_run_then_cancel, main, args, nursery.cancel_scope)
            async for _ in signals:
                logging.getLogger(__name__).info("signal received, shutting down")
                nursery.cancel_scope.cancel()
                break


async def _run_then_cancel(
    main: Callable[..., Awaitable[Any]], args: tuple[Any, ...], scope: trio.CancelScope
) -> None:
    await main(*args)
    scope.cancel()


def run_until_signal(main: Callable[..., Awaitable[Any]], *args: Any) -> int:
    """Run main under Trio; SIGINT or SIGTERM cancels it and returns 0.

    With K8SLITE_PROFILE_DIR set, the run is profiled by cProfile (the event loop's thread
    only) and the statistics written there on a clean stop, as COMPONENT-PID.prof: how the
    benches find where a component spends its CPU (benches/density.py --profile)."""
    profile_dir = os.environ.get("K8SLITE_PROFILE_DIR")
    if not profile_dir:
        trio.run(_until_signal, main, *args)
        return 0
    import cProfile

    profiler = cProfile.Profile()
    try:
        profiler.runcall(trio.run, _until_signal, main, *args)
    finally:
        # A second SIGTERM (a supervisor's) must not cut the dump short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
        profiler.dump_stats(os.path.join(profile_dir, f"{name}-{os.getpid()}.prof"))
    return 0


def leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    """The exceptions a (nested) group holds, flattened."""
    out: list[BaseException] = []
    for e in group.exceptions:
        out += leaves(e) if isinstance(e, BaseExceptionGroup) else [e]
    return out


def report_fatal(prog: str, fatal: tuple[type[Exception], ...], run: Callable[[], int]) -> int:
    """run(), with the known fatal errors printed as `prog: error: ...` (exit code 1).

    Failures inside nurseries arrive grouped; a group of known ones is reported plainly,
    anything else is raised as it is.
    """
    try:
        return run()
    except fatal as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except BaseExceptionGroup as group:
        known, _ = group.split(fatal)
        if known is None:
            raise
        for leaf in leaves(known):
            print(f"{prog}: error: {leaf}", file=sys.stderr)
        return 1
