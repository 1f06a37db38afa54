"""Client test helpers: a loopback TCP proxy to cut connections, and server configs."""

from __future__ import annotations

import dataclasses

import trio

from k8slite.client import ClientConfig, load_kubeconfig
from tests.conftest import ServerHandle


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; cut() refuses and drops connections.

    While cut, the port has no listener, so clients see a real ECONNREFUSED; restore()
    listens on the same port again. TLS passes through untouched.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._nursery: trio.Nursery | None = None
        self._listener_scope: trio.CancelScope | None = None
        self._conn_scopes: set[trio.CancelScope] = set()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self._listen)
            task_status.started()
            # Stay open while cut (no listener task) so restore() can start one again.
            await trio.sleep_forever()

    async def _listen(
        self,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        with trio.CancelScope() as scope:
            self._listener_scope = scope
            task_status.started()
            await trio.serve_listeners(self._forward, listeners)
        for listener in listeners:
            await listener.aclose()

    async def _forward(self, client: trio.SocketStream) -> None:
        with trio.CancelScope() as scope:
            self._conn_scopes.add(scope)
            try:
                upstream = await trio.open_tcp_stream(*self.target)
                async with client, upstream, trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, client, upstream)
                    nursery.start_soon(self._pump, upstream, client)
            except (OSError, trio.BrokenResourceError):
                pass
            finally:
                self._conn_scopes.discard(scope)

    @staticmethod
    async def _pump(src: trio.SocketStream, dst: trio.SocketStream) -> None:
        try:
            while data := await src.receive_some(65536):
                await dst.send_all(data)
            await dst.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    def cut(self) -> None:
        """Stop listening and drop every open connection."""
        if self._listener_scope is not None:
            self._listener_scope.cancel()
            self._listener_scope = None
        for scope in list(self._conn_scopes):
            scope.cancel()

    async def restore(self) -> None:
        """Listen again on the same port."""
        assert self._nursery is not None
        if self._listener_scope is None:
            await self._nursery.start(self._listen)

    def close(self) -> None:
        self.cut()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()


def server_config(server: ServerHandle) -> ClientConfig:
    """The admin kubeconfig of a test API server, aimed at the port it really listens on.

    Kubeconfigs name the default port; test servers listen on ephemeral ones.
    """
    return dataclasses.replace(load_kubeconfig(server.kubeconfig), server=server.url)
