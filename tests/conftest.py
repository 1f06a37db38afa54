"""Shared fixtures: real API servers (child processes on ephemeral HTTPS ports) and clients."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from k8slite import pki
from tests.etcd_server import start_etcd
from tests.launch import after, launch, stop

BIN = Path(sys.executable).parent


@dataclass
class ServerHandle:
    """A running k8slite-apiserver child process and how to reach it."""

    url: str
    data_dir: Path
    proc: subprocess.Popen[bytes]
    args: list[str] = field(default_factory=list)

    @property
    def pki(self) -> Path:
        return self.data_dir / "pki"

    @property
    def ca(self) -> Path:
        return self.pki / "ca.pem"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (system:masters), pointing at this server's port."""
        return self.kubeconfig_for("admin")

    def kubeconfig_for(self, identity: str) -> Path:
        """A kubeconfig for `identity` ("admin", "scheduler", "node-node1", ...) at our URL."""
        path = self.data_dir / "kubeconfigs" / f"{identity}.kubeconfig"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            cert, key = self.cert(identity)
            pki.write_kubeconfig(
                path,
                self.url,
                self.ca.read_bytes(),
                Path(cert).read_bytes(),
                Path(key).read_bytes(),
                identity,
            )
        return path

    def cert(self, name: str = "admin") -> tuple[str, str]:
        return str(self.pki / f"client-{name}.pem"), str(self.pki / f"client-{name}.key")

    def client(self, name: str = "admin", **kw: object) -> httpx.Client:
        """A synchronous HTTPS client with the named identity's certificate."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(*self.cert(name))
        return httpx.Client(base_url=self.url, verify=ctx, timeout=30, **kw)  # type: ignore[arg-type]

    def stop(self) -> None:
        stop(self.proc)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()


# Node identities every test server's PKI carries.
TEST_NODES = ("node1", "node2")


def start_apiserver(data_dir: Path, *extra: str, timeout: float = 60.0) -> ServerHandle:
    """Start k8slite-apiserver on a free port and wait for its 'listening on' line.

    Without a controller manager no namespace gets its `default` ServiceAccount, so the
    ServiceAccount admission plugin is off unless `extra` enables it.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    if not any(arg.startswith("--enable-admission-plugins") for arg in extra):
        extra = ("--disable-admission-plugins=ServiceAccount", *extra)
    pki.ensure_pki(data_dir / "pki", nodes=TEST_NODES)
    args = [
        sys.executable,
        "-m",
        "k8slite.cmd.apiserver",
        "--data-dir",
        str(data_dir),
        "--secure-port",
        "0",
        *extra,
    ]
    marker = "listening on "
    proc, line = launch(args, data_dir / "apiserver.log", marker, what="apiserver", timeout=timeout)
    return ServerHandle(after(line, marker), data_dir, proc, args)


# Storage backends the REST and watch suites run on (upstream's --storage-backend names).
BACKENDS = ("rocksdb", "etcd3")


@contextmanager
def apiserver_on(backend: str, base: Path, *extra: str) -> Iterator[ServerHandle]:
    """An API server on `backend`: RocksDB in base/data, or a real etcd of its own in base/etcd."""
    etcd = start_etcd(base / "etcd") if backend == "etcd3" else None
    try:
        flags = etcd.flags if etcd is not None else []
        server = start_apiserver(base / "data", *flags, *extra)
        try:
            yield server
        finally:
            server.stop()
    finally:
        if etcd is not None:
            etcd.stop()


@pytest.fixture(scope="session")
def apiserver() -> Iterator[ServerHandle]:
    """One API server shared by the session; tests use their own namespaces or names."""
    tmp = Path(tempfile.mkdtemp(prefix="k8slite-api-"))
    server = start_apiserver(tmp)
    yield server
    server.stop()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def fresh_apiserver(tmp_path: Path) -> Iterator[ServerHandle]:
    """An API server of the test's own, on a new data directory."""
    server = start_apiserver(tmp_path / "data")
    yield server
    server.stop()


@pytest.fixture
def api(apiserver: ServerHandle) -> Iterator[httpx.Client]:
    with apiserver.client() as client:
        yield client


@pytest.fixture
def namespace(api: httpx.Client, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test."""
    base = request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")
    name = (
        "t-"
        + "".join(c for c in base if c.isalnum() or c == "-")[:40].strip("-")
        + "-"
        + os.urandom(3).hex()
    )
    r = api.post("/api/v1/namespaces", json={"metadata": {"name": name}})
    assert r.status_code == 201, r.text
    yield name


def kubectl_path() -> Path:
    return BIN / "kubectl"


@pytest.fixture(scope="module")
def module_apiserver() -> Iterator[ServerHandle]:
    """An API server for one test module, for tests whose components act on everything in
    it (controllers) and so must not share a server with other modules."""
    tmp = Path(tempfile.mkdtemp(prefix="k8slite-mod-"))
    server = start_apiserver(tmp)
    yield server
    server.stop()
    shutil.rmtree(tmp, ignore_errors=True)


# Modules that share something with the whole host: the Docker engine's containers and its
# `k8slite-pods` network, process-runtime pods (they listen on the host's own network),
# `k8slite up` (the service route, the dashboard's default port), network namespaces,
# nftables tables and Chromium. Under pytest-xdist (`make test` runs `-n 2 --dist loadgroup`)
# they all run in one worker, one after another, as they did before the suite was split;
# every other module (API servers, controllers, hollow and fake-runtime kubelets on ephemeral
# ports and temporary directories) goes whole to whichever worker is free. A module may also
# declare the group itself with `pytestmark = pytest.mark.xdist_group("host-network")`.
HOST_MODULES = frozenset(
    {
        "test_controllers_job",
        "test_ephemeral_containers",
        "test_hack_scripts",
        "test_job_docker",
        "test_kopf_operator",
        "test_kubelet_debug",
        "test_kubelet_dns",
        "test_kubelet_docker",
        "test_kubelet_lifecycle",
        "test_kubelet_spdy",
        "test_kubelet_stats",
        "test_kubelet_streaming",
        "test_kubelet_tokens",
        "test_kubelet_volumes_docker",
        "test_logs_follow_restart",
        "test_metrics_server",
        "test_proxy",
        "test_proxy_nftables_kernel",
        "test_proxy_subresources",
        "test_runtime_docker",
        "test_services_e2e",
        "test_storage_cluster",
        "test_tools",
        "test_up",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Every other module is a group of its own, so that its module-scoped fixtures (an API
    # server, a control plane with kubelets) start once, in one worker, not once per worker.
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        module = item.nodeid.split("::", 1)[0]
        host = Path(module).stem in HOST_MODULES
        item.add_marker(pytest.mark.xdist_group("host-network" if host else module))
