"""Exponential backoff with jitter, for retrying requests and re-establishing watches."""

from __future__ import annotations

import random
from collections.abc import Callable

import trio


class Backoff:
    """initial, initial*factor, ... up to cap; each delay stretched by up to `jitter` of itself.

    Jitter keeps many clients that failed together (an API server restart) from coming back
    in lockstep.
    """

    def __init__(
        self,
        initial: float = 0.8,
        cap: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self._rng = rng
        self._current = initial

    def next(self) -> float:
        """The delay to wait now; the following one will be longer."""
        delay = min(self.cap, self._current * (1 + self.jitter * self._rng()))
        self._current = min(self.cap, self._current * self.factor)
        return delay

    def reset(self) -> None:
        self._current = self.initial

    async def sleep(self) -> None:
        await trio.sleep(self.next())
