"""The component base's serving: health checks, /metrics, /configz and client identities
over real HTTPS (and plain HTTP) on 127.0.0.1."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio
from cryptography import x509
from prometheus_client import CollectorRegistry, Counter

from k8slite import pki
from k8slite.component.serving import (
    PING,
    Check,
    ComponentServer,
    Request,
    Response,
    ServingOptions,
    serve,
)


@dataclass
class ExampleConfig:
    node_monitor_period: float = 5.0
    pki_dir: Path = Path("/tmp/pki")
    controllers: list[str] = field(default_factory=lambda: ["*"])


def _client(pki_dir: Path, identity: str | None = None) -> httpx.AsyncClient:
    ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.pem"))
    if identity is not None:
        ctx.load_cert_chain(pki_dir / f"client-{identity}.pem", pki_dir / f"client-{identity}.key")
    return httpx.AsyncClient(verify=ctx, trust_env=False)


async def _whoami(req: Request) -> Response:
    user = req.user
    return Response(200, f"{user.name} {','.join(user.groups)}".encode() if user else b"nobody")


async def test_checks_metrics_configz_and_client_identity(tmp_path: Path) -> None:
    pki.ensure_pki(tmp_path)
    registry = CollectorRegistry()
    Counter("example_requests", "Requests seen.", registry=registry).inc(3)
    state = {"synced": False}
    synced = Check("informer-sync", lambda: None if state["synced"] else "caches not synced")
    options = ServingOptions(
        "127.0.0.1",
        0,
        tls_cert_file=tmp_path / "server.pem",
        tls_private_key_file=tmp_path / "server.key",
        client_ca_file=tmp_path / "ca.pem",
    )
    app = ComponentServer(
        checks={"/healthz": (PING,), "/livez": (PING,), "/readyz": (PING, synced)},
        registry=registry,
        configz={"componentconfig": ExampleConfig},
        routes={"/whoami": _whoami},
        authorize=options.authorizer(),
    )
    async with trio.open_nursery() as nursery:
        url, port = await nursery.start(serve, app, options)
        assert url == f"https://127.0.0.1:{port}"
        async with _client(tmp_path) as anonymous, _client(tmp_path, "admin") as admin:
            # Health is open to callers without a certificate; the rest is not.
            r = await anonymous.get(f"{url}/healthz")
            assert (r.status_code, r.text) == (200, "ok")
            assert r.headers["content-type"] == "text/plain; charset=utf-8"
            assert (await anonymous.get(f"{url}/livez")).text == "ok"
            r = await anonymous.get(f"{url}/readyz")
            assert r.status_code == 500
            assert r.text == (
                "[+]ping ok\n[-]informer-sync failed: reason withheld\nreadyz check failed\n"
            )
            # One check's reason is shown, to those allowed more than the always-allowed paths.
            assert (await anonymous.get(f"{url}/readyz/informer-sync")).status_code == 403
            r = await admin.get(f"{url}/readyz/informer-sync")
            assert (r.status_code, r.text) == (500, "internal server error: caches not synced\n")
            r = await anonymous.get(f"{url}/readyz?exclude=informer-sync")
            assert (r.status_code, r.text) == (200, "ok")
            assert (await anonymous.get(f"{url}/metrics")).status_code == 403
            assert (await anonymous.get(f"{url}/whoami")).status_code == 403
            state["synced"] = True
            r = await anonymous.get(f"{url}/readyz?verbose")
            assert (r.status_code, r.text) == (
                200,
                "[+]ping ok\n[+]informer-sync ok\nreadyz check passed\n",
            )
            assert (await admin.get(f"{url}/readyz/informer-sync")).text == "ok"
            assert (await admin.get(f"{url}/readyz/nope")).status_code == 404
            # The verified certificate's user and groups reach the handler.
            r = await admin.get(f"{url}/whoami")
            assert r.text == "admin system:masters,system:authenticated"
            r = await admin.get(f"{url}/metrics")
            assert r.status_code == 200
            assert "example_requests_total 3.0" in r.text
            r = await admin.get(f"{url}/configz")
            assert r.json() == {
                "componentconfig": {
                    "nodeMonitorPeriod": 5.0,
                    "pkiDir": "/tmp/pki",
                    "controllers": ["*"],
                }
            }
            assert (await admin.get(f"{url}/nope")).status_code == 404
            r = await admin.post(f"{url}/healthz")
            assert r.status_code == 405
        nursery.cancel_scope.cancel()


async def test_self_signed_when_no_certificate_is_given(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        url, port = await nursery.start(serve, ComponentServer(), ServingOptions("127.0.0.1", 0))
        # No client CA: every endpoint is open, and the serving pair is a self-signed one.
        async with httpx.AsyncClient(verify=False, trust_env=False) as client:
            assert (await client.get(f"{url}/healthz")).text == "ok"
            assert (await client.get(f"{url}/metrics")).status_code == 404  # no registry
        der = await trio.to_thread.run_sync(ssl.get_server_certificate, ("127.0.0.1", port))
        cert = x509.load_pem_x509_certificate(der.encode())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "127.0.0.1" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
        assert cert.issuer != cert.subject
        nursery.cancel_scope.cancel()


async def test_plain_http_and_a_stream_ended_by_the_client(tmp_path: Path) -> None:
    closed = trio.Event()

    async def forever(req: Request) -> Response:
        async def lines() -> AsyncIterator[bytes]:
            try:
                yield b"first\n"
                await trio.sleep_forever()
            finally:
                closed.set()

        return Response(200, lines())

    app = ComponentServer(checks={"/healthz": (PING,)}, routes={"/follow": forever})
    options = ServingOptions("127.0.0.1", 0, secure=False)
    async with trio.open_nursery() as nursery:
        url, port = await nursery.start(serve, app, options)
        assert url == f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(trust_env=False) as client:
            assert (await client.get(f"{url}/healthz")).text == "ok"
            assert (await client.get(f"{url}/livez")).status_code == 404
            async with client.stream("GET", f"{url}/follow") as r:
                assert r.status_code == 200
                async for chunk in r.aiter_bytes():
                    assert chunk == b"first\n"
                    break
        # The client went away: the stream's generator is closed, not left running.
        with trio.fail_after(30):
            await closed.wait()
        nursery.cancel_scope.cancel()


def test_self_signed_pair_chains_to_its_own_ca(tmp_path: Path) -> None:
    cert_path, key_path = pki.self_signed(tmp_path, "example-host")
    leaf, ca = x509.load_pem_x509_certificates(cert_path.read_bytes())
    leaf.verify_directly_issued_by(ca)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "example-host" in names.get_values_for_type(x509.DNSName)
    assert key_path.stat().st_mode & 0o077 == 0
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_path, key_path)
