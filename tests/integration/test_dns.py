"""k8slite-dns against a real API server: names appear as objects are created, over UDP and
TCP, with forwarding to a small resolver of the test's own on 127.0.0.2 (never a real one)."""

from __future__ import annotations

import re
import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename
import dns.rrset
import httpx
import pytest

from k8slite.dns import kubedns
from tests.conftest import ServerHandle
from tests.integration.dns_harness import Dns, running_dns
from tests.polling import wait_for

UPSTREAM_HOST = "127.0.0.2"
EXAMPLE_IP = "192.0.2.1"
Obj = dict[str, Any]


# ------------------------------------------------------------------ the fake upstream


def _upstream_answer(wire: bytes) -> bytes | None:
    """*.example.test. is 192.0.2.1; silent.example.test. gets no answer; all else NXDOMAIN."""
    query = dns.message.from_wire(wire)
    response = dns.message.make_response(query)
    question = query.question[0]
    name = question.name.to_text().lower()
    if name == "silent.example.test.":
        return None
    if name.endswith(".example.test.") and question.rdtype == dns.rdatatype.A:
        response.answer.append(dns.rrset.from_text(question.name, 300, "IN", "A", EXAMPLE_IP))
    elif not name.endswith(".example.test."):
        response.set_rcode(dns.rcode.NXDOMAIN)
    return response.to_wire()


