"""k8slite up --detach: the supervisor in the background, followed until the cluster is up."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

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
    child_argv = [
        sys.executable,
        "-m",
        "k8slite.cmd.k8slite",
        "up",
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
                    break
                if child.poll() is not None:
                    sys.stderr.buffer.write(log.read())
                    print(
                        f"k8slite up: error: the cluster did not come up; its log: {log_path}",
                        file=sys.stderr,
                    )
                    return 1
                time.sleep(0.2)
    except KeyboardInterrupt:
        print(f"stopping the background supervisor (pid {child.pid})", file=sys.stderr)
        child.send_signal(signal.SIGTERM)
        child.wait(_ABORT_TIMEOUT)
        return 130
    print("\n".join(welcome(info, opts.data_dir)))
    print(f"It runs in the background: supervisor pid {child.pid}, its log {log_path}.")
    print(f"Stop it with `{command('stop', opts.data_dir)}`.", flush=True)
    return 0
