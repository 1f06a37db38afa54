"""Fuzzing the API server with malformed requests: no 5xx, no crash, nothing stored.

Every generated request is invalid by construction (a body that cannot be stored, an
unusable dryRun on deletes), so any change of the store's revision is a bug, as is any 5xx.
Requests go over raw TLS sockets so that paths, methods and headers reach the server as
generated, unnormalised. K8SLITE_FUZZ_EXAMPLES sets the number of examples (default 300).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k8slite.api.resources import RESOURCES
from tests.conftest import ServerHandle, start_apiserver

EXAMPLES = int(os.environ.get("K8SLITE_FUZZ_EXAMPLES", "300"))
IDENTITIES = ("admin", "node-node1", "scheduler")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    handle = start_apiserver(Path(tmp_path_factory.mktemp("fuzz")) / "data")
    yield handle
    handle.stop()


def send_raw(server: ServerHandle, identity: str, data: bytes) -> int | None:
    """Send bytes over a fresh mutual-TLS connection; the answer's status, None if none."""
    host, port = server.url.removeprefix("https://").rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(server.ca))
    ctx.load_cert_chain(*server.cert(identity))
    with (
        socket.create_connection((host, int(port)), timeout=15) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(data)
        buf = b""
        try:
            while b"\r\n" not in buf:
                chunk = tls.recv(4096)
                if not chunk:
                    return None
                buf += chunk
        except (ConnectionError, ssl.SSLError):
            return None
    return int(buf.split(b"\r\n", 1)[0].split()[1])


def request_bytes(method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    lines = [
        f"{method} {target} HTTP/1.1",
        "Host: fuzz",
        "Connection: close",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body


# ------------------------------------------------------------------- strategies

SEGMENTS = [
    "api",
    "apis",
    "v1",
    "namespaces",
    "default",
    "kube-system",
    "kube-node-lease",
    "pods",
    "configmaps",
    "secrets",
    "nodes",
    "node1",
    "services",
    "endpoints",
    "events",
    "leases",
    "coordination.k8s.io",
    "apps",
    "deployments",
    "replicasets",
    "rbac.authorization.k8s.io",
    "roles",
    "rolebindings",
    "clusterroles",
    "clusterrolebindings",
    "authorization.k8s.io",
    "selfsubjectaccessreviews",
    "localsubjectaccessreviews",
    "status",
    "scale",
    "binding",
    "eviction",
    "finalize",
    "log",
    "watch",
    "x",
    "..",
    ".",
    "",
    "healthz",
    "version",
    "openapi",
    "v2",
    "metrics",
    "system:node",
    "%",
    "\x00",
    "ü",
    "a" * 300,
]
QUERY_KEYS = [
    "watch",
    "labelSelector",
    "fieldSelector",
    "limit",
    "continue",
    "resourceVersion",
    "resourceVersionMatch",
    "timeoutSeconds",
    "timeout",
    "dryRun",
    "gracePeriodSeconds",
    "propagationPolicy",
    "orphanDependents",
    "fieldManager",
    "allowWatchBookmarks",
    "sendInitialEvents",
    "pretty",
    "force",
]
CONTENT_TYPES = [
    "application/json",
    "application/yaml",
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "application/vnd.kubernetes.protobuf",
    "text/plain",
    "",
    "application/json; charset=utf-8",
    "*/*",
    "multipart/x",
]
FIELDS = [
    "spec",
    "status",
    "data",
    "binaryData",
    "stringData",
    "type",
    "rules",
    "subjects",
    "roleRef",
    "target",
    "subsets",
    "endpoints",
    "ports",
    "addressType",
    "immutable",
    "involvedObject",
    "reason",
    "secrets",
    "aggregationRule",
    "deleteOptions",
]
SPEC_FIELDS = [
    "containers",
    "initContainers",
    "volumes",
    "nodeName",
    "replicas",
    "selector",
    "template",
    "ports",
    "type",
    "clusterIP",
    "holderIdentity",
    "leaseDurationSeconds",
    "finalizers",
    "taints",
    "unschedulable",
    "podCIDR",
    "serviceAccountName",
    "imagePullSecrets",
    "resourceAttributes",
    "strategy",
]

_text = st.text(max_size=12)
_header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=16,
)
# A name no kind accepts: DNS names and RBAC's path-segment names both refuse "/".
bad_names = _text.map(lambda s: f"Bad/{s}")


@st.composite
def invalid_objects(draw: st.DrawFn) -> bytes:
    obj: dict[str, Any] = draw(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4))
    if draw(st.booleans()):
        obj["spec"] = draw(st.dictionaries(st.sampled_from(SPEC_FIELDS), json_values, max_size=5))
    meta = draw(
        st.dictionaries(
            st.sampled_from(
                [
                    "labels",
                    "annotations",
                    "finalizers",
                    "ownerReferences",
                    "generateName",
                    "resourceVersion",
                    "uid",
                ]
            ),
            json_values,
            max_size=3,
        )
    )
    meta["name"] = draw(bad_names)
    obj["metadata"] = meta
    return json.dumps(obj).encode()


@st.composite
def malformed_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(["bytes", "scalar", "list", "metadata", "object", "deep", "protobuf"])
    )
    if kind == "bytes":
        return b"\xff" + draw(st.binary(max_size=200))
    if kind == "scalar":
        return json.dumps(draw(st.none() | st.booleans() | st.integers() | _text)).encode()
    if kind == "list":
        # Ends with an operation no JSON patch accepts, so even a patch is refused whole.
        items = draw(st.lists(json_values, max_size=4)) + [{"op": "refuse-me"}]
        return json.dumps(items).encode()
    if kind == "metadata":
        meta = draw(st.none() | st.booleans() | st.integers() | _text | st.lists(_text))
        return json.dumps({"metadata": meta}).encode()
    if kind == "deep":
        depth = draw(st.integers(101, 1200))
        return ('{"metadata":{"name":"ok"},"x":' + "[" * depth + "]" * depth + "}").encode()
    if kind == "protobuf":
        return b"k8s\x00" + draw(st.binary(max_size=100))
    return draw(invalid_objects())


