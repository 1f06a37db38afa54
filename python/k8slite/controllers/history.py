"""ControllerRevisions of an owner: hashing, naming, creating (with collisions), truncation.

Shared by controllers that keep a history of their pod template (StatefulSet, DaemonSet):
a revision's data is the strategic-merge patch `kubectl rollout undo` applies to go back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from k8slite._native import LabelSelector
from k8slite.client import AlreadyExists, ApiClient, NotFound
from k8slite.client.resource import CONTROLLERREVISIONS, Resource
from k8slite.component.objects import Obj, labels_of, meta
from k8slite.controllers.ownerref import RefManager, owned_and_orphans

# Upstream's rand.SafeEncodeString alphabet: no vowels (no words), no look-alikes.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"
_FNV_OFFSET = 2166136261
_FNV_PRIME = 16777619
# A revision name is <prefix>-<hash> and must be a DNS subdomain (253 characters).
_MAX_PREFIX = 223


def template_patch(template: Obj) -> Obj:
    """Revision data of a pod template: {"spec": {"template": ..., "$patch": "replace"}}.

    Applied as a strategic-merge patch it replaces the owner's template whole.
    """
    return {"spec": {"template": {**template, "$patch": "replace"}}}


def template_of(revision: Obj) -> Obj:
    """The pod template a template_patch revision holds."""
    template = dict(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    template.pop("$patch", None)
    return template


def _fnv1_32(data: bytes) -> int:
    h = _FNV_OFFSET
    for byte in data:
        h = (h * _FNV_PRIME) & 0xFFFFFFFF
        h ^= byte
    return h


def hash_revision(data: Obj, collision_count: int = 0) -> str:
    """FNV-1 of the data (and a non-zero collision count), safe-encoded as upstream does."""
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        raw += str(collision_count).encode()
    return "".join(_SAFE[b % len(_SAFE)] for b in str(_fnv1_32(raw)).encode())


def revision_name(prefix: str, hash_: str) -> str:
    return f"{prefix[:_MAX_PREFIX]}-{hash_}"


def new_revision(
    owner: Obj,
    owner_ref: Obj,
    labels: dict[str, str],
    data: Obj,
    number: int,
    collision_count: int = 0,
) -> Obj:
    """An unsaved ControllerRevision of owner: its template labels and annotations."""
    m = meta(owner)
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": revision_name(m["name"], hash_revision(data, collision_count)),
            "namespace": m.get("namespace"),
            "labels": dict(labels),
            "annotations": dict(m.get("annotations") or {}),
            "ownerReferences": [owner_ref],
        },
        "data": data,
        "revision": number,
    }


async def claim_revisions(
    client: ApiClient,
    indexer: Any,
    owner: Obj,
    owner_res: Resource,
    owner_kind: str,
    selector: LabelSelector,
) -> list[Obj]:
    """The owner's revisions, oldest (lowest revision) first: those it controls plus
    orphans its selector matches, adopted (upstream's ClaimControllerRevisions). The
    informer needs ownerref.ORPHAN_INDEX."""
    manager = RefManager(
        client,
        CONTROLLERREVISIONS,
        owner,
        owner_res,
        owner_kind,
        lambda r: selector.matches(labels_of(r)),
    )
    return sort_revisions(await manager.claim(owned_and_orphans(indexer, owner)))


def sort_revisions(revisions: Iterable[Obj]) -> list[Obj]:
    return sorted(revisions, key=lambda r: (int(r.get("revision") or 0), meta(r).get("name", "")))


def next_revision_number(revisions: list[Obj]) -> int:
    return max((int(r.get("revision") or 0) for r in revisions), default=0) + 1


async def create_revision(client: ApiClient, revision: Obj, owner: Obj) -> tuple[Obj, int]:
    """Create revision; on a name taken by other data, bump the collision count and retry.

    Returns the stored revision and the collision count its name used (the owner's status
    keeps it so later names stay stable).
    """
    collision = 0
    data = revision["data"]
    m = meta(revision)
    labels = m.get("labels") or {}
    ref = (m.get("ownerReferences") or [{}])[0]
    number = int(revision.get("revision") or 0)
    while True:
        body = new_revision(owner, ref, labels, data, number, collision)
        try:
            return await client.create(CONTROLLERREVISIONS, body), collision
        except AlreadyExists:
            name = meta(body)["name"]
            try:
                existing = await client.get(CONTROLLERREVISIONS, name, namespace=m.get("namespace"))
            except NotFound:
                continue  # deleted in between: try the same name again
            if existing.get("data") == data:
                # Ours in all but owner (an orphan the next claim adopts), as upstream.
                return existing, collision
            collision += 1


async def truncate_history(
    client: ApiClient, revisions: list[Obj], live: set[str], limit: int
) -> list[str]:
    """Delete the oldest revisions no pod or status names beyond `limit`; returns them."""
    dead = [r for r in sort_revisions(revisions) if meta(r)["name"] not in live]
    gone = []
    for revision in dead[: max(0, len(dead) - limit)]:
        m = meta(revision)
        try:
            await client.delete(CONTROLLERREVISIONS, m["name"], namespace=m.get("namespace"))
        except NotFound:
            pass
        gone.append(m["name"])
    return gone
