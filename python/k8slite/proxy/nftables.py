"""nftables mode: DNAT rules in a table of our own, replaced atomically with `nft -f`."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import trio

from k8slite.proxy.routing import Network
from k8slite.proxy.serviceports import Endpoint, ServicePort, ServicePortName

log = logging.getLogger(__name__)

TABLE = "k8slite"
# The bit of the packet mark that asks nat-postrouting to masquerade (upstream's value).
MASQUERADE_MARK = 0x4000
_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
# Changes are applied as they come; the whole ruleset is rewritten this often regardless.
FULL_SYNC_PERIOD = 3600.0

# Objects every ruleset has. Base chains hook into the kernel; the rest are jumped to.
_MAPS = {
    "service-ips": "type ipv4_addr . inet_proto . inet_service : verdict ;",
    "service-nodeports": "type inet_proto . inet_service : verdict ;",
}
_SETS = {
    "no-endpoint-nodeports": "type inet_proto . inet_service ;",
    "nodeport-ips": "type ipv4_addr ;",
}
_BASE_CHAINS = {
    "nat-prerouting": "type nat hook prerouting priority -100 ; policy accept ;",
    "nat-output": "type nat hook output priority -100 ; policy accept ;",
    "nat-postrouting": "type nat hook postrouting priority 100 ; policy accept ;",
    # Before the default filter priority, so a reject here cannot be skipped by an accept
    # in someone else's table (an accept only ends its own chain).
    "filter-input": "type filter hook input priority -10 ; policy accept ;",
}
_CHAINS = ("services", "nodeports", "mark-for-masquerade", "masquerading")


class NftablesError(RuntimeError):
    """nft is missing, not permitted, or refused the ruleset."""


def _port_id(sp: ServicePort) -> str:
    # Chain names use nft's identifier alphabet (letters, digits, / - _ .); namespaces,
    # names and port names are DNS labels, so "/" separates them unambiguously.
    n = sp.name
    return f"{n.namespace}/{n.name}/{sp.protocol.lower()}/{n.port or sp.port}"


def service_chain(sp: ServicePort) -> str:
    return f"svc-{_port_id(sp)}"


def external_chain(sp: ServicePort) -> str:
    return f"ext-{_port_id(sp)}"


def endpoint_chain(sp: ServicePort, ep: Endpoint) -> str:
    return f"ep-{_port_id(sp)}__{ep.ip}/{ep.port}"


def affinity_set(sp: ServicePort, ep: Endpoint) -> str:
    # The timeout is part of the name: a set's timeout cannot change in place, so a new
    # timeout means a new set, and the old one is deleted as stale.
    return f"aff-{sp.affinity_timeout}-{_port_id(sp)}__{ep.ip}/{ep.port}"


@dataclass
class NftablesConfig:
    service_ranges: list[Network]
    table: str = TABLE
    # Traffic to a ClusterIP from outside this CIDR is masqueraded (upstream --cluster-cidr).
    cluster_cidr: Network | None = None
    masquerade_all: bool = False


@dataclass(frozen=True)
class PortRules:
    """The nftables objects one service port owns. Two equal values mean nothing to do."""

    chains: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (name, rule bodies), in order
    sets: tuple[tuple[str, str], ...] = ()  # (name, definition)
    service_ip: tuple[str, str] | None = None  # service-ips (key, verdict)
    node_port: tuple[str, str] | None = None  # service-nodeports (key, verdict)
    closed_node_port: str | None = None  # no-endpoint-nodeports key


@dataclass
class Ruleset:
    """A generated `nft -f` transaction and the state the table is in once it is applied."""

    text: str
    ports: dict[ServicePortName, PortRules]
    nodeport_ips: tuple[str, ...] | None
    full: bool
    # What each port's rules were made from, so an unchanged port is not rendered again.
    sources: dict[ServicePortName, ServicePort]


def port_rules(sp: ServicePort, config: NftablesConfig) -> PortRules:
    proto = sp.protocol.lower()
    if not sp.endpoints:
        # No map entry: filter-input rejects what no rule rewrote.
        return PortRules(closed_node_port=f"{proto} . {sp.node_port}" if sp.node_port else None)
    svc = service_chain(sp)
    svc_rules: list[str] = []
    if config.masquerade_all:
        svc_rules.append("jump mark-for-masquerade")
    elif config.cluster_cidr is not None and config.cluster_cidr.version == 4:
        svc_rules.append(f"ip saddr != {config.cluster_cidr} jump mark-for-masquerade")
    chains: list[tuple[str, tuple[str, ...]]] = []
    sets: list[tuple[str, str]] = []
    targets = []
    for ep in sp.endpoints:
        chain = endpoint_chain(sp, ep)
        targets.append(chain)
        # Hairpin: a pod reaching itself through its service must see the reply come
        # from the service, so its source is rewritten too.
        rules = [f"ip saddr {ep.ip} jump mark-for-masquerade"]
        if sp.affinity_timeout is not None:
            aff = affinity_set(sp, ep)
            spec = f"type ipv4_addr ; flags dynamic,timeout ; timeout {sp.affinity_timeout}s ;"
            sets.append((aff, spec))
            rules.append(f"update @{aff} {{ ip saddr }}")
            # Checked before the random pick: a known client goes back to its endpoint.
            svc_rules.append(f"ip saddr @{aff} goto {chain}")
        rules.append(f"meta l4proto {proto} dnat to {ep.ip}:{ep.port}")
        chains.append((chain, tuple(rules)))
    # A uniform random pick: endpoint i of n is taken with chance 1/(n-i) when none before
    # it was, which makes every endpoint equally likely. Upstream writes this as one
    # `numgen random mod n vmap {0: goto a, 1: goto b, ...}`; each such rule is an
    # anonymous set, and the kernel scans all of a table's sets to name a new one, so with
    # 10,000 services a sync took 20 s instead of 2 s.
    n = len(targets)
    svc_rules += [
        f"numgen random mod {n - i} == 0 goto {chain}" for i, chain in enumerate(targets[:-1])
    ]
    svc_rules.append(f"goto {targets[-1]}")
    chains.insert(0, (svc, tuple(svc_rules)))
    node_port = None
    if sp.node_port:
        ext = external_chain(sp)
        # Node port traffic comes from anywhere; masquerading brings the replies back
        # through this host to be un-NATed.
        chains.append((ext, ("jump mark-for-masquerade", f"goto {svc}")))
        node_port = (f"{proto} . {sp.node_port}", f"goto {ext}")
    return PortRules(
        tuple(chains),
        tuple(sets),
        (f"{sp.cluster_ip} . {proto} . {sp.port}", f"goto {svc}"),
        node_port,
    )


def _add_port(t: str, rules: PortRules, out: list[str]) -> None:
    """Define a port's sets and chains and fill the chains (which exist empty, or not)."""
    out += [f"add set ip {t} {name} {{ {spec} }}" for name, spec in rules.sets]
    # Every chain exists before any rule jumps to one.
    out += [f"add chain ip {t} {chain}" for chain, _ in rules.chains]
    for chain, bodies in rules.chains:
        out += [f"add rule ip {t} {chain} {body}" for body in bodies]


