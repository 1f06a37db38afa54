"""What every component's main shares: logging, and a clean stop on SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio


def setup_logging(verbosity: int = 0) -> None:
    level = logging.DEBUG if verbosity >= 4 else logging.INFO
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname).1s %(name)s: %(message)s"
    )
    # hypercorn and httpx are chatty at INFO; their warnings still show.
    for noisy in ("hypercorn.error", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


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
    """Run main under Trio; SIGINT or SIGTERM cancels it and returns 0."""
    trio.run(_until_signal, main, *args)
    return 0


def add_verbosity_flag(parser: Any) -> None:
    parser.add_argument(
        "-v", "--v", dest="verbosity", type=int, default=0, help="log verbosity (4 or more: debug)"
    )
