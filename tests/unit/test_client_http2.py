"""The API client's HTTP/2 connections open with wider windows and frames (client/http2.py)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config

from k8slite import pki
from k8slite.apiserver import tls
from k8slite.client.kubeconfig import ClientConfig
from k8slite.client.rest import ApiClient

BIG = 3 * 2**20  # more than 64 KiB windows and 16 KiB frames would carry without a round trip


async def _big(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"x" * BIG})


async def test_http2_client_announces_wide_windows_and_frames(tmp_path: Path) -> None:
    from k8slite.client import http2

    pki.ensure_pki(tmp_path)
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.certfile = str(tmp_path / "server.pem")
    config.keyfile = str(tmp_path / "server.key")
    config.ca_certs = str(tmp_path / "ca.pem")
    config.verify_mode = ssl.CERT_REQUIRED
    ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    ctx.load_cert_chain(tmp_path / "client-admin.pem", tmp_path / "client-admin.key")
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(tls.serve, _big, config)
        client_config = ClientConfig(server=binds[0], ssl_context=ctx, http2=True, qps=0)
        async with ApiClient(client_config) as client:
            with trio.fail_after(30):
                assert len(await client.request_bytes("GET", "/big")) == BIG
            # The connection httpcore opened carries our settings, acknowledged by the server.
            pool = client._http._transport._pool
            (connection,) = pool.connections
            state = connection._connection._h2_state
            assert state.local_settings.initial_window_size == http2.STREAM_WINDOW
            assert state.local_settings.max_frame_size == http2.MAX_FRAME
        nursery.cancel_scope.cancel()
