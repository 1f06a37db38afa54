"""Kubeconfig loading: the server, credentials and TLS context a client needs."""

from __future__ import annotations

import base64
import os
import platform
import ssl
import sys
import tempfile
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from k8slite import __version__

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


def default_user_agent() -> str:
    """client-go's shape: <program>/<version> (<os>/<arch>) <suffix>."""
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "k8slite"
    machine = platform.machine().lower()
    arch = _ARCH.get(machine, machine)
    return f"{program or 'k8slite'}/{__version__} ({platform.system().lower()}/{arch}) k8slite"


@dataclass
class ClientConfig:
    """How to reach and authenticate to an API server, and how hard to push it."""

    server: str
    ssl_context: ssl.SSLContext | None = None
    # Client-side token bucket, like client-go's rest.Config QPS/Burst; qps <= 0 disables it.
    qps: float = 50.0
    burst: int = 100
    user_agent: str = field(default_factory=default_user_agent)
    # Seconds for connect/read/write of ordinary requests; watches set their own read timeout.
    timeout: float = 30.0
    token: str | None = None
    # The kubeconfig context's namespace, for callers that want a default.
    namespace: str = "default"
    http2: bool = False
    # HTTP/1.1: ordinary (not streamed) requests in flight at once; more wait their turn.
    # Each holds a connection of its own, and httpcore's pool scans every connection for
    # every queued request each time one starts or ends, so a burst of a few hundred (a
    # DaemonSet's slow-start batch of 128) cost more CPU in that scan than in everything
    # else; one API server process gains nothing from more than a few dozen requests of one
    # client at once anyway. HTTP/2 multiplexes one connection and is not capped (hollow
    # nodes' heartbeats would otherwise hold up their pods' status writes).
    max_in_flight: int = 32
    # Attempts after the first one for retryable failures (connection errors, 429, 5xx).
    max_retries: int = 5
    # The cluster's CA bundle (PEM) the kubeconfig trusts, for components that publish it.
    ca_data: bytes | None = None
    # A file holding the bearer token, re-read now and then as it is rotated (in-cluster).
    token_file: Path | None = None
    # The client certificate and key files a kubeconfig names (not embedded data): loaded
    # again into ssl_context when they change, as client-go's cert rotation does, so a
    # kubelet's rotated certificate (kubelet-client-current.pem) is used for new connections.
    client_cert_file: Path | None = None
    client_key_file: Path | None = None


class KubeconfigError(ValueError):
    """The kubeconfig is missing, malformed or names a context/cluster/user it lacks."""


# In a pod: where the kubelet puts the account's credentials, and the API's address.
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# client-go re-reads a token file this often, so a rotated token is picked up.
TOKEN_FILE_PERIOD = 60.0


class InClusterError(KubeconfigError):
    """Not running in a pod: no KUBERNETES_SERVICE_HOST/PORT or no token file."""


def in_cluster_config(directory: Path = SERVICE_ACCOUNT_DIR) -> ClientConfig:
    """client-go's rest.InClusterConfig: the `kubernetes` Service and the pod's token."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise InClusterError(
            "unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and "
            "KUBERNETES_SERVICE_PORT must be defined"
        )
    token_file = directory / "token"
    try:
        token = token_file.read_text().strip()
    except OSError as e:
        raise InClusterError(f"cannot read the service account token: {e}") from e
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca_file = directory / "ca.crt"
    ca_data = None
    try:
        ca_data = ca_file.read_bytes()
        ctx.load_verify_locations(cadata=ca_data.decode())
    except (OSError, ssl.SSLError):
        # As client-go: without a readable CA the system roots are used.
        ca_data = None
    try:
        namespace = (directory / "namespace").read_text().strip() or "default"
    except OSError:
        namespace = "default"
    if ":" in host:
        host = f"[{host}]"
    return ClientConfig(
        server=f"https://{host}:{port}",
        ssl_context=ctx,
        token=token,
        namespace=namespace,
        ca_data=ca_data,
        token_file=token_file,
    )


class FileTokenAuth(httpx.Auth):
    """Bearer auth from a file, re-read every TOKEN_FILE_PERIOD seconds (client-go's
    cached file token source); a failed re-read keeps the last token."""

    def __init__(self, path: Path, token: str | None = None) -> None:
        self.path = path
        self.token = token or ""
        self.read_at = time.monotonic() if token else float("-inf")

    def current(self) -> str:
        now = time.monotonic()
        if now - self.read_at >= TOKEN_FILE_PERIOD:
            try:
                self.token = self.path.read_text().strip() or self.token
            except OSError:
                pass
            self.read_at = now
        return self.token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.current()}"
        yield request


# How often a client certificate file is checked for a change (a stat, no more).
CERT_FILE_PERIOD = 1.0


class ClientCertReloader:
    """Loads a client certificate and key again into an SSL context once their files
    change (a new inode or mtime: a symlink swapped, a file replaced). Connections made
    after that present the new certificate; open ones keep their handshake's."""

    def __init__(self, ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
        self.ctx, self.cert, self.key = ctx, cert, key
        self.seen = self._signature()
        self.checked_at = time.monotonic()

    def _signature(self) -> tuple[int, int, int, int] | None:
        try:
            c, k = self.cert.stat(), self.key.stat()
        except OSError:
            return None
        return (c.st_ino, c.st_mtime_ns, k.st_ino, k.st_mtime_ns)

    def check(self) -> bool:
        """Reload if the files changed since the last look; whether it did."""
        now = time.monotonic()
        if now - self.checked_at < CERT_FILE_PERIOD:
            return False
        self.checked_at = now
        signature = self._signature()
        if signature is None or signature == self.seen:
            return False
        try:
            self.ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError):
            # Half written, or a key that does not match yet: keep the last, look again.
            return False
        self.seen = signature
        return True


