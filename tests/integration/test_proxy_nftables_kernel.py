"""The nftables ruleset against the kernel: nft accepts it, in a throwaway network namespace."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from k8slite.proxy.nftables import Ruleset, render, render_changes
from k8slite.proxy.serviceports import Endpoint, ServicePort
from tests.servicecases import CONFIG, A, B, sp


def _netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None:
        pytest.skip("needs root, ip and nft (hack/install-deps installs nftables)")
    name = f"k8slite-nft-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False)


netns = pytest.fixture(_netns)
other_netns = pytest.fixture(_netns)


def nft(netns: str, *args: str, text: str | None = None) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "nft", *args],
        input=text,
        text=True,
        check=True,
        capture_output=True,
    ).stdout


def apply(netns: str, rules: Ruleset) -> str:
    nft(netns, "-f", "-", text=rules.text)
    return nft(netns, "list", "table", "ip", "k8slite")


def normalized(listing: str) -> dict[str, list[str]]:
    """A table listing as {object header: sorted lines}; creation order does not matter."""
    out: dict[str, list[str]] = {}
    header = ""
    for raw in listing.splitlines():
        line = raw.strip().rstrip(",")
        if re.match(r"^(chain|set|map) ", line):
            header = line
            out[header] = []
        elif line and line != "}" and header:
            # Element lists wrap arbitrarily: compare their members.
            for part in line.removeprefix("elements = {").removesuffix("}").split(","):
                if part.strip():
                    out[header].append(part.strip())
    return {k: sorted(v) for k, v in out.items()}


def test_kernel_accepts_successive_rulesets(netns: str) -> None:
    # Names that are nft keywords must not confuse the parser.
    tricky = sp("ip", A, B, namespace="tcp", port_name="dnat", affinity=30, node_port=30000)
    udp = sp("dns", A, ip="10.96.0.53", port=53, protocol="UDP", port_name="")
    first = render([tricky, udp, sp("empty", node_port=30001)], None, CONFIG, None)
    listed = apply(netns, first)
    assert "svc-tcp/ip/tcp/dnat" in listed and "svc-default/dns/udp/53" in listed
    assert "aff-30-tcp/ip/tcp/dnat__10.244.0.5/8080" in listed
    # Drop a service and change another's endpoints: stale chains go, the table stays.
    second = render(
        [sp("ip", B, namespace="tcp", port_name="dnat", affinity=30)], ("10.1.2.3",), CONFIG, first
    )
    listed = apply(netns, second)
    assert "dns" not in listed and "10.244.0.5" not in listed
    assert "aff-30-tcp/ip/tcp/dnat__10.244.0.6/8080" in listed
    # A fresh render (as after a restart) replaces whatever is there.
    listed = apply(netns, render([], None, CONFIG, None))
    assert "svc-" not in listed and "aff-" not in listed


def test_changes_end_where_a_full_sync_would(netns: str, other_netns: str) -> None:
    """Random churn applied as partial syncs leaves exactly the table a full sync makes."""
    rng = random.Random(8)
    pool = [Endpoint(f"10.244.1.{i}", 8080) for i in range(1, 6)]

    def random_port(i: int) -> ServicePort:
        eps = tuple(sorted(rng.sample(pool, rng.randint(0, 3))))
        return sp(
            f"s{i}",
            *eps,
            ip=f"10.96.1.{i}",
            node_port=rng.choice([None, 30100 + i]),
            affinity=rng.choice([None, 60]),
            protocol=rng.choice(["TCP", "UDP"]),
        )

    state = {i: random_port(i) for i in range(8)}
    applied = render(list(state.values()), None, CONFIG, None)
    apply(netns, applied)
    for _ in range(12):
        for i in rng.sample(range(12), 4):
            if rng.random() < 0.25:
                state.pop(i, None)
            else:
                state[i] = random_port(i)
        nodeport_ips = rng.choice([None, ("10.1.2.3",)])
        applied = render_changes(list(state.values()), nodeport_ips, CONFIG, applied)
        partial = normalized(apply(netns, applied))
        full = normalized(
            apply(other_netns, render(list(state.values()), nodeport_ips, CONFIG, None))
        )
        assert partial == full
