"""An HTTPS /version server that requires a client certificate, for the PKI's client tests."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

from k8slite import pki


class VersionHandler(BaseHTTPRequestHandler):
    """Answers /version like the API server, recording who the client certificate names."""

    peers: ClassVar[list[tuple[str, list[str]]]] = []

    def do_GET(self) -> None:
        peer = self.connection.getpeercert()  # type: ignore[attr-defined]
        subject = [rdn[0] for rdn in peer["subject"]]
        self.peers.append(
            (
                next(v for k, v in subject if k == "commonName"),
                [v for k, v in subject if k == "organizationName"],
            )
        )
        body = json.dumps(
            {
                "major": "1",
                "minor": "35",
                "gitVersion": "v1.35.0",
                "gitCommit": "test",
                "gitTreeState": "clean",
                "buildDate": "2025-01-01T00:00:00Z",
                "goVersion": "go1.25",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def version_server(pki_dir: Path) -> Iterator[str]:
    """An HTTPS server on an ephemeral loopback port that requires a client certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki_dir / "server.pem", pki_dir / "server.key")
    ctx.load_verify_locations(pki_dir / "ca.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer(("127.0.0.1", 0), VersionHandler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    VersionHandler.peers = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def kubeconfig_for(pki_dir: Path, name: str, url: str, tmp_path: Path) -> Path:
    """A kubeconfig for the PKI's client `name`, pointing at `url`."""
    path = tmp_path / f"{name}.kubeconfig"
    pki.write_kubeconfig(
        path,
        url,
        (pki_dir / "ca.pem").read_bytes(),
        (pki_dir / f"client-{name}.pem").read_bytes(),
        (pki_dir / f"client-{name}.key").read_bytes(),
        name,
    )
    return path
