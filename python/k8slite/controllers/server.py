"""The controller manager's own HTTPS endpoint: /healthz and Prometheus /metrics."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import socket
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
HEALTH_PATHS = frozenset({"/healthz", "/livez", "/readyz"})


@dataclass
class ServingConfig:
    bind_address: str = "0.0.0.0"
    secure_port: int = 10257
    tls_cert_file: Path | None = None
    tls_private_key_file: Path | None = None


def self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """A throwaway serving certificate, as upstream makes when given no --tls-cert-file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{host}@controller-manager")])
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName(host),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "serving.pem", directory / "serving.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def health_app(registry: CollectorRegistry) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """A bare ASGI app: health checks answer ok, /metrics the registry."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        if path in HEALTH_PATHS:
            status, ctype, body = 200, "text/plain; charset=utf-8", b"ok"
        elif path == "/metrics":
            status, ctype, body = 200, CONTENT_TYPE_LATEST, generate_latest(registry)
        else:
            status, ctype, body = 404, "text/plain; charset=utf-8", b"404 page not found\n"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", ctype.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


async def serve_health(
    config: ServingConfig,
    registry: CollectorRegistry,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; reports the URL it listens on."""
    with tempfile.TemporaryDirectory(prefix="k8slite-cm-") as tmp:
        hc = HypercornConfig()
        hc.bind = [f"{config.bind_address}:{config.secure_port}"]
        if config.tls_cert_file and config.tls_private_key_file:
            hc.certfile, hc.keyfile = str(config.tls_cert_file), str(config.tls_private_key_file)
        else:
            cert, key = self_signed(Path(tmp), socket.gethostname())
            hc.certfile, hc.keyfile = str(cert), str(key)
        hc.accesslog = None
        hc.errorlog = log
        hc.graceful_timeout = 1
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(serve, health_app(registry), hc)
            port = int(binds[0].rsplit(":", 1)[1])
            host = (
                config.bind_address if config.bind_address not in ("0.0.0.0", "::") else "127.0.0.1"
            )
            task_status.started(f"https://{host}:{port}")
