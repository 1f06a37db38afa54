"""Per-kind behaviour on write: defaulting, validation, and what create and update may touch.

Like upstream's REST strategies: the registry does the generic work (metadata, generation,
storage) and asks the kind's Strategy for the rest. Kinds register with @register.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from k8slite.api import errors, meta
from k8slite.api.validation import FieldErrors, check_object_meta
from k8slite.component.objects import Obj


class Strategy:
    """Defaults: a kind with no special rules. Subclasses override what differs."""

    # How metadata.name is checked: DNS-1123 "subdomain", "label", or just a "path" segment.
    name_check = "subdomain"
    # Whether create clears status (upstream does for kinds whose status a controller owns).
    reset_status_on_create = True
    # PUT of a missing object creates it (upstream: leases, endpoints, events...).
    allow_create_on_update = False
    # DELETE returns the object instead of a Status when it is removed at once.
    return_deleted_object = False
    # Whether spec changes bump metadata.generation (upstream: workloads and pods).
    tracks_generation = False
    # Whether a kind with a status subresource is created with an empty status (custom
    # resources are created without one).
    creates_status = True

    def default(self, obj: Obj) -> None:
        """Fill unset fields with upstream's defaults (on create and on update)."""

    def prepare_create(self, obj: Obj) -> None:
        if self.reset_status_on_create and "status" in obj:
            obj["status"] = {}

    def prepare_update(self, new: Obj, old: Obj) -> None:
        """Writes to the main resource leave status alone."""
        if "status" in old:
            new["status"] = meta.clone(old["status"])
        else:
            new.pop("status", None)

    def prepare_status_update(self, new: Obj, old: Obj) -> Obj:
        """The status subresource changes status only; returns the object to store."""
        out = meta.clone(old)
        out["status"] = new.get("status", {})
        return out

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        check_object_meta(errs, obj.get("metadata", {}), namespaced, self.name_check)

    def validate_update(self, new: Obj, old: Obj, errs: FieldErrors, namespaced: bool) -> None:
        self.validate(new, errs, namespaced)

    def validate_status(self, new: Obj, old: Obj, errs: FieldErrors) -> None:
        """Checks of a status write; most kinds accept any status."""

    def prepare_subresource(self, subresource: str, new: Obj, old: Obj) -> Obj:
        """A write to another subresource (namespaces/finalize); unknown ones are refused."""
        raise errors.method_not_allowed()

    def grace_period(self, obj: Obj, requested: int | None) -> int:
        """Seconds between deletionTimestamp and removal; only pods wait for their kubelet."""
        return 0

    def blocks_removal(self, obj: Obj) -> bool:
        """Something besides metadata.finalizers keeps a deleted object (namespace finalizers)."""
        return False

    def check_delete(self, obj: Obj) -> None:
        """Refuse a delete (raise ApiError), e.g. of the default namespace."""

    def on_delete(self, obj: Obj) -> None:
        """Changes a deletion makes besides deletionTimestamp (a namespace goes Terminating)."""

    def spec_changed(self, new: Obj, old: Obj) -> bool:
        """Whether metadata.generation should bump: anything outside metadata and status."""
        keys = (set(new) | set(old)) - {"metadata", "status", "kind", "apiVersion"}
        return any(new.get(k) != old.get(k) for k in keys)


class ConvertingStrategy(Strategy, abc.ABC):
    """A built-in kind served in a version besides the one it is stored in (upstream's
    conversion through the internal version): default() turns a request's object into the
    storage version's shape, from_storage() turns a stored object into the served one."""

    @abc.abstractmethod
    def from_storage(self, obj: Obj) -> None:
        """Rewrite a stored object (in place) as this version serves it."""


# By (group, kind, version); version "" is every version without a strategy of its own.
_STRATEGIES: dict[tuple[str, str, str], Strategy] = {}
_DEFAULT = Strategy()


def register(
    group: str, kind: str, version: str = ""
) -> Callable[[type[Strategy]], type[Strategy]]:
    def wrap(cls: type[Strategy]) -> type[Strategy]:
        _STRATEGIES[(group, kind, version)] = cls()
        return cls

    return wrap


def strategy_for(group: str, kind: str, version: str = "") -> Strategy:
    if not _loaded:
        _load_kinds()
    found = _STRATEGIES.get((group, kind, version)) if version else None
    return found or _STRATEGIES.get((group, kind, ""), _DEFAULT)


_loaded = False


def _load_kinds() -> None:
    # Importing the modules registers their strategies. Done on first use, not at import:
    # the kind modules import each other (and this one), in whatever order callers start.
    global _loaded
    _loaded = True
    from k8slite.api import (  # noqa: F401
        admissionregistration_v1,
        apiextensions_v1,
        apiregistration_v1,
        apps_v1,
        autoscaling_v1,
        autoscaling_v2,
        certificates_v1,
        core_v1,
        cronjob_v1,
        flowcontrol_v1,
        job_v1,
        misc_v1,
        policy_v1,
        rbac_v1,
        replicationcontroller,
        statefulset,
        storage_v1,
    )
