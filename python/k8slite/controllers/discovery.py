"""API discovery: which resources the server serves, for the GC and namespace controllers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from k8slite.client import ApiClient
from k8slite.client.resource import Resource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiResource:
    """One served resource (no subresources), in its group's preferred version."""

    resource: Resource
    kind: str
    namespaced: bool
    verbs: frozenset[str]

    @property
    def group(self) -> str:
        return self.resource.group

    def supports(self, *verbs: str) -> bool:
        return all(v in self.verbs for v in verbs)


def _resources(doc: dict[str, Any], group: str, version: str) -> list[ApiResource]:
    out = []
    for entry in doc.get("resources") or ():
        name = entry.get("name", "")
        if not name or "/" in name:
            continue  # subresources are not objects of their own
        out.append(
            ApiResource(
                Resource(group, version, name),
                str(entry.get("kind", "")),
                bool(entry.get("namespaced")),
                frozenset(entry.get("verbs") or ()),
            )
        )
    return out


async def server_resources(client: ApiClient) -> list[ApiResource]:
    """Every resource of the core group and of each group's preferred version."""
    found: list[ApiResource] = []
    core = await client.request("GET", "/api")
    for version in (core or {}).get("versions") or ["v1"]:
        found += _resources(await client.request("GET", f"/api/{version}") or {}, "", version)
    groups = await client.request("GET", "/apis")
    for group in (groups or {}).get("groups") or ():
        preferred = (group.get("preferredVersion") or {}).get("version")
        if not preferred:
            versions = group.get("versions") or ()
            preferred = versions[0].get("version") if versions else None
        if not preferred:
            continue
        doc = await client.request("GET", f"/apis/{group['name']}/{preferred}")
        found += _resources(doc or {}, group["name"], preferred)
    return found
