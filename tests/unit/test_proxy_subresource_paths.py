"""The proxy subresources' path parsing, header and link rewriting, and the relay of one
exchange (over an in-memory backend), against upstream's rules."""

from __future__ import annotations

import gzip
from typing import Any

import h11
import pytest
import trio
import trio.testing

from k8slite.api import errors
from k8slite.apiserver.limits import is_long_running
from k8slite.apiserver.proxyhtml import rewrite_html
from k8slite.apiserver.proxylocation import is_global_unicast, split_scheme_name_port, subpath
from k8slite.apiserver.requestinfo import is_proxy_path, parse
from k8slite.apiserver.resourceproxy import (
    Rewriter,
    _Exchange,
    forwarded_uri,
    html_encoding,
    path_prepend,
    request_headers,
    response_headers,
    rewrite_location,
)

POD = "/api/v1/namespaces/ns/pods/web:8080/proxy"


@pytest.mark.parametrize(
    ("id_", "expected"),
    [
        ("web", ("", "web", "")),
        ("web:8080", ("", "web", "8080")),
        ("web:http", ("", "web", "http")),
        ("https:web:8443", ("https", "web", "8443")),
        ("http:web:", ("http", "web", "")),
        ("ftp:web:21", None),  # only http and https
        (":8080", None),  # a name is needed
        ("a:b:c:d", None),
    ],
)
def test_split_scheme_name_port(id_: str, expected: tuple[str, str, str] | None) -> None:
    assert split_scheme_name_port(id_) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"{POD}", ""),
        (f"{POD}/", "/"),
        (f"{POD}/a/b", "/a/b"),
        (f"{POD}/a/b/", "/a/b/"),
        (f"{POD}/a//b", "/a//b"),
    ],
)
def test_subpath_keeps_the_trailing_slash(path: str, expected: str) -> None:
    assert subpath(path, 7) == expected


def test_request_info_of_proxy_paths() -> None:
    info = parse("GET", f"{POD}/some/deep/path", False)
    assert (info.verb, info.resource.plural, info.name, info.subresource, info.namespace) == (
        "get",
        "pods",
        "web:8080",
        "proxy",
        "ns",
    )
    # The verb comes from the method alone (upstream's RequestInfoFactory).
    methods = {"HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch"}
    methods |= {"DELETE": "delete", "OPTIONS": ""}
    for method, verb in methods.items():
        assert parse(method, f"{POD}/x", False).verb == verb, method
    node = parse("GET", "/api/v1/nodes/n1:10250/proxy/stats/summary", False)
    assert (node.resource.plural, node.name, node.namespace) == ("nodes", "n1:10250", None)
    svc = parse("POST", "/api/v1/namespaces/ns/services/https:web:443/proxy/", False)
    assert (svc.verb, svc.name) == ("create", "https:web:443")
    # Other subresources still end where they end.
    with pytest.raises(errors.ApiError):
        parse("GET", "/api/v1/namespaces/ns/pods/web/log/more", False)
    with pytest.raises(errors.ApiError):
        parse("GET", "/api/v1/namespaces/ns/configmaps/x/proxy/y", False)


def test_proxy_paths_are_long_running_for_every_method() -> None:
    assert is_proxy_path(f"{POD}/x") and is_proxy_path("/api/v1/nodes/n/proxy")
    assert not is_proxy_path("/api/v1/namespaces/ns/configmaps/proxy")
    assert not is_proxy_path("/api/v1/namespaces/proxy/pods")
    assert not is_proxy_path("/apis/apps/v1/namespaces/ns/deployments/x/proxy")
    for method in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS"):
        assert is_long_running({"method": method, "path": f"{POD}/upload"})
    assert not is_long_running({"method": "PUT", "path": "/api/v1/namespaces/ns/configmaps/x"})


def test_addresses_a_proxy_may_reach() -> None:
    for ok in ("10.244.0.5", "172.18.0.2", "8.8.8.8", "fd00::1", "[fd00::1]"):
        assert is_global_unicast(ok), ok
    for bad in ("127.0.0.1", "169.254.169.254", "0.0.0.0", "::1", "fe80::1", "224.0.0.1", ""):
        assert not is_global_unicast(bad), bad
    assert not is_global_unicast("::ffff:127.0.0.1")


def test_request_headers() -> None:
    sent = request_headers(
        [
            ("Host", "127.0.0.1:6443"),
            ("Authorization", "Bearer secret"),
            ("Impersonate-User", "someone"),
            ("Impersonate-Extra-Scopes", "x"),
            ("Connection", "keep-alive, X-Private"),
            ("X-Private", "hop"),
            ("Keep-Alive", "timeout=5"),
            ("Upgrade", "h2c"),
            ("Te", "gzip"),
            ("X-Forwarded-For", "10.0.0.9"),
            ("X-Forwarded-Uri", "/spoofed"),
            ("Accept", "text/html"),
            ("Cookie", "a=b"),
        ],
        "127.0.0.1",
        f"{POD}/a",
    )
    assert sent == [
        ("Host", "127.0.0.1:6443"),
        ("Accept", "text/html"),
        ("Cookie", "a=b"),
        ("X-Forwarded-For", "10.0.0.9, 127.0.0.1"),
        ("X-Forwarded-Uri", f"{POD}/a"),
    ]


