"""The Pods page's calls to the API server, each with the user's credentials: a pod's YAML,
its log followed live (pods/log?follow=true, relayed as server-sent events) and an exec
session (pods/exec over a WebSocket of the v5 or v4 channel protocol, relayed to the
browser's WebSocket as JSON text messages)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import trio
import yaml

from k8slite.apiserver.podlogs import dial
from k8slite.apiserver.streaming import BackendSocket, WebSocketRefused
from k8slite.client import ApiClient
from k8slite.client.resource import PODS
from k8slite.component.serving import WebSocket
from k8slite.dashboard.hub import sse

log = logging.getLogger(__name__)

# What the browser's log view starts with: the last lines, not the whole history.
TAIL_LINES = 500
# Lines sent in one server-sent event at most; a burst of output batches up.
LOG_BATCH = 200
KEEPALIVE = 15.0
EXEC_PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
_STREAMS = {1: "stdout", 2: "stderr"}
CONNECT_TIMEOUT = 10.0


async def pod_yaml(client: ApiClient, namespace: str, name: str) -> str:
    """The pod as `kubectl get -o yaml` shows it (managedFields left out, as kubectl does)."""
    pod = await client.get(PODS, name, namespace=namespace)
    (pod.get("metadata") or {}).pop("managedFields", None)
    return str(yaml.safe_dump(pod, sort_keys=False, default_flow_style=False))


async def open_log(
    client: ApiClient, namespace: str, name: str, container: str | None
) -> httpx.Response:
    """GET pods/log?follow=true as a stream; an ApiError with the server's words if refused."""
    params = {"follow": "true", "tailLines": str(TAIL_LINES), "timestamps": "false"}
    if container:
        params["container"] = container
    return await client.open_stream(f"{PODS.path(namespace, name, 'log')}?{urlencode(params)}")


async def log_events(response: httpx.Response) -> AsyncIterator[bytes]:
    """The log as `lines` events (complete lines, batched), then `end` when it ends."""
    send, receive = trio.open_memory_channel[list[str] | None](64)

    async def read() -> None:
        pending = b""
        async with send:
            try:
                async for chunk in response.aiter_bytes():
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    if lines:
                        await send.send([line.decode("utf-8", "replace") for line in lines])
            except httpx.HTTPError as e:
                log.info("log stream ended: %r", e)
            if pending:
                await send.send([pending.decode("utf-8", "replace")])
            await send.send(None)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            yield sse("open", {})
            while True:
                got: list[str] | None = []
                with trio.move_on_after(KEEPALIVE):
                    got = await receive.receive()
                if got is None:
                    yield sse("end", {})
                    nursery.cancel_scope.cancel()
                    return
                if not got:
                    yield b": keepalive\n\n"
                    continue
                lines = list(got)
                while len(lines) < LOG_BATCH:
                    try:
                        more = receive.receive_nowait()
                    except trio.WouldBlock:
                        break
                    if more is None:
                        yield sse("lines", lines)
                        yield sse("end", {})
                        nursery.cancel_scope.cancel()
                        return
                    lines.extend(more)
                yield sse("lines", lines)
    finally:
        with trio.CancelScope(shield=True):
            await response.aclose()


async def open_exec(
    client: ApiClient, namespace: str, name: str, container: str | None, command: list[str]
) -> BackendSocket:
    """A WebSocket to the API server's pods/exec with stdin, stdout and stderr, as the user:
    the kubeconfig's client certificate (in its TLS context) or bearer token."""
    config = client.config
    url = urlsplit(config.server)
    host, port = url.hostname or "127.0.0.1", url.port or (443 if url.scheme == "https" else 80)
    params: list[tuple[str, str]] = [("command", c) for c in command]
    params += [("stdin", "true"), ("stdout", "true"), ("stderr", "true")]
    if container:
        params.append(("container", container))
    target = f"{url.path.rstrip('/')}{PODS.path(namespace, name, 'exec')}?{urlencode(params)}"
    headers = [("User-Agent", config.user_agent)]
    if config.token:
        headers.append(("Authorization", f"Bearer {config.token}"))
    ctx = config.ssl_context if url.scheme == "https" else None
    with trio.fail_after(CONNECT_TIMEOUT):
        stream = await dial(host, port, ctx)
    hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return await BackendSocket.over(stream, hostport, target, EXEC_PROTOCOLS, headers)


def refusal_message(e: WebSocketRefused) -> str:
    """The API server's own words from a refused exec (its Status message)."""
    try:
        return str(json.loads(e.body).get("message") or e)
    except (ValueError, AttributeError):
        return e.body.decode("utf-8", "replace") or str(e)


async def relay_exec(browser: WebSocket, api: BackendSocket) -> None:
    """Browser text messages become stdin (each a line); the pod's stdout and stderr come
    back as {"stream", "data"} and the outcome as {"exit", "message"} (the error channel's
    Status: Success, or NonZeroExitCode with the code)."""

    async def to_browser() -> None:
        while True:
            message = await api.receive()
            if message is None:
                return
            if isinstance(message, str) or not message:
                continue
            channel, data = message[0], message[1:]
            if channel in _STREAMS:
                text = data.decode("utf-8", "replace")
                await browser.send(json.dumps({"stream": _STREAMS[channel], "data": text}))
            elif channel == 3 and data:
                await browser.send(json.dumps(_outcome(data)))

    async def to_api() -> None:
        while True:
            message = await browser.receive()
            if message is None:
                if api.subprotocol == "v5.channel.k8s.io":
                    with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await api.send(b"\xff\x00")  # v5: close stdin
                return
            data = message.encode() if isinstance(message, str) else message
            await api.send(b"\x00" + data)

    async with trio.open_nursery() as nursery:

        async def then_cancel(fn: Any) -> None:
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await fn()
            nursery.cancel_scope.cancel()

        nursery.start_soon(then_cancel, to_browser)
        nursery.start_soon(then_cancel, to_api)


def _outcome(data: bytes) -> dict[str, Any]:
    try:
        status = json.loads(data)
    except ValueError:
        return {"exit": None, "message": data.decode("utf-8", "replace")}
    if status.get("status") == "Success":
        return {"exit": 0, "message": ""}
    code = None
    for cause in (status.get("details") or {}).get("causes") or ():
        if cause.get("reason") == "ExitCode":
            with suppress(TypeError, ValueError):
                code = int(cause.get("message"))
    return {"exit": code, "message": str(status.get("message") or "")}
