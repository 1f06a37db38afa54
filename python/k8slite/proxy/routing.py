"""The routing guard: the whole service range is routed to this host before anything else."""

from __future__ import annotations

import ipaddress
import json
import logging

import trio

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class RoutingError(RuntimeError):
    """The service range could not be routed locally; the proxy must not start."""


def parse_ranges(text: str) -> list[Network]:
    """--service-cluster-ip-range: one CIDR, or two comma-separated for dual-stack."""
    try:
        nets = [ipaddress.ip_network(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError as e:
        raise ValueError(f"invalid --service-cluster-ip-range {text!r}: {e}") from None
    if not nets or len(nets) > 2 or len({n.version for n in nets}) != len(nets):
        raise ValueError(
            f"invalid --service-cluster-ip-range {text!r}: want one CIDR or "
            "one IPv4 and one IPv6 CIDR"
        )
    return nets


async def _ip(*args: str) -> str:
    """Run `ip ARGS`; return stdout or raise RoutingError with its stderr."""
    cmd = ["ip", *args]
    try:
        done = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True, check=False)
    except OSError as e:
        raise RoutingError(f"cannot run {' '.join(cmd)}: {e} (is iproute2 installed?)") from e
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise RoutingError(f"{' '.join(cmd)}: {err}")
    return done.stdout.decode()


def _family(net: Network) -> str:
    return "-6" if net.version == 6 else "-4"


def _samples(net: Network) -> list[Address]:
    """Addresses whose route stands for the whole range: both ends and the middle."""
    first, last = net.network_address, net.broadcast_address
    middle = first + net.num_addresses // 2
    return sorted(
        {
            first + 1 if net.num_addresses > 2 else first,
            middle,
            last - 1 if net.num_addresses > 2 else last,
        }
    )


class ServiceRangeGuard:
    """Routes the service range as `local` on the loopback device and checks that it holds.

    A `local` route for a whole prefix makes every address in it an address of this host: a
    packet to a service IP is delivered here (to a userspace listener bound to it, or after
    nftables rewrote it to an endpoint) and never follows the default route out of the
    machine, whether or not any service owns the address. The route lives in the `local`
    table, which the kernel consults before `main`, so no other route can take precedence.
    """

    def __init__(self, networks: list[Network]) -> None:
        self.networks = networks

    def __contains__(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.networks)

    async def ensure(self) -> None:
        """Install (idempotently) and verify the routes; raise RoutingError if either fails."""
        for net in self.networks:
            try:
                await _ip(
                    _family(net),
                    "route",
                    "replace",
                    "local",
                    str(net),
                    "dev",
                    "lo",
                    "table",
                    "local",
                )
            except RoutingError as e:
                raise RoutingError(
                    f"cannot route the service range {net} to this host ({e}); refusing to "
                    "start, because packets for service addresses could otherwise leave the "
                    "machine. k8slite-proxy needs CAP_NET_ADMIN (run it as root)"
                ) from None
        await self.verify()

    async def verify(self) -> None:
        """Ask the kernel where packets to the range go; anything but local/lo is an error."""
        for net in self.networks:
            for addr in _samples(net):
                out = await _ip("-j", _family(net), "route", "get", str(addr))
                try:
                    route = json.loads(out)[0]
                except (ValueError, IndexError, KeyError):
                    raise RoutingError(f"cannot read `ip route get {addr}`: {out!r}") from None
                if route.get("type") != "local" or route.get("dev") != "lo":
                    raise RoutingError(
                        f"service address {addr} is not routed locally (the kernel says "
                        f"{route.get('type', 'unicast')} via {route.get('dev')}); refusing to "
                        "go on, because packets for it could leave the machine"
                    )

    async def remove(self) -> None:
        """Drop the routes (only `k8slite-proxy --cleanup` does this; see docs/networking.md)."""
        for net in self.networks:
            try:
                await _ip(
                    _family(net), "route", "del", "local", str(net), "dev", "lo", "table", "local"
                )
                log.info("removed the local route for %s", net)
            except RoutingError as e:
                if "No such process" not in str(e):
                    raise
