"""The hypercorn adapter: each request sees its connection's verified client certificate."""

from __future__ import annotations

import inspect
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypercorn.config import Config
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.trio.tcp_server import TCPServer

from k8slite import pki
from k8slite.apiserver import tls


async def _echo_identity(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the common name of the client certificate in the TLS extension."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    chain = scope["extensions"][tls.TLS_EXTENSION]["client_cert_chain"]
    cert = x509.load_pem_x509_certificate(chain[0].encode())
    name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    body = f"{name} {scope['http_version']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def _config(pki_dir: Path) -> Config:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.certfile = str(pki_dir / "server.pem")
    config.keyfile = str(pki_dir / "server.key")
    config.ca_certs = str(pki_dir / "ca.pem")
    config.verify_mode = ssl.CERT_REQUIRED
    return config


def _client(pki_dir: Path, name: str, url: str, http2: bool) -> httpx.AsyncClient:
    ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.pem"))
    ctx.load_cert_chain(pki_dir / f"client-{name}.pem", pki_dir / f"client-{name}.key")
    return httpx.AsyncClient(base_url=url, verify=ctx, http2=http2, http1=not http2)


async def test_each_request_sees_its_connections_certificate(tmp_path: Path) -> None:
    pki.ensure_pki(tmp_path, nodes=["node1"])
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(tls.serve, _echo_identity, _config(tmp_path))
        url = binds[0]
        for http2, version in ((False, "1.1"), (True, "2")):
            async with (
                _client(tmp_path, "admin", url, http2) as admin,
                _client(tmp_path, "node-node1", url, http2) as node,
            ):
                answers: dict[str, list[str]] = {"admin": [], "node": []}

                async def ask(client: httpx.AsyncClient, key: str) -> None:
                    r = await client.get("/")
                    answers[key].append(r.text)  # noqa: B023 - awaited in this iteration

                # Interleaved requests on two connections (streams of one each, for h2).
                async with trio.open_nursery() as requests:
                    for _ in range(20):
                        requests.start_soon(ask, admin, "admin")
                        requests.start_soon(ask, node, "node")
            assert answers["admin"] == [f"admin {version}"] * 20
            assert answers["node"] == [f"system:node:node1 {version}"] * 20
        nursery.cancel_scope.cancel()


async def _deny_websockets(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Refuses every WebSocket upgrade with a 403; answers plain requests with 200."""
    if scope["type"] == "lifespan":
        await _echo_identity(scope, receive, send)
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"no"})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"alive"})


async def test_bytes_after_a_refused_upgrade_end_only_that_connection(tmp_path: Path) -> None:
    # hypercorn answers them with a second response, which h11 refuses by raising; that
    # must close this connection, not fail the server (the kubelet died of it once).
    pki.ensure_pki(tmp_path)
    ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    ctx.load_cert_chain(tmp_path / "client-admin.pem", tmp_path / "client-admin.key")
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(tls.serve, _deny_websockets, _config(tmp_path))
        host, port = binds[0].removeprefix("https://").rsplit(":", 1)
        for _ in range(3):
            stream = await trio.open_ssl_over_tcp_stream(
                host, int(port), ssl_context=ctx, https_compatible=True
            )
            await stream.send_all(
                b"GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            answer = b""
            while b"no" not in answer:
                answer += await stream.receive_some()
            assert answer.startswith(b"HTTP/1.1 403")
            # A close frame, as a client that did not read the refusal might send.
            await stream.send_all(b"\x88\x82abcd" + bytes([0x03 ^ 0x61, 0xE8 ^ 0x62]))
            with trio.move_on_after(10):
                while await stream.receive_some():
                    pass
            await trio.aclose_forcefully(stream)
        async with _client(tmp_path, "admin", binds[0], False) as client:
            assert (await client.get("/")).text == "alive"
        nursery.cancel_scope.cancel()


def test_hypercorn_internals_the_adapter_relies_on() -> None:
    # PeerCertServer passes these arguments through to TCPServer unchanged.
    params = list(inspect.signature(TCPServer.__init__).parameters)
    assert params == ["self", "app", "config", "context", "state", "stream"]
    # Every HTTP scope carries an "extensions" dict for the adapter to add "tls" to.
    assert '"extensions": {}' in inspect.getsource(HTTPStream.handle)


async def _answer_at_once(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers before reading the request body, as a handler that refuses early does."""
    if scope["type"] == "lifespan":
        await _echo_identity(scope, receive, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"alive"})


async def test_h2_body_after_the_answer_is_dropped_not_fatal(tmp_path: Path) -> None:
    # A stream closes once its response is sent; DATA the client sends after that (the
    # body of a request answered early, e.g. by the request timeout) made hypercorn raise
    # KeyError, which stopped the whole API server at 1,000 hollow nodes.
    import h2.config
    import h2.connection
    import h2.events

    pki.ensure_pki(tmp_path)
    ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    ctx.load_cert_chain(tmp_path / "client-admin.pem", tmp_path / "client-admin.key")
    ctx.set_alpn_protocols(["h2"])
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(tls.serve, _answer_at_once, _config(tmp_path))
        host, port = binds[0].removeprefix("https://").rsplit(":", 1)
        stream = await trio.open_ssl_over_tcp_stream(host, int(port), ssl_context=ctx)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()

        def headers(method: str) -> list[tuple[str, str]]:
            return [(":method", method), (":path", "/x"), (":scheme", "https")] + [
                (":authority", "h")
            ]

        async def until_ended(stream_id: int) -> bytes:
            body = b""
            while True:
                await stream.send_all(conn.data_to_send())
                data = await stream.receive_some()
                assert data, "the server closed the connection"
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                        body += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                    if isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                        return body

        conn.send_headers(1, headers("POST"))
        assert await until_ended(1) == b"alive"
        # The body, after the answer: the server's stream 1 is gone.
        conn.send_data(1, b"x" * 1000, end_stream=True)
        await stream.send_all(conn.data_to_send())
        # The connection (and the server) go on serving.
        conn.send_headers(3, headers("GET"), end_stream=True)
        assert await until_ended(3) == b"alive"
        await trio.aclose_forcefully(stream)
        async with _client(tmp_path, "admin", binds[0], True) as client:
            assert (await client.get("/")).text == "alive"
        nursery.cancel_scope.cancel()


async def _abandon_or_answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/abandon: headers and part of a body, then gives up (as the request timeout does)."""
    if scope["type"] == "lifespan":
        await _echo_identity(scope, receive, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if scope["path"] == "/abandon":
        await send({"type": "http.response.body", "body": b"x" * 100_000, "more_body": True})
        return
    await send({"type": "http.response.body", "body": b"alive"})


async def test_an_abandoned_response_fails_the_request_instead_of_hanging(
    tmp_path: Path,
) -> None:
    # hypercorn forgot an HTTP/2 stream whose app stopped mid-body, so the client waited for
    # the rest for ever (the density bench's hollow nodes hung in a relist so): the stream
    # is reset now, and over HTTP/1.1 the connection closes. Either way the request fails
    # at once and the connection (HTTP/2) or a new one (HTTP/1.1) serves the next.
    pki.ensure_pki(tmp_path)
    async with trio.open_nursery() as nursery:
        config = _config(tmp_path)
        # Nor may the server's idle timeout close the connection (the API server's is 90 s).
        config.keep_alive_timeout = 60
        binds = await nursery.start(tls.serve, _abandon_or_answer, config)
        for http2 in (True, False):
            async with _client(tmp_path, "admin", binds[0], http2) as client:
                # Reads time out after 60 s: only a reset or a close ends this in time.
                client.timeout = httpx.Timeout(60)
                with trio.fail_after(10):
                    with pytest.raises(httpx.RemoteProtocolError):
                        await client.get("/abandon")
                    answer = await client.get("/ok")
                assert answer.text == "alive"
                assert answer.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        nursery.cancel_scope.cancel()


async def _sized_or_streamed(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/sized: a Content-Length answer; /stream: a chunked one whose body waits for /go;
    /slow: a sized answer after a second's work."""
    if scope["type"] == "lifespan":
        await _echo_identity(scope, receive, send)
        return
    state = scope["state"]
    if scope["path"] == "/go":
        state["go"].set()
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await state["go"].wait()
        await send({"type": "http.response.body", "body": b"later", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["path"] == "/slow":
        await trio.sleep(1.0)
    body = b"x" * 3000
    headers = [(b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _open(tmp_path: Path, url: str) -> trio.SSLStream[Any]:
    ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    ctx.load_cert_chain(tmp_path / "client-admin.pem", tmp_path / "client-admin.key")
    host, port = url.removeprefix("https://").rsplit(":", 1)
    return await trio.open_ssl_over_tcp_stream(
        host, int(port), ssl_context=ctx, https_compatible=True
    )


async def _serve_sized_or_streamed(nursery: trio.Nursery, config: Config) -> str:
    go = trio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            scope["state"]["go"] = go
        await _sized_or_streamed(scope, receive, send)

    binds = await nursery.start(tls.serve, app, config)
    return str(binds[0])


async def test_a_sized_answer_is_one_write_a_streamed_one_starts_at_once(tmp_path: Path) -> None:
    # One TLS record (a read of the SSL stream returns one) holds head and body alike;
    # a streamed answer's head still goes out before its body exists (watches need it).
    pki.ensure_pki(tmp_path)
    async with trio.open_nursery() as nursery:
        url = await _serve_sized_or_streamed(nursery, _config(tmp_path))
        stream = await _open(tmp_path, url)
        for _ in range(3):  # keep-alive: the same connection answers again
            await stream.send_all(b"POST /sized HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
            first = bytes(await stream.receive_some())
            assert first.startswith(b"HTTP/1.1 201 ")
            assert first.endswith(b"\r\n\r\n" + b"x" * 3000)
        await stream.send_all(b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
        head = bytes(await stream.receive_some())
        assert head.startswith(b"HTTP/1.1 200 ") and b"later" not in head
        async with _client(tmp_path, "admin", url, False) as client:
            assert (await client.get("/go")).status_code == 201
        rest = b""
        while not rest.endswith(b"0\r\n\r\n"):
            rest += await stream.receive_some()
        assert b"later" in rest
        await trio.aclose_forcefully(stream)
        nursery.cancel_scope.cancel()


async def test_keep_alive_timeout_closes_idle_connections_not_busy_ones(tmp_path: Path) -> None:
    pki.ensure_pki(tmp_path)
    config = _config(tmp_path)
    config.keep_alive_timeout = 0.5
    async with trio.open_nursery() as nursery:
        url = await _serve_sized_or_streamed(nursery, config)
        stream = await _open(tmp_path, url)
        # Busy for twice the keep-alive timeout: answered, not closed.
        await stream.send_all(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
        answer = bytes(await stream.receive_some())
        assert answer.startswith(b"HTTP/1.1 201 ")
        # Idle afterwards: the server closes the connection.
        with trio.fail_after(30):
            while await stream.receive_some():
                pass
        await trio.aclose_forcefully(stream)
        nursery.cancel_scope.cancel()


async def test_a_client_gone_mid_request_leaves_no_connection_task(
    tmp_path: Path, monkeypatch: Any
) -> None:
    # The keep-alive timer's task must not hold the connection's task group open once the
    # client has gone while its request was being served.
    finished = trio.Event()
    run = tls.PeerCertServer.run

    async def run_and_note(self: tls.PeerCertServer) -> None:
        try:
            await run(self)
        finally:
            finished.set()

    monkeypatch.setattr(tls.PeerCertServer, "run", run_and_note)
    pki.ensure_pki(tmp_path)
    async with trio.open_nursery() as nursery:
        url = await _serve_sized_or_streamed(nursery, _config(tmp_path))
        stream = await _open(tmp_path, url)
        await stream.send_all(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
        await trio.aclose_forcefully(stream)
        with trio.fail_after(30):
            await finished.wait()
        nursery.cancel_scope.cancel()
