"""A minimal plain-HTTP server for the proxy's /metrics and /healthz endpoints."""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

log = logging.getLogger(__name__)

# path -> () -> (status, content type, body)
Route = Callable[[], tuple[int, str, bytes]]
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
_MAX_HEAD = 16 * 1024
_READ_TIMEOUT = 10.0


def split_host_port(text: str, default_port: int) -> tuple[str, int]:
    """ "127.0.0.1:10249", "[::1]:0", "0.0.0.0" (default port) or ":10256" (all addresses)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host or "0.0.0.0", int(port or default_port)
    return text or "0.0.0.0", default_port


async def _handle(stream: trio.SocketStream, routes: dict[str, Route]) -> None:
    head = b""
    try:
        with trio.move_on_after(_READ_TIMEOUT):
            while b"\r\n\r\n" not in head and len(head) < _MAX_HEAD:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                head += chunk
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) < 2:
            return
        method, path = parts[0].decode(errors="replace"), parts[1].decode(errors="replace")
        route = routes.get(path.split("?", 1)[0])
        if route is None:
            status, ctype, body = 404, "text/plain", b"404 page not found\n"
        elif method not in ("GET", "HEAD"):
            status, ctype, body = 405, "text/plain", b"method not allowed\n"
        else:
            status, ctype, body = route()
        reply = (
            f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        await stream.send_all(reply + (b"" if method == "HEAD" else body))
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        await stream.aclose()


async def serve(
    address: str,
    default_port: int,
    routes: dict[str, Route],
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `routes` on `address` (port 0 picks a free one); reports (host, port) bound."""
    host, port = split_host_port(address, default_port)
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()

    async def handler(stream: trio.SocketStream) -> None:
        await _handle(stream, routes)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        task_status.started((host, bound[1]))
