"""Free loopback ports for processes started a moment later (`up --port 0`, tests).

The kernel's ephemeral range (usually 32768-60999) is avoided: a port found free there can
become the source port of some other connection between the pick and the bind, and stays
taken while that connection lives (CI saw an all-in-one fail to bind on every restart, and
cluster DNS likewise). Ports come from 20000-29999 instead: below the ephemeral range and
below the NodePort range (30000-32767), above every upstream default port.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import random
import socket
from pathlib import Path

FREE_PORTS = range(20000, 30000)

# Ports this process has handed out: a port is only probed, not held, until its component
# binds it, so without this two picks in a row could return the same port (with ~25 ports
# drawn from 10,000 for `up --ha`, a few percent of the time: CI saw the kubelet and the
# metrics server fail to bind on every restart).
_handed_out: set[int] = set()


@functools.cache
def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def bindable(host: str, port: int, udp: bool = False) -> int | None:
    """port (0: any) if free on host right now, for TCP (and UDP too when udp), else None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.ExitStack() as held:
        try:
            if udp:
                dgram = held.enter_context(socket.socket(family, socket.SOCK_DGRAM))
                dgram.bind((host, port))
                port = dgram.getsockname()[1]
            tcp = held.enter_context(socket.socket(family))
            # As the components bind (etcd, hypercorn and Trio set SO_REUSEADDR): a port
            # whose old connections sit in TIME_WAIT is free to them.
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, port))
        except OSError as e:
            if e.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
            return None
        return int(tcp.getsockname()[1])


def free_port(host: str = "127.0.0.1", udp: bool = False) -> int:
    """A port free on host right now (the caller's process binds it a moment later), and
    not one this process has handed out before."""
    if _ephemeral_start() >= FREE_PORTS.stop:
        candidates = [random.choice(FREE_PORTS) for _ in range(200)]
    else:
        candidates = [0] * 50
    for candidate in candidates:
        if candidate in _handed_out:
            continue
        port = bindable(host, candidate, udp)
        if port is not None and port not in _handed_out:
            _handed_out.add(port)
            return port
    raise OSError(errno.EADDRINUSE, f"no free port on {host}")
