"""node-ipam-controller in a real controller manager: distinct podCIDRs, CIDRNotAvailable
when the range is full, a deleted node's range reused, a restarted manager honouring the
ranges nodes hold, and dual-stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerHandle, start_apiserver
from tests.integration.controller_harness import start_controller_manager
from tests.polling import wait_for

NODES = "/api/v1/nodes"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerHandle]:
    handle = start_apiserver(tmp_path / "data")
    yield handle
    handle.stop()


def _ipam(server: ServerHandle, cidr: str, *flags: str) -> Any:
    return start_controller_manager(
        server,
        "--controllers=nodeipam",
        "--allocate-node-cidrs",
        f"--cluster-cidr={cidr}",
        "--leader-elect=false",
        *flags,
    )


def _add_node(server: ServerHandle, name: str) -> None:
    with server.client() as c:
        r = c.post(NODES, json={"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    assert r.status_code == 201, r.text


def _delete_node(server: ServerHandle, name: str) -> None:
    with server.client() as c:
        assert c.delete(f"{NODES}/{name}").status_code == 200


def _cidrs(server: ServerHandle, name: str) -> list[str] | None:
    with server.client() as c:
        spec = c.get(f"{NODES}/{name}").json().get("spec") or {}
    if not spec.get("podCIDRs"):
        return None
    assert spec["podCIDR"] == spec["podCIDRs"][0]
    return list(spec["podCIDRs"])


def _wait_cidrs(server: ServerHandle, name: str) -> list[str]:
    return wait_for(lambda: _cidrs(server, name), timeout=60, what=f"node {name} podCIDRs")


def _not_available(server: ServerHandle, name: str) -> bool:
    with server.client() as c:
        events = c.get(
            "/api/v1/namespaces/default/events",
            params={"fieldSelector": f"involvedObject.name={name},reason=CIDRNotAvailable"},
        ).json()["items"]
    return any(
        e["message"] == f"Node {name} status is now: CIDRNotAvailable"
        and e["involvedObject"]["kind"] == "Node"
        for e in events
    )


def test_nodes_get_distinct_ranges_reused_after_delete_and_restart(server: ServerHandle) -> None:
    # Two /24s in the range: the third node must wait for one to be freed.
    manager = _ipam(server, "10.244.0.0/23", "--node-cidr-mask-size=24")
    try:
        for name in ("n1", "n2", "n3"):
            _add_node(server, name)
        got = {n: _wait_cidrs(server, n) for n in ("n1", "n2")}
        assert sorted(got.values()) == [["10.244.0.0/24"], ["10.244.1.0/24"]]
        wait_for(lambda: _not_available(server, "n3"), timeout=60, what="CIDRNotAvailable on n3")
        assert _cidrs(server, "n3") is None
        _delete_node(server, "n1")
        assert _wait_cidrs(server, "n3") == got["n1"]
    finally:
        manager.stop()
    # A new manager learns what n2 and n3 hold before it hands anything out.
    manager = _ipam(server, "10.244.0.0/23", "--node-cidr-mask-size=24")
    try:
        _add_node(server, "n4")
        wait_for(lambda: _not_available(server, "n4"), timeout=60, what="CIDRNotAvailable on n4")
        assert _cidrs(server, "n4") is None
        held = _cidrs(server, "n2")
        _delete_node(server, "n2")
        assert _wait_cidrs(server, "n4") == held
    finally:
        manager.stop()


def test_dual_stack(server: ServerHandle) -> None:
    manager = _ipam(
        server,
        "10.245.0.0/16,fd00:10::/56",
        "--node-cidr-mask-size-ipv4=25",
        "--node-cidr-mask-size-ipv6=64",
    )
    try:
        _add_node(server, "d1")
        _add_node(server, "d2")
        first, second = _wait_cidrs(server, "d1"), _wait_cidrs(server, "d2")
        assert {first[0], second[0]} == {"10.245.0.0/25", "10.245.0.128/25"}
        assert {first[1], second[1]} == {"fd00:10::/64", "fd00:10:0:1::/64"}
    finally:
        manager.stop()