def _add_elements(t: str, ports: Iterable[PortRules], out: list[str]) -> None:
    service_ips, node_ports, closed = [], [], []
    for rules in ports:
        if rules.service_ip:
            service_ips.append(" : ".join(rules.service_ip))
        if rules.node_port:
            node_ports.append(" : ".join(rules.node_port))
        if rules.closed_node_port:
            closed.append(rules.closed_node_port)
    for name, elements in (
        ("service-ips", service_ips),
        ("service-nodeports", node_ports),
        ("no-endpoint-nodeports", closed),
    ):
        if elements:
            out.append(f"add element ip {t} {name} {{ {', '.join(elements)} }}")


def _delete_elements(t: str, rules: PortRules, out: list[str]) -> None:
    if rules.service_ip:
        out.append(f"delete element ip {t} service-ips {{ {rules.service_ip[0]} }}")
    if rules.node_port:
        out.append(f"delete element ip {t} service-nodeports {{ {rules.node_port[0]} }}")
    if rules.closed_node_port:
        out.append(f"delete element ip {t} no-endpoint-nodeports {{ {rules.closed_node_port} }}")


def _definitions(t: str) -> list[str]:
    out = []
    for name, spec in (*_MAPS.items(), *_SETS.items()):
        kind = "map" if name in _MAPS else "set"
        out.append(f"add {kind} ip {t} {name} {{ {spec} }}")
    for name, spec in _BASE_CHAINS.items():
        out.append(f"add chain ip {t} {name} {{ {spec} }}")
    out += [f"add chain ip {t} {name}" for name in _CHAINS]
    return out


