"""The node IPAM range allocator (controllers/cidrset.py)."""

from __future__ import annotations

import ipaddress

import pytest

from k8slite.controllers.cidrset import CIDRRangeFull, CIDRSet, parse_cluster_cidrs


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def test_allocates_in_order_without_repeats_until_full() -> None:
    cidrs = CIDRSet(net("10.244.0.0/22"), 24)
    got = [str(cidrs.allocate_next()) for _ in range(4)]
    assert got == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"]
    with pytest.raises(CIDRRangeFull):
        cidrs.allocate_next()


def test_released_subnet_comes_back_after_the_others() -> None:
    cidrs = CIDRSet(net("10.0.0.0/22"), 24)
    first = cidrs.allocate_next()
    cidrs.release(first)
    # The rotation moves on before it reuses what was just freed.
    assert str(cidrs.allocate_next()) == "10.0.1.0/24"
    for _ in range(2):
        cidrs.allocate_next()
    assert cidrs.allocate_next() == first


def test_occupied_subnets_are_skipped_and_foreign_ones_ignored() -> None:
    cidrs = CIDRSet(net("10.0.0.0/23"), 24)
    assert cidrs.occupy(net("10.0.0.0/24"))
    assert not cidrs.occupy(net("192.168.0.0/24"))
    assert not cidrs.occupy(net("10.0.0.0/25"))  # not one of its subnets
    assert str(cidrs.allocate_next()) == "10.0.1.0/24"
    assert cidrs.free == 0


def test_ipv6_and_limits() -> None:
    cidrs = CIDRSet(net("fd00:10::/56"), 64)
    assert [str(cidrs.allocate_next()) for _ in range(2)] == ["fd00:10::/64", "fd00:10:0:1::/64"]
    with pytest.raises(ValueError, match="too big"):
        CIDRSet(net("fd00::/48"), 65)
    with pytest.raises(ValueError, match="does not fit"):
        CIDRSet(net("10.0.0.0/16"), 8)


def test_cluster_cidr_flag() -> None:
    assert [str(n) for n in parse_cluster_cidrs("10.244.0.0/16, fd00::/48")] == [
        "10.244.0.0/16",
        "fd00::/48",
    ]
    with pytest.raises(ValueError, match="one IPv4 and one IPv6"):
        parse_cluster_cidrs("10.0.0.0/16,10.1.0.0/16")
    with pytest.raises(ValueError):
        parse_cluster_cidrs("10.0.0.1/16")  # host bits set
