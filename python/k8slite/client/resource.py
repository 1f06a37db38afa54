"""Resource references and the REST paths they live at."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


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
JOBS = Resource("batch", "v1", "jobs")
LEASES = Resource("coordination.k8s.io", "v1", "leases")
ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "endpointslices")
