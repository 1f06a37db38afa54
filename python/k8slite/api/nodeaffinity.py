"""NodeSelectorTerms against a node: the matcher pod node affinity and PV node affinity share."""

from __future__ import annotations

from collections.abc import Iterable

from k8slite.component.objects import Obj, labels_of, name_of


def requirement_matches(req: Obj, value: str | None) -> bool:
    """One NodeSelectorRequirement against a label or field value (None: not set)."""
    op, values = req.get("operator"), [str(v) for v in req.get("values") or ()]
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and len(values) == 1:
        try:
            have, bound = int(value), int(values[0])
        except ValueError:
            return False
        return have > bound if op == "Gt" else have < bound
    return False


def node_matches_terms(terms: Iterable[Obj], node: Obj) -> bool:
    """NodeSelectorTerms (ORed; each term's requirements ANDed) against a node."""
    labels = labels_of(node)
    fields = {"metadata.name": name_of(node)}
    for term in terms:
        exprs = term.get("matchExpressions") or []
        field_reqs = term.get("matchFields") or []
        if not exprs and not field_reqs:
            continue  # an empty term matches nothing, as upstream
        if all(requirement_matches(r, labels.get(str(r.get("key")))) for r in exprs) and all(
            requirement_matches(r, fields.get(str(r.get("key")))) for r in field_reqs
        ):
            return True
    return False
