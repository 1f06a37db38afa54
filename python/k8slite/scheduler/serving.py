"""The scheduler's secure port: /healthz, /livez, /readyz and /metrics over HTTPS."""

from __future__ import annotations

import ipaddress
import logging
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import h11
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

HEALTH_PATHS = ("/healthz", "/livez", "/readyz")
_MAX_REQUEST = 16 * 1024
_READ_TIMEOUT = 10.0


@dataclass
class ServingConfig:
    bind_address: str = "0.0.0.0"
    secure_port: int = 10259
    tls_cert_file: Path | None = None
    tls_private_key_file: Path | None = None
    # When set, paths outside `always_allow` need a client certificate signed by this CA.
    client_ca_file: Path | None = None
    always_allow: tuple[str, ...] = HEALTH_PATHS


def self_signed(host: str = "localhost") -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for `host` and loopback, valid one year, as upstream
    components make for themselves when given no serving certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{host}@{int(now.timestamp())}")])
    sans: list[x509.GeneralName] = [
        x509.DNSName(host),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def server_context(config: ServingConfig) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.tls_cert_file is not None:
        ctx.load_cert_chain(config.tls_cert_file, config.tls_private_key_file)
    else:
        cert, key = self_signed()
        # load_cert_chain reads files only; they live just long enough to be read.
        with tempfile.TemporaryDirectory() as tmp:
            cert_path, key_path = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
            key_path.touch(mode=0o600)
            key_path.write_bytes(key)
            cert_path.write_bytes(cert)
            ctx.load_cert_chain(cert_path, key_path)
    if config.client_ca_file is not None:
        ctx.load_verify_locations(cafile=str(config.client_ca_file))
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


class SecureServer:
    """Health and metrics over HTTPS: a tiny HTTP/1.1 server on Trio, one task per client."""

    def __init__(
        self, config: ServingConfig, registry: CollectorRegistry, ready: Callable[[], bool]
    ) -> None:
        self.config = config
        self.registry = registry
        self.ready = ready

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; reports the port it listens on."""
        ctx = server_context(self.config)
        listeners = await trio.open_ssl_over_tcp_listeners(
            self.config.secure_port, ctx, host=self.config.bind_address
        )
        transport = listeners[0].transport_listener
        assert isinstance(transport, trio.SocketListener)
        port = transport.socket.getsockname()[1]
        task_status.started(port)
        await trio.serve_listeners(self._handle, listeners)

    def _answer(self, path: str, authenticated: bool) -> tuple[int, str, bytes]:
        if (
            self.config.client_ca_file is not None
            and not authenticated
            and path not in self.config.always_allow
        ):
            return 403, "text/plain", b"forbidden: a client certificate is required\n"
        if path in ("/healthz", "/livez"):
            return 200, "text/plain", b"ok"
        if path == "/readyz":
            if self.ready():
                return 200, "text/plain", b"ok"
            return 500, "text/plain", b"informers not synced"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        return 404, "text/plain", b"404 page not found\n"

    async def _handle(self, stream: trio.SSLStream[trio.SocketStream]) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_REQUEST)
        try:
            with trio.move_on_after(_READ_TIMEOUT):
                await stream.do_handshake()
            authenticated = bool(stream.getpeercert())
            while True:
                event = await self._next_event(conn, stream)
                if not isinstance(event, h11.Request):
                    return
                while not isinstance(
                    await self._next_event(conn, stream),
                    h11.EndOfMessage | h11.ConnectionClosed | None,
                ):
                    pass  # drain a body nobody asked for
                path = event.target.decode("latin-1").split("?", 1)[0]
                code, ctype, body = self._answer(path, authenticated)
                if event.method not in (b"GET", b"HEAD"):
                    code, ctype, body = 405, "text/plain", b"method not allowed\n"
                headers = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
                data = conn.send(h11.Response(status_code=code, headers=headers)) or b""
                if event.method != b"HEAD":
                    data += conn.send(h11.Data(data=body)) or b""
                data += conn.send(h11.EndOfMessage()) or b""
                await stream.send_all(data)
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            h11.RemoteProtocolError,
            ssl.SSLError,
        ):
            return
        finally:
            with trio.move_on_after(1):
                await stream.aclose()

    @staticmethod
    async def _next_event(
        conn: h11.Connection, stream: trio.SSLStream[trio.SocketStream]
    ) -> object | None:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            with trio.move_on_after(_READ_TIMEOUT):
                conn.receive_data(bytes(await stream.receive_some(_MAX_REQUEST)))
                continue
            return None
