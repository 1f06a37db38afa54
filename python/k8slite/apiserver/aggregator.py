"""The API server's aggregation layer, as upstream's kube-aggregator.

An APIService with a service names the Service of an extension API server (k8slite-metrics-
server for metrics.k8s.io). Its group/version's resources are discovered from that server
and served like built-in ones: listed in /apis and aggregated discovery, authorized by RBAC
here, then proxied to an endpoint of the Service with the front-proxy client certificate and
the user in X-Remote-User / X-Remote-Group (which the extension server trusts only from that
certificate). The Available condition says whether the server answers, in upstream's words.
"""

from __future__ import annotations

import base64
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import trio

from k8slite._native import loads
from k8slite.api import errors, meta
from k8slite.api.resources import ResourceType, set_dynamic
from k8slite.apiserver import http
from k8slite.apiserver.authn import user_of
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.handler import ResourceHandler
from k8slite.apiserver.requestinfo import RequestInfo
from k8slite.component.objects import Obj, get_condition, set_condition
from k8slite.storage import StoreUnavailable

log = logging.getLogger(__name__)

GROUP = "apiregistration.k8s.io"
SOURCE = "apiservices"
# How often APIServices are checked again: soon while one is unavailable (its server may be
# starting), else as upstream's availability controller resyncs.
_RETRY = 2.0
_RESYNC = 30.0
_DISCOVERY_TIMEOUT = 5.0
# Headers passed on to the extension server as they came; the rest are the proxy's own.
_FORWARDED = ("accept", "content-type", "user-agent", "accept-encoding")


@dataclass(frozen=True)
class Target:
    """Where an APIService's requests go, and how its server is trusted."""

    url: str  # https://address:port
    host: str  # the name the server's certificate is checked against
    insecure: bool
    ca_bundle: str