def test_forwarded_uri_and_prefix() -> None:
    assert path_prepend(f"{POD}/a/b", "/a/b") == POD
    assert path_prepend(f"{POD}/", "/") == POD
    assert path_prepend(POD, "") == POD
    assert forwarded_uri(POD, "/a/b/") == f"{POD}/a/b/"
    assert forwarded_uri(POD, "/") == f"{POD}/"
    assert forwarded_uri(POD, "") == POD


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        # The backend's own host, or a bare absolute path: under the proxy path, relative.
        ("/login", f"{POD}/login"),
        ("/dir/", f"{POD}/dir/"),
        ("http://10.244.0.5:8080/a?b=c#d", f"{POD}/a?b=c#d"),
        ("/x/../y", f"{POD}/y"),
        # Already under the proxy path: left alone.
        (f"{POD}/z", f"{POD}/z"),
        # The caller's own Host: kept absolute, path under the proxy path.
        ("https://127.0.0.1:6443/home", f"https://127.0.0.1:6443{POD}/home"),
        # Another host, or a relative path: left alone.
        ("https://example.com/a", "https://example.com/a"),
        ("next/page", "next/page"),
    ],
)
def test_rewrite_location(location: str, expected: str) -> None:
    assert rewrite_location(location, POD, "10.244.0.5:8080", "127.0.0.1:6443") == expected


def test_response_headers() -> None:
    out = response_headers(
        [
            ("Content-Type", "text/plain"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "close"),
            ("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Allow-Credentials", "true"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("Location", "/next"),
            ("Date", "Mon, 07 Dec 2026 08:00:00 GMT"),
        ],
        POD,
        "10.244.0.5:8080",
        "127.0.0.1:6443",
    )
    assert out == [
        (b"content-type", b"text/plain"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"location", f"{POD}/next".encode()),
    ]


async def _exchange_with(
    backend_answer: bytes, method: str = "GET"
) -> tuple[int | errors.ApiError, list[Any]]:
    """Run one proxied exchange against an in-memory backend that reads the request and
    answers `backend_answer`, then closes; what the caller was sent, or the error."""
    client, server = trio.testing.memory_stream_pair()
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        await trio.sleep_forever()
        return {}

    async def send(message: Any) -> None:
        sent.append(message)

    async def backend() -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await server.receive_some(65536)
        await server.send_all(backend_answer)
        await server.aclose()

    exchange = _Exchange(client, receive, send)
    request = h11.Request(method=method, target="/", headers=[("Host", "backend")])
    result: int | errors.ApiError
    async with trio.open_nursery() as nursery:
        nursery.start_soon(backend)
        try:
            result = await exchange.run(request, False, Rewriter(POD, "backend", "api:6443"))
        except errors.ApiError as e:
            result = e
    return result, sent


async def test_a_backend_that_closes_without_answering_is_a_503() -> None:
    result, sent = await _exchange_with(b"")
    assert isinstance(result, errors.ApiError), result
    assert (result.code, result.message) == (503, "error trying to reach service: EOF")
    assert sent == []


async def test_an_answer_is_relayed_chunk_by_chunk() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    result, sent = await _exchange_with(answer)
    assert result == 200
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"abcde"
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


def test_links_in_html_pages() -> None:
    rewriter = Rewriter(POD, "10.244.0.5:8080", "127.0.0.1:6443")
    page = (
        '<!DOCTYPE html><html><head><link rel="stylesheet" href="/s.css">'
        "<script src='/app.js'>if (a > b) { x = '<a href=\"/no\">'; }</script></head>"
        '<body><a href="/docs/?a=1&amp;b=2">docs</a> <a href="rel/page">rel</a> '
        '<a href="https://example.com/x">out</a> <img src="http://10.244.0.5:8080/i.png"/>'
        '<!-- <a href="/commented"> --><form action="/post" method=post>'
        '<p title="/not-a-link">\u00e9</p></form></body></html>'
    )
    out = rewrite_html(page.encode(), rewriter.url).decode()
    assert f'<link rel="stylesheet" href="{POD}/s.css">' in out
    # A script's source is rewritten, its code is not.
    assert f'<script src="{POD}/app.js">if (a > b) {{ x = \'<a href="/no">\'; }}</script>' in out
    assert f'<a href="{POD}/docs/?a=1&amp;b=2">docs</a>' in out
    assert '<a href="rel/page">rel</a>' in out
    assert '<a href="https://example.com/x">out</a>' in out
    assert f'<img src="{POD}/i.png"/>' in out
    assert '<!-- <a href="/commented"> -->' in out
    assert f'<form action="{POD}/post" method="post">' in out
    assert '<p title="/not-a-link">\u00e9</p>' in out


def test_which_answers_are_rewritten() -> None:
    assert html_encoding([("Content-Type", "text/html; charset=utf-8")]) == ""
    assert html_encoding([("Content-Type", "text/html"), ("Content-Encoding", "gzip")]) == "gzip"
    assert html_encoding([("Content-Type", "text/html"), ("Content-Encoding", "br")]) is None
    assert html_encoding([("Content-Type", "text/plain")]) is None
    assert html_encoding([("Content-Type", "text/html"), ("Location", "/x")]) is None


async def test_an_html_page_is_rewritten_with_its_new_length() -> None:
    page = gzip.compress(b'<a href="/x">x</a>')
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n"
        + f"Content-Length: {len(page)}\r\n\r\n".encode()
        + page
    )
    result, sent = await _exchange_with(answer)
    assert result == 200
    headers = dict(sent[0]["headers"])
    body = sent[1]["body"]
    assert gzip.decompress(body) == f'<a href="{POD}/x">x</a>'.encode()
    assert headers[b"content-length"] == str(len(body)).encode()
    assert headers[b"content-encoding"] == b"gzip"


async def test_a_head_answer_keeps_its_headers() -> None:
    """No body to rewrite: an HTML answer to HEAD keeps the length of the page it describes."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1234\r\n\r\n"
    result, sent = await _exchange_with(answer, "HEAD")
    assert result == 200
    assert (b"content-length", b"1234") in sent[0]["headers"]
