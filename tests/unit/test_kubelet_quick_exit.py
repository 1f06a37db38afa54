"""A container that has exited by the kubelet's first look is still reported running once.

`kubectl run -it --rm t --image=busybox -- nslookup NAME` waits for the pod to be Running
and Ready before it attaches; nslookup exits in milliseconds, often before the kubelet
inspects the container it just started. The kubelet reports the run it knows happened
(Running, Ready) before the exit, so such a client never waits for a moment it missed.
"""

from __future__ import annotations

import copy
from typing import Any

import trio

from k8slite.kubelet.config import KubeletConfig
from k8slite.kubelet.containers import WorkerEnv
from k8slite.kubelet.podworkers import PodWorker
from k8slite.kubelet.runtime.fake import FakeRuntime


class _StatusRecorder:
    """Stands in for the API client: keeps every status patch the worker sends."""

    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []

    async def patch(self, _resource: Any, _name: str, body: Any, **_: Any) -> dict[str, Any]:
        self.statuses.append(copy.deepcopy(body["status"]))
        rv = str(10 + len(self.statuses))
        return {"metadata": {"uid": "uid-1", "resourceVersion": rv}}


def _pod(**container: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "t", "namespace": "ns", "uid": "uid-1", "resourceVersion": "5"},
        "spec": {
            "nodeName": "n",
            "restartPolicy": "OnFailure",
            "containers": [{"name": "t", "image": "busybox:1.35", **container}],
        },
        "status": {"phase": "Pending"},
    }


def _first_sync(pod: dict[str, Any]) -> list[dict[str, Any]]:
    recorder = _StatusRecorder()
    # Containers of run-to-completion pods exit the moment they start.
    runtime = FakeRuntime("n", completion_seconds=0)

    async def main() -> None:
        env = WorkerEnv(KubeletConfig(node_name="n", runtime="fake"), recorder, runtime)  # type: ignore[arg-type]
        await PodWorker(env, pod).sync()

    trio.run(main)
    return recorder.statuses


def _ready(status: dict[str, Any]) -> str:
    return next(c["status"] for c in status["conditions"] if c["type"] == "Ready")


def test_a_container_gone_before_the_first_look_is_reported_running_then_exited() -> None:
    statuses = _first_sync(_pod())
    assert len(statuses) >= 2, statuses
    ran, final = statuses[0], statuses[-1]
    assert ran["phase"] == "Running"
    assert _ready(ran) == "True"
    assert "running" in ran["containerStatuses"][0]["state"]
    assert ran["containerStatuses"][0]["ready"] is True
    merged = copy.deepcopy(ran)
    for later in statuses[1:]:
        merged.update(later)
    assert merged["phase"] == "Succeeded"
    assert "terminated" in merged["containerStatuses"][0]["state"]
    assert final is not ran


def test_a_probed_container_is_not_reported_ready_unseen() -> None:
    probe = {"exec": {"command": ["true"]}, "periodSeconds": 1}
    statuses = _first_sync(_pod(readinessProbe=probe))
    assert all(
        "running" not in s.get("containerStatuses", [{"state": {}}])[0]["state"] for s in statuses
    ), statuses
