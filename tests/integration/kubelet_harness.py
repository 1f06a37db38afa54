"""Kubelet test plumbing: a kubelet child process per node, pods bound to it, polling helpers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

from k8slite import pki
from tests.conftest import TEST_NODES, ServerHandle, kubectl_path
from tests.launch import launch, stop
from tests.polling import wait_for

T = TypeVar("T")
BUSYBOX = "busybox:1.35"
PAUSE = "k8slite/pause:1.0"
# Short periods so tests see heartbeats, restarts and back-offs within seconds.
FAST_FLAGS = (
    "--node-status-update-frequency",
    "1s",
    "--node-lease-renew-interval",
    "1s",
    "--sync-frequency",
    "5s",
    "--pleg-relist-period",
    "0.5s",
    "--crashloop-backoff-initial",
    "1s",
    "--crashloop-backoff-max",
    "8s",
)


def docker_problem() -> str | None:
    """Why the Docker tests cannot run here, or None when they can."""
    try:
        import docker
        import docker.errors
    except ImportError:
        return "the docker SDK is not installed"
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as e:  # noqa: BLE001 - whatever the failure, there is no usable engine
        return f"the Docker engine does not answer: {e}"
    try:
        missing = []
        for image in (BUSYBOX, PAUSE):
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                missing.append(image)
    finally:
        client.close()
    return f"images {', '.join(missing)} are missing: run hack/build-images" if missing else None


def unique_node(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


class KubeletProcess:
    """A k8slite-kubelet child process for one node of a test API server."""

    def __init__(
        self, server: ServerHandle, node: str, runtime: str, workdir: Path, *extra: str
    ) -> None:
        self.server = server
        self.node = node
        self.runtime = runtime
        self.workdir = workdir
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.healthz_port = 0
        # The node identity, once the PKI has a certificate for it.
        pki.ensure_pki(server.pki, nodes=[*TEST_NODES, node])
        self.kubeconfig = server.kubeconfig_for(f"node-{node}")

    def start(self, timeout: float = 60.0) -> None:
        # Again at every (re)start: once, a restarted kubelet found its serving certificate
        # gone from the module's PKI directory (cause not found; nothing in the suite
        # deletes it). Only missing or unfit files are written.
        pki.ensure_pki(self.server.pki, nodes=[*TEST_NODES, self.node])
        args = [
            sys.executable,
            "-m",
            "k8slite.cmd.kubelet",
            "--node-name",
            self.node,
            "--runtime",
            self.runtime,
            "--kubeconfig",
            str(self.kubeconfig),
            "--pki-dir",
            str(self.server.pki),
            "--root-dir",
            str(self.workdir / "root"),
            "--port",
            "0",
            "--healthz-port",
            "0",
            *FAST_FLAGS,
            *self.extra,
        ]
        self.proc, line = launch(
            args, self.workdir / "kubelet.log", " ready: ", what="kubelet", timeout=timeout
        )
        self.port = int(
            line.split("API listening on https://", 1)[1].split(",")[0].rsplit(":", 1)[1]
        )
        self.healthz_port = int(line.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, 20)
        self.proc = None

    def log_text(self) -> str:
        path = self.workdir / "kubelet.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def running_kubelet(
    server: ServerHandle, node: str, runtime: str, workdir: Path, *extra: str
) -> Iterator[KubeletProcess]:
    kubelet = KubeletProcess(server, node, runtime, workdir, *extra)
    kubelet.start()
    try:
        yield kubelet
    finally:
        kubelet.stop()


@contextmanager
def kubelet_of_its_own(
    server: ServerHandle, node: str, runtime: str, workdir: Path, *extra: str
) -> Iterator[KubeletProcess]:
    """A kubelet of `runtime` for a test module (Docker: on a pod network of its own).

    On the way out its pods are deleted and waited for, its Node and Lease removed, and what
    its runtime still runs (containers and network, or processes) removed: nothing of it
    lingers for the next module, even after a failed start.
    """
    network = f"k8slite-t-{node}"
    flags = ("--docker-network", network, *extra) if runtime == "docker" else extra
    kubelet = KubeletProcess(server, node, runtime, workdir, *flags)
    try:
        kubelet.start()
        yield kubelet
    finally:
        if kubelet.proc is not None:
            retire_node(server, node)
            wait_idle(kubelet)
        kubelet.stop()
        if runtime == "docker":
            remove_docker_leftovers([node], network)
        else:
            remove_process_leftovers(workdir)


def retire_node(server: ServerHandle, node: str, timeout: float = 60.0) -> None:
    """Delete the node's pods (its kubelet still running), then its Node and Lease.

    Tests share the session API server: nothing of a finished kubelet may linger there for
    a scheduler or controller test to find.
    """
    with server.client() as api:
        pods = api.get("/api/v1/pods", params={"fieldSelector": f"spec.nodeName={node}"})
        for pod in pods.json().get("items") or ():
            m = pod["metadata"]
            api.request(
                "DELETE",
                f"/api/v1/namespaces/{m['namespace']}/pods/{m['name']}",
                json={"gracePeriodSeconds": 1},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and api.get(
            "/api/v1/pods", params={"fieldSelector": f"spec.nodeName={node}"}
        ).json().get("items"):
            time.sleep(0.2)
        api.delete(f"/api/v1/nodes/{node}")
        api.delete(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}")


def wait_idle(kubelet: KubeletProcess, timeout: float = 60.0) -> None:
    """Wait until the kubelet has no pod left: its last removals are done.

    Stopping it (and force-removing what is left) in the middle of a removal can leave the
    Docker engine with a stale network endpoint, and the network can then not be removed.
    """
    import ssl

    pki_dir = kubelet.server.pki
    ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.pem"))
    ctx.load_cert_chain(
        str(pki_dir / "client-apiserver-kubelet-client.pem"),
        str(pki_dir / "client-apiserver-kubelet-client.key"),
    )
    with httpx.Client(verify=ctx, trust_env=False, timeout=10) as client:
        wait_for(
            lambda: not client.get(f"https://127.0.0.1:{kubelet.port}/pods").json()["items"],
            timeout,
            interval=0.2,
            what="the kubelet to be idle",
        )


def remove_docker_leftovers(nodes: list[str], network: str | None) -> None:
    """Every container of these nodes, then the pod network: nothing of ours stays."""
    import docker

    from k8slite.kubelet.runtime.docker_network import remove_leftovers

    client = docker.APIClient(timeout=60)
    try:
        remove_leftovers(client, nodes, network)
    finally:
        client.close()


def remove_process_leftovers(workdir: Path) -> None:
    """Kill what the process runtime of a kubelet under workdir still runs."""
    import json

    from k8slite.kubelet.runtime.shim import proc_start

    for state in (workdir / "root" / "process-runtime" / "containers").glob("*/state.json"):
        try:
            data = json.loads(state.read_text())
            # Only the very process the runtime started (a PID may have been reused since).
            if proc_start(int(data["pid"])) == data["pid_start"] != "":
                os.killpg(int(data["pid"]), signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass


class Pods:
    """Pods in one namespace, bound to one node at creation, read back through the API."""

    def __init__(self, api: httpx.Client, namespace: str, node: str) -> None:
        self.api = api
        self.namespace = namespace
        self.node = node

    def create(self, name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, **spec.pop("metadata", {})},
            "spec": {
                "nodeName": self.node,
                "terminationGracePeriodSeconds": 2,
                "containers": containers,
                **spec,
            },
        }
        r = self.api.post(f"/api/v1/namespaces/{self.namespace}/pods", json=body)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def get(self, name: str) -> dict[str, Any] | None:
        r = self.api.get(f"/api/v1/namespaces/{self.namespace}/pods/{name}")
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def status(self, name: str) -> dict[str, Any]:
        pod = self.get(name)
        return (pod or {}).get("status") or {}

    def container(self, name: str, container: str, init: bool = False) -> dict[str, Any]:
        key = "initContainerStatuses" if init else "containerStatuses"
        for st in self.status(name).get(key) or ():
            if st["name"] == container:
                return st  # type: ignore[no-any-return]
        return {}

    def wait_phase(self, name: str, phase: str, timeout: float = 60.0) -> dict[str, Any]:
        return wait_for(
            lambda: (s := self.status(name)).get("phase") == phase and s,
            timeout,
            what=f"pod {name} to be {phase}",
        )

    def condition(self, name: str, type_: str) -> str | None:
        for c in self.status(name).get("conditions") or ():
            if c["type"] == type_:
                return str(c["status"])
        return None

    def delete(self, name: str, grace: int | None = None) -> None:
        body = {} if grace is None else {"gracePeriodSeconds": grace}
        r = self.api.request(
            "DELETE", f"/api/v1/namespaces/{self.namespace}/pods/{name}", json=body
        )
        assert r.status_code in (200, 404), r.text

    def wait_gone(self, name: str, timeout: float = 60.0) -> None:
        wait_for(lambda: self.get(name) is None, timeout, what=f"pod {name} to be gone")

    def events(self, name: str) -> list[dict[str, Any]]:
        r = self.api.get(
            f"/api/v1/namespaces/{self.namespace}/events",
            params={"fieldSelector": f"involvedObject.name={name}"},
        )
        assert r.status_code == 200, r.text
        return r.json()["items"]  # type: ignore[no-any-return]

    def wait_events(
        self,
        name: str,
        field: str,
        *wanted: Callable[[list[str]], bool] | str,
        timeout: float = 30.0,
    ) -> list[str]:
        """The `field` ("reason", "message") of the pod's events, once every wanted one is
        there: a string present, or a predicate true. The kubelet records events in the
        background, so they can trail the status that the test saw."""

        def ready() -> list[str] | None:
            values = [e[field] for e in self.events(name)]
            ok = all(w(values) if callable(w) else w in values for w in wanted)
            return values if ok else None

        return wait_for(ready, timeout, what=f"events of {name}")


def kubectl(
    server: ServerHandle, *args: str, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig))
    return subprocess.run(
        [str(kubectl_path()), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
