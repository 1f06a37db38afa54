"""emptyDir beyond a plain directory: `medium: Memory` (a tmpfs) and `sizeLimit` (eviction).

A memory-backed emptyDir is a tmpfs the kubelet mounts on the volume's directory, as
upstream's does, so every container of the pod (bind mounts in Docker, the path itself in
the process runtime) sees the same files, and they outlive container restarts. Its size is
upstream's: the pod's memory limit (or the node's allocatable memory), or the volume's
sizeLimit when smaller. Mounting needs root (CAP_SYS_ADMIN), as upstream's kubelet.

A disk-backed emptyDir with a sizeLimit is measured at housekeeping (every
--housekeeping-interval, 10 s as upstream's eviction manager); a pod whose volume uses more
than its limit is evicted.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Mapping
from pathlib import Path

from k8slite.api.quantity import QuantityError, int_value
from k8slite.component.objects import Obj

# upstream's eviction message (pkg/kubelet/eviction/helpers.go, emptyDirMessageFmt).
EVICTED = "Evicted"
EMPTY_DIR_MESSAGE = 'Usage of EmptyDir volume "{name}" exceeds the limit "{limit}". '

_MNT_DETACH = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _memory_limit(container: Obj) -> int | None:
    limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    try:
        return None if limit is None else int_value(limit)
    except QuantityError:
        return None


def pod_memory_limit(pod: Obj) -> int | None:
    """The pod's memory limit as its cgroup would get it: known only when every container
    has one; the larger of the app containers' (and sidecars') sum and any init container's."""
    spec = pod.get("spec") or {}
    inits = spec.get("initContainers") or []
    apps = [*(spec.get("containers") or ()), *(c for c in inits if c.get("restartPolicy"))]
    limits = [_memory_limit(c) for c in apps]
    init_limits = [_memory_limit(c) for c in inits if not c.get("restartPolicy")]
    if not limits or None in limits or None in init_limits:
        return None
    return max([sum(x for x in limits if x is not None), *(x for x in init_limits if x)])


def memory_size(pod: Obj, source: Obj, allocatable: Mapping[str, str]) -> int | None:
    """The tmpfs size in bytes (upstream's calculateEmptyDirMemorySize), or None for the
    kernel's default (half the RAM) when nothing bounds it."""
    size: int | None = None
    try:
        if allocatable.get("memory"):
            size = int_value(allocatable["memory"])
    except QuantityError:
        size = None
    pod_limit = pod_memory_limit(pod)
    if pod_limit and (size is None or pod_limit <= size):
        size = pod_limit
    if source.get("sizeLimit") is not None:
        try:
            limit = int_value(source["sizeLimit"])
        except QuantityError:
            limit = 0
        if limit > 0 and (size is None or limit <= size):
            size = limit
    return size


def mount_tmpfs(path: Path, size: int | None) -> None:
    """Mount a tmpfs on path unless one is there already (a kubelet restart keeps it)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(path):
        return
    options = "mode=0777" + (f",size={size}" if size else "")
    if _libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", 0, options.encode()) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount tmpfs on {path}: {os.strerror(errno)}")


def unmount_under(directory: Path) -> None:
    """Unmount every tmpfs of a pod's volumes, before its directory is removed (else the
    removal would empty the tmpfs but leave it mounted)."""
    volumes = directory / "volumes"
    try:
        plugins = list(volumes.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return
    for plugin in plugins:
        try:
            entries = list(plugin.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if os.path.ismount(entry):
                _libc.umount2(os.fsencode(entry), _MNT_DETACH)


def disk_usage(path: str) -> int:
    """Bytes the tree uses on disk, as du counts them (each hard-linked file once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, dirs, files in os.walk(path):
        for name in (root, *(os.path.join(root, f) for f in files)):
            try:
                st = os.lstat(name)
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
    return total


def limited_disk_volumes(pod: Obj) -> list[tuple[str, str]]:
    """(name, sizeLimit) of the pod's disk-backed emptyDirs that have a positive limit."""
    out = []
    for volume in (pod.get("spec") or {}).get("volumes") or ():
        source = volume.get("emptyDir")
        if not isinstance(source, dict) or source.get("medium") or source.get("sizeLimit") is None:
            continue
        try:
            if int_value(source["sizeLimit"]) > 0:
                out.append((volume["name"], str(source["sizeLimit"])))
        except QuantityError:
            continue
    return out


def over_limit(pod: Obj, paths: Mapping[str, str]) -> str | None:
    """The eviction message for the first emptyDir over its sizeLimit, or None. Blocking."""
    for name, limit in limited_disk_volumes(pod):
        path = paths.get(name)
        if path is not None and disk_usage(path) > int_value(limit):
            return EMPTY_DIR_MESSAGE.format(name=name, limit=limit)
    return None
