"""Shared bench plumbing: start servers, a lean HTTPS/1.1 client, realistic objects, stats."""

from __future__ import annotations

import json
import socket
import ssl
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The repository root, for the launcher the tests use too.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.launch import after, launch, stop


@dataclass
class Server:
    url: str
    host: str
    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop(self.proc)

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


def start(argv: list[str], data_dir: Path, timeout: float = 120.0) -> Server:
    """Run a server that prints '... listening on https://host:port' and wait for it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    marker = "listening on "
    proc, line = launch(argv, data_dir / "server.log", marker, what="server", timeout=timeout)
    url = after(line, marker)
    host, port = url.removeprefix("https://").rsplit(":", 1)
    return Server(url, host, int(port), data_dir, proc)


def start_apiserver(data_dir: Path, *extra: str, timeout: float = 120.0) -> Server:
    """A bare API server. No controller manager makes namespaces' `default` ServiceAccount,
    so the ServiceAccount admission plugin is off unless `extra` enables it."""
    if not any(arg.startswith("--enable-admission-plugins") for arg in extra):
        extra = ("--disable-admission-plugins=ServiceAccount", *extra)
    return start(
        [
            sys.executable,
            "-m",
            "k8slite.cmd.apiserver",
            "--data-dir",
            str(data_dir),
            "--secure-port",
            "0",
            *extra,
        ],
        data_dir,
        timeout,
    )


def tls_context(pki: Path, identity: str = "admin") -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    cert, key = pki / f"client-{identity}.pem", pki / f"client-{identity}.key"
    if cert.exists():
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


class Connection:
    """One keep-alive HTTPS/1.1 connection with as little client overhead as possible."""

    def __init__(self, host: str, port: int, ctx: ssl.SSLContext) -> None:
        raw = socket.create_connection((host, port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = ctx.wrap_socket(raw, server_hostname=host)
        self.host = host
        self.buf = b""

    def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + body)
        return self._response()

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def _response(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {
            k.strip().lower(): v.strip() for k, v in (line.split(b":", 1) for line in lines[1:])
        }
        if b"content-length" in headers:
            return status, self._exactly(int(headers[b"content-length"]))
        return status, self._chunked()

    def _exactly(self, n: int) -> bytes:
        """n body bytes, gathered in a list (appending to bytes would be quadratic)."""
        parts, have = [self.buf[:n]], min(len(self.buf), n)
        self.buf = self.buf[n:]
        while have < n:
            chunk = self.sock.recv(min(1 << 20, n - have))
            if not chunk:
                raise ConnectionError("server closed the connection")
            parts.append(chunk)
            have += len(chunk)
        return b"".join(parts)

    def _chunked(self) -> bytes:
        out = []
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            size_line, self.buf = self.buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            out.append(self._exactly(size))
            self._exactly(2)
            if size == 0:
                return b"".join(out)

    def close(self) -> None:
        self.sock.close()


def realistic_pod(name: str, namespace: str = "default") -> dict[str, Any]:
    """A pod as a Deployment would create it: labels, owner, two containers, env, probes."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": "web", "pod-template-hash": "6b7f8d9c5d", "tier": "frontend"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-6b7f8d9c5d",
                    "uid": "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "busybox:1.35",
                    "command": ["httpd", "-f", "-p", "8080"],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "env": [
                        {"name": "MODE", "value": "production"},
                        {
                            "name": "POD_NAME",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                        },
                    ],
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "64Mi"},
                        "limits": {"cpu": "500m", "memory": "128Mi"},
                    },
                    "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 5},
                },
                {
                    "name": "sidecar",
                    "image": "busybox:1.35",
                    "command": ["sleep", "3600"],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                },
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def emit(figures: dict[str, Any]) -> None:
    """The last line of every bench: its figures as one JSON object."""
    print(json.dumps(figures, sort_keys=True), flush=True)
