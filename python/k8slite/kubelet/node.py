"""The kubelet's Node: registration, status (capacity, conditions, images) and Lease heartbeat."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from k8slite import KUBERNETES_VERSION
from k8slite.api import meta
from k8slite.api.storage_v1 import LOCAL_PATH_DIR
from k8slite.client import (
    AlreadyExists,
    ApiClient,
    ApiConnectionError,
    ApiError,
    Conflict,
    NotFound,
)
from k8slite.client.resource import LEASES, NODES
from k8slite.component.objects import Obj
from k8slite.kubelet.config import KubeletConfig
from k8slite.kubelet.localpath import local_path_dir
from k8slite.kubelet.machine import NodeInfo, Pressure
from k8slite.leaderelection import micro_time

log = logging.getLogger(__name__)

NODE_LEASE_NAMESPACE = "kube-node-lease"
# What a heartbeat or status write may fail with; the next period tries again.
API_ERRORS = (ApiError, ApiConnectionError)
# Upstream reports at most this many images in status.images, the largest first.
MAX_IMAGES = 50


# (type, reason and message when False, reason and message when True)
_PRESSURE = (
    (
        "MemoryPressure",
        ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
    ),
    (
        "DiskPressure",
        ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("KubeletHasDiskPressure", "kubelet has disk pressure"),
    ),
    (
        "PIDPressure",
        ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
    ),
)


@dataclass
class Health:
    """What the node's conditions are made of, sampled each status period."""

    runtime_ok: bool = True
    runtime_message: str = ""
    pressure: Pressure = field(default_factory=Pressure)


def default_labels(node_name: str, arch: str, os_name: str) -> dict[str, str]:
    return {
        "beta.kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": os_name,
        "kubernetes.io/arch": arch,
        "kubernetes.io/hostname": node_name,
        "kubernetes.io/os": os_name,
    }


