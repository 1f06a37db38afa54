"""Wider HTTP/2 flow-control windows and frames for the API client.

httpcore opens every HTTP/2 stream with the protocol's defaults: a 64 KiB window and
16 KiB frames. A LIST of 30,000 pods is 60 MB: the server may send 64 KiB of it, then
waits until the client has read that and sent a WINDOW_UPDATE, some 1,800 round trips in
3,700 frames. When the client's event loop is busy (the hollow-node process, 1,000 kubelets
in one Trio loop) each round trip waits for the loop's turn, and the density bench's relist
of all pods outlasted the API server's 60 s request timeout. Go's HTTP/2 transport, which
client-go uses, opens streams with a 4 MiB window; so do we, and we take frames of up to
1 MiB (fewer frames: less Python per byte on both sides). Measured with a LIST of 30,000
pods (60 MB) from one API server on the loaded 2-core machine: HTTP/2 took 1.5 to 8 times
as long as HTTP/1.1 with the defaults, 1.2 to 1.5 times with these.

httpcore has no setting for it, so the SETTINGS frame it sends at the connection's start is
followed by one more with ours (allowed at any time; the server applies it to every
stream). The assumption about httpcore's internals is pinned by
tests/unit/test_client_http2.py.
"""

from __future__ import annotations

from typing import Any

import h2.settings
from httpcore._async.http2 import AsyncHTTP2Connection

STREAM_WINDOW = 4 * 2**20
MAX_FRAME = 2**20

_httpcore_init = AsyncHTTP2Connection._send_connection_init


async def _send_connection_init(self: Any, request: Any) -> None:
    await _httpcore_init(self, request)
    self._h2_state.update_settings(
        {
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME,
        }
    )
    await self._write_outgoing_data(request)


AsyncHTTP2Connection._send_connection_init = _send_connection_init  # type: ignore[method-assign]
