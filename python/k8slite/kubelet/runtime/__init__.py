"""Container runtimes of the kubelet: docker (real containers), process (dev) and fake (hollow)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from k8slite.kubelet.runtime.base import (
    ContainerConfig,
    ContainerInfo,
    ContainerRuntimeError,
    ContainerState,
    ContainerStatus,
    CreateContainerError,
    CreateSandboxError,
    ExecResult,
    ExecTimeoutError,
    ImageInfo,
    ImageNeverPullError,
    ImagePullError,
    ImageRef,
    InvalidImageNameError,
    Mount,
    NamespaceMode,
    NamespaceOptions,
    NotFoundError,
    Runtime,
    Sandbox,
    SandboxState,
    StartContainerError,
)

RUNTIMES = ("docker", "process", "fake")


def make_runtime(
    kind: str,
    *,
    node_name: str,
    root_dir: str | os.PathLike[str],
    node_ip: str = "127.0.0.1",
    pod_cidr: str | None = None,
    docker_network: str | None = None,
    synthetic_usage: Mapping[str, str] | None = None,
    pod_network: str | None = None,
    pod_bridge: str | None = None,
) -> Runtime:
    """The runtime a kubelet's --runtime names, imported only when chosen.

        pod_cidr is the Docker pod network's subnet (shared by every kubelet on the engine;
        chosen automatically when None) or, for fake, the node's own pod CIDR. docker_network
        names the Docker network of the pods (default k8slite-pods); synthetic_usage is what each
    fake container reports using ({"cpu": "100m", "memory": "32Mi"}).

    pod_network "bridge" puts pods on a pod network across hosts, on the node's pod CIDR
    (pod_cidr, or what the kubelet learns from its Node): process pods in network
    namespaces of their own on pod_bridge, Docker pods on a network of this node alone.
    """
    if pod_network not in (None, "host", "bridge"):
        raise ValueError(f"unknown pod network {pod_network!r}; choose host or bridge")
    per_node = pod_network == "bridge"
    if kind == "docker":
        from k8slite.kubelet.runtime.docker import DEFAULT_NETWORK, DockerRuntime

        network = docker_network or DEFAULT_NETWORK
        return DockerRuntime(
            node_name,
            node_ip=node_ip,
            pod_cidr=pod_cidr,
            network=f"{network}-{node_name}" if per_node else network,
            per_node=per_node,
        )
    if kind == "process":
        from k8slite.kubelet.runtime.process import ProcessRuntime
        from k8slite.network.bridge import DEFAULT_BRIDGE
        from k8slite.network.cni import BridgeNetwork

        state = Path(root_dir) / "process-runtime"
        bridge = (
            BridgeNetwork(state, bridge=pod_bridge or DEFAULT_BRIDGE, pod_cidr=pod_cidr)
            if per_node
            else None
        )
        return ProcessRuntime(node_name, state, node_ip=node_ip, pod_network=bridge)
    if kind == "fake":
        from k8slite.kubelet.runtime.fake import FakeRuntime, SyntheticUsage

        return FakeRuntime(
            node_name,
            node_ip=node_ip,
            pod_cidr=pod_cidr or "10.244.0.0/16",
            usage=SyntheticUsage.parse(synthetic_usage or {}),
        )
    raise ValueError(f"unknown container runtime {kind!r}; choose one of {', '.join(RUNTIMES)}")


__all__ = [
    "RUNTIMES",
    "ContainerConfig",
    "ContainerInfo",
    "ContainerRuntimeError",
    "ContainerState",
    "ContainerStatus",
    "CreateContainerError",
    "CreateSandboxError",
    "ExecResult",
    "ExecTimeoutError",
    "ImageInfo",
    "ImageNeverPullError",
    "ImagePullError",
    "ImageRef",
    "InvalidImageNameError",
    "Mount",
    "NamespaceMode",
    "NamespaceOptions",
    "NotFoundError",
    "Runtime",
    "Sandbox",
    "SandboxState",
    "StartContainerError",
    "make_runtime",
]