@st.composite
def resource_paths(draw: st.DrawFn) -> str:
    """Paths of served resources, their objects and subresources, as clients use them."""
    rt = draw(st.sampled_from(RESOURCES))
    base = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
    if rt.namespaced and draw(st.integers(0, 4)):
        base += "/namespaces/" + draw(
            st.sampled_from(["default", "kube-system", "missing"])
            | _text.map(lambda s: quote(s, safe=""))
        )
    path = f"{base}/{rt.plural}"
    if draw(st.booleans()):
        path += "/" + quote(
            draw(st.sampled_from(["default", "node1", "kubernetes", "cluster-admin", "x"]) | _text),
            safe="",
        )
        if draw(st.booleans()):
            path += "/" + draw(st.sampled_from([*rt.subresources, "status", "nope"]))
    return path


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, bytes]:
    if draw(st.integers(0, 3)):
        path = draw(resource_paths())
    else:
        segments = draw(st.lists(st.sampled_from(SEGMENTS) | _text, min_size=0, max_size=8))
        path = "/" + "/".join(
            quote(s, safe="") if draw(st.booleans()) else quote(s, safe="/%:.") for s in segments
        )
    query = [
        (draw(st.sampled_from(QUERY_KEYS) | _text), draw(_text))
        for _ in range(draw(st.integers(0, 4)))
    ]
    method = draw(
        st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "BREW"])
    )
    if method in ("POST", "PUT", "PATCH"):
        body = draw(malformed_bodies())
    else:
        body = draw(st.binary(max_size=64) | malformed_bodies())
    if method == "DELETE":
        # Deletes are refused by an unusable dryRun value whatever else the query holds.
        query.append(("dryRun", "Refuse"))
    if query:
        path += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
    headers = [("Content-Type", draw(st.sampled_from(CONTENT_TYPES) | _header_text))]
    headers += draw(
        st.lists(
            st.tuples(st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True), _header_text),
            max_size=3,
        )
    )
    # Mostly the admin, whose requests get past authorization into decoding and validation.
    identity = draw(st.sampled_from(IDENTITIES)) if draw(st.integers(0, 3)) == 0 else "admin"
    return identity, request_bytes(method, path, headers, body)


def _revision(client: httpx.Client) -> str:
    return str(client.get("/api/v1/namespaces").json()["metadata"]["resourceVersion"])


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(case=requests())
def test_malformed_requests_change_nothing(server: ServerHandle, case: tuple[str, bytes]) -> None:
    identity, data = case
    with server.client() as admin:
        before = _revision(admin)
        status = send_raw(server, identity, data)
        # A proxy subresource answers 503 when its backend cannot be reached (upstream's
        # "error trying to reach service", "no endpoints available ..."): that is the
        # backend's state, not a failure to handle the request.
        proxied = b"/proxy" in data.split(b"\r\n", 1)[0]
        assert status is None or status < 500 or (proxied and status == 503), (
            status,
            data[:300],
        )
        assert server.proc.poll() is None, "the API server died"
        assert _revision(admin) == before, data[:300]


# Protocol-level garbage: the connection may be dropped, but never a 5xx or a crash.
RAW_CASES = [
    b"\x16\x03\x01garbage\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
    b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nX: " + b"y" * (100 << 10) + b"\r\n\r\n",
    b"GET /" + b"a" * (70 << 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/v1/namespaces HTTP/1.1\r\n"
    + b"".join(b"X-%d: y\r\n" % i for i in range(5000))
    + b"\r\n",
    (
        b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\nxx\r\n0\r\n\r\n"
    ),
    (
        b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 5\r\nContent-Length: 7\r\n\r\n{}{}{}{"
    ),
    (
        b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: -1\r\n\r\n"
    ),
    b"GET /api/v1/namespaces/%zz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/v1/namespaces/\xc3\x28 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET http://evil/api/v1/namespaces HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00" * 50,
]


@pytest.mark.parametrize("data", RAW_CASES, ids=range(len(RAW_CASES)))
def test_protocol_garbage_is_refused_cleanly(server: ServerHandle, data: bytes) -> None:
    with server.client() as admin:
        before = _revision(admin)
        status = send_raw(server, "admin", data)
        assert status is None or status < 500, status
        assert server.proc.poll() is None
        assert _revision(admin) == before
