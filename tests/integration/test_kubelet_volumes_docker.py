"""emptyDir media and limits, and hostPath type checks, in real Docker containers.

A `medium: Memory` emptyDir is one tmpfs shared by the pod's containers, sized by its
sizeLimit or the pod's memory limit (upstream's rule), and unmounted with the pod. A disk
emptyDir over its sizeLimit gets the pod evicted with upstream's reason, message and
DisruptionTarget condition. hostPath types are checked before the containers start, with
upstream's FailedMount messages.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerHandle
from tests.integration.kubelet_harness import (
    BUSYBOX,
    KubeletProcess,
    Pods,
    docker_problem,
    kubectl,
    kubelet_of_its_own,
    unique_node,
)
from tests.polling import wait_for

_PROBLEM = docker_problem()
pytestmark = pytest.mark.skipif(_PROBLEM is not None, reason=_PROBLEM or "")


@pytest.fixture(scope="module")
def kubelet(
    apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeletProcess]:
    node = unique_node("kl-vol")
    # Housekeeping each second, so an emptyDir over its limit is seen at once.
    with kubelet_of_its_own(
        apiserver, node, "docker", tmp_path_factory.mktemp(node), "--housekeeping-interval", "1s"
    ) as proc:
        yield proc


@pytest.fixture
def pods(api: httpx.Client, namespace: str, kubelet: KubeletProcess) -> Pods:
    return Pods(api, namespace, kubelet.node)


def _logs(server: ServerHandle, pods: Pods, name: str, container: str) -> str:
    out = kubectl(server, "-n", pods.namespace, "logs", name, "-c", container)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _mounted_tmpfs(kubelet: KubeletProcess) -> list[str]:
    root = str((kubelet.workdir / "root").resolve())
    lines = Path("/proc/self/mounts").read_text().splitlines()
    return [ln.split()[1] for ln in lines if ln.split()[0] == "tmpfs" and root in ln.split()[1]]


def _df_kib(log: str, mount: str) -> int:
    """Total KiB of `mount` in `df -k` output."""
    for line in log.splitlines():
        fields = line.split()
        if fields and fields[-1] == mount:
            return int(fields[1])
    raise AssertionError(f"{mount} not in df output:\n{log}")


def test_memory_empty_dir_is_a_shared_sized_tmpfs(
    apiserver: ServerHandle, pods: Pods, kubelet: KubeletProcess
) -> None:
    writer = (
        "echo shared > /cache/note; df -k /cache /scratch; "
        "grep -E ' /(cache|scratch) ' /proc/mounts; "
        "dd if=/dev/zero of=/cache/big bs=1M count=16 2>&1; echo report done; sleep 600"
    )
    reader = "until [ -f /cache/note ]; do sleep 0.2; done; cat /cache/note; sleep 600"
    limits = {"limits": {"memory": "48Mi"}}
    pods.create(
        "tmpfs",
        [
            {
                "name": "writer",
                "image": BUSYBOX,
                "command": ["sh", "-c", writer],
                "resources": limits,
                "volumeMounts": [
                    {"name": "cache", "mountPath": "/cache"},
                    {"name": "scratch", "mountPath": "/scratch"},
                ],
            },
            {
                "name": "reader",
                "image": BUSYBOX,
                "command": ["sh", "-c", reader],
                "resources": limits,
                "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
            },
        ],
        volumes=[
            {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
            # No sizeLimit: the pod's memory limit (2 x 48Mi) bounds it.
            {"name": "scratch", "emptyDir": {"medium": "Memory"}},
        ],
    )
    pods.wait_phase("tmpfs", "Running")
    log = wait_for(
        lambda: (
            text if "report done" in (text := _logs(apiserver, pods, "tmpfs", "writer")) else None
        ),
        60,
        what="the writer's report",
    )
    assert _df_kib(log, "/cache") == 8 * 1024, log
    assert _df_kib(log, "/scratch") == 96 * 1024, log
    assert "tmpfs /cache tmpfs" in log and "tmpfs /scratch tmpfs" in log, log
    # A tmpfs of 8Mi holds no 16Mi file.
    assert "No space left on device" in log, log
    reader_log = wait_for(
        lambda: _logs(apiserver, pods, "tmpfs", "reader").strip() or None,
        60,
        what="the reader to see the writer's file",
    )
    assert reader_log == "shared"
    uid = pods.get("tmpfs")["metadata"]["uid"]  # type: ignore[index]
    assert len([m for m in _mounted_tmpfs(kubelet) if uid in m]) == 2

    pods.delete("tmpfs", grace=1)
    pods.wait_gone("tmpfs")
    wait_for(
        lambda: not [m for m in _mounted_tmpfs(kubelet) if uid in m],
        30,
        what="the pod's tmpfs unmounted",
    )


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or () if c["type"] == type_), {})


def test_empty_dir_over_its_size_limit_evicts_the_pod(pods: Pods) -> None:
    def pod(name: str, megabytes: int) -> None:
        # Ready once its data is written, so the test knows when it is there to be measured.
        script = (
            f"dd if=/dev/zero of=/scratch/fill bs=1M count={megabytes} && sync && "
            "touch /tmp/written; sleep 600"
        )
        pods.create(
            name,
            [
                {
                    "name": "c",
                    "image": BUSYBOX,
                    "command": ["sh", "-c", script],
                    "readinessProbe": {
                        "exec": {"command": ["test", "-f", "/tmp/written"]},
                        "periodSeconds": 1,
                    },
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                }
            ],
            volumes=[{"name": "scratch", "emptyDir": {"sizeLimit": "2Mi"}}],
        )

    pod("within", 1)
    wait_for(lambda: pods.condition("within", "Ready") == "True", 90, what="within written")
    pod("over", 4)
    status = pods.wait_phase("over", "Failed", timeout=90)
    message = 'Usage of EmptyDir volume "scratch" exceeds the limit "2Mi". '
    assert status["reason"] == "Evicted"
    assert status["message"] == message
    target = _condition(status, "DisruptionTarget")
    assert target.get("status") == "True" and target.get("reason") == "TerminationByKubelet"
    assert "Evicted" in pods.wait_events("over", "reason", "Evicted", timeout=60)
    assert message in pods.wait_events("over", "message", message, timeout=60)
    # The container was killed, and is not restarted (restartPolicy Always).
    state = wait_for(
        lambda: pods.container("over", "c").get("state", {}).get("terminated"),
        30,
        what="the evicted container terminated",
    )
    assert state["exitCode"] != 0
    # The pod under its limit was measured in the same rounds (its data was there before
    # the other pod was made) and stays.
    assert pods.status("within")["phase"] == "Running"
    assert pods.container("within", "c")["restartCount"] == 0
    assert "Evicted" not in [e["reason"] for e in pods.events("within")]


def _host_path_pod(pods: Pods, name: str, volumes: dict[str, tuple[Path, str]]) -> None:
    pods.create(
        name,
        [
            {
                "name": "c",
                "image": BUSYBOX,
                "command": ["sleep", "600"],
                "volumeMounts": [{"name": v, "mountPath": f"/host/{v}"} for v in volumes],
            }
        ],
        volumes=[
            {"name": v, "hostPath": {"path": str(path), **({"type": kind} if kind else {})}}
            for v, (path, kind) in volumes.items()
        ],
    )


def test_host_path_types(pods: Pods, tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    a_dir = tmp_path / "dir"
    a_dir.mkdir()
    sock_path = tmp_path / "sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    refused = {
        "missing-dir": (tmp_path / "missing", "Directory", "is not a directory"),
        "file-as-dir": (a_file, "Directory", "is not a directory"),
        "file-as-dir-or-create": (a_file, "DirectoryOrCreate", "is not a directory"),
        "dir-as-file": (a_dir, "File", "is not a file"),
        "dir-as-file-or-create": (a_dir, "FileOrCreate", "is not a file"),
        "file-as-socket": (a_file, "Socket", "is not a socket file"),
        "file-as-char": (a_file, "CharDevice", "is not a character device"),
        "char-as-block": (Path("/dev/null"), "BlockDevice", "is not a block device"),
    }
    accepted = {
        "dir": (a_dir, "Directory"),
        "new-dir": (tmp_path / "made" / "deep", "DirectoryOrCreate"),
        "file": (a_file, "File"),
        "new-file": (tmp_path / "new-file", "FileOrCreate"),
        "socket": (sock_path, "Socket"),
        "char": (Path("/dev/null"), "CharDevice"),
        "untyped": (a_dir, ""),
    }
    try:
        for name, (path, kind, _) in refused.items():
            _host_path_pod(pods, name, {"host": (path, kind)})
        _host_path_pod(pods, "no-parent", {"host": (tmp_path / "absent" / "f", "FileOrCreate")})
        # Every accepted type in one pod: it starts only when all its volumes are set up.
        _host_path_pod(pods, "accepted", accepted)
        pods.wait_phase("accepted", "Running", timeout=90)
        for name, (path, _, words) in refused.items():
            message = (
                'MountVolume.SetUp failed for volume "host" : '
                f"hostPath type check failed: {path} {words}"
            )
            pods.wait_events(name, "message", message, timeout=90)
            assert pods.status(name)["phase"] == "Pending"
            waiting = pods.container(name, "c")["state"]["waiting"]
            assert waiting["reason"] == "ContainerCreating"
        pods.wait_events(
            "no-parent",
            "message",
            'MountVolume.SetUp failed for volume "host" : '
            f"open {tmp_path / 'absent' / 'f'}: no such file or directory",
            timeout=90,
        )
        assert (tmp_path / "made" / "deep").is_dir()
        assert (tmp_path / "new-file").is_file()
        assert (tmp_path / "new-file").stat().st_mode & 0o777 == 0o644
        assert not (tmp_path / "absent").exists()
        assert not (tmp_path / "missing").exists()
    finally:
        listener.close()
