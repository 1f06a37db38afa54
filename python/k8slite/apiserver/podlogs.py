"""pods/log: check the request, then stream the container's log from the pod's kubelet.

The API server calls the kubelet API over HTTPS with the apiserver-kubelet-client
certificate and checks the kubelet's serving certificate against the cluster CA, like
upstream's --kubelet-client-certificate and --kubelet-certificate-authority.
"""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx
import trio

from k8slite._native import loads
from k8slite.api import errors
from k8slite.apiserver import http
from k8slite.apiserver.requestinfo import RequestInfo
from k8slite.component.objects import Obj

if TYPE_CHECKING:
    # For annotations only: the metrics server imports kubelet_location, and the API
    # server's core (storage, CEL, every kind) is no part of it.
    from k8slite.apiserver.core import ApiCore

# Query parameters passed on to the kubelet as they came.
_PASSED = (
    "follow",
    "previous",
    "timestamps",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "limitBytes",
)
# Node addresses tried in this order (upstream's --kubelet-preferred-address-types, with
# InternalIP first: node names need not resolve here).
_ADDRESS_TYPES = ("InternalIP", "Hostname", "InternalDNS", "ExternalIP", "ExternalDNS")
# How much of a kubelet's error answer becomes the error message.
_MAX_ERROR_BODY = 4096


class KubeletConnector:
    """The API server's HTTPS client to kubelets (made on first use)."""

    def __init__(self, cert: Path, key: Path, ca: Path) -> None:
        self.cert, self.key, self.ca = cert, key, ca
        self._client: httpx.AsyncClient | None = None
        self._ssl: ssl.SSLContext | None = None

    @classmethod
    def from_pki(cls, pki_dir: Path) -> KubeletConnector:
        return cls(
            pki_dir / "client-apiserver-kubelet-client.pem",
            pki_dir / "client-apiserver-kubelet-client.key",
            pki_dir / "ca.pem",
        )

    def ssl_context(self) -> ssl.SSLContext:
        """The client side of the mutual TLS (made on first use, then kept)."""
        if self._ssl is None:
            if not self.cert.exists():
                raise errors.ApiError(
                    503, "ServiceUnavailable", f"no kubelet client certificate at {self.cert}"
                )
            ctx = ssl.create_default_context(cafile=str(self.ca))
            ctx.load_cert_chain(str(self.cert), str(self.key))
            self._ssl = ctx
        return self._ssl

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            # Kubelet traffic never goes through a proxy from the environment.
            self._client = httpx.AsyncClient(
                verify=self.ssl_context(), trust_env=False, timeout=httpx.Timeout(30.0, read=None)
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def dial(host: str, port: int, ctx: ssl.SSLContext | None) -> trio.abc.Stream:
    """A connection to host:port (brackets of an IPv6 host allowed), TLS when given a
    context (the server's certificate checked against the host, as ctx says); the caller
    bounds the time. The streaming and proxy subresources open their connections here."""
    bare = host.strip("[]")
    tcp = await trio.open_tcp_stream(bare, port)
    if ctx is None:
        return tcp
    stream = trio.SSLStream(tcp, ctx, server_hostname=bare)
    try:
        await stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


def _validate(req: http.Request) -> None:
    causes = []
    for name, minimum in (("tailLines", 0), ("limitBytes", 1), ("sinceSeconds", 1)):
        value = req.int_arg(name)
        if value is not None and value < minimum:
            word = "greater than or equal to 0" if minimum == 0 else "greater than 0"
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "field": name,
                    "message": f"Invalid value: {value}: must be {word}",
                }
            )
    if req.arg("sinceSeconds") and req.arg("sinceTime"):
        causes.append(
            {
                "reason": "FieldValueForbidden",
                "field": "",
                "message": "Forbidden: at most one of `sinceTime` or `sinceSeconds` may "
                "be specified",
            }
        )
    if causes:
        raise errors.invalid("PodLogOptions", "", causes, "")


