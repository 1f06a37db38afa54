"""Answers from the record store, as CoreDNS's kubernetes plugin gives them.

A name in the cluster domain that exists with other types gets NOERROR and no answer
(NODATA); one that does not exist gets NXDOMAIN; both carry the zone's SOA in the
authority section. Reverse names the cluster knows are answered; others, and every name
outside the cluster domain, go to the upstream resolvers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.NS import NS
from dns.rdtypes.ANY.SOA import SOA

from k8slite.dns.records import IN, address_record, schema_version, undashed
from k8slite.dns.store import RecordStore

# CoreDNS's kubernetes plugin default.
TTL = 5
_REVERSE_ZONES = ("in-addr.arpa.", "ip6.arpa.")
_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)
# How many CNAMEs inside the zone are followed before giving up (a loop).
_MAX_CHAIN = 8


class PodMode(StrEnum):
    """CoreDNS's `pods` option: how <dashed-ip>.<ns>.pod.<zone> is answered."""

    DISABLED = "disabled"
    INSECURE = "insecure"  # any well-formed IP (the spec's deprecated record)
    VERIFIED = "verified"  # only the IP of a pod in that namespace


@dataclass
class Answer:
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    authoritative: bool = True
    # Not ours: the whole query goes upstream.
    forward: bool = False
    # A CNAME out of the zone (an ExternalName): its target, to be looked up upstream.
    chase: dns.name.Name | None = None
    # The store's names this answer was read from: when one changes, a cached copy goes.
    names: set[str] = field(default_factory=set)

    @property
    def denial(self) -> bool:
        return self.rcode == dns.rcode.NXDOMAIN or not self.answer


