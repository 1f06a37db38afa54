"""Service ports and endpoints as the proxy reads them from Services and EndpointSlices."""

from __future__ import annotations

from typing import Any

from k8slite.proxy.serviceports import (
    DEFAULT_AFFINITY_SECONDS,
    Endpoint,
    ServicePortName,
    endpoints_for,
    service_ports,
)


def in_range(ip: str) -> bool:
    return ip.startswith("10.96.")


def svc(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "clusterIP": "10.96.0.10",
        "clusterIPs": ["10.96.0.10"],
        "type": "ClusterIP",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
    }
    base.update(spec)
    return {"metadata": {"name": "web", "namespace": "ns"}, "spec": base}


def eps(
    *endpoints: dict[str, Any], port: int = 8080, name: str = "http", address_type: str = "IPv4"
) -> dict[str, Any]:
    return {
        "addressType": address_type,
        "endpoints": list(endpoints),
        "ports": [{"name": name, "port": port, "protocol": "TCP"}],
    }


def ep(ip: str, **conditions: bool) -> dict[str, Any]:
    return {"addresses": [ip], "conditions": conditions}


def test_ready_endpoints_only_sorted_and_unique() -> None:
    slices = [
        eps(ep("10.0.0.3", ready=True), ep("10.0.0.1"), ep("10.0.0.2", ready=False)),
        eps(ep("10.0.0.3", ready=True)),
    ]
    assert endpoints_for(slices, "http", "TCP", "IPv4") == (
        Endpoint("10.0.0.1", 8080),
        Endpoint("10.0.0.3", 8080),
    )


def test_terminating_serving_endpoints_only_as_fallback() -> None:
    draining = ep("10.0.0.5", ready=False, serving=True, terminating=True)
    gone = ep("10.0.0.6", ready=False, serving=False, terminating=True)
    assert endpoints_for([eps(draining, gone)], "http", "TCP", "IPv4") == (
        Endpoint("10.0.0.5", 8080),
    )
    assert endpoints_for([eps(draining, ep("10.0.0.1", ready=True))], "http", "TCP", "IPv4") == (
        Endpoint("10.0.0.1", 8080),
    )


def test_port_matched_by_name_protocol_and_family() -> None:
    slices = [
        eps(ep("10.0.0.1"), name="metrics", port=9090),
        eps(ep("10.0.0.2")),
        eps(ep("fd00::1"), address_type="IPv6"),
    ]
    assert endpoints_for(slices, "http", "TCP", "IPv4") == (Endpoint("10.0.0.2", 8080),)
    assert endpoints_for(slices, "http", "UDP", "IPv4") == ()
    assert endpoints_for(slices, "metrics", "TCP", "IPv4") == (Endpoint("10.0.0.1", 9090),)


def test_service_ports_with_node_ports_and_affinity() -> None:
    service = svc(
        type="NodePort",
        sessionAffinity="ClientIP",
        ports=[
            {"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080},
            {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
        ],
    )
    ports, problems = service_ports(service, [eps(ep("10.0.0.1"))], in_range)
    assert problems == []
    http, dns = ports
    assert http.name == ServicePortName("ns", "web", "http", "TCP")
    assert str(http.name) == "ns/web:http"
    assert (http.cluster_ip, http.port, http.node_port) == ("10.96.0.10", 80, 30080)
    assert http.affinity_timeout == DEFAULT_AFFINITY_SECONDS
    assert http.endpoints == (Endpoint("10.0.0.1", 8080),)
    assert dns.protocol == "UDP" and dns.node_port == 30053 and dns.endpoints == ()


def test_affinity_timeout_and_node_port_only_for_node_port_types() -> None:
    service = svc(
        sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
        ports=[{"port": 80, "protocol": "TCP", "nodePort": 30080}],
    )
    (port,), _ = service_ports(service, [], in_range)
    assert port.affinity_timeout == 60 and port.node_port is None
    assert str(port.name) == "ns/web"


def test_skipped_services() -> None:
    assert service_ports(svc(clusterIP="None", clusterIPs=["None"]), [], in_range) == ([], [])
    assert service_ports(
        svc(type="ExternalName", clusterIP=None, clusterIPs=None), [], in_range
    ) == ([], [])
    other = svc()
    other["metadata"]["labels"] = {"service.kubernetes.io/service-proxy-name": "other"}
    assert service_ports(other, [], in_range) == ([], [])


def test_address_outside_routed_range_is_refused() -> None:
    ports, problems = service_ports(
        svc(clusterIP="192.168.0.10", clusterIPs=["192.168.0.10"]), [], in_range
    )
    assert ports == []
    assert "outside the service range" in problems[0]


def test_sctp_is_reported_not_programmed() -> None:
    ports, problems = service_ports(
        svc(
            ports=[
                {"name": "s", "port": 9, "protocol": "SCTP"},
                {"name": "http", "port": 80, "protocol": "TCP"},
            ]
        ),
        [],
        in_range,
    )
    assert [p.protocol for p in ports] == ["TCP"]
    assert "SCTP" in problems[0]