def _wanted(
    ports: list[ServicePort],
    config: NftablesConfig,
    previous: Ruleset | None,
) -> tuple[dict[ServicePortName, PortRules], dict[ServicePortName, ServicePort]]:
    rules: dict[ServicePortName, PortRules] = {}
    sources: dict[ServicePortName, ServicePort] = {}
    for sp in ports:
        if sp.version != 4:
            continue  # this table is IPv4; IPv6 service ports are for userspace mode
        sources[sp.name] = sp
        if previous is not None and previous.sources.get(sp.name) == sp:
            rules[sp.name] = previous.ports[sp.name]
        else:
            rules[sp.name] = port_rules(sp, config)
    return rules, sources


def render(
    ports: list[ServicePort],
    nodeport_ips: tuple[str, ...] | None,
    config: NftablesConfig,
    previous: Ruleset | None,
) -> Ruleset:
    """The whole ruleset as one transaction.

    With `previous` (what the last successful sync left), the table is flushed and only
    objects no longer wanted are deleted, so the ClientIP affinity sets of services that
    still exist keep their entries. Without it the table is deleted and rebuilt.
    """
    t = config.table
    wanted, sources = _wanted(ports, config, previous)
    out: list[str] = [f"add table ip {t}"]
    if previous is None:
        out += [f"delete table ip {t}", f"add table ip {t}"]
    out += _definitions(t)
    if previous is not None:
        out += [f"flush table ip {t}"]
        out += [f"flush map ip {t} {name}" for name in _MAPS]
        out += [f"flush set ip {t} {name}" for name in _SETS]
        _delete_stale(t, previous.ports.values(), wanted.values(), out)
    out += _static_rules(t, config, nodeport_ips)
    for rules in wanted.values():
        _add_port(t, rules, out)
    _add_elements(t, wanted.values(), out)
    return Ruleset("\n".join(out) + "\n", wanted, nodeport_ips, True, sources)


def render_changes(
    ports: list[ServicePort],
    nodeport_ips: tuple[str, ...] | None,
    config: NftablesConfig,
    previous: Ruleset,
) -> Ruleset:
    """Only what changed since `previous`, as one transaction (upstream's partial sync).

    The fixed chains are refilled every time, which is cheap and fails (so the next sync
    rebuilds everything) if someone removed the table under us.
    """
    t = config.table
    wanted, sources = _wanted(ports, config, previous)
    out = [f"flush chain ip {t} {name}" for name in (*_BASE_CHAINS, *_CHAINS)]
    out.append(f"flush set ip {t} nodeport-ips")
    gone = [r for key, r in previous.ports.items() if wanted.get(key) != r]
    new = {key: r for key, r in wanted.items() if previous.ports.get(key) != r}
    for rules in gone:
        _delete_elements(t, rules, out)
        # Emptied first, so nothing refers to a chain or set that is deleted below.
        out += [f"flush chain ip {t} {chain}" for chain, _ in rules.chains]
    _delete_stale(t, gone, wanted.values(), out)
    out += _static_rules(t, config, nodeport_ips)
    for rules in new.values():
        _add_port(t, rules, out)
    _add_elements(t, new.values(), out)
    return Ruleset("\n".join(out) + "\n", wanted, nodeport_ips, False, sources)


def _delete_stale(
    t: str, old: Iterable[PortRules], wanted: Iterable[PortRules], out: list[str]
) -> None:
    keep_chains: set[str] = set()
    keep_sets: set[str] = set()
    for rules in wanted:
        keep_chains.update(name for name, _ in rules.chains)
        keep_sets.update(name for name, _ in rules.sets)
    for rules in old:
        out += [
            f"delete chain ip {t} {name}" for name, _ in rules.chains if name not in keep_chains
        ]
        out += [f"delete set ip {t} {name}" for name, _ in rules.sets if name not in keep_sets]


def _nodeport_addresses(nodeport_ips: tuple[str, ...] | None) -> list[str]:
    # Loopback is left out, as upstream's nftables mode does: DNAT from 127.0.0.1 to a pod
    # would need route_localnet, which opens the host's loopback services to the network.
    out = []
    for ip in nodeport_ips or ():
        addr = ipaddress.ip_address(ip)
        if addr.version == 4 and addr not in _LOOPBACK:
            out.append(str(addr))
    return sorted(set(out))


