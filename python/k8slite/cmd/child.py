"""Child processes that cannot outlive their parent (PR_SET_PDEATHSIG), awaited under Trio."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import trio

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
# Resolved here, not in the forked child: the child should do as little as it can.
_prctl = _libc.prctl
_SIGTERM = int(signal.SIGTERM)


def _die_with(parent: int) -> Callable[[], None]:
    def set_pdeathsig() -> None:
        if _prctl(_PR_SET_PDEATHSIG, _SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
        # The parent may have died between fork and prctl: then nobody sends the signal.
        if os.getppid() != parent:
            os._exit(1)

    return set_pdeathsig


class Child:
    """A process started by spawn(); like trio.Process, for what the supervisor needs."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def wait(self) -> int:
        if self._popen.returncode is None:
            try:
                fd = os.pidfd_open(self.pid)
            except ProcessLookupError:
                fd = -1  # another waiter reaped it already
            if fd >= 0:
                try:
                    await trio.lowlevel.wait_readable(fd)
                finally:
                    trio.lowlevel.notify_closing(fd)
                    os.close(fd)
            # It has exited: this reaps it without blocking.
            self._popen.wait()
        return self._popen.returncode

    def send_signal(self, sig: int) -> None:
        # Popen checks that the child is not reaped yet, so a reused pid is never signalled.
        self._popen.send_signal(sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def spawn(argv: list[str], log_path: Path) -> Child:
    """Start argv with its output appended to log_path, in a session of its own, receiving
    SIGTERM when this process dies (however it dies: kill -9, OOM, a closed terminal).

    The death signal fires when the *thread* that forked exits, so this forks here, in the
    calling thread (Trio's main thread), never in a worker thread the way
    trio.lowlevel.open_process does: those exit when idle.
    """
    with log_path.open("ab") as out:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            # The terminal's Ctrl-C reaches the supervisor only, which stops the children
            # in order rather than all at once.
            start_new_session=True,
            # Calls prctl only: nothing in it takes a lock another thread could hold.
            preexec_fn=_die_with(os.getpid()),
        )
    return Child(popen)
