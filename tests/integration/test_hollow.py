"""1,000 hollow nodes in one process: they register, heartbeat, stay Ready and run pods."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import ServerHandle
from tests.launch import REPO, stop
from tests.polling import wait_for

COUNT = 1000
# Short periods keep the test quick; a lease period is how long "stays Ready" is watched.
RENEW = 5.0


@pytest.fixture
def hollow(fresh_apiserver: ServerHandle) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    args = [
        sys.executable,
        "-m",
        "k8slite.cmd.k8slite",
        "hollow-nodes",
        "--count",
        str(COUNT),
        "--kubeconfig",
        str(fresh_apiserver.kubeconfig),
        "--node-lease-renew-interval",
        f"{RENEW}s",
        "--node-status-update-frequency",
        "5s",
        "--node-status-report-frequency",
        "60s",
    ]
    log = (fresh_apiserver.data_dir / "hollow.log").open("ab")
    started = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, cwd=REPO)
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if b"nodes ready" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(180), "hollow nodes did not register in time"
        # How long 1,000 registrations took, for the report (not asserted: see benches/).
        print(f"{COUNT} hollow nodes registered in {time.monotonic() - started:.1f}s")
        yield proc, time.time()
    finally:
        stop(proc, 20)


def _ready(node: dict[str, object]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []  # type: ignore[attr-defined]
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _renewed_after(lease: dict[str, object], when: float) -> bool:
    renew = lease["spec"]["renewTime"]  # type: ignore[index]
    return dt.datetime.fromisoformat(renew).timestamp() > when


def test_thousand_hollow_nodes_register_and_stay_ready(
    fresh_apiserver: ServerHandle, hollow: tuple[subprocess.Popen[bytes], float]
) -> None:
    proc, registered_at = hollow
    with fresh_apiserver.client() as api:
        nodes = api.get("/api/v1/nodes").json()["items"]
        assert len(nodes) == COUNT
        assert all(_ready(n) for n in nodes)
        sample = nodes[0]
        assert sample["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("fake://")
        assert sample["spec"]["podCIDR"].startswith("100.")

        # Every Lease is renewed again after registration: the heartbeat keeps going.
        def all_renewed() -> bool:
            leases = api.get(
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
            ).json()["items"]
            return len(leases) == COUNT and all(
                _renewed_after(lease, registered_at) for lease in leases
            )

        # 1,000 renewals every RENEW seconds: on a loaded 2-core machine a round can take
        # several periods, so the wait is generous (it asserts that they renew, not how fast).
        wait_for(all_renewed, timeout=24 * RENEW, interval=1.0, what="every lease renewed")
        nodes = api.get("/api/v1/nodes").json()["items"]
        assert sum(_ready(n) for n in nodes) == COUNT
        assert proc.poll() is None

        # Pods bound to hollow nodes run at once, with distinct IPs, and go when deleted.
        for i in range(20):
            body = {
                "metadata": {"name": f"p{i}"},
                "spec": {
                    "nodeName": f"hollow-{i * 37}",
                    "containers": [{"name": "c", "image": "busybox:1.35"}],
                },
            }
            r = api.post("/api/v1/namespaces/default/pods", json=body)
            assert r.status_code == 201, r.text

        def running() -> list[dict[str, object]] | None:
            items = api.get("/api/v1/namespaces/default/pods").json()["items"]
            ok = [
                p
                for p in items
                if p["status"].get("phase") == "Running"
                and p["status"]["containerStatuses"][0]["ready"]
            ]
            return items if len(ok) == 20 else None

        items = wait_for(running, timeout=60, what="20 hollow pods running")
        assert len({p["status"]["podIP"] for p in items}) == 20  # type: ignore[index]
        for i in range(20):
            r = api.delete(f"/api/v1/namespaces/default/pods/p{i}")
            assert r.status_code == 200, r.text
        wait_for(
            lambda: not api.get("/api/v1/namespaces/default/pods").json()["items"],
            timeout=60,
            what="the hollow pods to be deleted",
        )


def test_hollow_pod_logs_say_there_is_no_kubelet_api(fresh_apiserver: ServerHandle) -> None:
    # A node without a kubelet endpoint (as hollow nodes register) cannot serve logs.
    with fresh_apiserver.client() as api:
        r = api.post(
            "/api/v1/nodes",
            json={
                "metadata": {"name": "silent"},
                "status": {
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
                },
            },
        )
        assert r.status_code == 201, r.text
        r = api.post(
            "/api/v1/namespaces/default/pods",
            json={
                "metadata": {"name": "quiet"},
                "spec": {"nodeName": "silent", "containers": [{"name": "c", "image": "x:1"}]},
            },
        )
        assert r.status_code == 201, r.text
        r = api.get("/api/v1/namespaces/default/pods/quiet/log")
        assert r.status_code == 503
        assert r.json()["message"] == 'node "silent" has no kubelet endpoint (address and port)'
        r = api.get("/api/v1/namespaces/default/pods/quiet/log", params={"container": "nope"})
        assert r.status_code == 400
        assert r.json()["message"] == "container nope is not valid for pod quiet"