class _Udp(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        answer = _upstream_answer(data)
        if answer is not None:
            sock.sendto(answer, self.client_address)


class _Tcp(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        length = self.rfile.read(2)
        if len(length) < 2:
            return
        answer = _upstream_answer(self.rfile.read(struct.unpack("!H", length)[0]))
        if answer is not None:
            self.wfile.write(struct.pack("!H", len(answer)) + answer)


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    """A tiny resolver on 127.0.0.2, UDP and TCP on one port."""
    udp = socketserver.ThreadingUDPServer((UPSTREAM_HOST, 0), _Udp)
    port = udp.server_address[1]
    tcp = socketserver.ThreadingTCPServer((UPSTREAM_HOST, port), _Tcp)
    for server in (udp, tcp):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield port
    for server in (udp, tcp):
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- k8slite-dns


@pytest.fixture(scope="module")
def k8sdns(
    apiserver: ServerHandle, upstream: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dns]:
    log = tmp_path_factory.mktemp("dns") / "dns.log"
    flags = ("--upstream-dns", f"{UPSTREAM_HOST}:{upstream}", "--pods", "verified")
    with running_dns(apiserver, log, *flags) as server:
        yield server


def answers(response: dns.message.Message, rdtype: str = "A") -> list[str]:
    want = dns.rdatatype.from_text(rdtype)
    return sorted(r.to_text() for rrset in response.answer if rrset.rdtype == want for r in rrset)


def rcode(response: dns.message.Message) -> str:
    return dns.rcode.to_text(response.rcode())


def eventually(probe: Callable[[], Any], what: str) -> Any:
    """Poll a DNS probe; a lost datagram counts as "not yet"."""

    def attempt() -> Any:
        try:
            return probe()
        except dns.exception.Timeout:
            return None

    return wait_for(attempt, timeout=60, what=what)


def create(api: httpx.Client, path: str, body: Obj) -> Obj:
    r = api.post(path, json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def endpoint_slice(service: str, endpoints: list[Obj], ports: list[Obj]) -> Obj:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-slice",
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }


# ---------------------------------------------------------------------------- tests


def test_cluster_ip_service_resolves_over_udp_and_tcp(
    k8sdns: Dns, api: httpx.Client, namespace: str
) -> None:
    name = f"web.{namespace}.svc.cluster.local"
    assert rcode(k8sdns.query(name)) == "NXDOMAIN"
    svc = create(
        api,
        f"/api/v1/namespaces/{namespace}/services",
        {
            "metadata": {"name": "web"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
    )
    ip = svc["spec"]["clusterIP"]
    # The NXDOMAIN above was cached: the change must have dropped it.
    eventually(lambda: answers(k8sdns.query(name)) == [ip], f"{name} to resolve")
    response = k8sdns.query(name.upper(), tcp=True)
    assert answers(response) == [ip] and response.flags & dns.flags.AA
    srv = k8sdns.query(f"_http._tcp.{name}", "SRV")
    assert answers(srv, "SRV") == [f"0 100 80 {name}."]
    ptr = k8sdns.query(dns.reversename.from_address(ip).to_text(), "PTR")
    assert answers(ptr, "PTR") == [f"{name}."]
    # NODATA: the name is there, without AAAA; the SOA says for how long to believe it.
    nodata = k8sdns.query(name, "AAAA")
    assert rcode(nodata) == "NOERROR" and nodata.answer == []
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA
    nxdomain = k8sdns.query(f"nothing.{namespace}.svc.cluster.local")
    assert rcode(nxdomain) == "NXDOMAIN" and nxdomain.authority[0].rdtype == dns.rdatatype.SOA
    assert rcode(k8sdns.query(f"{namespace}.svc.cluster.local")) == "NOERROR"
    # Deleted: gone from DNS too.
    assert api.delete(f"/api/v1/namespaces/{namespace}/services/web").status_code == 200
    eventually(lambda: rcode(k8sdns.query(name)) == "NXDOMAIN", f"{name} to disappear")


def test_headless_service_with_hostnames_and_truncation(
    k8sdns: Dns, api: httpx.Client, namespace: str
) -> None:
    create(
        api,
        f"/api/v1/namespaces/{namespace}/services",
        {
            "metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]},
        },
    )
    endpoints: list[Obj] = [
        {"addresses": ["10.200.0.10"], "hostname": "db-0", "conditions": {"ready": True}},
        {"addresses": ["10.200.0.11"], "hostname": "db-1", "conditions": {"ready": True}},
        {"addresses": ["10.200.0.12"], "hostname": "db-2", "conditions": {"ready": False}},
    ]
    endpoints += [
        {"addresses": [f"10.200.1.{i}"], "conditions": {"ready": True}} for i in range(1, 101)
    ]
    ports = [{"name": "pg", "port": 5432, "protocol": "TCP"}]
    eps = endpoint_slice("db", endpoints, ports)
    # As the endpointslice controller marks the change behind it.
    trigger = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    eps["metadata"]["annotations"] = {"endpoints.kubernetes.io/last-change-trigger-time": trigger}
    create(api, f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices", eps)
    name = f"db.{namespace}.svc.cluster.local"
    eventually(lambda: answers(k8sdns.query(f"db-0.{name}")) == ["10.200.0.10"], "db-0")
    assert rcode(k8sdns.query(f"db-2.{name}")) == "NXDOMAIN"  # not ready
    # 102 ready endpoints do not fit in 512 bytes: TC, and the whole answer over TCP.
    udp = k8sdns.query(name)
    assert udp.flags & dns.flags.TC
    tcp = k8sdns.query(name, tcp=True)
    assert not tcp.flags & dns.flags.TC and len(answers(tcp)) == 102
    big = k8sdns.query(name, use_edns=0, payload=4096)
    assert not big.flags & dns.flags.TC and len(answers(big)) == 102
    srv = k8sdns.query(f"_pg._tcp.{name}", "SRV", tcp=True)
    targets = {r.split()[-1] for r in answers(srv, "SRV")}
    assert f"db-1.{name}." in targets and f"10-200-1-7.{name}." in targets
    assert len(targets) == 102
    ptr = k8sdns.query("10.0.200.10.in-addr.arpa", "PTR")
    assert answers(ptr, "PTR") == [f"db-0.{name}."]
    with httpx.Client(verify=False, base_url=k8sdns.serving_url) as client:  # self-signed
        metrics = client.get("/metrics").text
    count = re.search(
        r"coredns_kubernetes_dns_programming_duration_seconds_count"
        r'\{service_kind="headless_with_selector"\} (\S+)',
        metrics,
    )
    assert count and float(count[1]) >= 1


def test_pods_and_external_names(k8sdns: Dns, api: httpx.Client, namespace: str) -> None:
    pod = create(
        api,
        f"/api/v1/namespaces/{namespace}/pods",
        {
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    )
    pod["status"] = {"phase": "Running", "podIP": "10.244.3.4", "podIPs": [{"ip": "10.244.3.4"}]}
    r = api.put(f"/api/v1/namespaces/{namespace}/pods/p/status", json=pod)
    assert r.status_code == 200, r.text
    pod_name = f"10-244-3-4.{namespace}.pod.cluster.local"
    eventually(lambda: answers(k8sdns.query(pod_name)) == ["10.244.3.4"], "the pod's name")
    # --pods verified: an IP no pod of the namespace has does not resolve.
    assert rcode(k8sdns.query(f"10-244-3-5.{namespace}.pod.cluster.local")) == "NXDOMAIN"
    create(
        api,
        f"/api/v1/namespaces/{namespace}/services",
        {
            "metadata": {"name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "www.example.test"},
        },
    )
    ext = f"ext.{namespace}.svc.cluster.local"
    response = eventually(lambda: (resp := k8sdns.query(ext)).answer and resp, "the CNAME")
    # The CNAME, then its target's address as the upstream resolver gave it.
    assert answers(response, "CNAME") == ["www.example.test."]
    assert answers(response) == [EXAMPLE_IP]


def test_the_kube_dns_service(k8sdns: Dns, api: httpx.Client) -> None:
    """The objects `k8slite up` makes so that pods reach the server at 10.96.0.10."""
    services = f"/api/v1/namespaces/{kubedns.NAMESPACE}/services"
    slices = f"/apis/discovery.k8s.io/v1/namespaces/{kubedns.NAMESPACE}/endpointslices"
    # An address pods would reach; here only data, no packet goes to it.
    create(api, services, kubedns.service())
    create(api, slices, kubedns.endpoint_slice("192.0.2.53", dns_port=10053))
    try:
        name = "kube-dns.kube-system.svc.cluster.local"
        eventually(lambda: answers(k8sdns.query(name)) == ["10.96.0.10"], name)
        assert answers(k8sdns.query("ns.dns.cluster.local")) == ["10.96.0.10"]
        srv = k8sdns.query(f"_dns._udp.{name}", "SRV")
        assert answers(srv, "SRV") == [f"0 100 53 {name}."]
        endpoint = k8sdns.query(f"192-0-2-53.{name}")
        assert answers(endpoint) == ["192.0.2.53"]
    finally:
        api.delete(f"{slices}/{kubedns.endpoint_slice('192.0.2.53')['metadata']['name']}")
        api.delete(f"{services}/{kubedns.NAME}")


def test_forwarding_to_the_upstream(k8sdns: Dns) -> None:
    for tcp in (False, True):
        response = k8sdns.query("www.example.test", tcp=tcp)
        assert answers(response) == [EXAMPLE_IP] and rcode(response) == "NOERROR"
        assert not response.flags & dns.flags.AA
    assert rcode(k8sdns.query("nowhere.invalid")) == "NXDOMAIN"
    # An unknown reverse name falls through to the upstream too.
    assert rcode(k8sdns.query("1.2.0.192.in-addr.arpa", "PTR")) == "NXDOMAIN"
    # An upstream that never answers: SERVFAIL once it has had its time, not a hang.
    assert rcode(k8sdns.query("silent.example.test")) == "SERVFAIL"


def test_bad_packets_and_a_flood_do_not_stop_it(k8sdns: Dns) -> None:
    garbage = [
        b"",
        b"\x00",
        b"\x12\x34",
        struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c",  # a pointer loop
        struct.pack("!HHHHHH", 0x4343, 0x0100, 1, 0, 0, 0) + (b"\x3f" + b"a" * 63) * 5 + b"\0",
        struct.pack("!HHHHHH", 0x4444, 0x0100, 9, 9, 9, 9) + b"\xff" * 200,
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(garbage[3], ("127.0.0.1", k8sdns.port))
        response = dns.message.from_wire(sock.recv(65535))
        assert response.id == 0x4242 and rcode(response) == "FORMERR"
        for _ in range(300):
            for packet in garbage:
                sock.sendto(packet, ("127.0.0.1", k8sdns.port))
    # Garbage over TCP: a length prefix promising more than comes, then a hang-up.
    with socket.create_connection(("127.0.0.1", k8sdns.port), timeout=10) as conn:
        conn.sendall(b"\xff\xff" + b"\x00" * 10)
    with socket.create_connection(("127.0.0.1", k8sdns.port), timeout=10) as conn:
        conn.sendall(struct.pack("!H", len(garbage[5])) + garbage[5])
        length = struct.unpack("!H", conn.recv(2))[0]
        assert rcode(dns.message.from_wire(conn.recv(length))) == "FORMERR"
    # Still answering, both ways.
    eventually(
        lambda: rcode(k8sdns.query("kubernetes.default.svc.cluster.local")) == "NOERROR",
        "an answer after the flood",
    )
    assert rcode(k8sdns.query("kubernetes.default.svc.cluster.local", tcp=True)) == "NOERROR"


def test_metrics_and_health(k8sdns: Dns) -> None:
    k8sdns.query("kubernetes.default.svc.cluster.local")
    k8sdns.query("kubernetes.default.svc.cluster.local")
    with httpx.Client(verify=False, base_url=k8sdns.serving_url) as client:  # self-signed
        assert client.get("/healthz").text == "ok"
        assert client.get("/readyz").text == "ok"
        assert client.get("/health").text == "OK"
        metrics = client.get("/metrics").text
    for family in (
        "coredns_dns_requests_total",
        "coredns_dns_responses_total",
        "coredns_dns_request_duration_seconds_bucket",
        "coredns_cache_hits_total",
        "coredns_cache_misses_total",
    ):
        assert family in metrics, family
    hits = re.search(r'coredns_cache_hits_total\{[^}]*type="success"[^}]*\} (\S+)', metrics)
    assert hits and float(hits[1]) >= 1
    assert re.search(r'coredns_dns_responses_total\{[^}]*rcode="NOERROR"', metrics)
