"""Resource references and the REST paths they live at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from k8slite.client.errors import NotFound

if TYPE_CHECKING:
    from k8slite.client.rest import ApiClient


def group_version_path(group: str, version: str) -> str:
    """The core group ("") lives under /api/v1; every other group under /apis/<group>/<v>."""
    return f"/api/{version}" if not group else f"/apis/{group}/{version}"


@dataclass(frozen=True, slots=True)
class Resource:
    """A resource type as the REST API names it: group, version and plural."""

    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        """The apiVersion objects of this resource carry ("v1", "apps/v1")."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        """/api(s)/.../[namespaces/<ns>/]<plural>[/<name>[/<subresource>]]."""
        parts = [group_version_path(self.group, self.version)]
        if namespace:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name is not None:
            if not name:
                raise ValueError(f"empty name for a {self.plural} object")
            parts.append(quote(name, safe=""))
            if subresource:
                parts.append(subresource)
        elif subresource:
            raise ValueError("a subresource needs an object name")
        return "/".join(parts)

    def __str__(self) -> str:
        return (
            f"{self.plural}.{self.version}.{self.group}"
            if self.group
            else (f"{self.plural}.{self.version}")
        )


def resource(group: str, version: str, plural: str) -> Resource:
    """Shorthand for Resource(group, version, plural)."""
    return Resource(group, version, plural)


async def discover(client: ApiClient, group: str, kind: str) -> Resource | None:
    """The resource serving `kind` in its group's preferred version, found by discovery:
    how a client reaches kinds made at runtime (custom resources). None if not served."""
    try:
        if group:
            doc = await client.request("GET", f"/apis/{quote(group, safe='')}")
            version = ((doc or {}).get("preferredVersion") or {}).get("version")
        else:
            version = "v1"
        if not version:
            return None
        listing = await client.request("GET", group_version_path(group, version))
    except NotFound:
        return None
    for entry in (listing or {}).get("resources") or ():
        if entry.get("kind") == kind and "/" not in entry.get("name", "/"):
            return Resource(group, version, entry["name"])
    return None


# The resources the built-in components talk about, so nobody spells them twice.
NAMESPACES = Resource("", "v1", "namespaces")
NODES = Resource("", "v1", "nodes")
PODS = Resource("", "v1", "pods")
SERVICES = Resource("", "v1", "services")
ENDPOINTS = Resource("", "v1", "endpoints")
CONFIGMAPS = Resource("", "v1", "configmaps")
SECRETS = Resource("", "v1", "secrets")
EVENTS = Resource("", "v1", "events")
SERVICEACCOUNTS = Resource("", "v1", "serviceaccounts")
DEPLOYMENTS = Resource("apps", "v1", "deployments")
REPLICASETS = Resource("apps", "v1", "replicasets")
REPLICATIONCONTROLLERS = Resource("", "v1", "replicationcontrollers")
STATEFULSETS = Resource("apps", "v1", "statefulsets")
CONTROLLERREVISIONS = Resource("apps", "v1", "controllerrevisions")
PERSISTENTVOLUMECLAIMS = Resource("", "v1", "persistentvolumeclaims")
PODDISRUPTIONBUDGETS = Resource("policy", "v1", "poddisruptionbudgets")
JOBS = Resource("batch", "v1", "jobs")
CRONJOBS = Resource("batch", "v1", "cronjobs")
DAEMONSETS = Resource("apps", "v1", "daemonsets")
HORIZONTALPODAUTOSCALERS = Resource("autoscaling", "v2", "horizontalpodautoscalers")
POD_METRICS = Resource("metrics.k8s.io", "v1beta1", "pods")
PERSISTENTVOLUMES = Resource("", "v1", "persistentvolumes")
STORAGECLASSES = Resource("storage.k8s.io", "v1", "storageclasses")
LEASES = Resource("coordination.k8s.io", "v1", "leases")
ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "endpointslices")
