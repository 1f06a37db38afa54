"""API discovery documents built from the resource table: legacy and aggregated (v2) forms.

kubectl 1.35 asks /api and /apis for the aggregated APIGroupDiscoveryList first and falls
back to the legacy APIVersions / APIGroupList / APIResourceList documents; both are served.
"""

from __future__ import annotations

import base64
import hashlib

from quart import Response, request
from quart_trio import QuartTrio

from k8slite._native import dumps
from k8slite.api import errors
from k8slite.api.resources import ResourceType, group_versions, served
from k8slite.component.objects import Obj

AGGREGATED_VERSIONS = ("v2", "v2beta1")
_SUBRESOURCE_VERBS = {
    "status": ("get", "patch", "update"),
    "scale": ("get", "patch", "update"),
    "binding": ("create",),
    "eviction": ("create",),
    "log": ("get",),
    "exec": ("create", "get"),
    "attach": ("create", "get"),
    "portforward": ("create", "get"),
    "proxy": ("create", "delete", "get", "patch", "update"),
    "finalize": ("update",),
    "token": ("create",),
    "ephemeralcontainers": ("get", "patch", "update"),
}
# (group, version, kind) answered by subresources whose shape is not the parent kind.
_SUBRESOURCE_KINDS = {
    "scale": ("autoscaling", "v1", "Scale"),
    "binding": ("", "v1", "Binding"),
    "eviction": ("policy", "v1", "Eviction"),
    "exec": ("", "v1", "PodExecOptions"),
    "attach": ("", "v1", "PodAttachOptions"),
    "portforward": ("", "v1", "PodPortForwardOptions"),
    "token": ("authentication.k8s.io", "v1", "TokenRequest"),
}


def _storage_hash(rt: ResourceType) -> str:
    digest = hashlib.sha256(f"{rt.group}/{rt.version}/{rt.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def _sub_kind(rt: ResourceType, sub: str) -> tuple[str, str, str]:
    if sub == "proxy":  # PodProxyOptions, ServiceProxyOptions, NodeProxyOptions
        return ("", "v1", f"{rt.kind}ProxyOptions")
    return _SUBRESOURCE_KINDS.get(sub, (rt.group, rt.version, rt.kind))


def _resources(group: str, version: str) -> list[ResourceType]:
    return [r for r in served() if r.group == group and r.version == version]


def api_versions(server_address: str) -> Obj:
    """GET /api."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group(name: str, versions: list[str]) -> Obj:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list() -> Obj:
    """GET /apis."""
    groups = [_group(g, vs) for g, vs in group_versions().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(name: str) -> Obj | None:
    """GET /apis/<group>."""
    versions = group_versions().get(name)
    if not name or versions is None:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def resource_list(group: str, version: str) -> Obj | None:
    """GET /api/v1 or /apis/<group>/<version>: APIResourceList with subresources."""
    resources = _resources(group, version)
    if not resources:
        return None
    out: list[Obj] = []
    for rt in resources:
        entry: Obj = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        entry["storageVersionHash"] = _storage_hash(rt)
        out.append(entry)
        for sub in rt.subresources:
            g, v, kind = _sub_kind(rt, sub)
            sub_entry: Obj = {
                "name": f"{rt.plural}/{sub}",
                "singularName": "",
                "namespaced": rt.namespaced,
            }
            if (g, v) != (rt.group, rt.version):
                sub_entry.update(group=g, version=v)
            sub_entry["kind"] = kind
            sub_entry["verbs"] = list(_SUBRESOURCE_VERBS.get(sub, ("get",)))
            out.append(sub_entry)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}


def _aggregated_resource(rt: ResourceType) -> Obj:
    entry: Obj = {
        "resource": rt.plural,
        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    subs = []
    for sub in rt.subresources:
        g, v, kind = _sub_kind(rt, sub)
        subs.append(
            {
                "subresource": sub,
                "responseKind": {"group": g, "version": v, "kind": kind},
                "verbs": list(_SUBRESOURCE_VERBS.get(sub, ("get",))),
            }
        )
    if subs:
        entry["subresources"] = subs
    return entry


def aggregated(legacy: bool, version: str = "v2") -> Obj:
    """The APIGroupDiscoveryList of /api (legacy=True) or /apis."""
    items = []
    for group, versions in group_versions().items():
        if (group == "") != legacy:
            continue
        meta: Obj = {"creationTimestamp": None}
        if group:
            meta = {"name": group, "creationTimestamp": None}
        items.append(
            {
                "metadata": meta,
                "versions": [
                    {
                        "version": v,
                        "resources": [_aggregated_resource(r) for r in _resources(group, v)],
                        "freshness": "Current",
                    }
                    for v in versions
                ],
            }
        )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": items,
    }


def wants_aggregated(accept: str | None) -> str | None:
    """The aggregated discovery version Accept asks for first, if it asks for one."""
    if not accept or "APIGroupDiscoveryList" not in accept:
        return None
    for item in accept.split(","):
        parts = [p.strip() for p in item.split(";")]
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        if (
            parts[0] == "application/json"
            and params.get("as") == "APIGroupDiscoveryList"
            and params.get("g") == "apidiscovery.k8s.io"
            and params.get("v") in AGGREGATED_VERSIONS
        ):
            return params["v"]
        if parts[0] == "application/json" and "as" not in params:
            return None
    return None


def aggregated_content_type(version: str) -> str:
    return f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"


def register(app: QuartTrio) -> None:
    """Serve /api, /apis, /api/v1, /apis/<group> and /apis/<group>/<version>."""

    def answer(obj: Obj | None, content_type: str = "application/json") -> Response:
        if obj is None:
            err = errors.not_found_path()
            return Response(dumps(err.status()), status=err.code, content_type="application/json")
        return Response(dumps(obj), content_type=content_type)

    def root(legacy: bool) -> Response:
        version = wants_aggregated(request.headers.get("Accept"))
        if version is not None:
            return answer(aggregated(legacy, version), aggregated_content_type(version))
        if legacy:
            return answer(api_versions(request.host))
        return answer(api_group_list())

    @app.route("/api")
    async def core_root() -> Response:
        return root(legacy=True)

    @app.route("/apis")
    async def groups_root() -> Response:
        return root(legacy=False)

    @app.route("/api/<version>")
    async def core_version(version: str) -> Response:
        return answer(resource_list("", version))

    @app.route("/apis/<group>")
    async def group(group: str) -> Response:
        return answer(api_group(group))

    @app.route("/apis/<group>/<version>")
    async def group_version(group: str, version: str) -> Response:
        return answer(resource_list(group, version))
