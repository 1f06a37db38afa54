"""The process runtime's per-container shim: runs the command, logs its output, records its exit.

Run as `python -I -S shim.py CONTAINER_DIR` in a session of its own, so it outlives a kubelet
restart like containerd's shims do; standard library only, so it starts in milliseconds.
It reads CONTAINER_DIR/config.json ({"argv", "env", "cwd"}) and writes

  state.json  {"pid", "pid_start", "shim_pid", "shim_start", "started_at"} once running
  log         the output in the CRI log format: "<RFC 3339 ns time> <stream> <F|P> <text>"
  exit.json   {"exit_code", "finished_at", "reason", "message"} when it has ended

and answers on stdout with one line, "ok" or "error <message>", then detaches from it.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from typing import Any

# A line longer than this is written in parts (tag P), as the CRI log format allows.
MAX_LINE = 16 * 1024
# How long output from leftover processes is still read after the main process ended.
DRAIN_SECONDS = 1.0


def rfc3339_ns(t_ns: int) -> str:
    """A UTC time with nine fractional digits, so that log times compare as strings."""
    seconds, ns = divmod(t_ns, 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ns:09d}Z"


def proc_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (tells a reused PID apart).

    Empty when there is no such process or it is a zombie: it ended and waits to be reaped.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return "" if fields[0] == "Z" else fields[19]


def write_json(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


class LogWriter:
    """Splits a stream's bytes into lines and appends them to the log, timestamped."""

    def __init__(self, log: Any, stream: str) -> None:
        self.log, self.stream, self.partial = log, stream.encode(), b""

    def feed(self, data: bytes) -> None:
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            self._write(line, b"F")
        while len(self.partial) > MAX_LINE:
            self._write(self.partial[:MAX_LINE], b"P")
            self.partial = self.partial[MAX_LINE:]

    def close(self) -> None:
        if self.partial:
            self._write(self.partial, b"P")
            self.partial = b""

    def _write(self, line: bytes, tag: bytes) -> None:
        stamp = rfc3339_ns(time.time_ns()).encode()
        self.log.write(b" ".join((stamp, self.stream, tag, line)) + b"\n")


def run(directory: str) -> int:
    with open(os.path.join(directory, "config.json")) as f:
        config = json.load(f)
    argv: list[str] = config["argv"]
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        # A session of its own: stopping the container signals its whole process group.
        child = subprocess.Popen(
            argv,
            env=config["env"],
            cwd=config.get("cwd") or None,
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            start_new_session=True,
        )
    except OSError as e:
        message = f'exec: "{argv[0]}": {e.strerror}'
        write_json(
            os.path.join(directory, "exit.json"),
            {
                "exit_code": 128,
                "finished_at": time.time(),
                "reason": "StartError",
                "message": message,
            },
        )
        print("error", message, flush=True)
        return 0
    os.close(out_w)
    os.close(err_w)
    write_json(
        os.path.join(directory, "state.json"),
        {
            "pid": child.pid,
            "pid_start": proc_start(child.pid),
            "shim_pid": os.getpid(),
            "shim_start": proc_start(os.getpid()),
            "started_at": time.time(),
        },
    )
    print("ok", flush=True)
    # Nobody reads stdout any more: the kubelet may have gone away.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    with open(os.path.join(directory, "log"), "ab", buffering=0) as log:
        exit_code = pump(child, {out_r: LogWriter(log, "stdout"), err_r: LogWriter(log, "stderr")})
    write_json(
        os.path.join(directory, "exit.json"),
        {"exit_code": exit_code, "finished_at": time.time(), "reason": "", "message": ""},
    )
    return 0


def pump(child: subprocess.Popen[bytes], writers: dict[int, LogWriter]) -> int:
    """Log the child's output until it exits (and its output ends); its exit code."""
    sel = selectors.DefaultSelector()
    for fd in writers:
        sel.register(fd, selectors.EVENT_READ)
    pidfd = os.pidfd_open(child.pid)
    sel.register(pidfd, selectors.EVENT_READ)
    deadline: float | None = None
    exit_code = 0
    while writers:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        events = sel.select(timeout)
        if not events and deadline is not None:
            break
        for key, _ in events:
            if key.fd == pidfd:
                sel.unregister(pidfd)
                exit_code = reap(child)
                deadline = time.monotonic() + DRAIN_SECONDS
                continue
            data = os.read(key.fd, 65536)
            if data:
                writers[key.fd].feed(data)
            else:
                sel.unregister(key.fd)
                writers.pop(key.fd).close()
    os.close(pidfd)
    for writer in writers.values():
        writer.close()
    return reap(child) if deadline is None else exit_code


def reap(child: subprocess.Popen[bytes]) -> int:
    """Wait for the child; its exit code, 128 + N when signal N killed it."""
    code = child.wait()
    # Like a container's PID namespace ending: what the command left behind dies too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(run(sys.argv[1]))