def pick_container(pod: Obj, requested: str | None) -> str:
    """The container whose log is asked for, with upstream's refusals."""
    spec = pod.get("spec") or {}
    name = pod["metadata"]["name"]
    containers = [c["name"] for c in spec.get("containers") or ()]
    inits = [c["name"] for c in spec.get("initContainers") or ()]
    ephemeral = [c["name"] for c in spec.get("ephemeralContainers") or ()]
    if not requested:
        if len(containers) == 1:
            return containers[0]
        message = (
            f"a container name must be specified for pod {name}, choose one of: "
            f"[{' '.join(containers)}]"
        )
        if inits:
            message += f" or one of the init containers: [{' '.join(inits)}]"
        if ephemeral:
            message += f" or one of the ephemeral containers: [{' '.join(ephemeral)}]"
        raise errors.bad_request(message)
    if requested not in containers + inits + ephemeral:
        raise errors.bad_request(f"container {requested} is not valid for pod {name}")
    return requested


def pod_kubelet(core: ApiCore, connector: KubeletConnector | None, pod: Obj) -> tuple[str, int]:
    """The host (bracketed when IPv6) and port of the kubelet running the pod."""
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise errors.bad_request(f"pod {pod['metadata']['name']} does not have a host assigned")
    if connector is None:
        raise errors.ApiError(503, "ServiceUnavailable", "this API server has no kubelet client")
    hit = core.registries[("", "nodes")].cache.get(f"/registry/core/nodes/{node_name}")
    if hit is None:
        raise errors.not_found("nodes", node_name)
    host, port = kubelet_location(loads(hit[0]))
    return (f"[{host}]" if ":" in host else host), port


def kubelet_location(node: Obj) -> tuple[str, int]:
    status = node.get("status") or {}
    port = int(
        ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 0
    )
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or ()}
    host = next((addresses[t] for t in _ADDRESS_TYPES if addresses.get(t)), None)
    name = node["metadata"]["name"]
    if host is None or port <= 0:
        raise errors.ApiError(
            503, "ServiceUnavailable", f'node "{name}" has no kubelet endpoint (address and port)'
        )
    return host, port


async def serve_log(
    core: ApiCore,
    connector: KubeletConnector | None,
    req: http.Request,
    info: RequestInfo,
    send: http.Send,
) -> None:
    """GET pods/<name>/log: errors before any byte as a Status, then the raw log stream."""
    assert info.name is not None
    _validate(req)
    pods = core.registries[("", "pods")]
    pod = pods.get(info.namespace, info.name)
    container = pick_container(pod, req.arg("container"))
    host, port = pod_kubelet(core, connector, pod)
    assert connector is not None  # pod_kubelet refuses without one
    url = (
        f"https://{host}:{port}/containerLogs/{quote(info.namespace or '', safe='')}/"
        f"{quote(info.name, safe='')}/{quote(container, safe='')}"
    )
    params = {k: v for k in _PASSED if (v := req.arg(k)) not in (None, "")}
    client = connector.client()
    try:
        async with client.stream("GET", url, params=params) as response:
            if response.status_code != 200:
                body = b""
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) >= _MAX_ERROR_BODY:
                        break
                raise kubelet_error(response.status_code, body, info.name)
            await http.start_stream(send, 200, "text/plain")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_on_disconnect, req.receive, nursery.cancel_scope)
                async for chunk in response.aiter_raw():
                    await http.stream_chunk(send, chunk)
                nursery.cancel_scope.cancel()
    except httpx.HTTPError as e:
        raise errors.internal(f'Get "{url}": {e}') from None
    # The client may be gone by now; there is nothing left to tell it then.
    with contextlib.suppress(Exception):
        await http.end_stream(send)


def kubelet_error(code: int, body: bytes, pod: str) -> errors.ApiError:
    text = body[:_MAX_ERROR_BODY].decode(errors="replace").strip()
    if code == 400:
        return errors.bad_request(text)
    if code == 404:
        return errors.ApiError(404, "NotFound", text or f'pods "{pod}" not found')
    reason = {401: "Unauthorized", 403: "Forbidden", 503: "ServiceUnavailable"}.get(
        code, "InternalError"
    )
    return errors.ApiError(code if code >= 400 else 500, reason, text)


async def _cancel_on_disconnect(receive: http.Receive, scope: trio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return
