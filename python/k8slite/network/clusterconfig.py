"""The cluster's pod network settings, which `k8slite up` publishes and `k8slite join` reads.

As kubeadm keeps the cluster's configuration in kube-system ConfigMaps that a joining node
reads with its own credentials (kubeadm-config, kube-proxy), and flannel its net-conf.json
in kube-flannel-cfg: ConfigMap kube-system/k8slite-network holds the pod network mode
(`podNetwork: bridge`), the whole pod range (`clusterCIDR`, the controller manager's
--cluster-cidr) and the backend of the node network agents (`backend`: host-gw or vxlan).
Role and RoleBinding k8slite:network-config let every node (group system:nodes) get it,
and only it: the node authorizer opens ConfigMaps only to nodes running pods that use them.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import httpx

NAMESPACE = "kube-system"
NAME = "k8slite-network"
ROLE = "k8slite:network-config"
RBAC = "rbac.authorization.k8s.io"
PATH = f"/api/v1/namespaces/{NAMESPACE}/configmaps/{NAME}"


class ClusterConfigError(RuntimeError):
    """The pod network settings could not be published or read."""


@dataclass(frozen=True)
class PodNetworkConfig:
    cluster_cidr: str
    backend: str = "host-gw"
    mode: str = "bridge"

    def data(self) -> dict[str, str]:
        return {"podNetwork": self.mode, "clusterCIDR": self.cluster_cidr, "backend": self.backend}

    @classmethod
    def from_configmap(cls, cm: dict[str, Any]) -> PodNetworkConfig | None:
        data = cm.get("data") or {}
        if data.get("podNetwork") != "bridge" or not data.get("clusterCIDR"):
            return None
        return cls(str(data["clusterCIDR"]), str(data.get("backend") or "host-gw"))


def objects(config: PodNetworkConfig) -> list[tuple[str, str, dict[str, Any]]]:
    """(API path of the collection, name, object): the ConfigMap, and its Role and binding."""
    role: dict[str, Any] = {
        "apiVersion": f"{RBAC}/v1",
        "kind": "Role",
        "metadata": {"name": ROLE, "namespace": NAMESPACE},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [NAME],
                "verbs": ["get"],
            }
        ],
    }
    binding: dict[str, Any] = {
        "apiVersion": f"{RBAC}/v1",
        "kind": "RoleBinding",
        "metadata": {"name": ROLE, "namespace": NAMESPACE},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": ROLE},
        "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": "system:nodes"}],
    }
    configmap: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "data": config.data(),
    }
    rbac = f"/apis/{RBAC}/v1/namespaces/{NAMESPACE}"
    return [
        (f"{rbac}/roles", ROLE, role),
        (f"{rbac}/rolebindings", ROLE, binding),
        (f"/api/v1/namespaces/{NAMESPACE}/configmaps", NAME, configmap),
    ]


async def publish(server: str, ssl_context: ssl.SSLContext, config: PodNetworkConfig) -> None:
    """Create or replace the ConfigMap and its RBAC (as the cluster's administrator)."""
    async with httpx.AsyncClient(verify=ssl_context, timeout=30) as client:
        for collection, name, obj in objects(config):
            r = await client.get(f"{server}{collection}/{name}")
            if r.status_code == 404:
                r = await client.post(f"{server}{collection}", json=obj)
            elif r.status_code == 200:
                obj["metadata"]["resourceVersion"] = r.json()["metadata"]["resourceVersion"]
                r = await client.put(f"{server}{collection}/{name}", json=obj)
            if r.status_code not in (200, 201):
                raise ClusterConfigError(f"{collection}/{name}: {r.status_code} {r.text[:300]}")


async def remove(server: str, ssl_context: ssl.SSLContext) -> None:
    """A cluster without a pod network: joining nodes then run none."""
    async with httpx.AsyncClient(verify=ssl_context, timeout=30) as client:
        r = await client.delete(f"{server}{PATH}")
        if r.status_code not in (200, 202, 404):
            raise ClusterConfigError(f"{PATH}: {r.status_code} {r.text[:300]}")


def read(server: str, ssl_context: ssl.SSLContext) -> PodNetworkConfig | None:
    """The cluster's pod network, or None when it has none (no ConfigMap)."""
    try:
        with httpx.Client(verify=ssl_context, timeout=30) as client:
            r = client.get(f"{server}{PATH}")
    except httpx.HTTPError as e:
        raise ClusterConfigError(f"cannot read {NAMESPACE}/{NAME}: {e}") from None
    if r.status_code in (404, 403):
        # 403: a cluster whose control plane never published one (nor the Role opening it).
        return None
    if r.status_code != 200:
        raise ClusterConfigError(f"cannot read {NAMESPACE}/{NAME}: {r.status_code} {r.text[:300]}")
    return PodNetworkConfig.from_configmap(r.json())
