"""ApiClient builds its requests itself (one URL parse, not httpx's three): they must be the
requests httpx's own build_request would have made, down to URL, headers and timeout."""

from __future__ import annotations

import httpx
import pytest

from k8slite.client import ApiClient, ClientConfig

CASES = [
    ("GET", "/api/v1/namespaces/default/pods/p", None, None, None),
    (
        "GET",
        "/api/v1/pods",
        {"labelSelector": "a!=b,c in (x,y)", "fieldSelector": "spec.nodeName!=", "watch": "1"},
        None,
        None,
    ),
    (
        "PUT",
        "/apis/batch/v1/namespaces/ns/jobs/j/status",
        {"fieldManager": "m"},
        b'{"kind":"Job"}',
        {"Content-Type": "application/json"},
    ),
    (
        "PATCH",
        "/api/v1/namespaces/ns/pods/p",
        None,
        b"[]",
        {"Content-Type": "application/json-patch+json"},
    ),
]


@pytest.mark.parametrize("server", ["https://api.test:6443", "https://api.test/prefix/"])
@pytest.mark.parametrize(("method", "path", "params", "body", "headers"), CASES)
def test_requests_are_those_httpx_would_build(
    server: str,
    method: str,
    path: str,
    params: dict[str, str] | None,
    body: bytes | None,
    headers: dict[str, str] | None,
) -> None:
    client = ApiClient(ClientConfig(server=server, token="t0ken", user_agent="ua/1"))
    for timeout in (None, httpx.Timeout(3.0)):
        ours = client._build_request(method, path, params, body, headers, timeout)
        theirs = client._http.build_request(
            method,
            path,
            params=params,
            content=body,
            headers=headers,
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        assert ours.method == theirs.method
        assert str(ours.url) == str(theirs.url)
        assert ours.headers.multi_items() == theirs.headers.multi_items()
        assert ours.extensions == theirs.extensions
        assert ours.read() == theirs.read()
