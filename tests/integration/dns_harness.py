"""k8slite-dns as a child process on loopback, for the tests that need a real server."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.query

from tests.conftest import ServerHandle
from tests.launch import launch, stop


@dataclass
class Dns:
    port: int
    serving_url: str

    def query(
        self, name: str, rdtype: str = "A", *, tcp: bool = False, **kw: Any
    ) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype, **kw)
        send = dns.query.tcp if tcp else dns.query.udp
        return send(q, "127.0.0.1", timeout=10, port=self.port)  # type: ignore[no-any-return]


@contextmanager
def running_dns(apiserver: ServerHandle, log: Path, *flags: str) -> Iterator[Dns]:
    """k8slite-dns on 127.0.0.1 (DNS and metrics on free ports) watching `apiserver`.

    `flags` must say where names outside the cluster go (--upstream-dns): never a real
    resolver."""
    argv = [
        sys.executable,
        "-m",
        "k8slite.cmd.dns",
        "--kubeconfig",
        str(apiserver.kubeconfig_for("dns")),
        "--bind-address",
        "127.0.0.1",
        "--dns-port",
        "0",
        "--secure-port",
        "0",
        *flags,
    ]
    assert "--upstream-dns" in flags
    proc, line = launch(argv, log, "k8slite-dns ready: ", what="k8slite-dns")
    try:
        found = re.search(r"DNS on 127\.0\.0\.1:(\d+) .*serving on (\S+)", line)
        assert found, line
        yield Dns(int(found[1]), found[2])
    finally:
        stop(proc)
