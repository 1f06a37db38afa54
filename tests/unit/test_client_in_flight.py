"""ApiClient caps ordinary HTTP/1.1 requests in flight; watches and HTTP/2 are not capped."""

from __future__ import annotations

import httpx
import trio
import trio.testing

from k8slite.client import ApiClient, ClientConfig
from k8slite.client.resource import PODS


def _client(cap: int, handler: httpx.AsyncBaseTransport) -> ApiClient:
    client = ApiClient(ClientConfig(server="https://api.test", qps=0, max_in_flight=cap))
    client._http = httpx.AsyncClient(base_url="https://api.test", transport=handler)
    return client


class _Server(httpx.AsyncBaseTransport):
    """Answers every GET after a short while, recording how many were open at once."""

    def __init__(self) -> None:
        self.open = 0
        self.most = 0
        self.answered = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.open += 1
        self.most = max(self.most, self.open)
        try:
            await trio.sleep(0.01)
        finally:
            self.open -= 1
        self.answered += 1
        return httpx.Response(200, json={"kind": "Pod", "metadata": {"name": "p"}})


async def test_requests_beyond_the_cap_wait_their_turn() -> None:
    server = _Server()
    client = _client(4, server)
    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(client.get, PODS, "p")
    assert server.answered == 50
    assert server.most == 4


async def test_a_cap_of_one_still_serves_everyone() -> None:
    server = _Server()
    client = _client(1, server)
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(client.get, PODS, "p")
    assert (server.answered, server.most) == (5, 1)


class _Endless(httpx.AsyncByteStream):
    async def __aiter__(self):  # type: ignore[no-untyped-def]
        await trio.sleep_forever()
        yield b""


class _WatchServer(_Server):
    """Watches get a stream that never ends; anything else is answered as _Server does."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.params.get("watch"):
            return httpx.Response(200, stream=_Endless())
        return await super().handle_async_request(request)


async def test_an_open_watch_does_not_hold_a_slot() -> None:
    server = _WatchServer()
    client = _client(1, server)

    async def watch() -> None:
        async with client.watch(PODS) as events:
            async for _ in events:
                pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(5):
            await client.get(PODS, "p")
        nursery.cancel_scope.cancel()
    assert server.answered == 1


async def test_http2_is_not_capped() -> None:
    server = _Server()
    client = ApiClient(ClientConfig(server="https://api.test", qps=0, max_in_flight=2, http2=True))
    client._http = httpx.AsyncClient(base_url="https://api.test", transport=server)
    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(client.get, PODS, "p")
    assert (server.answered, server.most) == (10, 10)
