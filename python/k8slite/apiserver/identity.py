"""Each API server's identity Lease in kube-system, as upstream's APIServerIdentity.

Upstream names it `apiserver-<base32 of sha224(hostname)>`, holder `<name>_<uuid>`, labels
`apiserver.kubernetes.io/identity: kube-apiserver` and `kubernetes.io/hostname`, lasting an
hour and renewed every 10 s; a collector in every server deletes the leases not renewed
for their duration. Upstream runs one server per host; several of ours may share one
machine, so the port joins the hostname in the hash.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import socket
import uuid

import trio

from k8slite._native import loads
from k8slite.api import errors, meta
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.registry import DeleteOptions
from k8slite.component.objects import Obj
from k8slite.leaderelection import micro_time
from k8slite.storage import StoreUnavailable

log = logging.getLogger(__name__)

IDENTITY_LABEL = "apiserver.kubernetes.io/identity"
# Upstream's lease duration and renewal interval for API server identity leases.
LEASE_DURATION = 3600
RENEW_INTERVAL = 10.0
NAMESPACE = "kube-system"


def identity_name(hostname: str, port: int) -> str:
    digest = hashlib.sha224(f"{hostname}:{port}".encode()).digest()[:16]
    return "apiserver-" + base64.b32encode(digest).decode().rstrip("=").lower()


class IdentityLease:
    """Holds this server's lease and collects expired ones; run() until cancelled."""

    def __init__(self, core: ApiCore, port: int, hostname: str | None = None) -> None:
        self.core = core
        self.hostname = hostname or socket.gethostname()
        self.name = identity_name(self.hostname, port)
        self.holder = f"{self.name}_{uuid.uuid4()}"
        self._leases = core.registries[("coordination.k8s.io", "leases")]

    def _lease(self) -> Obj:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": NAMESPACE,
                "labels": {
                    IDENTITY_LABEL: "kube-apiserver",
                    "kubernetes.io/hostname": self.hostname,
                },
            },
            "spec": {
                "holderIdentity": self.holder,
                "leaseDurationSeconds": LEASE_DURATION,
                "renewTime": micro_time(),
            },
        }

    async def renew(self) -> None:
        wanted = self._lease()

        def mutate(current: Obj | None) -> Obj:
            if current is None:
                return wanted
            current["spec"] = wanted["spec"]
            current["metadata"].setdefault("labels", {}).update(wanted["metadata"]["labels"])
            return current

        await self._leases.update(NAMESPACE, self.name, mutate, allow_create=True)

    async def collect(self) -> None:
        """Delete identity leases not renewed within their duration (servers gone)."""
        now = dt.datetime.now(dt.UTC)
        body = self._leases.cache.list(self._leases.rt.prefix(NAMESPACE))[0]
        for lease in loads(body):
            m, spec = lease["metadata"], lease.get("spec") or {}
            if (m.get("labels") or {}).get(IDENTITY_LABEL) != "kube-apiserver":
                continue
            renewed = spec.get("renewTime")
            duration = spec.get("leaseDurationSeconds") or LEASE_DURATION
            if renewed and meta.parse_time(renewed) + dt.timedelta(seconds=duration) > now:
                continue
            opts = DeleteOptions(precondition_rv=m.get("resourceVersion"))
            try:
                await self._leases.delete(NAMESPACE, m["name"], opts)
                log.info("deleted the expired API server identity lease %s", m["name"])
            except errors.ApiError:
                pass  # renewed or deleted meanwhile

    async def run(self) -> None:
        while True:
            try:
                await self.renew()
                await self.collect()
            except (errors.ApiError, StoreUnavailable) as e:
                log.warning("cannot renew the API server identity lease: %s", e)
            await trio.sleep(RENEW_INTERVAL)
