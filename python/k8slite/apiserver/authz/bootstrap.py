"""Reconcile the bootstrap RBAC policy at start-up, like upstream's rbac/bootstrap-roles hook.

Missing roles and bindings are created. Existing ones keep whatever was added to them; the
default rules and subjects they lack are added back, unless an administrator opted out with
the annotation rbac.authorization.kubernetes.io/autoupdate: "false". A second start with an
unchanged policy writes nothing.
"""

from __future__ import annotations

import copy
import logging

import trio

from k8slite.api import errors
from k8slite.apiserver.authz import policy
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.registry import DeleteOptions, Registry
from k8slite.component.objects import Obj, annotations_of

log = logging.getLogger(__name__)

GROUP = policy.RBAC_GROUP
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}


def _metadata(name: str, namespace: str | None) -> Obj:
    meta: Obj = {"name": name, "labels": dict(LABELS), "annotations": {AUTOUPDATE: "true"}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def role_object(kind: str, name: str, rules: list[Obj], namespace: str | None = None) -> Obj:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": kind,
        "metadata": _metadata(name, namespace),
        "rules": copy.deepcopy(rules),
    }


def binding_object(
    kind: str,
    name: str,
    role_kind: str,
    role: str,
    subjects: list[Obj],
    namespace: str | None = None,
) -> Obj:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": kind,
        "metadata": _metadata(name, namespace),
        "roleRef": {"apiGroup": GROUP, "kind": role_kind, "name": role},
        "subjects": copy.deepcopy(subjects),
    }


def _autoupdate(current: Obj) -> bool:
    annotations = annotations_of(current)
    return annotations.get(AUTOUPDATE) != "false"


def _reconcile_role(current: Obj, wanted: Obj) -> Obj | None:
    """The role with the wanted rules it lacks added back; None when nothing is missing."""
    rules = current.get("rules") or []
    missing = [r for r in wanted["rules"] if r not in rules]
    if not missing:
        return None
    current["rules"] = rules + missing
    return current


def _reconcile_binding(current: Obj, wanted: Obj) -> Obj | None:
    subjects = current.get("subjects") or []
    missing = [s for s in wanted["subjects"] if s not in subjects]
    if not missing:
        return None
    current["subjects"] = subjects + missing
    return current


async def _ensure(reg: Registry, wanted: Obj) -> None:
    meta = wanted["metadata"]
    ns, name = meta.get("namespace"), meta["name"]
    hit = reg.cache.get(reg.key(ns, name))
    if hit is None:
        try:
            await reg.create(ns, copy.deepcopy(wanted))
        except errors.ApiError as e:
            if e.code != 409:
                raise
        return
    current = reg.get(ns, name)
    if not _autoupdate(current):
        return
    if "roleRef" in wanted and current.get("roleRef") != wanted["roleRef"]:
        # roleRef is immutable: upstream replaces such a binding.
        await reg.delete(ns, name, DeleteOptions())
        await reg.create(ns, copy.deepcopy(wanted))
        return
    fix = _reconcile_binding if "roleRef" in wanted else _reconcile_role
    if fix(copy.deepcopy(current), wanted) is None:
        return

    def mutate(obj: Obj | None) -> Obj:
        assert obj is not None
        return fix(obj, wanted) or obj

    await reg.update(ns, name, mutate)
    log.info("reconciled %s %s", reg.rt.kind, name)


def bootstrap_objects() -> list[tuple[str, Obj]]:
    """(plural, object) of every role and binding of the bootstrap policy."""
    out: list[tuple[str, Obj]] = []
    for name, rules in policy.cluster_roles().items():
        out.append(("clusterroles", role_object("ClusterRole", name, rules)))
    for name, (role, subjects) in policy.cluster_role_bindings().items():
        out.append(
            (
                "clusterrolebindings",
                binding_object("ClusterRoleBinding", name, "ClusterRole", role, subjects),
            )
        )
    for (ns, name), rules in policy.namespaced_roles().items():
        out.append(("roles", role_object("Role", name, rules, ns)))
    for (ns, name), (role, subjects) in policy.role_bindings().items():
        out.append(
            ("rolebindings", binding_object("RoleBinding", name, "Role", role, subjects, ns))
        )
    return out


async def reconcile(core: ApiCore) -> None:
    """Create or repair the bootstrap policy; concurrent writes share the store's commits."""
    async with trio.open_nursery() as nursery:
        for plural, obj in bootstrap_objects():
            nursery.start_soon(_ensure, core.registries[(GROUP, plural)], obj)
