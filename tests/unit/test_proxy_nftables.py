"""The nftables ruleset as generated (nft's verdict on it: tests/integration, kernel tests)."""

from __future__ import annotations

import ipaddress

from k8slite.proxy.nftables import NftablesConfig, Ruleset, render, render_changes
from tests.servicecases import CONFIG, A, B, sp


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
