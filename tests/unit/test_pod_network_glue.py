"""`k8slite up --pod-network bridge` and `k8slite join`: the flags each component gets, the
kube-system/k8slite-network ConfigMap, and the pod files `ip netns exec` finds."""

from __future__ import annotations

from pathlib import Path

import pytest

from k8slite.cmd import join, up
from k8slite.network import cni
from k8slite.network.clusterconfig import NAME, NAMESPACE, PodNetworkConfig, objects


def _argv(components: list[up.Component], name: str) -> list[str]:
    return next(c.argv for c in components if c.name == name)


def _ports() -> dict[str, int]:
    return {**up.DEFAULT_PORTS, "dns": 53, "dns-metrics": 9153, "netagent": 10271}


def test_up_flags_default_to_no_pod_network(tmp_path: Path) -> None:
    opts = up.parse_args(["--data-dir", str(tmp_path)])
    assert opts.pod_network == "host"
    _, rest = up.components(opts, tmp_path, "n", "process", _ports(), True, "127.0.0.1")
    assert "netagent" not in {c.name for c in rest}
    assert "--allocate-node-cidrs" not in _argv(rest, "controller-manager")
    assert "--pod-network" not in _argv(rest, "kubelet")


def test_up_with_a_pod_network_runs_ipam_the_bridge_plugin_and_the_agent(tmp_path: Path) -> None:
    opts = up.parse_args(
        ["--pod-network", "bridge", "--pod-network-cidr", "10.200.0.0/16"]
        + ["--pod-network-backend", "vxlan", "--advertise-address", "192.0.2.7"]
        + ["--data-dir", str(tmp_path)]
    )
    assert up.node_ip(opts) == "192.0.2.7"
    _, rest = up.components(opts, tmp_path, "n", "process", _ports(), True, "192.0.2.7")
    cm = _argv(rest, "controller-manager")
    assert cm[cm.index("--allocate-node-cidrs") :][:5] == [
        "--allocate-node-cidrs",
        "--cluster-cidr",
        "10.200.0.0/16",
        "--node-cidr-mask-size",
        "24",
    ]
    kubelet = _argv(rest, "kubelet")
    assert kubelet[kubelet.index("--pod-network") :][:4] == [
        "--pod-network",
        "bridge",
        "--node-ip",
        "192.0.2.7",
    ]
    agent = _argv(rest, "netagent")
    assert agent[1] == "netagent"
    assert agent[agent.index("--cluster-cidr") + 1] == "10.200.0.0/16"
    assert agent[agent.index("--backend") + 1] == "vxlan"
    assert agent[agent.index("--kubeconfig") + 1].endswith("node-n.kubeconfig")
    proxy = _argv(rest, "proxy")
    assert proxy[proxy.index("--cluster-cidr") + 1] == "10.200.0.0/16"
    assert "netagent" in up.health_urls(_ports(), True)


@pytest.mark.parametrize(
    "argv",
    [
        ["--pod-network-cidr", "not-a-cidr"],
        ["--pod-network-cidr", "10.0.0.0/24", "--node-cidr-mask-size", "24"],
    ],
)
def test_up_refuses_a_bad_pod_network(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        up.parse_args(["--pod-network", "bridge", *argv])


def test_local_server_follows_a_specific_bind_address() -> None:
    assert up.local_server(up.parse_args([]), 1) == "https://127.0.0.1:1"
    assert up.local_server(up.parse_args(["--bind-address", "0.0.0.0"]), 1) == "https://127.0.0.1:1"
    assert up.local_server(up.parse_args(["--bind-address", "10.1.2.3"]), 1) == "https://10.1.2.3:1"


def test_join_runs_the_agent_only_with_the_clusters_pod_network(tmp_path: Path) -> None:
    opts = join.parse_args(["--server", "https://192.0.2.7:6443", "--token", "a.b"])
    ports = join.pick_ports(10250)
    plain = join.node_components(opts, tmp_path, "192.0.2.8", "process", ports)
    assert [c.name for c in plain] == ["kubelet", "proxy"]
    network = PodNetworkConfig("10.244.0.0/16", "host-gw")
    both = join.node_components(opts, tmp_path, "192.0.2.8", "process", ports, network)
    assert [c.name for c in both] == ["kubelet", "proxy", "netagent"]
    assert "--pod-network" in both[0].argv
    agent = both[2].argv
    assert agent[agent.index("--kubeconfig") + 1] == str(tmp_path / join.KUBELET_KUBECONFIG)
    assert agent[agent.index("--metrics-bind-address") + 1] == "127.0.0.1:10271"
    assert "netagent" in join.health_urls(ports, True, True)


def test_the_configmap_round_trips_and_only_nodes_may_read_it() -> None:
    config = PodNetworkConfig("10.244.0.0/16", "vxlan")
    made = {path.rsplit("/", 1)[1]: obj for path, _, obj in objects(config)}
    cm = made["configmaps"]
    assert (cm["metadata"]["namespace"], cm["metadata"]["name"]) == (NAMESPACE, NAME)
    assert PodNetworkConfig.from_configmap(cm) == config
    assert made["roles"]["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [NAME], "verbs": ["get"]}
    ]
    assert made["rolebindings"]["subjects"][0]["name"] == "system:nodes"
    assert PodNetworkConfig.from_configmap({"data": {"podNetwork": "host"}}) is None
    assert PodNetworkConfig.from_configmap({}) is None


def test_pod_files_go_where_ip_netns_exec_finds_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cni, "NETNS_ETC_DIR", tmp_path / "etc-netns")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.96.0.10\n")
    sandbox = "0123456789abcdef0123"
    cni.install_pod_file(sandbox, str(resolv), "/etc/resolv.conf")
    placed = tmp_path / "etc-netns" / cni.netns_name(sandbox) / "resolv.conf"
    assert placed.read_text() == "nameserver 10.96.0.10\n"
    assert cni.netns_etc(sandbox) == placed.parent
