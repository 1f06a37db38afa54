"""`k8slite up --ha`: three real etcd members, three API servers behind the local load
balancer, two controller managers and two schedulers, on one machine (fake runtime, no
proxy, to keep it light). One cluster for the module: each test kills one process (kill -9)
and checks that the cluster keeps working with nothing acknowledged lost; the supervisor
restarts what was killed."""

from __future__ import annotations

import json
import os
import signal
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from k8slite import pki
from tests.e2e.cluster import Cluster, start_up, stop_up, up_command
from tests.etcd_server import need_etcd
from tests.integration.test_up import k8slite, running
from tests.polling import wait_for

CONTROL_PLANE = [
    "etcd-1",
    "etcd-2",
    "etcd-3",
    "apiserver-1",
    "apiserver-2",
    "apiserver-3",
    "load-balancer",
    "controller-manager",
    "controller-manager-2",
    "scheduler",
    "scheduler-2",
]
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    need_etcd()
    tmp = tmp_path_factory.mktemp("ha")
    cluster = start_up(up_command(tmp, "--ha", "--no-proxy", "--runtime", "fake"), tmp)
    try:
        yield cluster
    finally:
        assert stop_up(cluster) == 0


def pid_of(cluster: Cluster, name: str) -> int:
    assert cluster.data_dir is not None
    info = json.loads((cluster.data_dir / "cluster.json").read_text())
    return int(info["components"][name]["pid"])


def kill9(cluster: Cluster, name: str) -> int:
    pid = pid_of(cluster, name)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not running(pid), timeout=10, what=f"{name} (pid {pid}) to die")
    return pid


def wait_serving(cluster: Cluster, server: str) -> None:
    """Until the balancer takes an API server (restarted after an earlier test's kill) as
    healthy: its log's last word on that address is "healthy again", not "unhealthy"."""
    assert cluster.data_dir is not None
    log = cluster.data_dir / "logs" / "load-balancer.log"
    address = f"127.0.0.1:{cluster.info['ports'][server]}"

    def healthy() -> bool:
        text = log.read_text(errors="replace")
        return text.rfind(f"{address} is healthy again") >= text.rfind(f"{address} is unhealthy")

    wait_for(healthy, timeout=90, what=f"the balancer to take {server} as healthy")


def etcd_leader(cluster: Cluster) -> str:
    """The member that leads the etcd cluster now, from each member's status."""
    assert cluster.data_dir is not None
    p = cluster.data_dir / "pki"
    ctx = ssl.create_default_context(cafile=str(p / "ca.pem"))
    ctx.load_cert_chain(*pki.cert_paths(p, pki.ETCD_CLIENT))

    def find() -> str | None:
        with httpx.Client(verify=ctx, timeout=5) as c:
            for name in ("etcd-1", "etcd-2", "etcd-3"):
                url = f"https://127.0.0.1:{cluster.info['ports'][name]}/v3/maintenance/status"
                status = c.post(url, json={}).json()
                if status["header"]["member_id"] == status.get("leader"):
                    return name
        return None

    return wait_for(find, timeout=30, what="an etcd leader")


def ready_replicas(cluster: Cluster, name: str) -> int:
    out = cluster.kubectl("get", "deployment", name, "-o", "jsonpath={.status.readyReplicas}")
    return int(out.stdout or 0)


