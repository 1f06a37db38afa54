"""Which PersistentVolume a claim binds to: upstream's findMatchingVolume, and node affinity."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from typing import Any

from k8slite._native import LabelSelector, SelectorError
from k8slite.api.nodeaffinity import node_matches_terms
from k8slite.api.quantity import QuantityError, parse_quantity
from k8slite.api.storage_v1 import storage_request
from k8slite.component.objects import Obj, is_deleting, labels_of, name_of, namespace_of, uid_of


def claim_class(claim: Obj) -> str:
    return str((claim.get("spec") or {}).get("storageClassName") or "")


def volume_class(pv: Obj) -> str:
    return str((pv.get("spec") or {}).get("storageClassName") or "")


def _size(value: Any) -> Fraction | None:
    try:
        return parse_quantity(value)
    except QuantityError:
        return None


def volume_size(pv: Obj) -> Fraction | None:
    return _size(((pv.get("spec") or {}).get("capacity") or {}).get("storage"))


def bound_to_claim(pv: Obj, claim: Obj) -> bool:
    """Whether the volume's claimRef names this claim (an empty uid: pre-bound by a user)."""
    ref = (pv.get("spec") or {}).get("claimRef")
    if not ref:
        return False
    if ref.get("name") != name_of(claim) or ref.get("namespace") != namespace_of(claim):
        return False
    return not ref.get("uid") or ref.get("uid") == uid_of(claim)


def volume_terms(pv: Obj) -> list[Obj] | None:
    """The volume's required node selector terms; None when it may be used anywhere."""
    required = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required")
    if not required:
        return None
    return list(required.get("nodeSelectorTerms") or [])


def volume_fits_node(pv: Obj, node: Obj | None) -> bool:
    terms = volume_terms(pv)
    return terms is None or (node is not None and node_matches_terms(terms, node))


def _modes_fit(pv: Obj, claim: Obj) -> bool:
    have = set((pv.get("spec") or {}).get("accessModes") or ())
    return set((claim.get("spec") or {}).get("accessModes") or ()) <= have


def _selector_matches(claim: Obj, pv: Obj) -> bool:
    selector = (claim.get("spec") or {}).get("selector")
    if selector is None:
        return True
    try:
        return bool(LabelSelector.from_dict(selector).matches(labels_of(pv)))
    except SelectorError:
        return False


def find_best_match(claim: Obj, volumes: Iterable[Obj], node: Obj | None = None) -> Obj | None:
    """The volume the claim should bind to: one pre-bound to it, else the smallest available
    volume of its class with room, its access modes, volume mode and labels; with `node`
    (delayed binding) only volumes usable there."""
    spec = claim.get("spec") or {}
    wanted = _size(storage_request(claim))
    if wanted is None:
        return None
    mode = spec.get("volumeMode") or "Filesystem"
    best: Obj | None = None
    best_size: Fraction | None = None
    for pv in volumes:
        pv_spec = pv.get("spec") or {}
        size = volume_size(pv)
        if is_deleting(pv) or size is None or (pv_spec.get("volumeMode") or "Filesystem") != mode:
            continue
        if node is not None and not volume_fits_node(pv, node):
            continue
        if bound_to_claim(pv, claim):
            if size >= wanted and volume_class(pv) == claim_class(claim):
                return pv
            continue
        if pv_spec.get("claimRef") or (pv.get("status") or {}).get("phase") in (
            "Released",
            "Failed",
        ):
            continue
        if volume_class(pv) != claim_class(claim) or not _selector_matches(claim, pv):
            continue
        if not _modes_fit(pv, claim) or size < wanted:
            continue
        if best_size is None or size < best_size:
            best, best_size = pv, size
    return best
