"""What every component's main shares: a clean stop on SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import signal
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
    """Run main under Trio; SIGINT or SIGTERM cancels it and returns 0."""
    trio.run(_until_signal, main, *args)
    return 0
