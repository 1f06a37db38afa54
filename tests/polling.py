"""Polling for a condition in tests that run synchronously against real processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


def wait_for(
    fn: Callable[[], T | None],
    timeout: float = 60.0,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Poll fn until it returns something truthy, and return that.

    A transient failure of the probe itself (a connection refused, a field not there yet, an
    answer that is not JSON yet) counts as "not yet"; the last one is in the timeout message.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as e:
            last = e
        if last and not isinstance(last, Exception):
            return last  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}"
            )
        time.sleep(interval)
