"""Whole answers from the record store: NXDOMAIN versus NODATA, the cache, truncation and
bad queries, through DnsServer.respond (the bytes a client would get, without sockets)."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest
import trio
from prometheus_client import CollectorRegistry

import k8slite.dns.server as dns_server
from k8slite.dns.forward import Forwarder, parse_upstreams, read_exactly, without_self
from k8slite.dns.metrics import DnsMetrics
from k8slite.dns.records import service_records
from k8slite.dns.resolve import PodMode, Resolver
from k8slite.dns.server import DnsServer, Pending
from k8slite.dns.store import RecordStore

ZONE = "cluster.local"


def make_server(pods: PodMode = PodMode.INSECURE) -> DnsServer:
    store = RecordStore(ZONE)
    store.set_namespace("default", True)
    web = {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "clusterIP": "10.96.0.20",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        },
    }
    store.set_records("default/web", service_records(web, [], store.zone))
    big = {
        "metadata": {"name": "big", "namespace": "default"},
        "spec": {"clusterIP": "None"},
    }
    endpoints = [{"addresses": [f"10.1.{i // 250}.{i % 250 + 1}"]} for i in range(100)]
    slices = [{"addressType": "IPv4", "endpoints": endpoints, "ports": []}]
    store.set_records("default/big", service_records(big, slices, store.zone))
    ext = {
        "metadata": {"name": "ext", "namespace": "default"},
        "spec": {"type": "ExternalName", "externalName": "web.default.svc.cluster.local"},
    }
    store.set_records("default/ext", service_records(ext, [], store.zone))
    metrics = DnsMetrics("dns://:53", CollectorRegistry())
    return DnsServer(Resolver(store, pods), Forwarder([]), metrics)


def ask(
    server: DnsServer, name: str, rdtype: str = "A", proto: str = "udp", **kw: object
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    wire = server.respond(query.to_wire(), proto, "1")
    assert isinstance(wire, bytes)
    response = dns.message.from_wire(wire)
    assert response.id == query.id
    return response


def rcode(response: dns.message.Message) -> str:
    return dns.rcode.to_text(response.rcode())


def test_a_record_is_authoritative() -> None:
    response = ask(make_server(), "web.default.svc.cluster.local")
    assert rcode(response) == "NOERROR"
    assert response.flags & dns.flags.AA and response.flags & dns.flags.RA
    assert [r.to_text() for r in response.answer[0]] == ["10.96.0.20"]
    assert response.answer[0].ttl == 5


def test_nodata_versus_nxdomain() -> None:
    server = make_server()
    # The name exists, with other types: NOERROR, no answer, the SOA in authority.
    for name, rdtype in [
        ("web.default.svc.cluster.local", "AAAA"),
        ("web.default.svc.cluster.local", "MX"),
        ("web.default.svc.cluster.local", "TYPE65280"),
        ("_tcp.web.default.svc.cluster.local", "SRV"),  # an empty non-terminal
        ("default.svc.cluster.local", "A"),  # an existing namespace
        ("svc.cluster.local", "A"),
        ("cluster.local", "A"),
    ]:
        response = ask(server, name, rdtype)
        assert rcode(response) == "NOERROR", (name, rdtype)
        assert response.answer == [], (name, rdtype)
        assert response.authority[0].rdtype == dns.rdatatype.SOA, (name, rdtype)
        assert response.authority[0].name.to_text() == "cluster.local."
    for name in [
        "nope.default.svc.cluster.local",
        "web.other.svc.cluster.local",
        "other.svc.cluster.local",  # no such namespace
        "x.web.default.svc.cluster.local",
        "_udp.web.default.svc.cluster.local",
    ]:
        response = ask(server, name)
        assert rcode(response) == "NXDOMAIN", name
        assert response.authority[0].rdtype == dns.rdatatype.SOA


def test_names_are_case_insensitive_and_the_cache_keeps_the_query_case() -> None:
    server = make_server()
    first = ask(server, "web.default.svc.cluster.local")
    assert server.metrics.cache_misses == 1
    again = ask(server, "WEB.Default.svc.cluster.local")  # a cache hit, other case
    assert server.metrics.cache_misses == 1
    assert again.question[0].name.to_text() == "WEB.Default.svc.cluster.local."
    assert again.answer[0].name.to_text() == "WEB.Default.svc.cluster.local."
    assert [r.to_text() for r in again.answer[0]] == [r.to_text() for r in first.answer[0]]


def test_cache_hits_in_either_case_answer_with_the_query_case() -> None:
    # The first query upper case: the cached copy keeps the question in lower case, so the
    # lower-case query after it (the fast path: its bytes are the key) is answered as asked.
    server = make_server()
    for name in ("WEB.default.svc.cluster.local", "web.default.svc.cluster.local"):
        response = ask(server, name)
        assert response.question[0].name.to_text() == name + "."
        assert response.answer[0].name.to_text() == name + "."
        assert [r.to_text() for r in response.answer[0]] == ["10.96.0.20"]
    # The same for a denial, and the other way round (lower case first).
    for name in ("nope.default.svc.cluster.local", "NOPE.Default.svc.cluster.local"):
        response = ask(server, name)
        assert rcode(response) == "NXDOMAIN"
        assert response.question[0].name.to_text() == name + "."
    assert misses(server) == 2
    assert server.metrics.cache_hits == 2


def test_cache_is_dropped_when_records_change() -> None:
    server = make_server()
    assert rcode(ask(server, "new.default.svc.cluster.local")) == "NXDOMAIN"
    set_service(server, "new", "10.96.0.5")
    response = ask(server, "new.default.svc.cluster.local")
    assert [r.to_text() for r in response.answer[0]] == ["10.96.0.5"]


def misses(server: DnsServer) -> float:
    return server.metrics.cache_misses


def set_service(server: DnsServer, name: str, ip: str) -> None:
    svc = {"metadata": {"name": name, "namespace": "default"}, "spec": {"clusterIP": ip}}
    server.store.set_records(f"default/{name}", service_records(svc, [], server.store.zone))


def test_a_change_drops_only_the_answers_read_from_what_it_touched() -> None:
    server = make_server()
    web, ext = "web.default.svc.cluster.local", "ext.default.svc.cluster.local"
    for name in (web, ext):
        ask(server, name)
    assert misses(server) == 2
    set_service(server, "other", "10.96.0.30")  # unrelated: both answers stay
    ask(server, web), ask(server, ext)
    assert misses(server) == 2
    # ext is a CNAME to web: its cached answer read web's records, so it goes too.
    set_service(server, "web", "10.96.0.21")
    assert [r.to_text() for r in ask(server, ext).answer[1]] == ["10.96.0.21"]
    assert [r.to_text() for r in ask(server, web).answer[0]] == ["10.96.0.21"]
    assert misses(server) == 4


def test_denials_go_when_the_name_or_a_descendant_appears() -> None:
    server = make_server()
    assert rcode(ask(server, "db.default.svc.cluster.local")) == "NXDOMAIN"
    slices = [
        {"addressType": "IPv4", "endpoints": [{"addresses": ["10.1.0.9"], "hostname": "db-0"}]}
    ]
    headless = {"metadata": {"name": "db", "namespace": "default"}, "spec": {"clusterIP": "None"}}
    server.store.set_records("default/db", service_records(headless, slices, server.store.zone))
    assert [r.to_text() for r in ask(server, "db.default.svc.cluster.local").answer[0]] == [
        "10.1.0.9"
    ]
    server.store.set_records("default/db", [])
    assert rcode(ask(server, "db-0.db.default.svc.cluster.local")) == "NXDOMAIN"
    server.store.set_records("default/db", service_records(headless, slices, server.store.zone))
    assert rcode(ask(server, "db-0.db.default.svc.cluster.local")) == "NOERROR"


def test_pod_and_namespace_changes_reach_cached_answers() -> None:
    server = make_server(PodMode.VERIFIED)
    pod = "10-244-0-9.default.pod.cluster.local"
    assert rcode(ask(server, pod)) == "NXDOMAIN"
    server.store.set_pod("default/p", "default", ("10.244.0.9",))
    assert rcode(ask(server, pod)) == "NOERROR"
    server.store.set_pod("default/p", "default", ())
    assert rcode(ask(server, pod)) == "NXDOMAIN"
    assert rcode(ask(server, "fresh.svc.cluster.local")) == "NXDOMAIN"
    server.store.set_namespace("fresh", True)
    assert rcode(ask(server, "fresh.svc.cluster.local")) == "NOERROR"
    # ns.dns.<zone> reads the kube-dns Service.
    assert ask(server, "ns.dns.cluster.local").answer == []
    dns_svc = {
        "metadata": {"name": "kube-dns", "namespace": "kube-system"},
        "spec": {"clusterIP": "10.96.0.10"},
    }
    server.store.set_records(
        "kube-system/kube-dns", service_records(dns_svc, [], server.store.zone)
    )
    assert [r.to_text() for r in ask(server, "ns.dns.cluster.local").answer[0]] == ["10.96.0.10"]


def test_srv_with_addresses_in_additional() -> None:
    response = ask(make_server(), "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert [r.to_text() for r in response.answer[0]] == ["0 100 80 web.default.svc.cluster.local."]
    assert [r.to_text() for r in response.additional[0]] == ["10.96.0.20"]


def test_ptr_and_unknown_reverse_names_go_upstream() -> None:
    server = make_server()
    response = ask(server, "20.0.96.10.in-addr.arpa", "PTR")
    assert [r.to_text() for r in response.answer[0]] == ["web.default.svc.cluster.local."]
    query = dns.message.make_query("9.9.9.10.in-addr.arpa", "PTR")
    assert isinstance(server.respond(query.to_wire(), "udp", "1"), Pending)


def test_cname_inside_the_zone_is_followed() -> None:
    response = ask(make_server(), "ext.default.svc.cluster.local")
    assert [rrset.rdtype for rrset in response.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
    assert [r.to_text() for r in response.answer[1]] == ["10.96.0.20"]


def test_names_outside_the_zone_are_pending_for_the_upstreams() -> None:
    server = make_server()
    query = dns.message.make_query("example.com", "A")
    assert isinstance(server.respond(query.to_wire(), "udp", "1"), Pending)


def pending(server: DnsServer, name: str, rdtype: str = "A") -> bool:
    query = dns.message.make_query(name, rdtype)
    return isinstance(server.respond(query.to_wire(), "udp", "1"), Pending)


def test_service_dot_namespace_is_answered_for_an_existing_service() -> None:
    # busybox's nslookup asks for `web.default.` itself (no search list for dotted names).
    server = make_server()
    response = ask(server, "Web.Default")
    assert rcode(response) == "NOERROR"
    assert response.answer[0].name.to_text() == "Web.Default."
    assert [r.to_text() for r in response.answer[0]] == ["10.96.0.20"]
    assert response.answer[0].ttl == 5
    assert not response.flags & dns.flags.AA  # not our zone
    # NODATA for the other types, with no SOA (ours is cluster.local's, not this name's).
    for rdtype in ("AAAA", "MX", "SRV"):
        nodata = ask(server, "web.default", rdtype)
        assert rcode(nodata) == "NOERROR" and nodata.answer == [], rdtype
        assert nodata.authority == [], rdtype
    # A headless Service: every ready endpoint; an ExternalName: its CNAME, followed.
    assert len(ask(server, "big.default", proto="tcp").answer[0]) == 100
    ext = ask(server, "ext.default").answer
    assert [(r.name.to_text(), r.rdtype) for r in ext] == [
        ("ext.default.", dns.rdatatype.CNAME),
        ("web.default.svc.cluster.local.", dns.rdatatype.A),
    ]


def test_other_two_label_names_go_upstream() -> None:
    server = make_server()
    server.store.set_namespace("dev", True)  # a namespace named like a TLD
    for name in (
        "nope.default",  # no such Service
        "web.other",  # no such namespace
        "example.dev",  # a namespace, but no Service: the real domain
        "web.default.com",  # three labels
        "default",  # one label
        "big.default.svc",
    ):
        assert pending(server, name), name
    # The Service appears: its short name is answered (and no cached forward hides it)...
    svc = {"metadata": {"name": "example", "namespace": "dev"}, "spec": {"clusterIP": "10.96.0.7"}}
    server.store.set_records("dev/example", service_records(svc, [], server.store.zone))
    assert [r.to_text() for r in ask(server, "example.dev").answer[0]] == ["10.96.0.7"]
    # ... and when it goes, so does the cached answer: the name is forwarded again.
    server.store.set_records("dev/example", [])
    assert pending(server, "example.dev")
    server.store.set_records("dev/example", service_records(svc, [], server.store.zone))
    assert not pending(server, "example.dev")
    server.store.set_namespace("dev", False)
    assert pending(server, "example.dev")


def test_pod_records() -> None:
    insecure = make_server(PodMode.INSECURE)
    response = ask(insecure, "10-244-0-9.default.pod.cluster.local")
    assert [r.to_text() for r in response.answer[0]] == ["10.244.0.9"]
    assert rcode(ask(insecure, "not-an-ip.default.pod.cluster.local")) == "NXDOMAIN"
    # Even insecure, the namespace must exist (as CoreDNS).
    assert rcode(ask(insecure, "10-244-0-9.nowhere.pod.cluster.local")) == "NXDOMAIN"
    verified = make_server(PodMode.VERIFIED)
    assert rcode(ask(verified, "10-244-0-9.default.pod.cluster.local")) == "NXDOMAIN"
    verified.store.set_pod("default/p", "default", ("10.244.0.9",))
    response = ask(verified, "10-244-0-9.default.pod.cluster.local")
    assert [r.to_text() for r in response.answer[0]] == ["10.244.0.9"]
    assert rcode(ask(verified, "10-244-0-9.other.pod.cluster.local")) == "NXDOMAIN"
    assert rcode(ask(make_server(PodMode.DISABLED), "10-244-0-9.default.pod.cluster.local")) == (
        "NXDOMAIN"
    )


def test_dns_version_and_apex() -> None:
    server = make_server()
    assert [r.to_text() for r in ask(server, "dns-version.cluster.local", "TXT").answer[0]] == [
        '"1.1.0"'
    ]
    assert ask(server, "cluster.local", "SOA").answer[0].rdtype == dns.rdatatype.SOA
    assert [r.to_text() for r in ask(server, "cluster.local", "NS").answer[0]] == [
        "ns.dns.cluster.local."
    ]


def test_large_udp_answers_are_truncated_to_the_buffer_size() -> None:
    server = make_server()
    # 100 A records: about 1,650 bytes.
    plain = ask(server, "big.default.svc.cluster.local")
    assert plain.flags & dns.flags.TC
    small = ask(server, "big.default.svc.cluster.local", use_edns=0, payload=1232)
    assert small.flags & dns.flags.TC
    large = ask(server, "big.default.svc.cluster.local", use_edns=0, payload=4096)
    assert not large.flags & dns.flags.TC
    assert len(large.answer[0]) == 100
    assert large.edns == 0
    tcp = ask(server, "big.default.svc.cluster.local", proto="tcp")
    assert not tcp.flags & dns.flags.TC and len(tcp.answer[0]) == 100


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda q: q.set_opcode(dns.opcode.STATUS), "NOTIMP"),
        (lambda q: None, "NOERROR"),
    ],
)
def test_opcodes(mutate: object, expected: str) -> None:
    query = dns.message.make_query("web.default.svc.cluster.local", "A")
    mutate(query)  # type: ignore[operator]
    wire = make_server().respond(query.to_wire(), "udp", "1")
    assert isinstance(wire, bytes)
    assert rcode(dns.message.from_wire(wire)) == expected


def test_bad_queries_are_refused_not_fatal() -> None:
    server = make_server()
    for rdtype in ("AXFR", "IXFR", "ANY"):
        assert rcode(ask(server, "web.default.svc.cluster.local", rdtype)) == "NOTIMP"
    chaos = dns.message.make_query("version.bind", "TXT", "CH")
    wire = server.respond(chaos.to_wire(), "udp", "1")
    assert isinstance(wire, bytes) and rcode(dns.message.from_wire(wire)) == "REFUSED"
    bad_edns = dns.message.make_query("web.default.svc.cluster.local", "A", use_edns=1)
    wire = server.respond(bad_edns.to_wire(), "udp", "1")
    assert isinstance(wire, bytes) and rcode(dns.message.from_wire(wire)) == "BADVERS"
    # Garbage after a header: FORMERR with the query's ID.
    garbage = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\x3fabc"
    wire = server.respond(garbage, "udp", "1")
    assert isinstance(wire, bytes)
    response = dns.message.from_wire(wire)
    assert response.id == 0x1234 and rcode(response) == "FORMERR"
    # A name longer than 255 octets.
    huge = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + (b"\x3f" + b"a" * 63) * 5 + b"\0\0\1\0\1"
    response = dns.message.from_wire(server.respond(huge, "udp", "1"))  # type: ignore[arg-type]
    assert rcode(response) == "FORMERR"
    # Two questions.
    two = struct.pack("!HHHHHH", 8, 0x0100, 2, 0, 0, 0) + (b"\x01a\0\0\1\0\1") * 2
    response = dns.message.from_wire(server.respond(two, "udp", "1"))  # type: ignore[arg-type]
    assert rcode(response) == "FORMERR"
    # Too short for a header, or a response: dropped.
    assert server.respond(b"\x12\x34\x01", "udp", "1") is None
    reply = dns.message.make_response(dns.message.make_query("a.example", "A")).to_wire()
    assert server.respond(reply, "udp", "1") is None


async def test_no_upstream_resolvers_means_servfail_at_once() -> None:
    server = make_server()
    query = dns.message.make_query("example.com", "A")
    pending = server.respond(query.to_wire(), "udp", "1")
    assert isinstance(pending, Pending)
    response = dns.message.from_wire(await server.finish(pending))
    assert response.id == query.id and rcode(response) == "SERVFAIL"
    # An ExternalName whose target cannot be looked up still gets its CNAME.
    ext = {
        "metadata": {"name": "out", "namespace": "default"},
        "spec": {"type": "ExternalName", "externalName": "www.example.com"},
    }
    server.store.set_records("default/out", service_records(ext, [], server.store.zone))
    query = dns.message.make_query("out.default.svc.cluster.local", "A")
    pending = server.respond(query.to_wire(), "udp", "1")
    assert isinstance(pending, Pending)
    response = dns.message.from_wire(await server.finish(pending))
    assert rcode(response) == "NOERROR"
    assert [r.to_text() for r in response.answer[0]] == ["www.example.com."]


def test_upstream_flags() -> None:
    assert parse_upstreams("10.0.0.2, 10.0.0.3:5353,[fd00::1]:53") == [
        ("10.0.0.2", 53),
        ("10.0.0.3", 5353),
        ("fd00::1", 53),
    ]
    with pytest.raises(ValueError):
        parse_upstreams("dns.example.com")
    assert without_self([("127.0.0.1", 53), ("127.0.0.1", 5353)], "0.0.0.0", 53) == [
        ("127.0.0.1", 5353)
    ]


async def test_tcp_connections_over_the_limit_are_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dns_server, "MAX_TCP", 2)
    server = make_server()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    query = dns.message.make_query("web.default.svc.cluster.local", "A").to_wire()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_tcp, listeners)
        held = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
        # The two held connections are served...
        for stream in held:
            await stream.send_all(len(query).to_bytes(2, "big") + query)
            length = int.from_bytes(await read_exactly(stream, 2) or b"", "big")
            response = dns.message.from_wire(await read_exactly(stream, length) or b"")
            assert rcode(response) == "NOERROR"
        # ...and a third is hung up on straight away (nothing sent on it, so the close is a
        # plain end of stream, not a reset).
        extra = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.fail_after(10):
            assert await read_exactly(extra, 2) is None
        for stream in [*held, extra]:
            await stream.aclose()
        nursery.cancel_scope.cancel()


def test_metrics_are_counted_per_query_and_exported_as_coredns_families() -> None:
    server = make_server()
    ask(server, "web.default.svc.cluster.local")  # built
    ask(server, "web.default.svc.cluster.local")  # from the cache
    ask(server, "nope.default.svc.cluster.local")  # a denial, built
    ask(server, "_http._tcp.web.default.svc.cluster.local", "SRV", proto="tcp")
    registry = server.metrics.registry
    base = {"server": "dns://:53", "zone": ".", "view": ""}

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("coredns_dns_requests_total", **base, proto="udp", family="1", type="A") == 3
    assert value("coredns_dns_requests_total", **base, proto="tcp", family="1", type="SRV") == 1
    responses = "coredns_dns_responses_total"
    assert value(responses, **base, rcode="NOERROR", plugin="kubernetes") == 2
    assert value(responses, **base, rcode="NOERROR", plugin="cache") == 1
    assert value(responses, **base, rcode="NXDOMAIN", plugin="kubernetes") == 1
    # The histogram's buckets are cumulative and end with every request of the type.
    a = {**base, "type": "A"}
    found = [
        value("coredns_dns_request_duration_seconds_bucket", **a, le=le)
        for le in ("0.00025", "0.0005", "8.192", "+Inf")
    ]
    buckets = [b for b in found if b is not None]
    assert len(buckets) == 4 and buckets == sorted(buckets) and buckets[-1] == 3, found
    assert value("coredns_dns_request_duration_seconds_count", **a) == 3
    assert (value("coredns_dns_request_duration_seconds_sum", **a) or 0) > 0
    cache = {"server": "dns://:53", "zones": ".", "view": ""}
    assert value("coredns_cache_hits_total", **cache, type="success") == 1
    assert value("coredns_cache_hits_total", **cache, type="denial") == 0
    assert value("coredns_cache_misses_total", **cache) == 3
    assert value("coredns_cache_requests_total", **cache) == 4