def _condition(type_: str, status: bool, reason: str, message: str, now: str) -> Obj:
    return {
        "type": type_,
        "status": "True" if status else "False",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def conditions(health: Health, now: str) -> list[Obj]:
    """MemoryPressure, DiskPressure, PIDPressure and Ready, upstream's order and words."""
    out = []
    flags = (health.pressure.memory, health.pressure.disk, health.pressure.pid)
    for (type_, ok, bad), flag in zip(_PRESSURE, flags, strict=True):
        reason, message = bad if flag else ok
        out.append(_condition(type_, flag, reason, message, now))
    if health.runtime_ok:
        out.append(
            _condition("Ready", True, "KubeletReady", "kubelet is posting ready status", now)
        )
    else:
        out.append(
            _condition(
                "Ready",
                False,
                "KubeletNotReady",
                f"container runtime is down: {health.runtime_message}",
                now,
            )
        )
    return out


def merge_conditions(old: list[Obj], new: list[Obj]) -> list[Obj]:
    """new, keeping each unchanged condition's lastTransitionTime from old."""
    before = {c.get("type"): c for c in old}
    out = []
    for c in new:
        prev = before.get(c["type"])
        if (
            prev is not None
            and prev.get("status") == c["status"]
            and prev.get("lastTransitionTime")
        ):
            c = {**c, "lastTransitionTime": prev["lastTransitionTime"]}
        out.append(c)
    return out


def _without_heartbeats(status: Obj) -> Obj:
    conds = [
        {k: v for k, v in c.items() if k != "lastHeartbeatTime"}
        for c in status.get("conditions") or ()
    ]
    return {**status, "conditions": conds}


class NodeStatusManager:
    """Registers one Node and keeps its status and Lease current.

    Cheap enough to hold thousands in one process (hollow nodes): the Node it last reported
    and its Lease are the only sizeable state. `run()` drives both loops for a kubelet;
    hollow nodes call register/sync_status/renew_lease from a shared scheduler instead.
    """

    def __init__(
        self,
        client: ApiClient,
        config: KubeletConfig,
        *,
        info: NodeInfo,
        capacity: dict[str, str],
        runtime_version: str,
        kubelet_port: int,
        images: Callable[[], Any] | None = None,
        health: Callable[[], Any] | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.name = config.node_name
        self.info = info
        self.capacity = capacity
        self.runtime_version = runtime_version
        self.kubelet_port = kubelet_port
        # Async callables sampled each status period: [{names, sizeBytes}] and Health.
        self._images = images
        self._health = health
        self.uid = ""
        self.reported: Obj = {}  # status as last written
        self.reported_at = 0.0
        self.lease: Obj | None = None
        self.heartbeats = 0

    # -------------------------------------------------------------------- objects

    def node_object(self, status: Obj) -> Obj:
        c = self.config
        labels = default_labels(self.name, self.info.architecture, self.info.operating_system)
        labels.update(c.node_labels)
        spec: Obj = {}
        if c.pod_cidr:
            spec["podCIDR"] = c.pod_cidr
            spec["podCIDRs"] = [c.pod_cidr]
        if c.register_with_taints:
            spec["taints"] = [t.to_api() for t in c.register_with_taints]
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": labels,
                "annotations": {
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                    # Where the local-path provisioner's volumes of this node live.
                    LOCAL_PATH_DIR: str(local_path_dir(c.root_dir)),
                },
            },
            "spec": spec,
            "status": status,
        }

    async def desired_status(self) -> Obj:
        health = await self._health() if self._health is not None else Health()
        images = await self._images() if self._images is not None else []
        now = meta.now()
        allocatable = dict(self.capacity)
        return {
            "capacity": dict(self.capacity),
            "allocatable": allocatable,
            "conditions": merge_conditions(
                self.reported.get("conditions") or [], conditions(health, now)
            ),
            "addresses": [
                {"type": "InternalIP", "address": self.config.node_ip},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": self.info.to_api(KUBERNETES_VERSION, self.runtime_version),
            "images": images,
        }

    # ------------------------------------------------------------- registration

    async def register(self) -> None:
        """Create the Node, or adopt the one there (keeping its spec), until it works."""
        delay = 0.1
        while True:
            try:
                await self._register_once()
                return
            except API_ERRORS as e:
                log.warning("node %s: registering failed: %s; retrying", self.name, e)
            await trio.sleep(delay)
            delay = min(delay * 2, 7.0)

    async def _register_once(self) -> None:
        status = await self.desired_status()
        try:
            node = await self.client.create(NODES, self.node_object(status))
            log.info("node %s registered", self.name)
        except AlreadyExists:
            # Upstream keeps the existing Node (its taints, spec) and refreshes its labels.
            m = self.node_object(status)["metadata"]
            patch = {
                "metadata": {
                    "labels": m["labels"],
                    "annotations": {LOCAL_PATH_DIR: m["annotations"][LOCAL_PATH_DIR]},
                }
            }
            node = await self.client.patch(NODES, self.name, patch)
            self.reported = node.get("status") or {}
            node = await self._write_status(status)
        self.uid = node["metadata"]["uid"]
        self.reported = node.get("status") or status
        self.reported_at = time.monotonic()

    # -------------------------------------------------------------------- status

    async def sync_status(self, force: bool = False) -> bool:
        """Write the status if it changed or the report period is over; whether it wrote."""
        status = await self.desired_status()
        due = time.monotonic() - self.reported_at >= self.config.node_status_report_frequency
        if (
            not force
            and not due
            and _without_heartbeats(status) == _without_heartbeats(self.reported)
        ):
            return False
        node = await self._write_status(status)
        self.reported = node.get("status") or status
        self.reported_at = time.monotonic()
        return True

    async def _write_status(self, status: Obj) -> Obj:
        patch = {k: v for k, v in status.items() if self.reported.get(k) != v}
        # A merge patch replaces lists whole; conditions are always all of ours.
        patch["conditions"] = status["conditions"]
        try:
            return await self.client.patch(
                NODES, self.name, {"status": patch}, subresource="status"
            )
        except NotFound:
            # Someone deleted our Node: register again, as upstream does.
            log.warning("node %s was deleted; registering it again", self.name)
            created = await self.client.create(NODES, self.node_object(status))
            self.uid = created["metadata"]["uid"]
            return created

    # --------------------------------------------------------------------- lease

    def _lease_object(self) -> Obj:
        now = micro_time()
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": NODE_LEASE_NAMESPACE,
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self.uid}
                ],
            },
            "spec": {
                "holderIdentity": self.name,
                "leaseDurationSeconds": self.config.node_lease_duration_seconds,
                "renewTime": now,
            },
        }

    async def renew_lease(self) -> None:
        """One heartbeat: renew the Lease (creating it when missing)."""
        if self.lease is None:
            await self._ensure_lease()
        else:
            lease = dict(self.lease)
            lease["spec"] = {
                **lease.get("spec", {}),
                "renewTime": micro_time(),
                "holderIdentity": self.name,
                "leaseDurationSeconds": self.config.node_lease_duration_seconds,
            }
            try:
                self.lease = await self.client.update(LEASES, lease)
            except (Conflict, NotFound):
                # Someone else wrote it (or removed it): start from what is there now.
                self.lease = None
                await self._ensure_lease()
        self.heartbeats += 1

    async def _ensure_lease(self) -> None:
        # Creating first saves a request in the common case: a node registering anew.
        try:
            self.lease = await self.client.create(LEASES, self._lease_object())
            return
        except AlreadyExists:
            current = await self.client.get(LEASES, self.name, namespace=NODE_LEASE_NAMESPACE)
        fresh = self._lease_object()
        current["spec"] = fresh["spec"]
        if self.uid:
            current["metadata"]["ownerReferences"] = fresh["metadata"]["ownerReferences"]
        self.lease = await self.client.update(LEASES, current)

    # ----------------------------------------------------------------------- run

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Register, then keep status and Lease current until cancelled."""
        await self.register()
        await self._retrying(self.renew_lease)
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._every, self.config.node_lease_renew_interval, self.renew_lease)
            nursery.start_soon(
                self._every, self.config.node_status_update_frequency, self.sync_status
            )

    async def _every(self, period: float, fn: Callable[[], Any]) -> None:
        while True:
            await trio.sleep(period)
            await self._retrying(fn)

    async def _retrying(self, fn: Callable[[], Any]) -> None:
        try:
            await fn()
        except API_ERRORS as e:
            log.warning("node %s: %s failed: %s", self.name, getattr(fn, "__name__", fn), e)