def _static_rules(
    t: str, config: NftablesConfig, nodeport_ips: tuple[str, ...] | None
) -> list[str]:
    ranges = ", ".join(str(n) for n in config.service_ranges if n.version == 4)
    if nodeport_ips is None:
        to_node = f"fib daddr type local ip daddr != {_LOOPBACK}"
    else:
        to_node = "ip daddr @nodeport-ips"
    mark = f"0x{MASQUERADE_MARK:x}"
    rules = [
        f"add rule ip {t} nat-prerouting jump services",
        f"add rule ip {t} nat-output jump services",
        f"add rule ip {t} nat-postrouting jump masquerading",
        f"add rule ip {t} mark-for-masquerade meta mark set meta mark or {mark}",
        f"add rule ip {t} masquerading meta mark and {mark} == 0 return",
        f"add rule ip {t} masquerading meta mark set meta mark xor {mark}",
        f"add rule ip {t} masquerading masquerade fully-random",
        f"add rule ip {t} services ip daddr . meta l4proto . th dport vmap @service-ips",
        f"add rule ip {t} services {to_node} jump nodeports",
        f"add rule ip {t} nodeports meta l4proto . th dport vmap @service-nodeports",
    ]
    # The service range is routed to this host, so anything sent to it that no service
    # rule rewrote (no endpoints, a port no service has, an unallocated address) would
    # reach whatever listens on the host's wildcard address. Refuse it instead: a TCP
    # reset or an ICMP port unreachable, so clients fail at once rather than time out.
    unrewritten = "ct state new ct status & dnat == 0"
    for match in ([f"ip daddr {{ {ranges} }}"] if ranges else []) + [
        f"{to_node} meta l4proto . th dport @no-endpoint-nodeports"
    ]:
        rules += [
            (
                f"add rule ip {t} filter-input {unrewritten} {match} meta l4proto tcp "
                "reject with tcp reset"
            ),
            f"add rule ip {t} filter-input {unrewritten} {match} reject",
        ]
    ips = _nodeport_addresses(nodeport_ips)
    if ips:
        rules.append(f"add element ip {t} nodeport-ips {{ {', '.join(ips)} }}")
    return rules


async def _nft(*args: str, stdin: bytes | None = None) -> str:
    cmd = ["nft", *args]
    try:
        done = await trio.run_process(
            cmd, stdin=stdin, capture_stdout=True, capture_stderr=True, check=False
        )
    except OSError as e:
        raise NftablesError(
            f"cannot run nft: {e}; nftables mode needs the nft tool "
            "(Debian: apt-get install nftables, or run hack/install-deps)"
        ) from e
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()
        raise NftablesError(f"nft {' '.join(args)}: {err or f'exit {done.returncode}'}")
    return done.stdout.decode()


class NftablesProxier:
    """Programs every service port as nftables DNAT rules, the whole table at once."""

    mode = "nftables"

    def __init__(self, config: NftablesConfig) -> None:
        self.config = config
        self._applied: Ruleset | None = None
        self._next_full = 0.0

    async def check(self) -> None:
        """Fail early and clearly if nft is missing or we may not change the ruleset."""
        await _nft("--version")
        await _nft("list", "tables")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            # The rules go with the proxy; the routing guard stays (docs/networking.md).
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await self.cleanup()

    async def sync(self, ports: list[ServicePort], nodeport_ips: tuple[str, ...] | None) -> bool:
        """Apply what changed; the whole ruleset at first, after a failure, and every
        FULL_SYNC_PERIOD, so anything that drifted is put right."""
        now = trio.current_time()
        if self._applied is None or now >= self._next_full:
            ruleset = render(ports, nodeport_ips, self.config, self._applied)
        else:
            ruleset = render_changes(ports, nodeport_ips, self.config, self._applied)
        try:
            await _nft("-f", "-", stdin=ruleset.text.encode())
        except NftablesError as e:
            log.error("applying the nftables ruleset failed: %s", e)
            # Rebuild from scratch next time, whatever state the table is in.
            self._applied = None
            return False
        if ruleset.full:
            self._next_full = now + FULL_SYNC_PERIOD
        self._applied = ruleset
        return True

    async def cleanup(self) -> None:
        """Delete our table (and every rule in it) if it exists."""
        self._applied = None
        try:
            await _nft("delete", "table", "ip", self.config.table)
            log.info("deleted nftables table ip %s", self.config.table)
        except NftablesError as e:
            if "No such file or directory" not in str(e):
                log.warning("%s", e)
