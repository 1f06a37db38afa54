"""Objects every cluster has, reconciled at each start: the `kubernetes` service, APF defaults,
the default StorageClass."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from k8slite._native import loads
from k8slite.api import errors
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.flowcontrol import defaults
from k8slite.apiserver.registry import DeleteOptions
from k8slite.component.objects import Obj

_LABELS = {"component": "apiserver", "provider": "kubernetes"}


def _service(cluster_ip: str, port: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": dict(_LABELS)},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
        },
    }


def _by_port(peers: list[tuple[str, int]]) -> dict[int, list[str]]:
    """The API servers' addresses grouped by port, ports in order."""
    ports: dict[int, list[str]] = {}
    for address, port in sorted(peers, key=lambda p: (p[1], p[0])):
        ports.setdefault(port, []).append(address)
    return ports


def _endpoints(peers: list[tuple[str, int]]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [
            {
                "addresses": [{"ip": address} for address in addresses],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            }
            for port, addresses in _by_port(peers).items()
        ],
    }


def _slice(name: str, addresses: list[str], port: int) -> Obj:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": "kube-apiserver",
            },
        },
        "addressType": "IPv6" if ":" in addresses[0] else "IPv4",
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }


@contextlib.contextmanager
def _created_elsewhere() -> Iterator[None]:
    """Another API server on the same etcd, starting at the same time, created it first."""
    try:
        yield
    except errors.ApiError as e:
        if e.code != 409 or e.reason != "AlreadyExists":
            raise


async def _ensure(
    core: ApiCore,
    group: str,
    plural: str,
    desired: Obj,
    fields: tuple[str, ...],
    namespace: str | None = "default",
) -> None:
    """Create the object, or bring the named top-level fields back to what they should be."""
    reg = core.registries[(group, plural)]

    def mutate(current: Obj | None) -> Obj:
        if current is None:
            return desired
        for f in fields:
            current[f] = desired[f]
        return current

    name = desired["metadata"]["name"]
    with _created_elsewhere():
        await reg.update(namespace, name, mutate, allow_create=True)
        return
    await reg.update(namespace, name, mutate)  # created meanwhile: bring its fields back


async def ensure_kubernetes_service(
    core: ApiCore, cluster_ip: str, address: str, port: int, endpoints: bool = True
) -> None:
    """The `kubernetes` service at the range's first address, pointing at this server (its
    endpoints too, unless the lease reconciler keeps them: see peers.py)."""
    services = core.registries[("", "services")]
    if services.cache.get(services.key("default", "kubernetes")) is None:
        with _created_elsewhere():
            await services.create("default", _service(cluster_ip, port))
    if endpoints:
        await ensure_endpoints(core, [(address, port)])


async def ensure_endpoints(core: ApiCore, peers: list[tuple[str, int]]) -> None:
    """The `kubernetes` Endpoints and EndpointSlices name exactly these API servers.

    A slice per port: "kubernetes" for the first, "kubernetes-<port>" for others (upstream's
    servers share one port, so it has only the first).
    """
    if not peers:
        return
    await _ensure(core, "", "endpoints", _endpoints(peers), ("subsets",))
    wanted = set()
    for i, (port, addresses) in enumerate(_by_port(peers).items()):
        name = "kubernetes" if i == 0 else f"kubernetes-{port}"
        wanted.add(name)
        await _ensure(
            core,
            "discovery.k8s.io",
            "endpointslices",
            _slice(name, addresses, port),
            ("endpoints", "ports"),
        )
    slices = core.registries[("discovery.k8s.io", "endpointslices")]
    for obj in loads(slices.cache.list(slices.rt.prefix("default"))[0]):
        m = obj["metadata"]
        labels = m.get("labels") or {}
        if (
            labels.get("endpointslice.kubernetes.io/managed-by") == "kube-apiserver"
            and m["name"] not in wanted
        ):
            with contextlib.suppress(errors.ApiError):
                await slices.delete("default", m["name"], DeleteOptions())


# The default class: k3s's local-path provisioner's name and settings.
DEFAULT_STORAGE_CLASS = "local-path"
LOCAL_PATH_PROVISIONER = "rancher.io/local-path"


async def ensure_default_storage_class(core: ApiCore) -> None:
    """Create the `local-path` StorageClass once; a user's later edits or deletion stick."""
    classes = core.registries[("storage.k8s.io", "storageclasses")]
    if classes.cache.get(classes.key(None, DEFAULT_STORAGE_CLASS)) is not None:
        return
    with _created_elsewhere():
        await classes.create(
            None,
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {
                    "name": DEFAULT_STORAGE_CLASS,
                    "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                },
                "provisioner": LOCAL_PATH_PROVISIONER,
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "WaitForFirstConsumer",
                "allowVolumeExpansion": True,
            },
        )


_FLOWCONTROL = "flowcontrol.apiserver.k8s.io"


async def ensure_flowcontrol_objects(core: ApiCore) -> None:
    """Upstream's default FlowSchemas and priority levels, their specs as upstream's.

    They are served read-only, so at each start every one is created or reset.
    """
    for level in defaults.priority_levels():
        await _ensure(core, _FLOWCONTROL, "prioritylevelconfigurations", level, ("spec",), None)
    for schema in defaults.flow_schemas():
        await _ensure(core, _FLOWCONTROL, "flowschemas", schema, ("spec",), None)


def stored(core: ApiCore, plural: str) -> list[Obj]:
    """Every stored object of a flowcontrol resource, from the cache."""
    reg = core.registries[(_FLOWCONTROL, plural)]
    objs: list[Obj] = loads(reg.cache.list(reg.rt.key_prefix)[0])
    return objs
