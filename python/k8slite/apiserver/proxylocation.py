"""Where a pods/proxy, services/proxy or nodes/proxy request goes (upstream's ResourceLocation).

The name in the URL is `name`, `name:port` or `scheme:name:port` (scheme http or https,
upstream's SplitSchemeNamePort). A pod is reached at its IP (the first of status.podIPs) on
the port asked for, else the first declared container port; a service at a random ready
address of its Endpoints for the service port asked for (by number or name, the unnamed
port when none); a node at its kubelet, over mutual TLS with the API server's kubelet-client
identity, unless another port is asked for. Refusals are upstream's, word for word.
"""

from __future__ import annotations

import ipaddress
import json
import random
from dataclasses import dataclass

from k8slite.api import errors
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.podlogs import kubelet_location
from k8slite.component.objects import Obj

_SCHEMES = ("", "http", "https")


@dataclass(frozen=True)
class Location:
    """A backend: scheme (empty means http), host (IPv6 bracketed), port (may be empty)."""

    scheme: str
    host: str
    port: str
    # Reached with the kubelet client's mutual TLS (a node's own kubelet port).
    kubelet: bool = False

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host

    def url(self, path: str, query: str = "") -> str:
        return f"{self.scheme or 'http'}://{self.netloc}{path}" + (f"?{query}" if query else "")


def split_scheme_name_port(id_: str) -> tuple[str, str, str] | None:
    """(scheme, name, port) of `name`, `name:port` or `scheme:name:port`; None if invalid."""
    parts = id_.split(":")
    if len(parts) == 1:
        scheme, name, port = "", parts[0], ""
    elif len(parts) == 2:
        scheme, (name, port) = "", parts
    elif len(parts) == 3:
        scheme, name, port = parts
    else:
        return None
    if not name or scheme not in _SCHEMES:
        return None
    return scheme, name, port


def subpath(request_path: str, after: int) -> str:
    """The proxied path: the request path's segments after the `after`-th, with a leading
    slash, and a trailing one when the request had one (upstream's getRequestOptions)."""
    parts = request_path.strip("/").split("/")
    path = "/".join(parts[after:])
    if path and not path.startswith("/"):
        path = "/" + path
    if request_path.endswith("/") and not path.endswith("/"):
        path += "/"
    return path


def is_global_unicast(address: str) -> bool:
    """Go's net.IP.IsGlobalUnicast: not loopback, link-local, multicast, unspecified or the
    IPv4 broadcast address (private ranges are global unicast)."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip == ipaddress.IPv4Address("255.255.255.255")
    )


def _go_quote(text: str) -> str:
    """Go's %q for the texts that appear here (a JSON string is the same for them)."""
    return json.dumps(text, ensure_ascii=False)


def _bracket(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def _unavailable(message: str) -> errors.ApiError:
    return errors.ApiError(503, "ServiceUnavailable", message)


def pod_location(core: ApiCore, namespace: str, id_: str) -> Location:
    parsed = split_scheme_name_port(id_)
    if parsed is None:
        raise errors.bad_request(f"invalid pod request {_go_quote(id_)}")
    scheme, name, port = parsed
    pod = core.registries[("", "pods")].get(namespace, name)
    if not port:
        port = next(
            (
                str(c["ports"][0].get("containerPort", ""))
                for c in (pod.get("spec") or {}).get("containers") or ()
                if c.get("ports")
            ),
            "",
        )
    ips = (pod.get("status") or {}).get("podIPs") or ()
    ip = str(ips[0].get("ip") or "") if ips else ""
    if not is_global_unicast(ip):
        raise errors.bad_request("address not allowed")
    return Location(scheme, _bracket(ip), port)


def service_location(core: ApiCore, namespace: str, id_: str) -> Location:
    parsed = split_scheme_name_port(id_)
    if parsed is None:
        raise errors.bad_request(f"invalid service request {_go_quote(id_)}")
    scheme, name, port_name = parsed
    number = _go_int(port_name)
    if number is not None:
        # A port number names the service port; its endpoints are found by the port's name.
        svc = core.registries[("", "services")].get(namespace, name)
        declared = [
            p for p in (svc.get("spec") or {}).get("ports") or () if p.get("port") == number
        ]
        if not declared:
            raise _unavailable(f"no service port {number} found for service {_go_quote(name)}")
        port_name = declared[0].get("name") or ""
    endpoints = core.registries[("", "endpoints")].get(namespace, name)
    subsets = endpoints.get("subsets") or []
    if not subsets:
        raise _unavailable(f"no endpoints available for service {_go_quote(name)}")
    # As upstream: a random subset to start from, a random ready address in it whose pod
    # still has that IP.
    start = random.randrange(len(subsets))
    for i in range(len(subsets)):
        subset = subsets[(start + i) % len(subsets)]
        addresses = subset.get("addresses") or []
        if not addresses:
            continue
        for port in subset.get("ports") or ():
            if (port.get("name") or "") != port_name:
                continue
            first = random.randrange(len(addresses))
            for j in range(len(addresses)):
                address = addresses[(first + j) % len(addresses)]
                if _is_valid_address(core, namespace, address):
                    return Location(scheme, _bracket(address["ip"]), str(port.get("port")))
    raise _unavailable(f"no endpoints available for service {_go_quote(id_)}")


def _go_int(text: str) -> int | None:
    """strconv.ParseInt(text, 10, 64), or None when it is not one."""
    body = text[1:] if text[:1] in ("+", "-") else text
    if not body.isascii() or not body.isdigit():
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None


def _is_valid_address(core: ApiCore, namespace: str, address: Obj) -> bool:
    """An address counts only while it points at a pod of this namespace that has its IP."""
    ref = address.get("targetRef") or {}
    if not ref or ref.get("namespace") != namespace:
        return False
    try:
        pod = core.registries[("", "pods")].get(namespace, ref.get("name") or "")
    except errors.ApiError:
        return False
    ips = (pod.get("status") or {}).get("podIPs") or ()
    return any(p.get("ip") == address.get("ip") for p in ips)


def node_location(core: ApiCore, id_: str) -> Location:
    """The node's kubelet, or another port on the node's address.

    Upstream refuses any node address that is not global unicast, which here would refuse
    every node: kubelets of a K8s-Lite host listen on its loopback. The kubelet port is
    reached as pods/log and pods/exec reach it (its certificate is checked, and the kubelet
    authorizes the API server's identity), so loopback is allowed there; another port on a
    loopback or link-local node address is still refused, which is what upstream's check
    protects: the API server's own host services.
    """
    parsed = split_scheme_name_port(id_)
    if parsed is None:
        raise errors.bad_request(f"invalid node request {_go_quote(id_)}")
    scheme, name, port = parsed
    node = core.registries[("", "nodes")].get(None, name)
    host, kubelet_port = kubelet_location(node)
    if not port or port == str(kubelet_port):
        return Location("https", _bracket(host), str(kubelet_port), kubelet=True)
    if not is_global_unicast(host):
        raise errors.bad_request("address not allowed")
    return Location(scheme, _bracket(host), port)
