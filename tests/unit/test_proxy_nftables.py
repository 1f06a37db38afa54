"""The nftables ruleset: what is generated, and that nft accepts it (in a throwaway netns)."""

from __future__ import annotations

import ipaddress
import os
import random
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from k8slite.proxy.nftables import NftablesConfig, Ruleset, render, render_changes
from k8slite.proxy.serviceports import Endpoint, ServicePort, ServicePortName

CONFIG = NftablesConfig([ipaddress.ip_network("10.96.0.0/12")])
A, B = Endpoint("10.244.0.5", 8080), Endpoint("10.244.0.6", 8080)


def sp(
    name: str = "web",
    *endpoints: Endpoint,
    ip: str = "10.96.0.10",
    port: int = 80,
    node_port: int | None = None,
    affinity: int | None = None,
    protocol: str = "TCP",
    namespace: str = "default",
    port_name: str = "http",
) -> ServicePort:
    return ServicePort(
        ServicePortName(namespace, name, port_name, protocol),
        ip,
        port,
        protocol,
        node_port,
        affinity,
        endpoints,
    )


def chains(rules: Ruleset) -> set[str]:
    return {name for port in rules.ports.values() for name, _ in port.chains}


def test_fresh_ruleset_structure() -> None:
    rules = render(
        [sp("web", A, B, node_port=30080), sp("one", A, ip="10.96.0.11")], None, CONFIG, None
    )
    text = rules.text
    assert text.startswith("add table ip k8slite\ndelete table ip k8slite\n")
    assert (
        "add element ip k8slite service-ips { 10.96.0.10 . tcp . 80 : goto "
        "svc-default/web/tcp/http, 10.96.0.11 . tcp . 80 : goto svc-default/one/tcp/http }"
    ) in text
    # A uniform pick: the first of two endpoints half the time, else the second.
    assert (
        "add rule ip k8slite svc-default/web/tcp/http numgen random mod 2 == 0 goto "
        "ep-default/web/tcp/http__10.244.0.5/8080\n"
        "add rule ip k8slite svc-default/web/tcp/http goto "
        "ep-default/web/tcp/http__10.244.0.6/8080\n"
    ) in text
    assert (
        "add rule ip k8slite svc-default/one/tcp/http goto ep-default/one/tcp/http__10.244.0.5/8080"
    ) in text
    assert (
        "add rule ip k8slite ep-default/web/tcp/http__10.244.0.5/8080 meta l4proto tcp "
        "dnat to 10.244.0.5:8080"
    ) in text
    assert "service-nodeports { tcp . 30080 : goto ext-default/web/tcp/http }" in text
    assert "fib daddr type local ip daddr != 127.0.0.0/8 jump nodeports" in text
    assert chains(rules) == {
        "svc-default/web/tcp/http",
        "ext-default/web/tcp/http",
        "ep-default/web/tcp/http__10.244.0.5/8080",
        "ep-default/web/tcp/http__10.244.0.6/8080",
        "svc-default/one/tcp/http",
        "ep-default/one/tcp/http__10.244.0.5/8080",
    }


def test_no_endpoints_means_no_map_entry_and_closed_node_port() -> None:
    text = render([sp("empty", node_port=30081)], None, CONFIG, None).text
    assert "service-ips {" not in text.split("add element", 1)[-1]
    assert "add element ip k8slite no-endpoint-nodeports { tcp . 30081 }" in text
    assert "ip daddr { 10.96.0.0/12 } meta l4proto tcp reject with tcp reset" in text


def test_affinity_sets_and_masquerading() -> None:
    config = NftablesConfig(
        CONFIG.service_ranges, cluster_cidr=ipaddress.ip_network("10.244.0.0/16")
    )
    rules = render([sp("s", A, B, affinity=60)], ("192.0.2.10", "127.0.0.1"), config, None)
    text = rules.text
    aff = "aff-60-default/s/tcp/http__10.244.0.5/8080"
    assert (
        f"add set ip k8slite {aff} {{ type ipv4_addr ; flags dynamic,timeout ; "
        "timeout 60s ; }" in text
    )
    assert (
        f"add rule ip k8slite svc-default/s/tcp/http ip saddr @{aff} goto "
        "ep-default/s/tcp/http__10.244.0.5/8080" in text
    )
    assert f"update @{aff} {{ ip saddr }}" in text
    assert "svc-default/s/tcp/http ip saddr != 10.244.0.0/16 jump mark-for-masquerade" in text
    # Loopback is never a NodePort address in this mode.
    assert "add element ip k8slite nodeport-ips { 192.0.2.10 }" in text
    assert "ip daddr @nodeport-ips jump nodeports" in text


def test_full_resync_deletes_only_stale_objects() -> None:
    first = render([sp("a", A, affinity=60), sp("b", B, ip="10.96.0.11")], None, CONFIG, None)
    text = render([sp("a", A, affinity=60)], None, CONFIG, first).text
    assert "delete table" not in text
    assert "flush table ip k8slite" in text
    assert "delete chain ip k8slite svc-default/b/tcp/http" in text
    assert "delete chain ip k8slite ep-default/b/tcp/http__10.244.0.6/8080" in text
    assert "delete set" not in text  # a's affinity set, and its entries, are kept
    assert "delete chain ip k8slite svc-default/a" not in text


def test_changes_touch_only_changed_services() -> None:
    first = render([sp("a", A), sp("b", A, B, ip="10.96.0.11")], None, CONFIG, None)
    text = render_changes([sp("a", A), sp("b", B, ip="10.96.0.11")], None, CONFIG, first).text
    assert "flush table" not in text and "svc-default/a/" not in text
    assert "delete element ip k8slite service-ips { 10.96.0.11 . tcp . 80 }" in text
    assert "delete chain ip k8slite ep-default/b/tcp/http__10.244.0.5/8080" in text
    assert (
        "add rule ip k8slite svc-default/b/tcp/http goto "
        "ep-default/b/tcp/http__10.244.0.6/8080" in text
    )


# ------------------------------------------------------------- against the kernel


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
