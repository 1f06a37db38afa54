"""The kubelet's /logs/: the node's log directory, as upstream's system log handler serves it.

Upstream (enableSystemLogHandler, on by default) serves /var/log/ with Go's file server:
a directory is an HTML listing (`<pre>` of links, directories with a trailing slash,
sorted by name), a directory asked for without its slash is redirected to it, a file is
its bytes. Reached through the API server as nodes/NAME/proxy/logs/ and authorized as
nodes/log. Paths never leave the directory: `..` and links pointing outside are 404.
"""

from __future__ import annotations

import html
import mimetypes
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import trio

from k8slite.component.serving import Request, Response, text

PREFIX = "/logs/"
_CHUNK = 64 * 1024


class SystemLogs:
    def __init__(self, root: Path) -> None:
        self.root = root

    async def serve(self, req: Request) -> Response:
        if req.method not in ("GET", "HEAD"):
            return text(405, "Method Not Allowed")
        if req.path + "/" == PREFIX:
            return Response(301, b"", headers={"location": PREFIX})
        relative = req.path[len(PREFIX) :]
        path = self._resolve(relative)
        if path is None:
            return text(404, "404 page not found")
        if path.is_dir():
            if relative and not relative.endswith("/"):
                return Response(301, b"", headers={"location": f"{Path(relative).name}/"})
            return Response(200, _listing(path), "text/html; charset=utf-8")
        return Response(200, _read(path), _content_type(path))

    def _resolve(self, relative: str) -> Path | None:
        root = self.root.resolve()
        path = (root / relative).resolve()
        if path != root and root not in path.parents:
            return None
        return path if path.exists() else None


def _listing(directory: Path) -> bytes:
    lines = ["<!doctype html>", '<meta name="viewport" content="width=device-width">', "<pre>"]
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        name = entry.name + ("/" if entry.is_dir() else "")
        lines.append(f'<a href="{html.escape(quote(name))}">{html.escape(name)}</a>')
    lines.append("</pre>")
    return ("\n".join(lines) + "\n").encode()


def _content_type(path: Path) -> str:
    guessed, _ = mimetypes.guess_type(path.name)
    if guessed:
        return guessed
    with path.open("rb") as f:
        head = f.read(512)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/plain; charset=utf-8"


async def _read(path: Path) -> AsyncIterator[bytes]:
    async with await trio.open_file(path, "rb") as f:
        while chunk := await f.read(_CHUNK):
            yield chunk
