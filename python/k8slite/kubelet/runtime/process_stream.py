"""The process runtime's exec stream: a new process with the container's env and directory.

Without a TTY its stdin, stdout and stderr are pipes; with one they are the slave end of a
pseudo-terminal whose master the session reads and writes (output then all comes as
stdout, as from a real terminal) and resizes.
"""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import subprocess
import termios
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress

import trio

from k8slite.kubelet.runtime.base import STDERR, STDOUT, ContainerRuntimeError

_READ = 64 * 1024


class ProcessSession:
    """One `kubectl exec` into a process-runtime container."""

    def __init__(
        self,
        proc: trio.Process,
        stdin: trio.abc.SendStream | None,
        outputs: list[tuple[int, trio.abc.ReceiveStream]],
        master: int | None,
    ) -> None:
        self.proc = proc
        self.stdin = stdin
        self.outputs = outputs
        self.master = master

    @classmethod
    async def start(
        cls, argv: list[str], env: Mapping[str, str], cwd: str | None, stdin: bool, tty: bool
    ) -> ProcessSession:
        try:
            if tty:
                master, slave = os.openpty()
                try:
                    proc = await trio.lowlevel.open_process(
                        argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                        start_new_session=True,
                    )  # fmt: skip
                finally:
                    os.close(slave)
                # One stream for both directions; the master fd is the session's to close.
                pty = trio.lowlevel.FdStream(master)
                return cls(proc, pty if stdin else None, [(STDOUT, pty)], master)
            proc = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as e:
            raise ContainerRuntimeError(
                f'exec: "{argv[0]}": {e.strerror or e}', reason="ContainerCannotRun"
            ) from None
        assert proc.stdout is not None and proc.stderr is not None
        return cls(proc, proc.stdin, [(STDOUT, proc.stdout), (STDERR, proc.stderr)], None)

    async def write_stdin(self, data: bytes) -> None:
        if self.stdin is not None and data:
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self.stdin.send_all(data)

    async def close_stdin(self) -> None:
        if self.master is not None:
            # A terminal has no half-close: end-of-file is the EOF character.
            await self.write_stdin(b"\x04")
        elif self.stdin is not None:
            await self.stdin.aclose()
            self.stdin = None

    async def resize(self, width: int, height: int) -> None:
        if self.master is not None and width > 0 and height > 0:
            with suppress(OSError):
                size = struct.pack("HHHH", height, width, 0, 0)
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)

    async def copy_output(self, write: Callable[[int, bytes], Awaitable[None]]) -> None:
        async def pump(kind: int, stream: trio.abc.ReceiveStream) -> None:
            # A pseudo-terminal whose last writer exited reads as EIO, not as end-of-file.
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                while chunk := await stream.receive_some(_READ):
                    await write(kind, bytes(chunk))

        async with trio.open_nursery() as nursery:
            for kind, stream in self.outputs:
                nursery.start_soon(pump, kind, stream)

    async def wait(self) -> int | None:
        code = await self.proc.wait()
        return 128 - code if code < 0 else code

    async def aclose(self) -> None:
        if self.proc.returncode is None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with trio.CancelScope(shield=True):
            await self.proc.wait()
            for _, stream in self.outputs:
                await stream.aclose()
            if self.stdin is not None:
                await self.stdin.aclose()
