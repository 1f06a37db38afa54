"""One cluster CIDR cut into equal node subnets: upstream's cidrset of the range allocator.

Subnets are numbered in order through the cluster range; allocation takes the next free one
after the last handed out (wrapping around), so a subnet just released is not reused at
once while others are free.
"""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CIDRRangeFull(Exception):
    """Every node subnet of the range is taken (upstream's ErrCIDRRangeNoCIDRsRemaining)."""

    def __init__(self) -> None:
        super().__init__(
            "CIDR allocation failed; there are no remaining CIDRs left to allocate in the "
            "accepted range"
        )


class CIDRSet:
    # Upstream refuses more than 2^16 node subnets in one range.
    MAX_PREFIX_DIFF = 16

    def __init__(self, cluster: Network, mask_size: int) -> None:
        if mask_size < cluster.prefixlen or mask_size > cluster.max_prefixlen:
            raise ValueError(f"node CIDR mask size {mask_size} does not fit cluster CIDR {cluster}")
        if mask_size - cluster.prefixlen > self.MAX_PREFIX_DIFF:
            raise ValueError(
                f"CIDRSet: mask size {mask_size} is too big for cluster CIDR {cluster}: at most "
                f"{self.MAX_PREFIX_DIFF} bits more than the cluster's mask"
            )
        self.cluster = cluster
        self.mask_size = mask_size
        self.size = 1 << (mask_size - cluster.prefixlen)
        self._step = 1 << (cluster.max_prefixlen - mask_size)
        self._used: set[int] = set()
        self._next = 0

    @property
    def free(self) -> int:
        return self.size - len(self._used)

    def _subnet(self, index: int) -> Network:
        base = int(self.cluster.network_address) + index * self._step
        return ipaddress.ip_network((base, self.mask_size))

    def _index(self, subnet: Network) -> int | None:
        """The index of subnet in this range, or None if it is not one of its subnets."""
        if subnet.version != self.cluster.version or not subnet.subnet_of(self.cluster):  # type: ignore[arg-type]
            return None
        if subnet.prefixlen != self.mask_size:
            return None
        return (int(subnet.network_address) - int(self.cluster.network_address)) // self._step

    def contains(self, subnet: Network) -> bool:
        return self._index(subnet) is not None

    def allocate_next(self) -> Network:
        if len(self._used) >= self.size:
            raise CIDRRangeFull()
        for offset in range(self.size):
            index = (self._next + offset) % self.size
            if index not in self._used:
                self._used.add(index)
                self._next = (index + 1) % self.size
                return self._subnet(index)
        raise CIDRRangeFull()  # unreachable: the count said one is free

    def occupy(self, subnet: Network) -> bool:
        """Mark a subnet (a node's existing podCIDR) taken; False if it is not in range."""
        index = self._index(subnet)
        if index is None:
            return False
        self._used.add(index)
        return True

    def release(self, subnet: Network) -> None:
        index = self._index(subnet)
        if index is not None:
            self._used.discard(index)


def parse_cluster_cidrs(text: str) -> list[Network]:
    """--cluster-cidr: one CIDR, or an IPv4 and an IPv6 one (dual-stack), comma-separated."""
    nets = [
        ipaddress.ip_network(part.strip(), strict=True) for part in text.split(",") if part.strip()
    ]
    if not nets:
        raise ValueError("--cluster-cidr is empty")
    if len(nets) > 2:
        raise ValueError("--cluster-cidr may hold at most two CIDRs (one per IP family)")
    if len(nets) == 2 and nets[0].version == nets[1].version:
        raise ValueError("a dual-stack --cluster-cidr needs one IPv4 and one IPv6 CIDR")
    return nets