class Aggregator:
    """Keeps every APIService's resources served and its Available condition current."""

    def __init__(self, core: ApiCore, resources: ResourceHandler, pki_dir: Path) -> None:
        self.core = core
        self.resources = resources
        self.apiservices = core.registries[(GROUP, "apiservices")]
        self.cert = pki_dir / "client-front-proxy-client.pem"
        self.key = pki_dir / "client-front-proxy-client.key"
        # APIService name -> where its requests go (with a client for it), and the
        # resources it serves.
        self.targets: dict[str, tuple[Target, httpx.AsyncClient]] = {}
        self.served: dict[str, list[ResourceType]] = {}

    # -- the controller ----------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            changed = self.apiservices.changed
            retry = True
            try:
                retry = await self.sync_all()
            except (errors.ApiError, StoreUnavailable) as e:
                log.warning("APIService availability: %s; retrying", e)
            except Exception:
                # A bug here must not take the API server down with it: log, look again.
                log.exception("APIService availability failed; retrying")
            with trio.move_on_after(_RETRY if retry else _RESYNC):
                await changed.wait()

    def _stored(self, reg_key: tuple[str, str], namespace: str | None = None) -> list[Obj]:
        reg = self.core.registries[reg_key]
        objs: list[Obj] = loads(reg.cache.list(reg.rt.prefix(namespace))[0])
        return objs

    async def sync_all(self) -> bool:
        """One pass over every APIService; True when one is not available."""
        apiservices = self._stored((GROUP, "apiservices"))
        names = {a["metadata"]["name"] for a in apiservices}
        for gone in (set(self.served) | set(self.targets)) - names:
            self._unserve(gone)
            await self._drop_client(gone)
        unavailable = False
        for obj in apiservices:
            condition = await self._check(obj)
            unavailable |= condition["status"] != "True"
            await self._write_condition(obj["metadata"]["name"], condition)
        return unavailable

    async def _check(self, obj: Obj) -> Obj:
        """Discover the APIService's resources; its Available condition."""
        name = obj["metadata"]["name"]
        spec = obj.get("spec") or {}
        service = spec.get("service")
        if not service:
            self._unserve(name)
            return _available("True", "Local", "Local APIServices are always available")
        try:
            client = await self._client(name, self._target(spec, service))
        except _Unavailable as e:
            await self._drop_client(name)
            return _available("False", e.reason, e.message)
        group, version = spec.get("group", ""), spec.get("version", "")
        url = f"{self.targets[name][0].url}/apis/{group}/{version}"
        try:
            with trio.fail_after(_DISCOVERY_TIMEOUT):
                r = await client.get(
                    url,
                    headers={"X-Remote-User": "system:kube-aggregator"},
                    extensions={"sni_hostname": self.targets[name][0].host},
                )
        except (httpx.HTTPError, trio.TooSlowError, ssl.SSLError, OSError) as e:
            return _available(
                "False",
                "FailedDiscoveryCheck",
                f"failing or missing response from {url}: {type(e).__name__} {e}".strip(),
            )
        if r.status_code != 200:
            return _available(
                "False",
                "FailedDiscoveryCheck",
                f"failing or missing response from {url}: bad status from {url}: {r.status_code}",
            )
        try:
            listed = r.json().get("resources") or []
        except (ValueError, AttributeError):
            listed = []
        self._serve(name, group, version, listed)
        return _available("True", "Passed", "all checks passed")

    def _target(self, spec: Obj, service: Obj) -> Target:
        ns, svc_name = service.get("namespace", ""), service.get("name", "")
        port = int(service.get("port") or 443)
        try:
            svc = self.core.registries[("", "services")].get(ns, svc_name)
        except errors.ApiError:
            raise _Unavailable(
                "ServiceNotFound", f'service/{svc_name} in "{ns}" is not present'
            ) from None
        svc_port = next(
            (p for p in (svc.get("spec") or {}).get("ports") or () if p.get("port") == port), None
        )
        if svc_port is None:
            raise _Unavailable(
                "ServicePortError", f'service/{svc_name} in "{ns}" is not listening on port {port}'
            )
        port_name = svc_port.get("name") or ""
        for es in self._stored(("discovery.k8s.io", "endpointslices"), ns):
            if (es["metadata"].get("labels") or {}).get("kubernetes.io/service-name") != svc_name:
                continue
            target_port = next(
                (
                    p.get("port")
                    for p in es.get("ports") or ()
                    if (p.get("name") or "") == port_name
                ),
                None,
            )
            if target_port is None:
                continue
            for ep in es.get("endpoints") or ():
                if (ep.get("conditions") or {}).get("ready") is False or not ep.get("addresses"):
                    continue
                address = ep["addresses"][0]
                host = f"[{address}]" if ":" in address else address
                return Target(
                    f"https://{host}:{target_port}",
                    f"{svc_name}.{ns}.svc",
                    bool(spec.get("insecureSkipTLSVerify")),
                    str(spec.get("caBundle") or ""),
                )
        raise _Unavailable(
            "MissingEndpoints",
            f'endpoints for service/{svc_name} in "{ns}" have no addresses with port name '
            f'"{port_name}"',
        )

    def _ssl(self, target: Target) -> ssl.SSLContext:
        """Mutual TLS: the front-proxy certificate, and the server checked against the
        APIService's caBundle (by the name <service>.<namespace>.svc), or not at all with
        insecureSkipTLSVerify (as upstream's metrics-server manifest registers it)."""
        if target.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            bundle = base64.b64decode(target.ca_bundle).decode("ascii", "replace")
            ctx = ssl.create_default_context(cadata=bundle or None)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx

    async def _client(self, name: str, target: Target) -> httpx.AsyncClient:
        """The APIService's client, made again when its target changes."""
        hit = self.targets.get(name)
        if hit is not None and hit[0] == target:
            return hit[1]
        await self._drop_client(name)
        try:
            verify = self._ssl(target)
        except (OSError, ssl.SSLError, ValueError) as e:
            raise _Unavailable("FailedDiscoveryCheck", f"front-proxy client TLS: {e}") from e
        client = httpx.AsyncClient(verify=verify, trust_env=False, timeout=httpx.Timeout(30.0))
        self.targets[name] = (target, client)
        return client

    async def _drop_client(self, name: str) -> None:
        hit = self.targets.pop(name, None)
        if hit is not None:
            await hit[1].aclose()

    async def _write_condition(self, name: str, condition: Obj) -> None:
        try:
            current = self.apiservices.get(None, name)
        except errors.ApiError:
            return
        old = get_condition(current.get("status") or {}, "Available")
        if old is not None and all(
            old.get(k) == condition[k] for k in ("status", "reason", "message")
        ):
            return

        def mutate(obj: Obj | None) -> Obj:
            if obj is None:
                raise errors.not_found("apiservices", name, GROUP)
            status = obj.get("status") or {}
            previous = get_condition(status, "Available")
            if previous is not None and previous.get("status") == condition["status"]:
                condition["lastTransitionTime"] = previous.get("lastTransitionTime")
            set_condition(status, condition)
            obj["status"] = status
            return obj

        try:
            await self.apiservices.update(None, name, mutate, subresource="status")
        except errors.ApiError as e:
            if e.code != 404:
                raise

    # -- serving -----------------------------------------------------------------------------

    def _serve(self, name: str, group: str, version: str, listed: list[Obj]) -> None:
        kinds = []
        for res in listed:
            plural = res.get("name") or ""
            if not plural or "/" in plural:
                continue  # subresources are proxied with their resource
            subresources = tuple(
                r["name"].split("/", 1)[1]
                for r in listed
                if (r.get("name") or "").startswith(plural + "/")
            )
            kinds.append(
                ResourceType(
                    group,
                    version,
                    res.get("kind") or plural,
                    plural,
                    bool(res.get("namespaced")),
                    tuple(res.get("shortNames") or ()),
                    subresources,
                    categories=tuple(res.get("categories") or ()),
                    verbs=tuple(res.get("verbs") or ()),
                    extra={"singular": res.get("singularName") or "", "apiservice": name},
                )
            )
        if [(k.plural, k.verbs) for k in kinds] == [
            (k.plural, k.verbs) for k in self.served.get(name, [])
        ]:
            return
        for old in self.served.get(name, []):
            self.resources.virtual.pop((old.group, old.plural), None)
        self.served[name] = kinds
        for kind in kinds:
            self.resources.virtual[(group, kind.plural)] = self.proxy
        self._publish()
        log.info("serving %s/%s from APIService %s", group, version, name)

    def _unserve(self, name: str) -> None:
        kinds = self.served.pop(name, None)
        if kinds is None:
            return
        for kind in kinds:
            self.resources.virtual.pop((kind.group, kind.plural), None)
        self._publish()

    def _publish(self) -> None:
        set_dynamic([k for kinds in self.served.values() for k in kinds], SOURCE)

    async def proxy(self, req: http.Request, info: RequestInfo) -> tuple[int, bytes]:
        """Pass an authorized request on to the extension server; its answer as it is."""
        if info.verb not in info.resource.verbs:
            raise errors.method_not_allowed()
        name = str(info.resource.extra.get("apiservice") or "")
        hit = self.targets.get(name)
        if hit is None:
            raise errors.ApiError(
                503, "ServiceUnavailable", "the server is currently unable to handle the request"
            )
        user = user_of(req.scope)
        headers = [(k, req.headers[k]) for k in _FORWARDED if k in req.headers]
        if user is not None:
            headers.append(("X-Remote-User", user.name))
            headers += [("X-Remote-Group", g) for g in user.groups]
            for key, values in (user.extra or {}).items():
                headers += [(f"X-Remote-Extra-{key}", v) for v in values]
        query = urlencode([(k, v) for k, vs in req.query.items() for v in vs])
        target, client = hit
        url = f"{target.url}{req.path}" + (f"?{query}" if query else "")
        body = await req.body() if req.method in ("POST", "PUT", "PATCH") else None
        try:
            r = await client.request(
                req.method,
                url,
                headers=headers,
                content=body,
                extensions={"sni_hostname": target.host},
            )
        except httpx.HTTPError as e:
            log.warning("proxying %s to %s: %s", req.path, target.url, e)
            raise errors.ApiError(
                503, "ServiceUnavailable", "the server is currently unable to handle the request"
            ) from None
        return r.status_code, r.content

    async def aclose(self) -> None:
        for name in list(self.targets):
            await self._drop_client(name)


class _Unavailable(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def _available(status: str, reason: str, message: str) -> Obj:
    return {
        "type": "Available",
        "status": status,
        "lastTransitionTime": meta.now(),
        "reason": reason,
        "message": message,
    }
