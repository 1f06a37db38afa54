"""A pod worker that cannot reach the API server for its final status and DELETE says it gave up."""

from __future__ import annotations

import logging
import socket

import pytest
import trio
import trio.testing

from k8slite.client import ApiClient, ClientConfig
from k8slite.kubelet.config import KubeletConfig
from k8slite.kubelet.containers import WorkerEnv
from k8slite.kubelet.podworkers import FINISH_ATTEMPTS, PodWorker
from k8slite.kubelet.runtime.fake import FakeRuntime


def _closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_delete_that_gives_up_says_so(caplog: pytest.LogCaptureFixture) -> None:
    pod = {
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "uid": "uid-1",
            "resourceVersion": "5",
            "deletionTimestamp": "2026-01-01T00:00:00Z",
            "deletionGracePeriodSeconds": 0,
        },
        "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "busybox:1.35"}]},
        "status": {"phase": "Running"},
    }
    runtime = FakeRuntime("n")

    async def main() -> PodWorker:
        config = ClientConfig(server=f"https://127.0.0.1:{_closed_port()}", timeout=5.0)
        async with ApiClient(config) as client:
            env = WorkerEnv(KubeletConfig(node_name="n", runtime="fake"), client, runtime)
            worker = PodWorker(env, pod)
            await worker.run()
            return worker

    caplog.set_level(logging.WARNING, logger="k8slite.kubelet.podworkers")
    # The mock clock jumps over the retries' back-off; the refused connections are real.
    worker = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0.01))
    assert worker.done
    gave_up = [r.getMessage() for r in caplog.records if "Gave up deleting" in r.getMessage()]
    assert len(gave_up) == 1, caplog.text
    assert gave_up[0].startswith("Gave up deleting pod ns/web (uid-1) after stopping")
    assert f"did not answer {FINISH_ATTEMPTS} attempts" in gave_up[0]
    assert "stays Terminating" in gave_up[0]


def test_busy_answers_to_the_final_delete_are_retried(caplog: pytest.LogCaptureFixture) -> None:
    # A starved API server answered a final DELETE 408 (its request body came too late);
    # the worker gave up at once and the pod stayed Terminating for good.
    from k8slite.client.errors import error_for

    pod = {
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "uid": "uid-2",
            "resourceVersion": "5",
            "deletionTimestamp": "2026-01-01T00:00:00Z",
            "deletionGracePeriodSeconds": 0,
        },
        "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "busybox:1.35"}]},
        "status": {"phase": "Running"},
    }
    answers = [408, 429, 503]
    deletes: list[int] = []

    async def main() -> PodWorker:
        config = ClientConfig(server=f"https://127.0.0.1:{_closed_port()}", timeout=5.0)
        async with ApiClient(config) as client:
            env = WorkerEnv(KubeletConfig(node_name="n", runtime="fake"), client, FakeRuntime("n"))
            worker = PodWorker(env, pod)

            async def report() -> None:
                pass

            async def delete() -> None:
                deletes.append(1)
                if answers:
                    code = answers.pop(0)
                    raise error_for(code, {"code": code, "message": "busy"})

            worker._report = report  # type: ignore[method-assign]
            worker._delete = delete  # type: ignore[method-assign]
            await worker.run()
            return worker

    caplog.set_level(logging.WARNING, logger="k8slite.kubelet.podworkers")
    worker = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0.01))
    assert worker.done and len(deletes) == 4 and not answers
    assert "Gave up deleting" not in caplog.text
