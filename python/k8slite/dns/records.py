"""The records a Service, its EndpointSlices and a Pod stand for (the Kubernetes DNS spec).

Pure functions over API objects (plain dicts); names are lowercase, absolute, as text.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any, NamedTuple

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.rdtypes.IN.SRV import SRV

Obj = dict[str, Any]
IN = dns.rdataclass.IN
SCHEMA_VERSION = "1.1.0"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class Record(NamedTuple):
    name: str
    rdtype: int
    rdata: dns.rdata.Rdata


def absolute(text: str) -> str:
    """A name as the store keys it: lowercase, with the root's trailing dot."""
    text = text.lower()
    return text if text.endswith(".") else text + "."


def address_record(name: str, ip: str) -> Record:
    """A or AAAA for `ip`, whichever family it is."""
    if ":" in ip:
        return Record(name, dns.rdatatype.AAAA, AAAA(IN, dns.rdatatype.AAAA, ip))
    return Record(name, dns.rdatatype.A, A(IN, dns.rdatatype.A, ip))


def reverse_name(ip: str) -> str:
    """1.0.96.10.in-addr.arpa. for 10.96.0.1 (nibbles under ip6.arpa. for IPv6)."""
    return ipaddress.ip_address(ip).reverse_pointer.lower() + "."


def dashed(ip: str) -> str:
    """10-1-2-3 for 10.1.2.3, 2001-db8--1 for 2001:db8::1: an IP as one DNS label."""
    return ip.replace(".", "-").replace(":", "-")


def undashed(label: str) -> str | None:
    """The IP a dashed label spells, in canonical form, or None."""
    dotted = label.count("-") == 3 and "--" not in label
    text = label.replace("-", ".") if dotted else label.replace("-", ":")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def schema_version(zone: str) -> Record:
    """The spec's `dns-version.<zone>. TXT` record."""
    return Record(
        f"dns-version.{zone}", dns.rdatatype.TXT, TXT(IN, dns.rdatatype.TXT, [SCHEMA_VERSION])
    )


def service_name(service: Obj, zone: str) -> str:
    meta = service.get("metadata") or {}
    return absolute(f"{meta.get('name')}.{meta.get('namespace')}.svc.{zone}")


def is_headless(service: Obj) -> bool:
    return (service.get("spec") or {}).get("clusterIP") == "None"


def _cluster_ips(spec: Obj) -> list[str]:
    ips = [ip for ip in spec.get("clusterIPs") or () if ip and ip != "None"]
    if not ips and spec.get("clusterIP") not in (None, "", "None"):
        ips = [spec["clusterIP"]]
    return ips


def _srv(name: str, port: int, target: str, weight: int) -> Record:
    rdata = SRV(IN, dns.rdatatype.SRV, 0, weight, port, dns.name.from_text(target))
    return Record(name, dns.rdatatype.SRV, rdata)


def _srv_name(port: Obj, base: str) -> str | None:
    """`_<port>._<proto>.<base>` for a named port; unnamed ports have no SRV record."""
    name = port.get("name")
    if not name:
        return None
    return f"_{name.lower()}._{str(port.get('protocol') or 'TCP').lower()}.{base}"


def endpoint_hostname(endpoint: Obj, ip: str) -> str:
    """The spec's _hostname_: the endpoint's own, else (as CoreDNS) its dashed IP."""
    return str(endpoint.get("hostname") or dashed(ip)).lower()


def ready_endpoints(slices: Iterable[Obj]) -> list[tuple[Obj, str, list[Obj]]]:
    """(endpoint, address, the slice's ports) of every ready address; ready unless said not."""
    out = []
    for eps in slices:
        if eps.get("addressType") not in ("IPv4", "IPv6"):
            continue
        for endpoint in eps.get("endpoints") or ():
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for ip in endpoint.get("addresses") or ():
                out.append((endpoint, ip, list(eps.get("ports") or ())))
    return out


def service_records(service: Obj, slices: Iterable[Obj], zone: str) -> list[Record]:
    """Every record of one Service: spec sections 2.3 (ClusterIP), 2.4 (headless) and 2.5
    (ExternalName). `slices` are the Service's EndpointSlices."""
    spec = service.get("spec") or {}
    name = service_name(service, zone)
    if spec.get("type") == "ExternalName":
        target = spec.get("externalName")
        if not target:
            return []
        cname = CNAME(IN, dns.rdatatype.CNAME, dns.name.from_text(absolute(target)))
        return [Record(name, dns.rdatatype.CNAME, cname)]
    if is_headless(service):
        return _headless_records(name, slices)
    out = [address_record(name, ip) for ip in _cluster_ips(spec)]
    if not out:
        return []
    out += [Record(reverse_name(ip), dns.rdatatype.PTR, _ptr(name)) for ip in _cluster_ips(spec)]
    for port in spec.get("ports") or ():
        srv_name = _srv_name(port, name)
        if srv_name is not None:
            out.append(_srv(srv_name, int(port.get("port") or 0), name, 100))
    # Each ready endpoint by name, and its address back to that name, as CoreDNS answers
    # them for every Service (the spec asks it only of headless ones).
    for endpoint, ip, _ in ready_endpoints(slices):
        host = f"{endpoint_hostname(endpoint, ip)}.{name}"
        out.append(address_record(host, ip))
        out.append(Record(reverse_name(ip), dns.rdatatype.PTR, _ptr(host)))
    return out


def _ptr(target: str) -> PTR:
    return PTR(IN, dns.rdatatype.PTR, dns.name.from_text(target))


def _headless_records(name: str, slices: Iterable[Obj]) -> list[Record]:
    ready = ready_endpoints(slices)
    out: list[Record] = []
    srv: list[tuple[str, int, str]] = []
    for endpoint, ip, ports in ready:
        host = f"{endpoint_hostname(endpoint, ip)}.{name}"
        out.append(address_record(name, ip))
        out.append(address_record(host, ip))
        out.append(Record(reverse_name(ip), dns.rdatatype.PTR, _ptr(host)))
        # Headless traffic goes straight to the endpoints, so the slice's port numbers
        # (the target ports) are the ones to publish, as CoreDNS does.
        for port in ports:
            srv_name = _srv_name(port, name)
            if srv_name is not None:
                srv.append((srv_name, int(port.get("port") or 0), host))
    # RFC 2782: equal priority, weight shared evenly among the targets of one name.
    per_name: dict[str, int] = {}
    for srv_name, _, _ in srv:
        per_name[srv_name] = per_name.get(srv_name, 0) + 1
    out += [_srv(n, port, host, max(1, 100 // per_name[n])) for n, port, host in srv]
    return out


def pod_ips(pod: Obj) -> list[str]:
    """A running pod's IPs (status.podIPs, else status.podIP); none for host-network pods,
    whose IP is the node's."""
    if (pod.get("spec") or {}).get("hostNetwork"):
        return []
    status = pod.get("status") or {}
    ips = [p.get("ip") for p in status.get("podIPs") or () if p.get("ip")]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    return [str(ipaddress.ip_address(ip)) for ip in ips]
