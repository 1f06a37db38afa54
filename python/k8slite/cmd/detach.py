"""k8slite up --detach: the supervisor in the background, followed until the cluster is up."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from k8slite import datadir
from k8slite.cmd import runstate
from k8slite.cmd.up import UpOptions, command, welcome

# How long Ctrl-C during --detach waits for the background supervisor to stop.
_ABORT_TIMEOUT = 60.0


def detach(opts: UpOptions, argv: list[str]) -> int:
    """Start `k8slite up` again as a session of its own logging to DIR/logs/up.log, echo
    that log here until the cluster is up (or the supervisor gives up), then return."""
    data_dir = opts.data_dir.resolve()
    log_path = data_dir / "logs" / "up.log"
    datadir.private_data_dir(data_dir)
    datadir.private_tree(log_path.parent)
    # The same flags; the last --data-dir wins, made absolute because cwd is "/" there.
    started = run_in_background("up", argv, data_dir, log_path, "k8slite up", "the cluster")
    if isinstance(started, int):
        return started
    info, pid = started
    print("\n".join(welcome(info, opts.data_dir)))
    print(f"It runs in the background: supervisor pid {pid}, its log {log_path}.")
    print(f"Stop it with `{command('stop', opts.data_dir)}`.", flush=True)
    return 0


def run_in_background(
    subcommand: str, argv: list[str], data_dir: Path, log_path: Path, prog: str, what: str
) -> tuple[runstate.ClusterInfo, int] | int:
    """`k8slite SUBCOMMAND ARGV --data-dir DIR --background` (up or join) as a session of
    its own appending to log_path, whose new lines are echoed here until DIR/cluster.json
    says that supervisor is ready: (its ClusterInfo, its pid), or an exit code (1: it
    stopped first; 130: Ctrl-C here, which stops it)."""
    child_argv = [
        sys.executable,
        "-m",
        "k8slite.cmd.k8slite",
        subcommand,
        *argv,
        "--data-dir",
        str(data_dir),
        "--background",
    ]
    with log_path.open("ab") as out:
        offset = out.tell()
        # No death signal: this one is meant to outlive us. A session of its own: no
        # terminal's hangup or Ctrl-C reaches it.
        child = subprocess.Popen(
            child_argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            cwd="/",
        )
    try:
        with log_path.open("rb") as log:
            log.seek(offset)
            while True:
                sys.stderr.buffer.write(log.read())
                sys.stderr.flush()
                info = runstate.read(data_dir)
                if info is not None and info.pid == child.pid and info.state == "ready":
                    return info, child.pid
                if child.poll() is not None:
                    sys.stderr.buffer.write(log.read())
                    print(
                        f"{prog}: error: {what} did not come up; its log: {log_path}",
                        file=sys.stderr,
                    )
                    return 1
                time.sleep(0.2)
    except KeyboardInterrupt:
        print(f"stopping the background supervisor (pid {child.pid})", file=sys.stderr)
        child.send_signal(signal.SIGTERM)
        child.wait(_ABORT_TIMEOUT)
        return 130
