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
) -> Runtime:
    """The runtime a kubelet's --runtime names, imported only when chosen.

        pod_cidr is the Docker pod network's subnet (shared by every kubelet on the engine;
        chosen automatically when None) or, for fake, the node's own pod CIDR. docker_network
        names the Docker network of the pods (default k8slite-pods); synthetic_usage is what each
    fake container reports using ({"cpu": "100m", "memory": "32Mi"}).
    """
    if kind == "docker":
        from k8slite.kubelet.runtime.docker import DEFAULT_NETWORK, DockerRuntime

        return DockerRuntime(
            node_name, node_ip=node_ip, pod_cidr=pod_cidr, network=docker_network or DEFAULT_NETWORK
        )
    if kind == "process":
        from k8slite.kubelet.runtime.process import ProcessRuntime

        return ProcessRuntime(node_name, Path(root_dir) / "process-runtime", node_ip=node_ip)
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