def default_kubeconfig_path() -> Path:
    """$KUBECONFIG's first existing entry, else ~/.kube/config (kubectl's lookup order)."""
    for entry in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        if entry and Path(entry).exists():
            return Path(entry)
    return Path.home() / ".kube" / "config"


def load_kubeconfig(
    path: str | os.PathLike[str] | None = None, context: str | None = None
) -> ClientConfig:
    """Read a kubeconfig and build a ClientConfig for `context` (default: current-context)."""
    file = Path(path) if path is not None else default_kubeconfig_path()
    try:
        doc = yaml.safe_load(file.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise KubeconfigError(f"cannot read kubeconfig {file}: {e}") from e
    context_name = context or doc.get("current-context")
    if not context_name:
        raise KubeconfigError(f"{file}: no context given and no current-context set")
    ctx = _named(doc, "contexts", "context", context_name, file)
    cluster = _named(doc, "clusters", "cluster", ctx.get("cluster"), file)
    user = _named(doc, "users", "user", ctx.get("user"), file) if ctx.get("user") else {}
    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"{file}: cluster {ctx.get('cluster')!r} has no server")
    base = file.parent
    ssl_context = None
    if str(server).startswith("https://"):
        ssl_context = _ssl_context(cluster, user, base)
    cert_file = key_file = None
    by_file = user.get("client-certificate") and user.get("client-key")
    embedded = user.get("client-certificate-data") or user.get("client-key-data")
    if ssl_context is not None and by_file and not embedded:
        cert_file = _resolve(base, user["client-certificate"])
        key_file = _resolve(base, user["client-key"])
    return ClientConfig(
        server=str(server).rstrip("/"),
        ssl_context=ssl_context,
        token=_token(user, base),
        namespace=ctx.get("namespace") or "default",
        ca_data=_pem(cluster, "certificate-authority-data", "certificate-authority", base),
        client_cert_file=cert_file,
        client_key_file=key_file,
    )


def _named(doc: dict[str, Any], section: str, key: str, name: Any, file: Path) -> dict[str, Any]:
    for entry in doc.get(section) or []:
        if entry.get("name") == name:
            return dict(entry.get(key) or {})
    raise KubeconfigError(f"{file}: no {key} named {name!r}")


def _resolve(base: Path, value: str) -> Path:
    # Relative paths in a kubeconfig are relative to the file itself, as kubectl reads them.
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _pem(entry: dict[str, Any], data_key: str, file_key: str, base: Path) -> bytes | None:
    if entry.get(data_key):
        return base64.b64decode(entry[data_key])
    if entry.get(file_key):
        return _resolve(base, entry[file_key]).read_bytes()
    return None


def _token(user: dict[str, Any], base: Path) -> str | None:
    if user.get("token"):
        return str(user["token"])
    if user.get("tokenFile"):
        return _resolve(base, user["tokenFile"]).read_text().strip()
    return None


def _ssl_context(cluster: dict[str, Any], user: dict[str, Any], base: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if cluster.get("insecure-skip-tls-verify"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ca = _pem(cluster, "certificate-authority-data", "certificate-authority", base)
        if ca is not None:
            ctx.load_verify_locations(cadata=ca.decode())
    cert = _pem(user, "client-certificate-data", "client-certificate", base)
    key = _pem(user, "client-key-data", "client-key", base)
    if cert is not None:
        load_client_cert(ctx, cert, key or cert)
    return ctx


def load_client_cert(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """Load an in-memory client certificate and key into `ctx`.

    The ssl module reads certificate chains only from files, so the PEMs go to a private
    (0700) directory, preferably on a memory filesystem, and are removed right after loading.
    """
    shm = "/dev/shm"
    where = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="k8slite-tls-", dir=where) as tmp:
        cert_file = os.path.join(tmp, "client.crt")
        key_file = os.path.join(tmp, "client.key")
        for name, data in ((cert_file, cert_pem), (key_file, key_pem)):
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(cert_file, key_file)
