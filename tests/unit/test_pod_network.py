"""The pod network's pure parts: the address allocator, what the agent reads from Nodes and
the routes and rules it wants (the kernel side is tests/integration/test_pod_network.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from k8slite.cmd.kubelet import parse_args
from k8slite.kubelet.runtime import make_runtime
from k8slite.network import routes
from k8slite.network.agent import BACKEND_TYPE, PUBLIC_IP, VTEP_MAC, peer_of, pod_cidr
from k8slite.network.bridge import gateway
from k8slite.network.cni import HostLocalIpam, host_veth, netns_name


def _node(name: str, **spec: Any) -> dict[str, Any]:
    annotations = spec.pop("annotations", {})
    return {
        "metadata": {"name": name, "annotations": annotations},
        "spec": spec,
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": "192.168.1.7"},
                {"type": "Hostname", "address": name},
            ]
        },
    }


def test_ipam_hands_out_each_address_once_and_remembers_owners(tmp_path: Path) -> None:
    ipam = HostLocalIpam(tmp_path / "ipam")
    first = ipam.allocate("10.244.3.0/29", "sandbox-a")
    assert str(first) == "10.244.3.2"  # .1 is the bridge's
    assert ipam.allocate("10.244.3.0/29", "sandbox-a") == first  # idempotent
    others = [str(ipam.allocate("10.244.3.0/29", f"s{i}")) for i in range(4)]
    assert others == ["10.244.3.3", "10.244.3.4", "10.244.3.5", "10.244.3.6"]
    with pytest.raises(RuntimeError, match="no free address"):
        ipam.allocate("10.244.3.0/29", "one-too-many")
    # A new allocator on the same directory (a restarted kubelet) knows what is taken.
    again = HostLocalIpam(tmp_path / "ipam")
    again.release("sandbox-a")
    assert str(again.allocate("10.244.3.0/29", "sandbox-b")) == "10.244.3.2"
    assert again.owned("s0") is not None and again.owned("nobody") is None


def test_names_fit_the_kernel() -> None:
    sandbox = "0123456789abcdef0123456789abcdef"
    assert len(host_veth(sandbox)) <= 15
    assert netns_name(sandbox) == "k8slite-0123456789abcdef"
    assert str(gateway("10.244.7.0/24")) == "10.244.7.1/24"


def test_peer_of_reads_pod_cidr_address_and_vtep() -> None:
    assert peer_of(_node("n1")) is None  # no pod CIDR yet
    plain = peer_of(_node("n1", podCIDR="10.244.1.0/24", podCIDRs=["10.244.1.0/24"]))
    assert plain == routes.Peer("n1", "10.244.1.0/24", "192.168.1.7", "")
    dual = _node("n2", podCIDR="fd00::/64", podCIDRs=["fd00::/64", "10.244.2.0/24"])
    assert pod_cidr(dual) == "10.244.2.0/24"
    vxlan = peer_of(
        _node(
            "n3",
            podCIDR="10.244.3.0/24",
            annotations={
                BACKEND_TYPE: "vxlan",
                PUBLIC_IP: "172.16.0.3",
                VTEP_MAC: "aa:bb:cc:dd:ee:ff",
            },
        )
    )
    assert vxlan == routes.Peer("n3", "10.244.3.0/24", "172.16.0.3", "aa:bb:cc:dd:ee:ff")
    assert vxlan.vtep_ip == "10.244.3.0"


def test_wanted_routes_per_backend() -> None:
    peers = [
        routes.Peer("a", "10.244.1.0/24", "192.168.1.11", "aa:aa:aa:aa:aa:aa"),
        routes.Peer("b", "10.244.2.0/24", "192.168.1.12", ""),  # no VTEP published yet
    ]
    assert routes.host_gw_routes(peers) == {
        "10.244.1.0/24": "via 192.168.1.11",
        "10.244.2.0/24": "via 192.168.1.12",
    }
    assert routes.vxlan_routes(peers, "k8slite.1") == {
        "10.244.1.0/24": "via 10.244.1.0 dev k8slite.1 onlink"
    }


def test_masquerade_rule_spares_pod_to_pod_traffic() -> None:
    rules = routes.masquerade_ruleset("10.244.0.0/16")
    want = "ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade"
    assert want in rules
    # Declared, deleted and declared again: one transaction that works on every run.
    assert rules.index("delete table ip k8slite-podnet") < rules.index("chain postrouting")


def test_kubelet_pod_network_flags(tmp_path: Path) -> None:
    config, _ = parse_args(["--node-name", "n1", "--runtime", "process"])
    assert config.pod_network == "host"
    config, _ = parse_args(["--node-name", "n1", "--pod-network", "bridge", "--pod-bridge", "cbr0"])
    assert (config.pod_network, config.pod_bridge) == ("bridge", "cbr0")
    runtime = make_runtime(
        "process", node_name="n1", root_dir=tmp_path, pod_network="bridge", pod_cidr="10.9.0.0/24"
    )
    network = runtime.pod_network  # type: ignore[attr-defined]
    assert (network.bridge, network.pod_cidr) == ("k8slite0", "10.9.0.0/24")
    runtime.update_pod_cidr("10.9.1.0/24")  # type: ignore[attr-defined]
    assert network.pod_cidr == "10.9.1.0/24"
    assert make_runtime("process", node_name="n1", root_dir=tmp_path).pod_network is None  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="unknown pod network"):
        make_runtime("process", node_name="n1", root_dir=tmp_path, pod_network="overlay")
