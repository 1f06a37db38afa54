"""The Docker runtime on a pod network across hosts: a Docker network of the node's own, on
the node's pod CIDR, that Docker does not masquerade (the node network agent does)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerHandle
from tests.integration.kubelet_harness import (
    BUSYBOX,
    Pods,
    docker_problem,
    kubelet_of_its_own,
    remove_docker_leftovers,
    unique_node,
)
from tests.integration.podnet_harness import free_subnets

_PROBLEM = docker_problem()
pytestmark = [
    pytest.mark.skipif(_PROBLEM is not None, reason=_PROBLEM or ""),
    pytest.mark.xdist_group("host-network"),
]


def test_docker_pods_get_addresses_from_the_nodes_pod_cidr(
    apiserver: ServerHandle, api: httpx.Client, namespace: str, tmp_path: Path
) -> None:
    import docker

    node = unique_node("kl-podnet")
    cidr = free_subnets(1, 24)[0]
    # kubelet_of_its_own names the engine-wide network; the node's own is that plus its name.
    network = f"k8slite-t-{node}-{node}"
    try:
        flags = ("--pod-network", "bridge", "--pod-cidr", str(cidr))
        with kubelet_of_its_own(apiserver, node, "docker", tmp_path, *flags):
            pods = Pods(api, namespace, node)
            pods.create("p", [{"name": "main", "image": BUSYBOX, "command": ["sleep", "600"]}])
            ip = pods.wait_phase("p", "Running")["podIP"]
            assert ipaddress.ip_address(ip) in cidr
            client = docker.APIClient(timeout=30)
            try:
                net = client.inspect_network(network)
            finally:
                client.close()
            assert [c["Subnet"] for c in net["IPAM"]["Config"]] == [str(cidr)]
            assert net["Options"]["com.docker.network.bridge.enable_ip_masquerade"] == "false"
            pods.delete("p", grace=0)
            pods.wait_gone("p")
    finally:
        remove_docker_leftovers([node], network)
