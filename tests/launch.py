"""Start a component as a child process and wait for the line that says it is serving.

Every k8slite server prints one such line on stdout ("... listening on https://host:port",
"... serving on ...", a kubelet's "... ready: ..."); tests and benches read the address
from it, since the servers bind port 0.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def launch(
    argv: list[str],
    log: Path,
    marker: str,
    *,
    what: str,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Run argv (stderr appended to log) until a stdout line holds marker.

    Returns the process and the first such line. Raises RuntimeError, killing the process,
    if it exits or the timeout passes first.
    """
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=log.open("ab"),
        cwd=REPO,
        env=dict(env) if env is not None else None,
    )
    found: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:  # keeps draining, so the child never blocks on a full pipe
            line = raw.decode(errors="replace")
            if marker in line and not found:
                found.append(line.strip())

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not found:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see {log}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{what} did not start in {timeout:.0f} s; see {log}")
        time.sleep(0.05)
    return proc, found[0]


def after(line: str, marker: str) -> str:
    """The text after the last marker in line: the address a serving line ends with."""
    return line.rsplit(marker, 1)[1].strip()


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `grace` seconds; reaps it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
