"""Real single-member etcd processes for tests: loopback, free ports, data dir in tmp.

Plain HTTP, or TLS with client-certificate authentication, using certificates from our own
PKI module (the cluster CA signs etcd's serving certificate and the API server's client one).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from k8slite import pki
from k8slite.freeport import free_port
from k8slite.storage.etcd import EtcdTLS
from tests.launch import stop

ETCD = shutil.which("etcd")
# Watch progress notifications every second (etcd's default is ten minutes), so resumed
# watches move their mark on quickly in tests.
PROGRESS_INTERVAL = "1s"


def need_etcd() -> str:
    if ETCD is None:
        pytest.skip("etcd is not installed (hack/install-deps installs etcd-server)")
    return ETCD


@dataclass
class EtcdProcess:
    """A running etcd member and how to reach it."""

    url: str
    data_dir: Path
    proc: subprocess.Popen[bytes]
    tls: EtcdTLS | None
    args: list[str]

    @property
    def flags(self) -> list[str]:
        """The API server flags that point at this etcd."""
        flags = ["--storage-backend=etcd3", f"--etcd-servers={self.url}"]
        if self.tls is not None:
            flags += [
                f"--etcd-cafile={self.tls.cafile}",
                f"--etcd-certfile={self.tls.certfile}",
                f"--etcd-keyfile={self.tls.keyfile}",
            ]
        return flags

    def client(self) -> httpx.Client:
        verify = self.tls.context() if self.tls is not None else True
        return httpx.Client(base_url=self.url, verify=verify, timeout=10)

    def healthy(self) -> bool:
        try:
            with self.client() as c:
                return bool(c.get("/health").json().get("health") == "true")
        except (httpx.HTTPError, ValueError):
            return False

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def restart(self, timeout: float = 30.0) -> None:
        """Start it again on the same data dir and ports (after kill9 or stop)."""
        self.proc = _spawn(self.args, self.data_dir)
        _wait_healthy(self, timeout)

    def stop(self) -> None:
        stop(self.proc)


def _spawn(args: list[str], data_dir: Path) -> subprocess.Popen[bytes]:
    log = (data_dir.parent / f"{data_dir.name}.log").open("ab")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)


def _wait_healthy(etcd: EtcdProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not etcd.healthy():
        if etcd.proc.poll() is not None:
            raise RuntimeError(f"etcd exited with {etcd.proc.returncode}; see its log")
        if time.monotonic() > deadline:
            etcd.proc.kill()
            raise RuntimeError(f"etcd did not become healthy in {timeout:.0f} s")
        time.sleep(0.1)


def start_etcd(base: Path, *, tls: bool = False, timeout: float = 30.0) -> EtcdProcess:
    """Start etcd with its data in base/member; with tls, certificates in base/pki."""
    etcd = need_etcd()
    base.mkdir(parents=True, exist_ok=True)
    client_tls: EtcdTLS | None = None
    scheme = "http"
    tls_args: list[str] = []
    if tls:
        pki_dir = base / "pki"
        pki.ensure_etcd_pki(pki_dir)
        ca = pki.cert_paths(pki_dir, "ca")[0]
        server_cert, server_key = pki.cert_paths(pki_dir, pki.ETCD_SERVER)
        client_cert, client_key = pki.cert_paths(pki_dir, pki.ETCD_CLIENT)
        client_tls = EtcdTLS(ca, client_cert, client_key)
        scheme = "https"
        tls_args = [
            f"--cert-file={server_cert}",
            f"--key-file={server_key}",
            f"--trusted-ca-file={ca}",
            "--client-cert-auth",
        ]
    data_dir = base / "member"
    for _ in range(3):  # a free port may be taken between choosing it and etcd binding it
        client_url = f"{scheme}://127.0.0.1:{free_port()}"
        peer_url = f"http://127.0.0.1:{free_port()}"
        args = [
            etcd,
            "--name=test",
            f"--data-dir={data_dir}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=test={peer_url}",
            f"--experimental-watch-progress-notify-interval={PROGRESS_INTERVAL}",
            "--log-level=warn",
            "--logger=zap",
            *tls_args,
        ]
        proc = _spawn(args, data_dir)
        server = EtcdProcess(client_url, data_dir, proc, client_tls, args)
        try:
            _wait_healthy(server, timeout)
        except RuntimeError:
            stop(proc)
            shutil.rmtree(data_dir, ignore_errors=True)
            continue
        return server
    raise RuntimeError(f"etcd would not start; see {data_dir.parent}/member.log")


def cluster_flags(members: list[EtcdProcess]) -> list[str]:
    """The API server flags that point at every member of a cluster (plain HTTP)."""
    return ["--storage-backend=etcd3", "--etcd-servers=" + ",".join(m.url for m in members)]


def start_etcd_cluster(base: Path, size: int = 3, *, timeout: float = 30.0) -> list[EtcdProcess]:
    """A cluster of `size` members on loopback (plain HTTP), data in base/etcd-N/member.

    Each member's args name the whole cluster, so `restart()` after kill9 brings one back
    from its data dir into the same cluster.
    """
    etcd = need_etcd()
    for _ in range(3):  # a free port may be taken between choosing it and etcd binding it
        names = [f"etcd-{i + 1}" for i in range(size)]
        clients = {name: f"http://127.0.0.1:{free_port()}" for name in names}
        peers = {name: f"http://127.0.0.1:{free_port()}" for name in names}
        initial = ",".join(f"{name}={peers[name]}" for name in names)
        token = f"k8slite-test-{base.name}-{free_port()}"
        members = []
        for name in names:
            data_dir = base / name / "member"
            data_dir.parent.mkdir(parents=True, exist_ok=True)
            args = [
                etcd,
                f"--name={name}",
                f"--data-dir={data_dir}",
                f"--listen-client-urls={clients[name]}",
                f"--advertise-client-urls={clients[name]}",
                f"--listen-peer-urls={peers[name]}",
                f"--initial-advertise-peer-urls={peers[name]}",
                f"--initial-cluster={initial}",
                "--initial-cluster-state=new",
                f"--initial-cluster-token={token}",
                f"--experimental-watch-progress-notify-interval={PROGRESS_INTERVAL}",
                "--log-level=warn",
                "--logger=zap",
            ]
            members.append(EtcdProcess(clients[name], data_dir, _spawn(args, data_dir), None, args))
        try:
            for member in members:
                _wait_healthy(member, timeout)
        except RuntimeError:
            for member in members:
                stop(member.proc)
                shutil.rmtree(member.data_dir, ignore_errors=True)
            continue
        return members
    raise RuntimeError(f"an etcd cluster would not start; see the logs in {base}")
