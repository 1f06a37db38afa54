"""emptyDir sizing and limits: upstream's tmpfs size rule, the pod memory limit it uses, the
du-like measure and the eviction message."""

from __future__ import annotations

from pathlib import Path

from k8slite.component.objects import Obj
from k8slite.kubelet import emptydir

MI = 2**20


def pod(*limits: str | None, init: tuple[str | None, ...] = (), sidecar: str | None = None) -> Obj:
    def container(name: str, limit: str | None) -> Obj:
        c: Obj = {"name": name, "image": "busybox:1.35"}
        if limit is not None:
            c["resources"] = {"limits": {"memory": limit}}
        return c

    inits = [container(f"i{n}", v) for n, v in enumerate(init)]
    if sidecar is not None:
        inits.append({**container("side", sidecar), "restartPolicy": "Always"})
    return {
        "spec": {
            "containers": [container(f"c{n}", v) for n, v in enumerate(limits)],
            "initContainers": inits,
        }
    }


def test_pod_memory_limit_needs_every_container_limited() -> None:
    assert emptydir.pod_memory_limit(pod("64Mi", "32Mi")) == 96 * MI
    assert emptydir.pod_memory_limit(pod("64Mi", None)) is None
    assert emptydir.pod_memory_limit(pod("64Mi", init=(None,))) is None
    # An init container larger than the app containers' sum sets it; sidecars add up.
    assert emptydir.pod_memory_limit(pod("64Mi", init=("200Mi",))) == 200 * MI
    assert emptydir.pod_memory_limit(pod("64Mi", sidecar="16Mi")) == 80 * MI


def test_memory_size_is_the_smallest_bound() -> None:
    node = {"memory": "1Gi"}
    assert emptydir.memory_size(pod(None), {}, node) == 2**30
    assert emptydir.memory_size(pod("64Mi"), {}, node) == 64 * MI
    assert emptydir.memory_size(pod("64Mi"), {"sizeLimit": "8Mi"}, node) == 8 * MI
    # A sizeLimit above what the pod may use does not raise the size.
    assert emptydir.memory_size(pod("64Mi"), {"sizeLimit": "2Gi"}, node) == 64 * MI
    assert emptydir.memory_size(pod(None), {"sizeLimit": "8Mi"}, {}) == 8 * MI
    assert emptydir.memory_size(pod(None), {}, {}) is None


def test_over_limit_measures_disk_volumes_only(tmp_path: Path) -> None:
    scratch, memory = tmp_path / "scratch", tmp_path / "memory"
    scratch.mkdir()
    memory.mkdir()
    (scratch / "a").write_bytes(b"x" * 300_000)
    (scratch / "sub").mkdir()
    (scratch / "sub" / "b").write_bytes(b"x" * 300_000)
    (scratch / "link").hardlink_to(scratch / "a")  # counted once, as du does
    (memory / "big").write_bytes(b"x" * 2 * MI)
    usage = emptydir.disk_usage(str(scratch))
    assert 600_000 <= usage < 700_000
    spec: Obj = {
        "spec": {
            "volumes": [
                {"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}},
                {"name": "memory", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                {"name": "free", "emptyDir": {}},
            ]
        }
    }
    paths = {"scratch": str(scratch), "memory": str(memory), "free": str(memory)}
    assert emptydir.limited_disk_volumes(spec) == [("scratch", "1Mi")]
    assert emptydir.over_limit(spec, paths) is None
    (scratch / "c").write_bytes(b"x" * 600_000)
    assert emptydir.over_limit(spec, paths) == (
        'Usage of EmptyDir volume "scratch" exceeds the limit "1Mi". '
    )
