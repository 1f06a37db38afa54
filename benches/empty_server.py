"""An empty ASGI handler on the API server's exact hypercorn and TLS setup: the ceiling.

The same serving path as the API server's (apiserver/tls.py's serve: its per-connection
server, HTTP/1.1 protocol and direct writes) and the same collector settings, so what
the API server's own handlers cost is the difference (docs/performance.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from k8slite import pki
from k8slite.apiserver.server import ApiServerConfig, _hypercorn_config, _tune_collector
from k8slite.apiserver.tls import serve

_BODY = b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success"}'


async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def,type-arg]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            done = message["type"] + ".complete"
            await send({"type": done})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _BODY})


async def main(data_dir: Path) -> None:
    config = ApiServerConfig(data_dir=data_dir, secure_port=0)
    pki.ensure_pki(config.pki_dir)
    _tune_collector()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, app, _hypercorn_config(config))
        print(f"empty handler listening on {binds[0]}", flush=True)


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]))
