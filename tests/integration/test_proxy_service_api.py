"""Service API details the proxy relies on: affinity defaults, type changes, port checks."""

from __future__ import annotations

from typing import Any

import httpx


def url(ns: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{ns}/services" + (f"/{name}" if name else "")


def body(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"ports": [{"name": "http", "port": 80}], **spec}}


def test_session_affinity_defaults_and_limits(api: httpx.Client, namespace: str) -> None:
    r = api.post(url(namespace), json=body("sticky", sessionAffinity="ClientIP"))
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    r = api.post(
        url(namespace),
        json=body(
            "too-long",
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 86401}},
        ),
    )
    assert r.status_code == 422
    assert r.json()["message"].endswith(
        "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: "
        "must be greater than 0 and less than 86400"
    )
    # Without affinity the config is dropped, as upstream's defaulting does.
    r = api.post(
        url(namespace),
        json=body("plain", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}),
    )
    assert r.status_code == 201 and "sessionAffinityConfig" not in r.json()["spec"]


def test_external_name_round_trip_allocates_and_releases(api: httpx.Client, namespace: str) -> None:
    r = api.post(
        url(namespace),
        json={
            "metadata": {"name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "example.com"},
        },
    )
    assert r.status_code == 201, r.text
    current = r.json()
    current["spec"] = {"type": "ClusterIP", "ports": [{"port": 80}]}
    r = api.put(url(namespace, "ext"), json=current)
    assert r.status_code == 200, r.text
    ip = r.json()["spec"]["clusterIP"]
    assert ip.startswith("10.") and r.json()["spec"]["clusterIPs"] == [ip]
    # Back to ExternalName with only the type changed: the address is given up ...
    current = r.json()
    current["spec"].update(type="ExternalName", externalName="example.org")
    r = api.put(url(namespace, "ext"), json=current)
    assert r.status_code == 200, r.text
    assert "clusterIP" not in r.json()["spec"]
    # ... and can be taken by someone else.
    r = api.post(url(namespace), json=body("reuse", clusterIP=ip))
    assert r.status_code == 201, r.text


def test_port_checks(api: httpx.Client, namespace: str) -> None:
    r = api.post(
        url(namespace),
        json=body("dup", ports=[{"name": "a", "port": 80}, {"name": "b", "port": 80}]),
    )
    assert r.status_code == 422
    assert (
        'spec.ports[1]: Duplicate value: core.ServicePort{Name:"", Protocol:"TCP"'
        in r.json()["message"]
    )
    # The same number over TCP and UDP is fine.
    r = api.post(
        url(namespace),
        json=body(
            "dns",
            ports=[{"name": "tcp", "port": 53}, {"name": "udp", "port": 53, "protocol": "UDP"}],
        ),
    )
    assert r.status_code == 201, r.text
    r = api.post(url(namespace), json=body("cip", ports=[{"port": 80, "nodePort": 30999}]))
    assert r.status_code == 422
    assert (
        "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"
        in r.json()["message"]
    )
    r = api.post(
        url(namespace),
        json=body(
            "np",
            type="NodePort",
            ports=[
                {"name": "a", "port": 80, "nodePort": 30998},
                {"name": "b", "port": 81, "nodePort": 30998},
            ],
        ),
    )
    assert r.status_code == 422
    assert "spec.ports[1].nodePort: Duplicate value: 30998" in r.json()["message"]
    r = api.post(url(namespace), json=body("headless", type="NodePort", clusterIP="None"))
    assert r.status_code == 422
    assert "may not be set to 'None' for NodePort services" in r.json()["message"]
