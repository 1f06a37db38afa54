"""ClusterIP and NodePort allocation: unique, persisted across restarts, released on delete."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ServerHandle, start_apiserver


def svc(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    body["spec"].update(spec)
    return body


def url(ns: str = "default") -> str:
    return f"/api/v1/namespaces/{ns}/services"


def test_kubernetes_service_and_endpoints(api: httpx.Client, apiserver: ServerHandle) -> None:
    k = api.get(f"{url()}/kubernetes").json()
    assert k["spec"]["clusterIP"] == "10.96.0.1"
    assert k["spec"]["ports"][0]["port"] == 443
    ep = api.get("/api/v1/namespaces/default/endpoints/kubernetes").json()
    port = int(apiserver.url.rsplit(":", 1)[1])
    assert ep["subsets"][0]["ports"][0]["port"] == port
    assert ep["subsets"][0]["addresses"][0]["ip"] == "127.0.0.1"


def test_cluster_ips_unique_in_range(api: httpx.Client, namespace: str) -> None:
    ips = set()
    for i in range(20):
        r = api.post(url(namespace), json=svc(f"s{i}"))
        assert r.status_code == 201, r.text
        spec = r.json()["spec"]
        assert spec["clusterIPs"] == [spec["clusterIP"]]
        assert spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack"
        assert ipaddress.ip_address(spec["clusterIP"]) in ipaddress.ip_network("10.96.0.0/12")
        ips.add(spec["clusterIP"])
    assert len(ips) == 20 and "10.96.0.1" not in ips


def test_requested_ip_honoured_or_refused(api: httpx.Client, namespace: str) -> None:
    r = api.post(url(namespace), json=svc("fixed", clusterIP="10.96.100.100"))
    assert r.status_code == 201 and r.json()["spec"]["clusterIP"] == "10.96.100.100"
    r = api.post(url(namespace), json=svc("taken", clusterIP="10.96.100.100"))
    assert r.status_code == 422
    assert r.json()["message"] == (
        'Service "taken" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.100.100"}: '
        "failed to allocate IP 10.96.100.100: provided IP is already allocated"
    )
    r = api.post(url(namespace), json=svc("outside", clusterIP="192.168.1.1"))
    assert r.status_code == 422
    assert (
        "is not in the valid range. The range of valid IPs is 10.96.0.0/12" in r.json()["message"]
    )
    # deleting releases the address for reuse
    assert api.delete(f"{url(namespace)}/fixed").status_code == 200
    r = api.post(url(namespace), json=svc("again", clusterIP="10.96.100.100"))
    assert r.status_code == 201, r.text


def test_headless_and_external_name(api: httpx.Client, namespace: str) -> None:
    r = api.post(url(namespace), json=svc("headless", clusterIP="None"))
    assert r.status_code == 201
    assert r.json()["spec"]["clusterIPs"] == ["None"]
    ext = {
        "metadata": {"name": "ext"},
        "spec": {"type": "ExternalName", "externalName": "example.com"},
    }
    r = api.post(url(namespace), json=ext)
    assert r.status_code == 201, r.text
    assert "clusterIP" not in r.json()["spec"]


def test_node_ports(api: httpx.Client, namespace: str) -> None:
    r = api.post(url(namespace), json=svc("np", type="NodePort"))
    assert r.status_code == 201, r.text
    port = r.json()["spec"]["ports"][0]["nodePort"]
    assert 30000 <= port <= 32767
    body = svc("np2", type="NodePort")
    body["spec"]["ports"][0]["nodePort"] = port
    r = api.post(url(namespace), json=body)
    assert r.status_code == 422
    assert r.json()["message"].endswith(
        f"spec.ports[0].nodePort: Invalid value: {port}: provided port is already allocated"
    )
    body["spec"]["ports"][0]["nodePort"] = 80
    r = api.post(url(namespace), json=body)
    assert "provided port is not in the valid range" in r.json()["message"]
    # switching to ClusterIP gives the port back; an update without clusterIP keeps it
    current = api.get(f"{url(namespace)}/np").json()
    ip = current["spec"]["clusterIP"]
    current["spec"]["type"] = "ClusterIP"
    del current["spec"]["clusterIP"], current["spec"]["clusterIPs"]
    r = api.put(f"{url(namespace)}/np", json=current)
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["clusterIP"] == ip
    assert "nodePort" not in r.json()["spec"]["ports"][0]
    body["spec"]["ports"][0]["nodePort"] = port
    assert api.post(url(namespace), json=body).status_code == 201


def test_allocations_survive_restart(tmp_path: Path) -> None:
    server = start_apiserver(tmp_path / "d")
    try:
        with server.client() as api:
            first = api.post(url(), json=svc("keep")).json()["spec"]["clusterIP"]
    finally:
        server.stop()
    server = start_apiserver(tmp_path / "d")
    try:
        with server.client() as api:
            r = api.post(url(), json=svc("clash", clusterIP=first))
            assert r.status_code == 422 and "already allocated" in r.json()["message"]
            assert api.get(f"{url()}/keep").json()["spec"]["clusterIP"] == first
    finally:
        server.stop()