class Resolver:
    def __init__(self, store: RecordStore, pods: PodMode = PodMode.INSECURE) -> None:
        self.store = store
        self.pods = pods
        zone = store.zone
        self.zone = zone
        self.zone_name = dns.name.from_text(zone)
        self._version = schema_version(zone)
        self._ns_host = f"ns.dns.{zone}"
        self._svc = f"svc.{zone}"
        self._pod = f"pod.{zone}"
        self._kube_dns = f"kube-dns.kube-system.svc.{zone}"
        self._mname = dns.name.from_text(self._ns_host)
        self._rname = dns.name.from_text(f"hostmaster.{zone}")

    def resolve(self, qname: dns.name.Name, qtype: int) -> Answer:
        name = qname.to_text().lower()
        if name == self.zone or name.endswith("." + self.zone):
            return self._in_zone(qname, name, qtype)
        if name.endswith(_REVERSE_ZONES):
            return self._reverse(qname, name, qtype)
        short = self._service_short_name(qname, name, qtype)
        if short is not None:
            return short
        return Answer(authoritative=False, forward=True)

    def _service_short_name(self, qname: dns.name.Name, name: str, qtype: int) -> Answer | None:
        """`SVC.NS.` answered as `SVC.NS.svc.<zone>` when NS is a namespace holding Service
        SVC (with records); None (forward it) otherwise.

        A K8s-Lite deviation from CoreDNS: busybox's nslookup (>= 1.29) applies the search
        list only to names without a dot, so `nslookup kubernetes.default` asks for
        `kubernetes.default.` itself. Answering only for an existing Service leaves every
        other two-label name (real domains included) to the upstream resolvers.
        """
        svc, _, ns = name[:-1].partition(".")
        if not svc or not ns or "." in ns or not self.store.has_namespace(ns):
            return None
        full = f"{svc}.{ns}.svc.{self.zone}"
        if self.store.lookup(full) is None:
            return None
        inner = self._in_zone(dns.name.from_text(full), full, qtype)
        # The Service's own records under the name asked; a denial carries no SOA, as the
        # name is not in our zone (nor is it authoritative).
        inner.answer = [
            dns.rrset.from_rdata_list(qname, rrset.ttl, list(rrset))
            if rrset.name.to_text().lower() == full
            else rrset
            for rrset in inner.answer
        ]
        inner.authority = []
        inner.authoritative = False
        return inner

    # ------------------------------------------------------------------ in zone

    def _in_zone(self, qname: dns.name.Name, name: str, qtype: int) -> Answer:
        out = Answer()
        owner = qname
        for _ in range(_MAX_CHAIN):
            by_type = self._records(name, out.names)
            if by_type is None:
                # After a CNAME too: the rcode speaks of the last name (RFC 6604).
                out.rcode = dns.rcode.NXDOMAIN
                out.authority.append(self.soa())
                return out
            cname = by_type.get(dns.rdatatype.CNAME)
            if cname and qtype != dns.rdatatype.CNAME:
                out.answer.append(dns.rrset.from_rdata_list(owner, TTL, cname))
                target = cname[0].target  # type: ignore[attr-defined]
                tname = target.to_text().lower()
                if not (tname == self.zone or tname.endswith("." + self.zone)):
                    out.chase = target
                    return out
                owner, name = target, tname
                continue
            rdatas = by_type.get(qtype)
            if not rdatas:
                if not out.answer:
                    out.authority.append(self.soa())
                return out
            out.answer.append(dns.rrset.from_rdata_list(owner, TTL, rdatas))
            if qtype in (dns.rdatatype.SRV, dns.rdatatype.NS):
                # The targets' addresses, saving the client a round trip.
                out.additional += self._target_addresses(rdatas, out.names)
            return out
        return Answer(rcode=dns.rcode.SERVFAIL)

    def _records(self, name: str, read: set[str]) -> dict[int, list] | None:
        """The records at `name` by type; {} for a name that exists without any; None
        when it does not exist. The names it depends on go into `read`."""
        read.add(name)
        found = self.store.lookup(name)
        if found is not None:
            return found
        if name == self.zone:
            return {
                dns.rdatatype.SOA: [self.soa()[0]],
                dns.rdatatype.NS: [NS(IN, dns.rdatatype.NS, self._mname)],
            }
        if name == self._version.name:
            return {dns.rdatatype.TXT: [self._version.rdata]}
        if name == self._ns_host:
            read.add(self._kube_dns)
            return self._ns_addresses()
        if self.store.exists(name) or name in (self._svc, self._pod, f"dns.{self.zone}"):
            return {}
        labels = name[: -len(self.zone) - 1].split(".")
        if len(labels) == 2 and labels[1] in ("svc", "pod"):
            return {} if self.store.has_namespace(labels[0]) else None
        if len(labels) == 3 and labels[2] == "pod":
            read.add(self.store.pod_zone(labels[1]))
            return self._pod_records(name, labels[0], labels[1])
        return None

    def _pod_records(self, name: str, label: str, namespace: str) -> dict[int, list] | None:
        if self.pods is PodMode.DISABLED or not self.store.has_namespace(namespace):
            return None
        ip = undashed(label)
        if ip is None:
            return None
        if self.pods is PodMode.VERIFIED and not self.store.has_pod_ip(namespace, ip):
            return None
        rec = address_record(name, ip)
        return {rec.rdtype: [rec.rdata]}

    def _ns_addresses(self) -> dict[int, list]:
        """ns.dns.<zone>: the kube-dns Service's cluster IPs (this server's own address)."""
        found = self.store.lookup(self._kube_dns) or {}
        return {t: list(found[t]) for t in _ADDRESS_TYPES if t in found}

    def _target_addresses(self, rdatas: list, read: set[str]) -> list[dns.rrset.RRset]:
        out = []
        for rdata in rdatas:
            target = rdata.target
            found = self._records(target.to_text().lower(), read) or {}
            for rdtype in _ADDRESS_TYPES:
                if found.get(rdtype):
                    out.append(dns.rrset.from_rdata_list(target, TTL, found[rdtype]))
        return out

    def soa(self) -> dns.rrset.RRset:
        """The zone's SOA, CoreDNS's shape: refresh 2h, retry 30m, expire 1d, minimum the TTL."""
        rdata = SOA(
            IN,
            dns.rdatatype.SOA,
            self._mname,
            self._rname,
            self.store.modified & 0xFFFFFFFF,
            7200,
            1800,
            86400,
            TTL,
        )
        return dns.rrset.from_rdata_list(self.zone_name, TTL, [rdata])

    # ------------------------------------------------------------------ reverse

    def _reverse(self, qname: dns.name.Name, name: str, qtype: int) -> Answer:
        by_type = self.store.lookup(name)
        if by_type is None:
            # Not a cluster address: fall through to the upstream resolvers, as CoreDNS's
            # default `fallthrough in-addr.arpa ip6.arpa`.
            return Answer(authoritative=False, forward=True)
        rdatas = by_type.get(qtype)
        if not rdatas:
            apex = next(z for z in _REVERSE_ZONES if name.endswith(z))
            soa = self.soa()
            reverse_soa = dns.rrset.from_rdata_list(dns.name.from_text(apex), TTL, list(soa))
            return Answer(authority=[reverse_soa], names={name})
        return Answer(answer=[dns.rrset.from_rdata_list(qname, TTL, rdatas)], names={name})


__all__ = ["TTL", "Answer", "PodMode", "Resolver"]
