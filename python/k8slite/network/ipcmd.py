"""Running iproute2 and nftables commands from Trio, with errors that say what failed."""

from __future__ import annotations

import json
from typing import Any

import trio


class NetworkError(RuntimeError):
    """A network command failed; the message names the command and what it said."""


async def run(*argv: str, stdin: bytes | None = None) -> str:
    """Run a command; return its stdout, or raise NetworkError with its stderr."""
    try:
        done = await trio.run_process(
            list(argv), stdin=stdin, capture_stdout=True, capture_stderr=True, check=False
        )
    except OSError as e:
        raise NetworkError(f"cannot run {argv[0]}: {e}") from e
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise NetworkError(f"{' '.join(argv)}: {err}")
    return done.stdout.decode()


async def ip(*args: str) -> str:
    return await run("ip", *args)


async def ip_json(*args: str) -> list[dict[str, Any]]:
    """`ip -j ARGS` parsed; an empty answer is an empty list."""
    out = (await run("ip", "-j", *args)).strip()
    return json.loads(out) if out else []


async def bridge_json(*args: str) -> list[dict[str, Any]]:
    out = (await run("bridge", "-j", *args)).strip()
    return json.loads(out) if out else []


async def link_exists(name: str) -> bool:
    try:
        await ip("link", "show", "dev", name)
    except NetworkError:
        return False
    return True


async def ignore_missing(*args: str) -> None:
    """`ip ARGS` for a removal: what is already gone is fine."""
    try:
        await ip(*args)
    except NetworkError as e:
        text = str(e)
        if not any(
            m in text
            for m in ("Cannot find device", "No such", "does not exist", "not found", "ESRCH")
        ):
            raise


def enable_forwarding() -> None:
    """Let this network namespace route between its devices (pods, bridge, uplink)."""
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write("1")
