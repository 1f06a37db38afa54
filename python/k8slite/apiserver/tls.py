"""Serve an ASGI app with hypercorn over mutual TLS, handing each request its client's certificate.

hypercorn 0.18 verifies client certificates (verify_mode, ca_certs) but never shows the
peer certificate to the application, so the identity a request was authenticated with
would be lost between the TLS layer and the handlers. This adapter closes that gap with as
little of hypercorn as possible:

- `serve` replaces `hypercorn.trio.serve` for TLS sockets only: the same lifespan, the same
  per-connection `TCPServer`, but built by us, so we see each connection's `trio.SSLStream`;
- `PeerCertServer` is that `TCPServer`, with the app wrapped per connection;
- the wrapper puts the verified certificate into every HTTP request's scope as the ASGI TLS
  extension specifies: scope["extensions"]["tls"]["client_cert_chain"] is a list of PEM
  strings, the client's own certificate first (OpenSSL on Python 3.11 hands out only the
  leaf, so the list has one element).

Every request of a connection, HTTP/1.1 or HTTP/2 streams alike, gets the same certificate:
a TLS connection has exactly one authenticated peer. The assumptions about hypercorn's
internals (TCPServer's constructor, scopes carrying an "extensions" dict, the stream's
attribute name) are pinned by tests/unit/test_tls_adapter.py.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ASGIFramework, ConnectionState, LifespanState
from hypercorn.utils import repr_socket_addr

from k8slite.apiserver import directsend

TLS_EXTENSION = "tls"


def tls_extension(stream: trio.SSLStream[Any]) -> dict[str, Any]:
    """The ASGI TLS extension of a connection whose handshake is done."""
    der = stream.getpeercert(binary_form=True)
    cipher = stream.cipher()
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": stream.version(),
        "cipher_suite": cipher[0] if cipher else None,
    }


class _PeerCertApp:
    """One connection's view of the app: adds the connection's TLS extension to each scope."""

    def __init__(
        self, app: AppWrapper, stream: trio.SSLStream[Any], server: TCPServer | None = None
    ) -> None:
        self.app = app
        self.stream = stream
        self.server = server
        self.direct: directsend.DirectChunks | None = None
        # Computed at the first request: by then the handshake is over (TCPServer.run does
        # it before any request can be read), and it never changes afterwards.
        self.tls: dict[str, Any] | None = None

    async def __call__(
        self,
        scope: Any,
        receive: Any,
        send: Any,
        sync_spawn: Callable[..., Any],
        call_soon: Callable[..., Any],
    ) -> None:
        if scope["type"] in ("http", "websocket"):
            if self.tls is None:
                self.tls = tls_extension(self.stream)
            scope["extensions"][TLS_EXTENSION] = self.tls
            if self.server is not None and scope.get("http_version") == "1.1":
                if self.direct is None:
                    self.direct = directsend.DirectChunks(self.server, self.stream)
                scope["extensions"][directsend.SCOPE_KEY] = self.direct
        await self.app(scope, receive, send, sync_spawn, call_soon)


class PeerCertServer(TCPServer):
    """hypercorn's per-connection server, with the app seeing the peer's certificate."""

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        state: ConnectionState,
        stream: trio.SSLStream[Any],
    ) -> None:
        super().__init__(_PeerCertApp(app, stream, self), config, context, state, stream)


async def serve(
    app: ASGIFramework,
    config: Config,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on config.bind over TLS until cancelled; reports the bound URLs like hypercorn.

    Only TLS listeners: a configuration without certfile/keyfile is an error here, since the
    point of this server is that every request has an authenticated peer.
    """
    ssl_context = config.create_ssl_context()
    if ssl_context is None:
        raise ValueError("serving needs config.certfile and config.keyfile")
    wrapped = ASGIWrapper(app)
    state: LifespanState = {}
    lifespan = Lifespan(wrapped, config, state)
    context = WorkerContext(None)
    sockets = config.create_sockets()
    listeners = []
    binds = []
    for sock in sockets.secure_sockets:
        sock.listen(config.backlog)
        listeners.append(
            trio.SSLListener(
                trio.SocketListener(trio.socket.from_stdlib_socket(sock)),
                ssl_context,
                https_compatible=True,
            )
        )
        binds.append(f"https://{repr_socket_addr(sock.family, sock.getsockname())}")

    async def handle(stream: trio.SSLStream[Any]) -> None:
        await PeerCertServer(wrapped, config, context, ConnectionState(state.copy()), stream).run()

    async with trio.open_nursery() as nursery:
        await nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        try:
            await nursery.start(trio.serve_listeners, handle, listeners)
            task_status.started(binds)
            await trio.sleep_forever()
        finally:
            # Idle keep-alive connections wait on this to close themselves.
            await context.terminated.set()