def test_status_lists_every_process(ha: Cluster) -> None:
    assert ha.data_dir is not None
    done = k8slite("status", "--data-dir", str(ha.data_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[5:] if line}
    for name in CONTROL_PLANE:
        assert name in rows, done.stdout
    # Every API server is in the kubernetes Service's endpoints, behind the one address.
    subsets = json.loads(ha.kubectl("get", "endpoints", "kubernetes", "-o", "json").stdout)[
        "subsets"
    ]
    assert {p["port"] for s in subsets for p in s["ports"]} == {
        ha.info["ports"][name] for name in ("apiserver-1", "apiserver-2", "apiserver-3")
    }, subsets


def test_deployment_scale_up_goes_on_across_kill9_of_the_apiserver_in_use(ha: Cluster) -> None:
    name = f"web-{uuid.uuid4().hex[:6]}"
    ha.kubectl("create", "deployment", name, "--image=busybox:1.35", "--replicas=2")
    wait_for(lambda: ready_replicas(ha, name) == 2, timeout=120, what="2 ready replicas")

    # The balancer sends every new connection to the first healthy server: apiserver-1
    # serves kubectl and every component. The scale-up starts, and the controller
    # manager is at work on it through apiserver-1 when that is killed.
    ha.kubectl("scale", "deployment", name, "--replicas=6")
    kill9(ha, "apiserver-1")
    killed = time.monotonic()
    with ha.api() as api:

        def write() -> bool:
            body = {"metadata": {"name": f"after-kill-{uuid.uuid4().hex[:6]}"}}
            return api.post(CONFIGMAPS, json=body).status_code == 201

        wait_for(write, timeout=30, interval=0.05, what="a write through the balancer")
    print(f"first write through the balancer {time.monotonic() - killed:.2f}s after kill -9")

    # The controller manager, scheduler and kubelet (reconnecting through the balancer)
    # carry the scale-up to the end, and a second one after it.
    wait_for(lambda: ready_replicas(ha, name) == 6, timeout=120, what="6 ready replicas")
    ha.kubectl("scale", "deployment", name, "--replicas=8")
    wait_for(lambda: ready_replicas(ha, name) == 8, timeout=120, what="8 ready replicas")
    ha.kubectl("delete", "deployment", name)


class Writer:
    """Creates ConfigMaps through the balancer as fast as it can, in a thread; remembers
    every one acknowledged (201) and counts failures (not acknowledged, so may or may not
    be stored)."""

    def __init__(self, cluster: Cluster, run: str) -> None:
        self.run = run
        self.acked: list[str] = []
        self.failed: list[str] = []  # why each was not acknowledged
        self._stop = threading.Event()
        self._api = cluster.api()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        i = 0
        while not self._stop.is_set():
            name = f"{self.run}-{i}"
            i += 1
            body: dict[str, Any] = {"metadata": {"name": name, "labels": {"run": self.run}}}
            try:
                r = self._api.post(CONFIGMAPS, json=body)
            except httpx.HTTPError as e:
                self.failed.append(type(e).__name__)
                continue
            if r.status_code == 201:
                self.acked.append(name)
            else:
                self.failed.append(str(r.status_code))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        self._api.close()


def test_kill9_of_the_etcd_leader_loses_no_acknowledged_write(ha: Cluster) -> None:
    run = f"w{uuid.uuid4().hex[:6]}"
    writer = Writer(ha, run)
    try:
        wait_for(lambda: len(writer.acked) >= 20, timeout=60, what="20 writes before the kill")
        # The leader: the harder loss (an election before the next commit).
        leader = etcd_leader(ha)
        kill9(ha, leader)
        at_kill = len(writer.acked)
        # Writes continue on the two members left (the supervisor restarts the third).
        wait_for(
            lambda: len(writer.acked) >= at_kill + 50,
            timeout=60,
            what="50 writes after the kill",
        )
    finally:
        writer.stop()
    with ha.api() as api:
        items = api.get(CONFIGMAPS, params={"labelSelector": f"run={run}"}).json()["items"]
    stored = [i["metadata"]["name"] for i in items]
    lost = set(writer.acked) - set(stored)
    print(f"acknowledged {len(writer.acked)}, failed {writer.failed}, stored {len(stored)}")
    assert not lost, f"{len(lost)} acknowledged writes lost: {sorted(lost)[:10]}"
    assert len(stored) == len(set(stored))


class DirectWatcher:
    """A watch on one API server's own port (not through the balancer), in a thread: the
    names of the ConfigMaps of one run it sees ADDED, in order."""

    def __init__(self, cluster: Cluster, server: str, run: str, rv: str) -> None:
        self.added: list[str] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        url = f"https://127.0.0.1:{cluster.info['ports'][server]}"
        self._api = cluster.api()
        self._api.base_url = httpx.URL(url)
        params = {"watch": "1", "resourceVersion": rv, "labelSelector": f"run={run}"}
        self._thread = threading.Thread(target=self._run, args=(params,), daemon=True)
        self._thread.start()

    def _run(self, params: dict[str, str]) -> None:
        try:
            with self._api.stream("GET", CONFIGMAPS, params=params, timeout=None) as r:
                assert r.status_code == 200, r.read()
                for line in r.iter_lines():
                    if self._stop.is_set():
                        return
                    event = json.loads(line) if line else None
                    if event and event["type"] == "ADDED":
                        self.added.append(event["object"]["metadata"]["name"])
        except (httpx.HTTPError, AssertionError, ValueError) as e:
            if not self._stop.is_set():
                self.error = e

    def stop(self) -> None:
        self._stop.set()
        self._api.close()


def test_watchers_on_other_apiservers_see_every_write_once_across_a_kill(ha: Cluster) -> None:
    """A writer through the balancer; watchers on apiserver-2 and apiserver-3 directly;
    apiserver-1 (the balancer's first choice) killed mid-run. Each watcher sees every
    acknowledged write once, in the order acknowledged."""
    run = f"v{uuid.uuid4().hex[:6]}"
    wait_serving(ha, "apiserver-1")
    with ha.api() as api:
        rv = api.get(CONFIGMAPS).json()["metadata"]["resourceVersion"]
    watchers = [DirectWatcher(ha, s, run, rv) for s in ("apiserver-2", "apiserver-3")]
    writer = Writer(ha, run)
    try:
        wait_for(lambda: len(writer.acked) >= 20, timeout=60, what="20 writes before the kill")
        kill9(ha, "apiserver-1")
        at_kill = len(writer.acked)
        wait_for(
            lambda: len(writer.acked) >= at_kill + 50, timeout=60, what="50 writes after the kill"
        )
    finally:
        writer.stop()
    try:
        for w in watchers:
            wait_for(
                lambda w=w: w.error is None and set(writer.acked) <= set(w.added),
                timeout=60,
                what="the watchers to see every acknowledged write",
            )
            assert w.error is None, w.error
            assert len(w.added) == len(set(w.added)), "an event seen twice"
            # Acknowledged writes appear in the order they were acknowledged (the writer is
            # sequential); a write that failed may or may not appear between them.
            assert [n for n in w.added if n in set(writer.acked)] == writer.acked
        print(f"acknowledged {len(writer.acked)}, failed {writer.failed}; watchers agree")
    finally:
        for w in watchers:
            w.stop()


def test_up_ha_again_finds_its_etcd_data(tmp_path: Path) -> None:
    """A second `k8slite up --ha` on the same directory restarts the members from their
    data (same ports, kept in DIR/etcd/ports.json) and finds what the first stored."""
    need_etcd()
    argv = up_command(tmp_path, "--ha", "--no-proxy", "--runtime", "fake")
    first = start_up(argv, tmp_path)
    try:
        first.kubectl("create", "configmap", "kept", "--from-literal=k=v")
    finally:
        assert stop_up(first) == 0
    ports = json.loads((tmp_path / "etcd" / "ports.json").read_text())
    second = start_up(argv, tmp_path)
    try:
        assert second.kubectl("get", "configmap", "kept", "-o", "jsonpath={.data.k}").stdout == "v"
        assert all(second.info["ports"][name] == port for name, port in ports.items())
    finally:
        assert stop_up(second) == 0
