"""Test plumbing for the proxy: network namespaces, in-namespace sockets, backends, a proxy."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import trio

from k8slite import pki
from tests.conftest import ServerHandle
from tests.launch import REPO

T = TypeVar("T")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def require_netns() -> None:
    """Skip unless we may create network namespaces and have the tools to."""
    if os.geteuid() != 0:
        pytest.skip("proxy tests need root (network namespaces, routes, nftables)")
    for tool in ("ip",):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found; run hack/install-deps")


def require_nft() -> None:
    if shutil.which("nft") is None:
        pytest.skip("nft not found; run hack/install-deps (installs nftables)")


class NetNS:
    """A network namespace of the test's own. Everything the proxy does inside it (routes,
    nftables, listeners) disappears with it, and no packet sent inside it can leave it:
    it has only a loopback device."""

    def __init__(self) -> None:
        self.name = f"k8slite-test-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        try:
            self.ip("link", "set", "lo", "up")
        except BaseException:
            self.delete()
            raise

    def ip(self, *args: str) -> str:
        done = subprocess.run(
            ["ip", "-n", self.name, *args], check=True, capture_output=True, text=True
        )
        return done.stdout

    def add_address(self, cidr: str) -> None:
        """An extra address on loopback, standing in for the node's own IP."""
        self.ip("addr", "add", cidr, "dev", "lo")

    def exec_argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def socket(
        self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM
    ) -> trio.socket.SocketType:
        """A socket that lives in this namespace (it stays there whatever thread uses it).

        setns() switches only the calling thread, and only around the socket() call, which
        does not yield to Trio, so nothing else runs inside the namespace meanwhile.
        """
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if _libc.setns(target, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the test namespace failed")
            try:
                sock = socket.socket(family, type)
            finally:
                if _libc.setns(home, _CLONE_NEWNET) != 0:
                    # Carrying on in the wrong namespace would be far worse than stopping.
                    os._exit(70)
        finally:
            os.close(home)
            os.close(target)
        return trio.socket.from_stdlib_socket(sock)

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False)


# ------------------------------------------------------------------------ clients


async def fetch(
    ns: NetNS, ip: str, port: int, *, source: str | None = None, timeout: float = 5.0
) -> str:
    """Connect from inside `ns`, read the backend's greeting line."""
    sock = ns.socket()
    with sock, trio.fail_after(timeout):
        if source:
            await sock.bind((source, 0))
        await sock.connect((ip, port))
        data = b""
        while b"\n" not in data:
            chunk = await sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.decode().strip()


async def refused(ns: NetNS, ip: str, port: int) -> bool:
    """True if the connection is refused or reset (never a timeout: that fails the test)."""
    try:
        reply = await fetch(ns, ip, port, timeout=3.0)
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    return reply == ""


async def udp_ask(ns: NetNS, ip: str, port: int, timeout: float = 2.0) -> str | None:
    sock = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        await sock.connect((ip, port))
        await sock.send(b"who?")
        with trio.move_on_after(timeout):
            try:
                return (await sock.recv(4096)).decode().strip()
            except ConnectionRefusedError:
                return None
    return None


