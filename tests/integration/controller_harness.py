"""Controller test harness: controller managers as child processes, and a fake kubelet.

The kubelet and the scheduler are other components, so tests play both: FakeKubelet binds
pods to node names through pods/binding, marks them Running and Ready through the status
subresource, and removes terminating pods (as a kubelet does once containers stop).
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from k8slite.api.meta import now as now_text
from k8slite.client import (
    ApiClient,
    ClientConfig,
    Conflict,
    NotFound,
    SharedInformer,
    WorkQueue,
    load_kubeconfig,
    run_workers,
)
from k8slite.client.resource import NAMESPACES, PODS
from k8slite.component.objects import Obj
from tests.conftest import ServerHandle, kubectl_path
from tests.launch import after, launch, stop

# Leader election keeps upstream's timings (15s/10s/2s) unless a test says otherwise: a
# fresh lease is won at once, and a busy machine never makes a manager lose it mid-test.
FAST_FLAGS = ("--kube-api-qps=200", "--kube-api-burst=400")


def manager_kubeconfig(server: ServerHandle) -> Path:
    """The controller manager's own identity (system:kube-controller-manager)."""
    return server.kubeconfig_for("controller-manager")


@dataclass
class ManagerHandle:
    """A running k8slite-controller-manager child process."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    args: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() not in (None, 0, -signal.SIGKILL):
            # It died on its own: show why, in the failing test's captured output.
            print(
                f"controller manager exited with {self.proc.returncode}:\n"
                + self.log.read_text(errors="replace")[-4000:]
            )
        stop(self.proc)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def metrics(self) -> str:
        # A self-signed serving certificate, as upstream's default.
        with httpx.Client(verify=False, timeout=10) as client:
            return client.get(f"{self.url}/metrics").text

    def is_leader(self) -> bool:
        pattern = r'^leader_election_master_status\{name="kube-controller-manager"\} 1\.0$'
        return re.search(pattern, self.metrics(), re.MULTILINE) is not None


def start_controller_manager(
    server: ServerHandle, *flags: str, name: str = "cm", timeout: float = 60.0
) -> ManagerHandle:
    """Start k8slite-controller-manager against `server`; wait for its 'serving on' line."""
    log = server.data_dir / f"{name}.log"
    args = [
        sys.executable,
        "-m",
        "k8slite.cmd.controller_manager",
        "--kubeconfig",
        str(manager_kubeconfig(server)),
        "--secure-port",
        "0",
        "--bind-address",
        "127.0.0.1",
        *FAST_FLAGS,
        *flags,
    ]
    marker = "serving on "
    proc, line = launch(args, log, marker, what="controller manager", timeout=timeout)
    return ManagerHandle(proc, after(line, marker), log, args)


def admin_config(server: ServerHandle) -> ClientConfig:
    return load_kubeconfig(server.kubeconfig)


def new_namespace_name(prefix: str) -> str:
    return f"{prefix}-{os.urandom(3).hex()}"


async def create_namespace(client: ApiClient, prefix: str) -> str:
    name = new_namespace_name(prefix)
    await client.create(
        NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    return name


def deployment(
    name: str,
    replicas: int = 1,
    image: str = "nginx:1.27",
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> Obj:
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "ports": [{"name": "http", "containerPort": 8080}],
                        }
                    ]
                },
            },
            **spec,
        },
    }


async def kubectl(
    server: ServerHandle, *args: str, check: bool = True, with_stderr: bool = False
) -> str:
    """Run the real kubectl against `server` (admin); its stdout (stderr too on failure, or
    always with `with_stderr`: kubectl prints its warnings there)."""
    result = await trio.run_process(
        [str(kubectl_path()), "--kubeconfig", str(server.kubeconfig), *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    out = result.stdout.decode()
    if check and result.returncode != 0:
        raise AssertionError(
            f"kubectl {' '.join(args)} failed ({result.returncode}): {out}{result.stderr.decode()}"
        )
    return out + (result.stderr.decode() if result.returncode != 0 or with_stderr else "")


async def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str = "condition",
) -> Any:
    """Poll an async or sync predicate until it returns something truthy."""
    last: Any = None
    with trio.move_on_after(timeout):
        while True:
            last = predicate()
            if hasattr(last, "__await__"):
                last = await last
            if last:
                return last
            await trio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


def is_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or ()
    )


def running_pod_status(pod: Obj, ip: str) -> Obj:
    stamp = now_text()
    containers = (pod.get("spec") or {}).get("containers") or []
    conditions = [
        {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp}
        for t in (
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        )
    ]
    return {
        **(pod.get("status") or {}),
        "phase": "Running",
        "hostIP": "10.0.0.1",
        "hostIPs": [{"ip": "10.0.0.1"}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": stamp,
        "conditions": conditions,
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "containerID": f"fake://{pod['metadata']['uid']}/{c['name']}",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": stamp}},
            }
            for c in containers
        ],
    }


class FakeKubelet:
    """Schedules and 'runs' the pods of one namespace on fake nodes.

    Unbound pods are bound to the live nodes in turn; bound pods on live nodes become
    Running and Ready after `ready_delay`; terminating pods on live nodes are removed.
    Pods on nodes in `dead` are left alone, as a vanished node's would be. `never_ready`
    names images whose pods stay Pending (for progress deadline tests).
    """

    def __init__(
        self,
        client: ApiClient,
        namespace: str | None,
        nodes: list[str],
        ready_delay: float = 0.0,
        never_ready: frozenset[str] = frozenset(),
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.nodes = list(nodes)
        self.dead: set[str] = set()
        self.ready_delay = ready_delay
        self.never_ready = never_ready
        self.informer = SharedInformer(client, PODS, namespace=namespace)
        self.queue: WorkQueue[str] = WorkQueue("fake-kubelet", metrics_registry=None)
        self._turn = itertools.count()
        self._ips = itertools.count(1)
        self._seen: dict[str, float] = {}
        key = self.queue.add
        self.informer.add_event_handler(
            lambda p: key(_key(p)), lambda _o, n: key(_key(n)), lambda p: None
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.informer.run)
            await self.informer.wait_synced()
            await nursery.start(run_workers, self.queue, self._sync, 8)
            task_status.started()

    def live_nodes(self) -> list[str]:
        return [n for n in self.nodes if n not in self.dead]

    async def _sync(self, key: str) -> float | None:
        namespace, name = key.split("/", 1)
        pod = self.informer.get(name, namespace)
        if pod is None:
            return None
        node = (pod.get("spec") or {}).get("nodeName")
        try:
            if pod["metadata"].get("deletionTimestamp"):
                if not node or node not in self.dead:
                    await self.client.delete(
                        PODS, name, namespace=namespace, grace_period_seconds=0
                    )
                return None
            if not node:
                return await self._bind(pod)
            if node in self.dead or is_ready(pod):
                return None
            images = {c.get("image") for c in pod["spec"].get("containers") or ()}
            if images & self.never_ready:
                return None
            uid = pod["metadata"]["uid"]
            first = self._seen.setdefault(uid, trio.current_time())
            wait = first + self.ready_delay - trio.current_time()
            if wait > 0:
                return wait
            body = dict(pod)
            n = next(self._ips)
            body["status"] = running_pod_status(pod, f"10.244.{n // 250}.{n % 250 + 1}")
            await self.client.update_status(PODS, body)
        except (NotFound, Conflict):
            return None  # the informer brings the next state
        return None

    async def _bind(self, pod: Obj) -> float | None:
        live = self.live_nodes()
        if not live:
            return 0.2
        node = live[next(self._turn) % len(live)]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod["metadata"]["name"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        await self.client.create(
            PODS, binding, namespace=pod["metadata"]["namespace"], subresource="binding"
        )
        return None


def _key(pod: Obj) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


def pods_of(items: list[Obj], *, active: bool = True) -> list[Obj]:
    """Pods not being deleted (what counts towards replicas)."""
    return [p for p in items if not active or not p["metadata"].get("deletionTimestamp")]
