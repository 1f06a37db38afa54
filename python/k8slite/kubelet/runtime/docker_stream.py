"""Docker exec and attach streams: the engine's hijacked HTTP connection, driven by Trio.

POST /exec/<id>/start and /containers/<id>/attach with `Upgrade: tcp` turn the HTTP
connection into the process's raw streams: what is written is its stdin (a half-close
closes it), and what is read is its output, as-is with a TTY, else in frames of an 8-byte
header (stream 1 or 2, three zero bytes, big-endian size) and the payload. No thread is
held while a session runs.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from k8slite.kubelet.runtime.base import STDOUT, ContainerRuntimeError, NotFoundError

_HEADER = 8
_READ = 64 * 1024
_MAX_HEAD = 64 * 1024
_RESIZE_TRIES = 10
_DRAIN = 1.0


async def open_engine(base_url: str) -> trio.abc.HalfCloseableStream:
    """A raw connection to the engine's API (unix:// or tcp://)."""
    if base_url.startswith("unix://"):
        return await trio.open_unix_socket(base_url.removeprefix("unix://"))
    host, _, port = base_url.split("://", 1)[1].rstrip("/").rpartition(":")
    return await trio.open_tcp_stream(host, int(port))


async def hijack(
    base_url: str, api_version: str, path: str, body: dict[str, Any] | None
) -> tuple[trio.abc.HalfCloseableStream, bytes]:
    """POST path with Upgrade: tcp; the upgraded stream and the bytes read past the head."""
    stream = await open_engine(base_url)
    payload = json.dumps(body).encode() if body is not None else b""
    head = (
        f"POST /v{api_version}{path} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n"
        f"Upgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    try:
        await stream.send_all(head.encode() + payload)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = await stream.receive_some(_READ)
            if not chunk or len(buf) > _MAX_HEAD:
                raise ContainerRuntimeError(f"the engine closed POST {path} without an answer")
            buf += chunk
        status_head, rest = buf.split(b"\r\n\r\n", 1)
        status = int(status_head.split(b" ", 2)[1])
        if status in (101, 200):
            return stream, rest
        with trio.move_on_after(2):
            while len(rest) < _MAX_HEAD and (chunk := await stream.receive_some(_READ)):
                rest += chunk
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    await trio.aclose_forcefully(stream)
    message = _engine_message(rest)
    if status == 404:
        raise NotFoundError(message)
    raise ContainerRuntimeError(message)


def _engine_message(body: bytes) -> str:
    # Error answers are JSON {"message": ...}, maybe chunked: take the JSON object.
    text = body.decode(errors="replace")
    start, end = text.find("{"), text.rfind("}")
    if start >= 0 and end > start:
        try:
            return str(json.loads(text[start : end + 1]).get("message") or text.strip())
        except ValueError:
            pass
    return text.strip()


class DockerSession:
    """One exec or attach on a hijacked engine connection."""

    def __init__(
        self,
        stream: trio.abc.HalfCloseableStream,
        first: bytes,
        tty: bool,
        resize: Callable[[int, int], Awaitable[None]],
        exit_code: Callable[[], Awaitable[int | None]],
        *,
        ended: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.stream = stream
        self.first = first
        self.tty = tty
        self._resize = resize
        self._exit_code = exit_code
        # Returns once the process is known to have ended: the output then gets a moment to
        # drain and the session ends even if the engine never closes the stream.
        self._ended = ended
        self._stdin_closed = False

    async def write_stdin(self, data: bytes) -> None:
        if not self._stdin_closed and data:
            await self.stream.send_all(data)

    async def close_stdin(self) -> None:
        if not self._stdin_closed:
            self._stdin_closed = True
            await self.stream.send_eof()

    async def resize(self, width: int, height: int) -> None:
        if not (self.tty and width > 0 and height > 0):
            return
        # The first size comes as the process starts, when the engine may refuse it (not
        # running yet): a few tries, as the docker CLI does, then the terminal keeps its size.
        for attempt in range(_RESIZE_TRIES):
            try:
                await self._resize(width, height)
                return
            except ContainerRuntimeError:
                if attempt + 1 < _RESIZE_TRIES:
                    await trio.sleep(0.01 * (attempt + 1))

    async def copy_output(self, write: Callable[[int, bytes], Awaitable[None]]) -> None:
        if self._ended is None:
            await self._copy_output(write)
            return
        ended = self._ended
        async with trio.open_nursery() as nursery:

            async def copy() -> None:
                await self._copy_output(write)
                nursery.cancel_scope.cancel()

            async def watch() -> None:
                await ended()
                await trio.sleep(_DRAIN)
                nursery.cancel_scope.cancel()

            nursery.start_soon(copy)
            nursery.start_soon(watch)

    async def _copy_output(self, write: Callable[[int, bytes], Awaitable[None]]) -> None:
        buf = bytearray(self.first)
        self.first = b""
        while True:
            if self.tty:
                if buf:
                    await write(STDOUT, bytes(buf))
                    buf.clear()
            else:
                while len(buf) >= _HEADER:
                    size = int.from_bytes(buf[4:_HEADER], "big")
                    if len(buf) < _HEADER + size:
                        break
                    kind = buf[0] if buf[0] in (1, 2) else STDOUT
                    payload = bytes(buf[_HEADER : _HEADER + size])
                    del buf[: _HEADER + size]
                    if payload:
                        await write(kind, payload)
            try:
                chunk = await self.stream.receive_some(_READ)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not chunk:
                return
            buf += chunk

    async def wait(self) -> int | None:
        return await self._exit_code()

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)
