"""Owner references: controller refs, and adopting or releasing objects by selector."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from k8slite.client import ApiClient, Invalid, NotFound
from k8slite.client.informer import SharedInformer
from k8slite.client.resource import Resource
from k8slite.component.objects import (
    Obj,
    controller_ref,
    is_deleting,
    meta,
    owner_references,
    uid_of,
)


def new_controller_ref(owner: Obj, api_version: str, kind: str) -> Obj:
    """A controller=true, blockOwnerDeletion=true reference to `owner`."""
    m = meta(owner)
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": m.get("name"),
        "uid": m.get("uid"),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def resolve_controller_ref(
    informer: SharedInformer, kind: str, obj: Obj, ref: Obj | None
) -> Obj | None:
    """The owner a controller ref names, from the informer's cache, when it is of `kind` and
    has the ref's uid (a same-named successor is not the owner)."""
    if ref is None or ref.get("kind") != kind:
        return None
    owner = informer.get(str(ref.get("name", "")), meta(obj).get("namespace"))
    return owner if owner is not None and uid_of(owner) == ref.get("uid") else None


def owner_patch(obj: Obj, refs: list[Obj]) -> Obj:
    """A merge patch setting ownerReferences, refused if obj changed since we read it."""
    return {
        "metadata": {
            "resourceVersion": meta(obj).get("resourceVersion"),
            "ownerReferences": refs or None,
        }
    }


class RefManager:
    """client-go's ControllerRefManager: claim the objects a controller's selector matches.

    Objects we own that match stay ours; objects we own that no longer match are released;
    orphans that match are adopted (after a live check that the owner is not being deleted,
    so that a deleted owner cannot grab objects its replacement should get).
    """

    def __init__(
        self,
        client: ApiClient,
        res: Resource,
        owner: Obj,
        owner_res: Resource,
        owner_kind: str,
        matches: Callable[[Obj], bool],
    ) -> None:
        self.client = client
        self.res = res
        self.owner = owner
        self.owner_res = owner_res
        self.owner_kind = owner_kind
        self.matches = matches
        self._can_adopt: bool | None = None

    async def claim(self, objects: list[Obj]) -> list[Obj]:
        """The objects that are ours after adoption and release. If a write failed, the
        first error is raised once every object has been tried (the sync is retried)."""
        owner_uid = uid_of(self.owner)
        claimed: list[Obj] = []
        errors: list[Exception] = []
        for obj in objects:
            ref = controller_ref(obj)
            try:
                if ref is not None:
                    if ref.get("uid") != owner_uid:
                        continue
                    if self.matches(obj):
                        claimed.append(obj)
                    elif not is_deleting(self.owner):
                        await self._release(obj)
                    continue
                if is_deleting(self.owner) or not self.matches(obj) or is_deleting(obj):
                    continue
                if meta(obj).get("namespace") != meta(self.owner).get("namespace"):
                    continue
                adopted = await self._adopt(obj)
                if adopted is not None:
                    claimed.append(adopted)
            except NotFound:
                continue
            except Exception as e:  # noqa: BLE001 - collected and re-raised below
                errors.append(e)
        if errors:
            raise errors[0]
        return claimed

    async def _adopt(self, obj: Obj) -> Obj | None:
        if not await self._owner_still_adopting():
            return None
        refs = list(owner_references(obj))
        refs.append(new_controller_ref(self.owner, self.owner_res.api_version, self.owner_kind))
        m = meta(obj)
        return await self.client.patch(
            self.res, m["name"], owner_patch(obj, refs), namespace=m.get("namespace")
        )

    async def _release(self, obj: Obj) -> None:
        owner_uid = uid_of(self.owner)
        refs = [r for r in owner_references(obj) if r.get("uid") != owner_uid]
        m = meta(obj)
        try:
            await self.client.patch(
                self.res, m["name"], owner_patch(obj, refs), namespace=m.get("namespace")
            )
        except Invalid:
            pass  # the object was replaced by another of the same name: nothing to release

    async def _owner_still_adopting(self) -> bool:
        """Once per claim: the live owner is the one we hold and is not being deleted."""
        if self._can_adopt is None:
            m = meta(self.owner)
            try:
                fresh = await self.client.get(
                    self.owner_res, m["name"], namespace=m.get("namespace")
                )
            except NotFound:
                fresh = None
            self._can_adopt = (
                fresh is not None and uid_of(fresh) == uid_of(self.owner) and not is_deleting(fresh)
            )
        return self._can_adopt


# Objects without a controller, by namespace: the only ones a controller may adopt, so a
# sync looks at its own objects (owner index) plus these instead of the whole namespace.
ORPHAN_INDEX = "orphanNamespace"


def orphan_namespace_index(obj: Obj) -> list[str]:
    namespace = meta(obj).get("namespace")
    return [namespace] if namespace and controller_ref(obj) is None else []


def owned_and_orphans(indexer: Any, owner: Obj) -> list[Obj]:
    """Candidates for a claim: what `owner` controls now plus orphans of its namespace."""
    owned = indexer.by_index("ownerUID", uid_of(owner))
    orphans = indexer.by_index(ORPHAN_INDEX, meta(owner).get("namespace") or "")
    return owned + orphans
