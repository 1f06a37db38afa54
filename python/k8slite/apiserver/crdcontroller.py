"""The API server's apiextensions controllers: CRD names and conditions, and instance cleanup.

As upstream's naming, establishing and finalizing controllers (which run in the API server
too): a CRD's names are accepted first come, first served (NamesAccepted), an accepted CRD
is Established, and a deleted CRD's custom resources are deleted before the
customresourcecleanup finalizer lets it go.
"""

from __future__ import annotations

import logging

import trio

from k8slite._native import loads
from k8slite.api import errors, meta
from k8slite.api.apiextensions_v1 import CLEANUP_FINALIZER, terminating_condition
from k8slite.api.customresource import custom_of, name_conflicts
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.registry import DeleteOptions, Registry
from k8slite.component.objects import Obj, set_condition
from k8slite.storage import StoreUnavailable

log = logging.getLogger(__name__)
# How soon a CRD whose instances are still going is looked at again.
_CLEANUP_RETRY = 0.5
# A periodic look even when nothing changed, as upstream's controllers resync.
_RESYNC = 30.0


def _condition(kind: str, status: str, reason: str, message: str) -> Obj:
    return {
        "type": kind,
        "status": status,
        "lastTransitionTime": meta.now(),
        "reason": reason,
        "message": message,
    }


def desired_status(crd: Obj, conflict: tuple[str, str] | None) -> Obj:
    """The CRD's status with NamesAccepted, Established and acceptedNames set."""
    status = meta.clone(crd.get("status") or {})
    if conflict is None:
        names = (crd.get("spec") or {}).get("names") or {}
        status["acceptedNames"] = {k: meta.clone(v) for k, v in names.items()}
        set_condition(
            status, _condition("NamesAccepted", "True", "NoConflicts", "no conflicts found")
        )
        set_condition(
            status,
            _condition(
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            ),
        )
    else:
        status.setdefault("acceptedNames", {"kind": "", "plural": ""})
        set_condition(status, _condition("NamesAccepted", "False", *conflict))
        set_condition(
            status,
            _condition("Established", "False", "NotAccepted", "not all names are accepted"),
        )
    return status


class CrdController:
    """Keeps every CRD's status current and finalizes deleted ones."""

    def __init__(self, core: ApiCore) -> None:
        self.core = core
        self.crds = core.registries[("apiextensions.k8s.io", "customresourcedefinitions")]

    async def run(self) -> None:
        while True:
            changed = self.crds.changed
            retry = False
            try:
                retry = await self.sync_all()
            except (errors.ApiError, StoreUnavailable) as e:
                log.warning("apiextensions controller: %s; retrying", e)
                retry = True
            except Exception:
                # A bug here must not take the API server down with it: log, look again.
                log.exception("apiextensions controller failed; retrying")
                retry = True
            with trio.move_on_after(_CLEANUP_RETRY if retry else _RESYNC):
                await changed.wait()

    async def sync_all(self) -> bool:
        """One pass over every CRD; returns whether one needs another look soon."""
        crds = self.core.crds()
        conflicts = name_conflicts(crds)
        retry = False
        for crd in crds:
            name = crd["metadata"]["name"]
            await self._sync_status(name, conflicts.get(name))
            if crd["metadata"].get("deletionTimestamp") and CLEANUP_FINALIZER in (
                crd["metadata"].get("finalizers") or ()
            ):
                retry |= not await self._finalize(crd)
        return retry

    async def _write_status(self, name: str, change: object) -> None:
        def mutate(current: Obj | None) -> Obj:
            if current is None:
                raise errors.not_found(self.crds.rt.plural, name, self.crds.rt.group)
            current["status"] = change(current)  # type: ignore[operator]
            return current

        try:
            await self.crds.update(None, name, mutate, subresource="status")
        except errors.ApiError as e:
            if e.code != 404:
                raise

    async def _sync_status(self, name: str, conflict: tuple[str, str] | None) -> None:
        try:
            current = self.crds.get(None, name)
        except errors.ApiError:
            return
        if desired_status(current, conflict) != (current.get("status") or {}):
            await self._write_status(name, lambda crd: desired_status(crd, conflict))

    def _instances(self, crd: Obj) -> Registry | None:
        spec = crd.get("spec") or {}
        reg = self.core.registries.get(
            (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
        )
        if reg is None or custom_of(reg.rt) is None:
            return None
        return reg

    async def _finalize(self, crd: Obj) -> bool:
        """Delete the CRD's instances; once none is left, drop the finalizer."""
        name = crd["metadata"]["name"]
        reg = self._instances(crd)
        if reg is not None:
            body = reg.cache.list(reg.rt.key_prefix, None, None, 0, None, None)[0]
            items = loads(body)
            if items:
                await self._set_terminating(
                    name, "InstanceDeletionInProgress", "CustomResource deletion is in progress"
                )
                for obj in items:
                    m = obj["metadata"]
                    if m.get("deletionTimestamp"):
                        continue  # going already (its own finalizers hold it)
                    try:
                        await reg.delete(m.get("namespace"), m["name"], DeleteOptions())
                    except errors.ApiError as e:
                        if e.code != 404:
                            raise
                if len(loads(reg.cache.list(reg.rt.key_prefix, None, None, 0, None, None)[0])):
                    return False
        await self._set_terminating(name, "InstanceDeletionCompleted", "removed all instances")

        def drop(current: Obj | None) -> Obj:
            if current is None:
                raise errors.not_found(self.crds.rt.plural, name, self.crds.rt.group)
            m = current["metadata"]
            m["finalizers"] = [f for f in m.get("finalizers") or () if f != CLEANUP_FINALIZER]
            if not m["finalizers"]:
                del m["finalizers"]
            return current

        try:
            await self.crds.update(None, name, drop)
        except errors.ApiError as e:
            if e.code != 404:
                raise
        return True

    async def _set_terminating(self, name: str, reason: str, message: str) -> None:
        def change(crd: Obj) -> Obj:
            status = crd.get("status") or {}
            set_condition(status, terminating_condition(reason, message))
            return status

        current = self.crds.get(None, name)
        probe = change(meta.clone(current))
        if probe != (current.get("status") or {}):
            await self._write_status(name, change)
