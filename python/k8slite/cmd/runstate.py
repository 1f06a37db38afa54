"""DIR/cluster.json: what a `k8slite up` runs (pids, ports, start times), and its processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "cluster.json"
# How long `k8slite stop` waits for a supervisor to stop its components and pods.
SUPERVISOR_STOP_TIMEOUT = 90.0


@dataclass
class ProcessRecord:
    """One process we started: enough to find it again, and to tell it from a pid reused."""

    pid: int
    # As /proc/PID/cmdline shows it (a console script appears as "python SCRIPT ARGS").
    cmdline: list[str]
    # Field 22 of /proc/PID/stat, in clock ticks since boot: unique with the pid.
    start_ticks: int
    started: float = 0.0
    restarts: int = 0
    log: str = ""

    @classmethod
    def of(cls, pid: int, fallback_cmdline: list[str], log: str = "") -> ProcessRecord:
        """The record of a live process (its cmdline and start time read from /proc)."""
        return cls(
            pid,
            cmdline(pid) or fallback_cmdline,
            start_ticks(pid) or 0,
            time.time(),
            log=log,
        )

    def alive(self) -> bool:
        """Whether this pid is still the process recorded: running, same start, same cmdline."""
        return (
            start_ticks(self.pid) == self.start_ticks
            and _state(self.pid) not in ("Z", "X", None)
            and cmdline(self.pid) == self.cmdline
        )


@dataclass
class ClusterInfo:
    """What a `k8slite up` cluster listens on and runs; written to DIR/cluster.json."""

    data_dir: str
    server: str
    node: str
    runtime: str
    ports: dict[str, int]
    proxy: bool
    hollow_nodes: int
    # The supervisor's pid, and the supervisor itself.
    pid: int
    supervisor: ProcessRecord | None = None
    docker_network: str | None = None
    # Where k8slite-dns listens (its ports are "dns" and "dns-metrics" in ports).
    dns_address: str = ""
    # starting, ready, stopped.
    state: str = "starting"
    detached: bool = False
    # The dashboard's address with its session secret (this file is 0600), "" when not served.
    dashboard: str = ""
    # A node `k8slite join` runs (a kubelet and a proxy, no control plane): server is the
    # cluster's API server, the credentials are the kubelet's.
    joined: bool = False
    # What `k8slite up` printed for adding nodes (it holds a bootstrap token: 0600 file).
    join_command: str = ""
    # `k8slite up --single-process`: the components are tasks of one child, "all-in-one".
    single_process: bool = False
    # `--pod-network bridge`: "CIDR BACKEND" of the pod network across hosts, else "".
    pod_network: str = ""
    components: dict[str, ProcessRecord] = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ClusterInfo:
        sup = doc.get("supervisor")
        comps = doc.get("components") or {}
        return cls(
            **{
                k: v
                for k, v in doc.items()
                if k in cls.__dataclass_fields__ and k not in ("supervisor", "components")
            },
            supervisor=ProcessRecord(**sup) if sup else None,
            components={name: ProcessRecord(**rec) for name, rec in comps.items()},
        )

    def running(self) -> bool:
        """Whether the supervisor that wrote this still runs."""
        return self.supervisor is not None and self.supervisor.alive()

    def leftovers(self) -> dict[str, ProcessRecord]:
        """The recorded components still running (whatever became of their supervisor)."""
        return {name: rec for name, rec in self.components.items() if rec.alive()}


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def write(data_dir: Path, info: ClusterInfo) -> None:
    """Replace DIR/cluster.json atomically, mode 0600 (readers never see half of it)."""
    path = state_path(data_dir)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(asdict(info), indent=1) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read(data_dir: Path) -> ClusterInfo | None:
    """DIR/cluster.json, or None when there is none (or it is not ours to read)."""
    try:
        return ClusterInfo.from_json(json.loads(state_path(data_dir).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1]


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces and parentheses)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if len(fields) > 19 else None


def _state(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def terminate(procs: dict[str, ProcessRecord], grace: float) -> list[str]:
    """SIGTERM each recorded process that is still ours (SIGCONT too, should it be stopped),
    SIGKILL those left after `grace`; the names of those that had to be killed."""
    live = {name: rec for name, rec in procs.items() if rec.alive()}
    for rec in live.values():
        for sig in (signal.SIGTERM, signal.SIGCONT):
            with contextlib.suppress(ProcessLookupError):
                os.kill(rec.pid, sig)
    wait_gone(list(live.values()), grace)
    killed = [name for name, rec in live.items() if rec.alive()]
    for name in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(live[name].pid, signal.SIGKILL)
    wait_gone([live[name] for name in killed], grace)
    return killed


def wait_gone(procs: list[ProcessRecord], timeout: float) -> bool:
    """Poll until none of procs runs any more (they need not be our children)."""
    deadline = time.monotonic() + timeout
    while any(p.alive() for p in procs):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