async def http_get(ns: NetNS, host: str, port: int, path: str) -> tuple[int, str]:
    sock = ns.socket()
    with sock, trio.fail_after(10):
        await sock.connect((host, port))
        await sock.send(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := await sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


async def eventually(
    check: Callable[[], Awaitable[T]], timeout: float = 15.0, what: str = "condition"
) -> T:
    """Retry `check` until it returns something truthy without raising."""
    last: BaseException | None = None
    with trio.move_on_after(timeout):
        while True:
            try:
                result = await check()
                if result:
                    return result
            except (OSError, trio.TooSlowError, AssertionError) as e:
                last = e
            await trio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last error: {last!r}")


# ----------------------------------------------------------------------- backends


async def serve_backend(
    ns: NetNS,
    ip: str,
    port: int,
    name: str,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A TCP backend in `ns` that greets with its name and then echoes what it gets."""
    sock = ns.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    await sock.bind((ip, port))
    sock.listen(128)

    async def handle(conn: trio.socket.SocketType) -> None:
        with conn:
            try:
                await conn.send(f"{name}\n".encode())
                while data := await conn.recv(65536):
                    await conn.send(data)
            except OSError:
                pass

    with sock:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                conn, _ = await sock.accept()
                nursery.start_soon(handle, conn)


async def serve_udp_backend(
    ns: NetNS,
    ip: str,
    port: int,
    name: str,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    sock = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind((ip, port))
    with sock:
        task_status.started()
        while True:
            _, peer = await sock.recvfrom(4096)
            await sock.sendto(name.encode(), peer)


async def relay_api(
    ns: NetNS,
    target: tuple[str, int],
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Make the host's API server reachable at 127.0.0.1:<port> inside `ns`."""
    listener = ns.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(64)

    async def pump(src: trio.socket.SocketType, dst: trio.socket.SocketType) -> None:
        try:
            while data := await src.recv(65536):
                sent = 0
                while sent < len(data):
                    sent += await dst.send(data[sent:])
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    async def handle(conn: trio.socket.SocketType) -> None:
        upstream = trio.socket.socket()
        with conn, upstream:
            try:
                await upstream.connect(target)
            except OSError:
                return
            async with trio.open_nursery() as n:
                n.start_soon(pump, conn, upstream)
                n.start_soon(pump, upstream, conn)

    with listener:
        async with trio.open_nursery() as nursery:
            task_status.started(listener.getsockname()[1])
            while True:
                conn, _ = await listener.accept()
                nursery.start_soon(handle, conn)


# -------------------------------------------------------------------------- proxy


def proxy_kubeconfig(server: ServerHandle, url: str, path: Path) -> Path:
    """The kube-proxy identity's kubeconfig, pointing at `url`."""
    cert, key = server.cert("proxy")
    pki.write_kubeconfig(
        path, url, server.ca.read_bytes(), Path(cert).read_bytes(), Path(key).read_bytes(), "proxy"
    )
    return path


class ProxyProcess:
    """A k8slite-proxy child process, optionally inside a network namespace."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv = argv
        self.log = log
        self.proc: trio.Process | None = None
        self.lines: list[str] = []

    @classmethod
    def command(cls, kubeconfig: Path, mode: str, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "k8slite.cmd.proxy",
            "--kubeconfig",
            str(kubeconfig),
            "--proxy-mode",
            mode,
            "--metrics-bind-address",
            "127.0.0.1:0",
            "--healthz-bind-address",
            "127.0.0.1:0",
            "--hostname-override",
            "node1",
            "--min-sync-period",
            "50ms",
            *extra,
        ]

    async def start(self, timeout: float = 30.0) -> None:
        """Start it and wait for its "ready" line (the first sync is done)."""
        with self.log.open("ab") as log:
            self.proc = await trio.lowlevel.open_process(
                self.argv, stdout=subprocess.PIPE, stderr=log, cwd=REPO
            )
        assert self.proc.stdout is not None
        buf = b""
        with trio.move_on_after(timeout):
            while True:
                chunk = await self.proc.stdout.receive_some(4096)
                if not chunk:
                    break
                buf += chunk
                self.lines = buf.decode(errors="replace").splitlines()
                if any(" ready " in line for line in self.lines):
                    return
        await self.stop()
        raise RuntimeError(f"k8slite-proxy did not get ready; log:\n{self.log.read_text()}")

    def address(self, what: str) -> tuple[str, int]:
        """Where "metrics" or "healthz" listens, from the proxy's own report."""
        for line in self.lines:
            if line.startswith(f"k8slite-proxy {what} on http://"):
                host, port = line.rsplit("http://", 1)[1].rsplit(":", 1)
                return host, int(port)
        raise LookupError(what)

    async def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(15):
                await self.proc.wait()
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode
