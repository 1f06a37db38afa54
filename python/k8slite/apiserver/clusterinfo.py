"""The cluster-info ConfigMap in kube-public and who may read it, as kubeadm sets them up.

kubeadm's "bootstrap-token" init phase writes kube-public/cluster-info (key `kubeconfig`:
a kubeconfig naming the API server and the cluster CA, no user) and lets system:anonymous
get it (Role and RoleBinding kubeadm:bootstrap-signer-clusterinfo). A joining node reads it
without credentials, because it does not trust the server yet and must not send its
token to it, then checks the bootstrap signer's jws-kubeconfig-<token id> signature with
its token and the CA with --discovery-token-ca-cert-hash. The API server does the same at
start when bootstrap-token auth is on, with kubeadm's TLS bootstrap bindings (JOIN_BINDINGS:
joining nodes get client certificates, nodes renew them); an administrator's later changes
to the RBAC objects are kept, the kubeconfig follows the advertised address and CA.
"""

from __future__ import annotations

import base64
import copy
import logging

import yaml

from k8slite import bootstraptoken as bt
from k8slite.api import errors
from k8slite.apiserver.core import ApiCore
from k8slite.component.objects import Obj

log = logging.getLogger(__name__)

RBAC = "rbac.authorization.k8s.io"
ROLE = "kubeadm:bootstrap-signer-clusterinfo"


def cluster_info_kubeconfig(server: str, ca_pem: bytes) -> str:
    """kubeadm's cluster-info kubeconfig: one unnamed cluster, no users or contexts."""
    config: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "",
                "cluster": {
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                    "server": server,
                },
            }
        ],
        "contexts": None,
        "current-context": "",
        "preferences": {},
        "users": None,
    }
    return yaml.safe_dump(config, sort_keys=False)


def _rbac_objects() -> list[tuple[str, Obj]]:
    ns = bt.CLUSTER_INFO_NAMESPACE
    role: Obj = {
        "apiVersion": f"{RBAC}/v1",
        "kind": "Role",
        "metadata": {"name": ROLE, "namespace": ns},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [bt.CLUSTER_INFO],
                "verbs": ["get"],
            }
        ],
    }
    binding: Obj = {
        "apiVersion": f"{RBAC}/v1",
        "kind": "RoleBinding",
        "metadata": {"name": ROLE, "namespace": ns},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": ROLE},
        "subjects": [{"apiGroup": RBAC, "kind": "User", "name": "system:anonymous"}],
    }
    return [("roles", role), ("rolebindings", binding), *_join_bindings()]


# kubeadm's TLS bootstrap bindings (its "bootstrap-token" phase), and one of k8slite's.
_CSRS = "system:certificates.k8s.io:certificatesigningrequests"
JOIN_BINDINGS = (
    # Joining nodes' tokens may create CSRs...
    ("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", bt.DEFAULT_NODE_GROUP),
    # ...and have a node client certificate auto-approved (csrapproving's nodeclient check).
    ("kubeadm:node-autoapprove-bootstrap", f"{_CSRS}:nodeclient", bt.DEFAULT_NODE_GROUP),
    # Nodes renew their own client certificates (selfnodeclient).
    ("kubeadm:node-autoapprove-certificate-rotation", f"{_CSRS}:selfnodeclient", "system:nodes"),
    # k8slite: a joined node's proxy runs as the node (it has no credentials of its own;
    # upstream's runs as the kube-proxy ServiceAccount in a pod on every node, so every
    # node holds these rights there too): services, endpoint slices, nodes, read-only.
    ("k8slite:node-proxier", "system:node-proxier", "system:nodes"),
)


def _join_bindings() -> list[tuple[str, Obj]]:
    return [
        (
            "clusterrolebindings",
            {
                "apiVersion": f"{RBAC}/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
                "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": group}],
            },
        )
        for name, role, group in JOIN_BINDINGS
    ]


async def _create_if_absent(core: ApiCore, group: str, plural: str, obj: Obj) -> None:
    reg = core.registries[(group, plural)]
    ns, name = obj["metadata"].get("namespace"), obj["metadata"]["name"]
    if reg.cache.get(reg.key(ns, name)) is not None:
        return
    try:
        await reg.create(ns, copy.deepcopy(obj))
    except errors.ApiError as e:
        if e.code != 409:
            raise


async def publish(core: ApiCore, server: str, ca_pem: bytes) -> None:
    """Create or refresh cluster-info's kubeconfig (keeping the signer's jws keys) and the
    RBAC that opens it to anonymous reads."""
    for plural, obj in _rbac_objects():
        await _create_if_absent(core, RBAC, plural, obj)
    content = cluster_info_kubeconfig(server, ca_pem)
    reg = core.registries[("", "configmaps")]
    ns, name = bt.CLUSTER_INFO_NAMESPACE, bt.CLUSTER_INFO
    if reg.cache.get(reg.key(ns, name)) is None:
        cm: Obj = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns},
            "data": {bt.KUBECONFIG_KEY: content},
        }
        try:
            await reg.create(ns, cm)
            return
        except errors.ApiError as e:
            if e.code != 409:
                raise
    if (reg.get(ns, name).get("data") or {}).get(bt.KUBECONFIG_KEY) == content:
        return

    def mutate(obj: Obj | None) -> Obj:
        assert obj is not None
        obj.setdefault("data", {})[bt.KUBECONFIG_KEY] = content
        return obj

    await reg.update(ns, name, mutate)
    log.info("updated %s/%s for %s", ns, name, server)
