"""Record building against the examples of the Kubernetes DNS-Based Service Discovery spec."""

from __future__ import annotations

from typing import Any

import dns.rdatatype

from k8slite.dns.records import (
    Record,
    dashed,
    pod_ips,
    reverse_name,
    schema_version,
    service_records,
    undashed,
)

ZONE = "cluster.local."
Obj = dict[str, Any]


def service(name: str, namespace: str = "default", **spec: Any) -> Obj:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}


def endpoint_slice(
    service: str, endpoints: list[Obj], ports: list[Obj], address_type: str = "IPv4"
) -> Obj:
    return {
        "metadata": {
            "name": f"{service}-abcde",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": ports,
    }


def texts(records: list[Record], rdtype: str) -> dict[str, list[str]]:
    """name -> the records' presentation text, of one type."""
    out: dict[str, list[str]] = {}
    for rec in records:
        if rec.rdtype == dns.rdatatype.from_text(rdtype):
            out.setdefault(rec.name, []).append(rec.rdata.to_text())
    return out


def test_schema_version_record_2_2() -> None:
    rec = schema_version(ZONE)
    assert rec.name == "dns-version.cluster.local."
    assert rec.rdtype == dns.rdatatype.TXT
    assert rec.rdata.to_text() == '"1.1.0"'


def test_cluster_ip_service_2_3() -> None:
    kubernetes = service(
        "kubernetes",
        type="ClusterIP",
        clusterIP="10.3.0.1",
        clusterIPs=["10.3.0.1"],
        ports=[{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
    )
    records = service_records(kubernetes, [], ZONE)
    # 2.3.1: kubernetes.default.svc.cluster.local. IN A 10.3.0.1
    assert texts(records, "A") == {"kubernetes.default.svc.cluster.local.": ["10.3.0.1"]}
    # 2.3.2: the service port (not the target port), pointing at the service's name.
    assert texts(records, "SRV") == {
        "_https._tcp.kubernetes.default.svc.cluster.local.": [
            "0 100 443 kubernetes.default.svc.cluster.local."
        ]
    }
    # 2.3.3: 1.0.3.10.in-addr.arpa. IN PTR kubernetes.default.svc.cluster.local.
    assert texts(records, "PTR") == {
        "1.0.3.10.in-addr.arpa.": ["kubernetes.default.svc.cluster.local."]
    }


def test_cluster_ip_service_endpoints_by_name_as_coredns() -> None:
    svc = service("api", clusterIP="10.96.0.9", ports=[{"name": "http", "port": 80}])
    slices = [
        endpoint_slice(
            "api",
            [
                {"addresses": ["10.1.0.4"], "hostname": "api-0"},
                {"addresses": ["10.1.0.5"], "conditions": {"ready": False}},
            ],
            [{"name": "http", "port": 8080, "protocol": "TCP"}],
        )
    ]
    records = service_records(svc, slices, ZONE)
    # The service name stays the ClusterIP; the endpoint has a name and a PTR of its own.
    assert texts(records, "A") == {
        "api.default.svc.cluster.local.": ["10.96.0.9"],
        "api-0.api.default.svc.cluster.local.": ["10.1.0.4"],
    }
    assert texts(records, "PTR")["4.0.1.10.in-addr.arpa."] == [
        "api-0.api.default.svc.cluster.local."
    ]
    assert texts(records, "SRV") == {
        "_http._tcp.api.default.svc.cluster.local.": ["0 100 80 api.default.svc.cluster.local."]
    }


def test_unnamed_ports_have_no_srv_and_names_are_lowercase() -> None:
    svc = service(
        "Web",
        namespace="Shop",
        clusterIP="10.96.0.7",
        ports=[{"port": 80, "protocol": "TCP"}, {"name": "DNS", "port": 53, "protocol": "UDP"}],
    )
    records = service_records(svc, [], ZONE)
    assert texts(records, "A") == {"web.shop.svc.cluster.local.": ["10.96.0.7"]}
    assert list(texts(records, "SRV")) == ["_dns._udp.web.shop.svc.cluster.local."]


def test_dual_stack_service_has_a_and_aaaa() -> None:
    svc = service("web", clusterIP="10.96.0.7", clusterIPs=["10.96.0.7", "fd00:10:96::7"])
    records = service_records(svc, [], ZONE)
    assert texts(records, "AAAA") == {"web.default.svc.cluster.local.": ["fd00:10:96::7"]}
    assert "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa." in texts(
        records, "PTR"
    )


def test_headless_service_2_4() -> None:
    headless = service("headless", clusterIP="None", clusterIPs=["None"])
    ready = {"ready": True}
    slices = [
        endpoint_slice(
            "headless",
            [
                {"addresses": ["10.3.0.1"], "conditions": ready},
                {"addresses": ["10.3.0.2"], "conditions": ready},
                {"addresses": ["10.3.0.3"], "conditions": {}},  # no verdict: ready
                {"addresses": ["10.3.0.100"], "conditions": ready, "hostname": "my-pet"},
                {"addresses": ["10.3.0.9"], "conditions": {"ready": False}},
            ],
            [{"name": "https", "port": 8443, "protocol": "TCP"}],
        )
    ]
    records = service_records(headless, slices, ZONE)
    a = texts(records, "A")
    # 2.4.1: one A record per ready endpoint; not-ready ones are left out.
    assert sorted(a["headless.default.svc.cluster.local."]) == [
        "10.3.0.1",
        "10.3.0.100",
        "10.3.0.2",
        "10.3.0.3",
    ]
    assert a["my-pet.headless.default.svc.cluster.local."] == ["10.3.0.100"]
    # Endpoints without a hostname are named by their dashed IP (CoreDNS's choice of the
    # spec's "unique, system-assigned identifier").
    assert a["10-3-0-1.headless.default.svc.cluster.local."] == ["10.3.0.1"]
    assert not any("10-3-0-9" in name for name in a)
    # 2.4.2: one SRV per ready endpoint and named port, the endpoint's port, weight shared.
    srv = sorted(texts(records, "SRV")["_https._tcp.headless.default.svc.cluster.local."])
    assert srv == [
        "0 25 8443 10-3-0-1.headless.default.svc.cluster.local.",
        "0 25 8443 10-3-0-2.headless.default.svc.cluster.local.",
        "0 25 8443 10-3-0-3.headless.default.svc.cluster.local.",
        "0 25 8443 my-pet.headless.default.svc.cluster.local.",
    ]
    # 2.4.3: 100.0.3.10.in-addr.arpa. IN PTR my-pet.headless.default.svc.cluster.local.
    assert texts(records, "PTR")["100.0.3.10.in-addr.arpa."] == [
        "my-pet.headless.default.svc.cluster.local."
    ]


def test_headless_without_ready_endpoints_has_no_records() -> None:
    headless = service("headless", clusterIP="None")
    slices = [
        endpoint_slice(
            "headless", [{"addresses": ["10.3.0.1"], "conditions": {"ready": False}}], []
        )
    ]
    # Spec 2.4.1: "If there are no ready endpoints ... the answer should be NXDOMAIN".
    assert service_records(headless, slices, ZONE) == []


def test_headless_ignores_fqdn_slices_and_uses_ipv6() -> None:
    headless = service("h", clusterIP="None")
    slices = [
        endpoint_slice("h", [{"addresses": ["db.example.com"]}], [], address_type="FQDN"),
        endpoint_slice("h", [{"addresses": ["fd00::5"]}], [], address_type="IPv6"),
    ]
    records = service_records(headless, slices, ZONE)
    assert texts(records, "AAAA") == {
        "h.default.svc.cluster.local.": ["fd00::5"],
        "fd00--5.h.default.svc.cluster.local.": ["fd00::5"],
    }
    assert "A" not in {dns.rdatatype.to_text(r.rdtype) for r in records}


def test_external_name_service_2_5() -> None:
    foo = service("foo", type="ExternalName", externalName="www.example.com")
    records = service_records(foo, [], ZONE)
    assert texts(records, "CNAME") == {"foo.default.svc.cluster.local.": ["www.example.com."]}
    assert len(records) == 1


def test_service_without_cluster_ip_yet_has_no_records() -> None:
    assert service_records(service("new", type="ClusterIP"), [], ZONE) == []


def test_pod_names_2_6() -> None:
    assert dashed("10.244.1.7") == "10-244-1-7"
    assert undashed("10-244-1-7") == "10.244.1.7"
    assert undashed("fd00--1") == "fd00::1"
    assert undashed("fd00-0-0-0-0-0-0-1") == "fd00::1"
    assert undashed("1--2-3") == "1::2:3"  # three dashes, but "--": IPv6 (as CoreDNS)
    for bad in ("10-244-1", "300-1-1-1", "web", "1-2-3-4-5"):
        assert undashed(bad) is None
    assert reverse_name("10.3.0.100") == "100.0.3.10.in-addr.arpa."


def test_pod_ips() -> None:
    pod: Obj = {"spec": {}, "status": {"podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}]}}
    assert pod_ips(pod) == ["10.1.0.5"]
    assert pod_ips({"spec": {"hostNetwork": True}, "status": {"podIP": "192.0.2.1"}}) == []
    assert pod_ips({"spec": {}, "status": {}}) == []
