"""Pod volumes prepared on the host: emptyDir, configMap, secret, downwardAPI, projected, hostPath
and persistentVolumeClaim (a bound claim's hostPath or local volume).

Each volume of a pod is a directory under ROOT/pods/<uid>/volumes/<plugin>/<name>, bind
mounted into the containers that name it. ConfigMap, Secret, downward API and projected
volumes are written like upstream's atomic writer: the files live in a timestamped
directory that a `..data` symlink points at, and each top-level name is a symlink through
`..data`, so an update (a new directory, then one rename of the link) is seen by a running
container all at once.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from k8slite.api.storage_v1 import PV_SOURCES
from k8slite.component.objects import Obj
from k8slite.kubelet import emptydir
from k8slite.kubelet.envvars import (
    ConfigError,
    ObjectGetter,
    field_ref_value,
    resource_field_value,
)
from k8slite.kubelet.runtime.base import Mount
from k8slite.kubelet.tokens import TokenManager

log = logging.getLogger(__name__)

DATA_LINK = "..data"
_PLUGINS = {
    "emptyDir": "kubernetes.io~empty-dir",
    "configMap": "kubernetes.io~configmap",
    "secret": "kubernetes.io~secret",
    "downwardAPI": "kubernetes.io~downward-api",
    "projected": "kubernetes.io~projected",
    "hostPath": "kubernetes.io~host-path",
    "persistentVolumeClaim": "kubernetes.io~pvc",
}
# Volumes whose files are written by the kubelet and mounted read-only (upstream: since 1.10).
_READ_ONLY = {"configMap", "secret", "downwardAPI", "projected"}
# Volumes whose files take the pod's fsGroup (upstream: those of plugins that support
# ownership management; the kubelet-written ones are group-readable already).
_FS_GROUP_OWNED = frozenset({"emptyDir", "persistentVolumeClaim"})
# The PV sources a claim's volume may have; this kubelet mounts hostPath and local ones.
_PV_SOURCES = frozenset(PV_SOURCES)


class VolumeError(Exception):
    """A volume cannot be set up; the message is upstream's FailedMount text."""


class ClaimPending(VolumeError):
    """A claim is not bound yet: soon it will be (the binder or provisioner is at it)."""


class _ClaimNotBound(ConfigError):
    pass


def _plugin(volume: Obj) -> str | None:
    return next((k for k in _PLUGINS if k in volume), None)


class VolumeManager:
    """Sets up and tears down the volumes of the pods of one kubelet."""

    def __init__(
        self, root_dir: Path, get: ObjectGetter, tokens: TokenManager | None = None
    ) -> None:
        self.root = Path(root_dir) / "pods"
        self.get = get
        self.tokens = tokens

    def pod_dir(self, uid: str) -> Path:
        return self.root / uid

    def volume_dir(self, uid: str, plugin: str, name: str) -> Path:
        return self.pod_dir(uid) / "volumes" / _PLUGINS[plugin] / name

    async def setup(
        self, pod: Obj, *, pod_ips: list[str], host_ip: str, allocatable: Mapping[str, str]
    ) -> dict[str, str]:
        """Create or refresh every volume; volume name -> host path."""
        uid = pod["metadata"]["uid"]
        paths: dict[str, str] = {}
        for volume in (pod.get("spec") or {}).get("volumes") or ():
            name = volume["name"]
            plugin = _plugin(volume)
            if plugin is None:
                kinds = sorted(k for k in volume if k != "name")
                raise VolumeError(
                    f'MountVolume.SetUp failed for volume "{name}" : volume type '
                    f"{', '.join(kinds) or 'unknown'} is not supported by "
                    "this kubelet"
                )
            try:
                paths[name] = await self._setup_one(
                    pod,
                    uid,
                    plugin,
                    volume,
                    pod_ips=pod_ips,
                    host_ip=host_ip,
                    allocatable=allocatable,
                )
                fs_group = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
                if plugin in _FS_GROUP_OWNED and isinstance(fs_group, int):
                    try:
                        await trio.to_thread.run_sync(set_group_ownership, paths[name], fs_group)
                    except PermissionError as e:
                        # A kubelet not running as root cannot give files away; the pod
                        # still runs, as upstream's does when ownership cannot change.
                        log.warning("fsGroup %d not applied to volume %s: %s", fs_group, name, e)
            except _ClaimNotBound as e:
                raise ClaimPending(f'MountVolume.SetUp failed for volume "{name}" : {e}') from None
            except (ConfigError, OSError) as e:
                raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : {e}') from None
        return paths

    async def _setup_one(
        self,
        pod: Obj,
        uid: str,
        plugin: str,
        volume: Obj,
        *,
        pod_ips: list[str],
        host_ip: str,
        allocatable: Mapping[str, str],
    ) -> str:
        source = volume[plugin] or {}
        if plugin == "hostPath":
            return _host_path(source)
        if plugin == "persistentVolumeClaim":
            return await self._claim_path(pod["metadata"].get("namespace") or "default", source)
        target = self.volume_dir(uid, plugin, volume["name"])
        if plugin == "emptyDir":
            medium = source.get("medium") or ""
            if medium == "Memory":
                emptydir.mount_tmpfs(target, emptydir.memory_size(pod, source, allocatable))
            elif medium:
                raise ConfigError(
                    f'emptyDir medium "{medium}" is not supported by this kubelet ("" and '
                    '"Memory" are)'
                )
            else:
                target.mkdir(parents=True, exist_ok=True)
            # Upstream's emptyDir is world-writable, so any container user may use it.
            target.chmod(0o777)
            return str(target)
        namespace = pod["metadata"].get("namespace") or "default"
        files: dict[str, tuple[bytes, int]] = {}
        if plugin in ("configMap", "secret"):
            kind = "ConfigMap" if plugin == "configMap" else "Secret"
            name = source.get("name") if plugin == "configMap" else source.get("secretName")
            await self._object_files(
                files, kind, namespace, name or "", source, int(source.get("defaultMode", 0o644))
            )
        elif plugin == "downwardAPI":
            self._downward_files(
                files,
                pod,
                source.get("items") or (),
                int(source.get("defaultMode", 0o644)),
                pod_ips,
                host_ip,
                allocatable,
            )
        else:
            await self._projected_files(files, pod, source, pod_ips, host_ip, allocatable)
        write_atomic(target, files)
        return str(target)

    async def _object_files(
        self,
        files: dict[str, tuple[bytes, int]],
        kind: str,
        namespace: str,
        name: str,
        source: Obj,
        default_mode: int,
    ) -> None:
        obj = await self.get(kind, namespace, name)
        optional = bool(source.get("optional"))
        if obj is None:
            if optional:
                return
            raise ConfigError(f'{kind.lower()} "{name}" not found')
        data = _raw_data(kind, obj)
        items = source.get("items")
        if not items:
            for key, value in data.items():
                files[key] = (value, default_mode)
            return
        for item in items:
            key = item.get("key") or ""
            if key not in data:
                if optional:
                    continue
                raise ConfigError(
                    f"configmap references non-existent config key: {key}"
                    if kind == "ConfigMap"
                    else f"references non-existent secret key: {key}"
                )
            files[item.get("path") or key] = (data[key], int(item.get("mode", default_mode)))

    def _downward_files(
        self,
        files: dict[str, tuple[bytes, int]],
        pod: Obj,
        items: Any,
        default_mode: int,
        pod_ips: list[str],
        host_ip: str,
        allocatable: Mapping[str, str],
    ) -> None:
        containers = {c["name"]: c for c in (pod.get("spec") or {}).get("containers") or ()}
        for item in items:
            if "fieldRef" in item:
                value = field_ref_value(
                    pod, item["fieldRef"].get("fieldPath", ""), pod_ips=pod_ips, host_ip=host_ip
                )
            elif "resourceFieldRef" in item:
                ref = item["resourceFieldRef"]
                container = containers.get(ref.get("containerName") or "") or {}
                value = resource_field_value(container, ref, allocatable)
            else:
                continue
            files[item["path"]] = (value.encode(), int(item.get("mode", default_mode)))

    async def _projected_files(
        self,
        files: dict[str, tuple[bytes, int]],
        pod: Obj,
        source: Obj,
        pod_ips: list[str],
        host_ip: str,
        allocatable: Mapping[str, str],
    ) -> None:
        namespace = pod["metadata"].get("namespace") or "default"
        mode = int(source.get("defaultMode", 0o644))
        for src in source.get("sources") or ():
            if "configMap" in src:
                await self._object_files(
                    files,
                    "ConfigMap",
                    namespace,
                    src["configMap"].get("name") or "",
                    src["configMap"],
                    mode,
                )
            elif "secret" in src:
                await self._object_files(
                    files, "Secret", namespace, src["secret"].get("name") or "", src["secret"], mode
                )
            elif "downwardAPI" in src:
                self._downward_files(
                    files,
                    pod,
                    src["downwardAPI"].get("items") or (),
                    mode,
                    pod_ips,
                    host_ip,
                    allocatable,
                )
            elif "serviceAccountToken" in src and self.tokens is not None:
                sat = src["serviceAccountToken"]
                account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
                audiences = [sat["audience"]] if sat.get("audience") else []
                token = await self.tokens.get(
                    namespace, account, audiences, int(sat.get("expirationSeconds") or 3607), pod
                )
                if token is not None:
                    files[sat.get("path") or "token"] = (token.encode(), mode)

    async def _claim_path(self, namespace: str, source: Obj) -> str:
        """The host directory of the volume a claim is bound to (hostPath or local)."""
        claim_name = str(source.get("claimName") or "")
        claim = await self.get("PersistentVolumeClaim", namespace, claim_name)
        if claim is None:
            raise ConfigError(f'persistentvolumeclaim "{claim_name}" not found')
        volume_name = (claim.get("spec") or {}).get("volumeName") or ""
        phase = (claim.get("status") or {}).get("phase") or ""
        if not volume_name or phase != "Bound":
            raise _ClaimNotBound(
                f"error processing PVC {namespace}/{claim_name}: PVC {namespace}/{claim_name} "
                f'has non-bound phase ("{phase}") or empty pvc.Spec.VolumeName ("{volume_name}")'
            )
        pv = await self.get("PersistentVolume", "", volume_name)
        if pv is None:
            raise ConfigError(f'persistentvolume "{volume_name}" not found')
        spec = pv.get("spec") or {}
        if isinstance(spec.get("hostPath"), dict):
            return _host_path(spec["hostPath"])
        if isinstance(spec.get("local"), dict):
            return _host_path({"path": spec["local"].get("path"), "type": "Directory"})
        kinds = sorted(k for k in spec if k in _PV_SOURCES)
        raise ConfigError(
            f'volume "{volume_name}" of type {", ".join(kinds) or "unknown"} is not supported '
            "by this kubelet (hostPath and local are)"
        )

    @staticmethod
    def mounts(container: Obj, paths: Mapping[str, str], pod: Obj) -> list[Mount]:
        """The container's volumeMounts as host paths (subPath resolved)."""
        volumes = (pod.get("spec") or {}).get("volumes") or ()
        kinds = {v["name"]: _plugin(v) for v in volumes}
        # A claim mounted with persistentVolumeClaim.readOnly is read-only in every container.
        read_only_claims = {
            v["name"]
            for v in volumes
            if isinstance(v.get("persistentVolumeClaim"), dict)
            and v["persistentVolumeClaim"].get("readOnly")
        }
        out = []
        for vm in container.get("volumeMounts") or ():
            host = paths.get(vm.get("name") or "")
            if host is None:
                raise VolumeError(
                    f'volume "{vm.get("name")}" of container "{container["name"]}" is not set up'
                )
            sub = vm.get("subPath") or ""
            if sub:
                if sub.startswith("/") or ".." in Path(sub).parts:
                    raise VolumeError(
                        f"invalid subPath {sub!r}: must be a relative path without '..'"
                    )
                host = os.path.realpath(os.path.join(host, sub))
                if not os.path.exists(host):
                    # Upstream creates a missing subPath as a directory.
                    os.makedirs(host, exist_ok=True)
            read_only = (
                bool(vm.get("readOnly"))
                or kinds.get(vm.get("name")) in _READ_ONLY
                or vm.get("name") in read_only_claims
            )
            out.append(
                Mount(host, vm["mountPath"], read_only, vm.get("mountPropagation") or "None")
            )
        return out

    def next_renewal(self, uid: str) -> float | None:
        """When (Unix time) a token of the pod's projected volumes is due for renewal."""
        return self.tokens.next_renewal(uid) if self.tokens is not None else None

    def cleanup(self, uid: str) -> None:
        """Remove the pod's volumes (never hostPath ones: those are the host's)."""
        emptydir.unmount_under(self.pod_dir(uid))
        shutil.rmtree(self.pod_dir(uid), ignore_errors=True)
        if self.tokens is not None:
            self.tokens.forget(uid)

    def known_pods(self) -> list[str]:
        """Uids that have a directory, for cleaning up after pods gone while we were down."""
        try:
            return [p.name for p in self.root.iterdir() if p.is_dir()]
        except FileNotFoundError:
            return []


def _raw_data(kind: str, obj: Obj) -> dict[str, bytes]:
    if kind == "ConfigMap":
        out = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
        out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return out
    out = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    out.update({k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()})
    return out


_HOST_CHECKS = {
    "Directory": (stat.S_ISDIR, "is not a directory"),
    "File": (stat.S_ISREG, "is not a file"),
    "Socket": (stat.S_ISSOCK, "is not a socket file"),
    "CharDevice": (stat.S_ISCHR, "is not a character device"),
    "BlockDevice": (stat.S_ISBLK, "is not a block device"),
}


def _host_path(source: Obj) -> str:
    """The path, after upstream's type check (pkg/volume/hostpath checkTypeInternal): the
    ...OrCreate types make what is missing (a file's parent directory must exist), then
    check like the plain type; no type checks nothing."""
    path = source.get("path") or ""
    kind = source.get("type") or ""
    if kind == "DirectoryOrCreate" and not os.path.lexists(path):
        os.makedirs(path, mode=0o755, exist_ok=True)
    elif kind == "FileOrCreate" and not os.path.lexists(path):
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDONLY, 0o644)
        except FileNotFoundError:
            raise ConfigError(f"open {path}: no such file or directory") from None
        os.close(fd)
    check = _HOST_CHECKS.get(kind.removesuffix("OrCreate"))
    if check is not None:
        test, words = check
        try:
            mode = os.stat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            mode = 0
        if not test(mode):
            raise ConfigError(f"hostPath type check failed: {path} {words}")
    return path


def set_group_ownership(path: str, gid: int) -> None:
    """upstream's fsGroup ownership: the group owns every file, can read and write it, and
    new files inherit the group (setgid directories). As fsGroupChangePolicy
    OnRootMismatch, a root that already has the group and the setgid bit is left as is, so
    a volume is walked once, not at every sync."""
    st = os.stat(path)
    if st.st_gid == gid and st.st_mode & stat.S_ISGID:
        return
    for root, dirs, files in os.walk(path):
        for name in (root, *(os.path.join(root, f) for f in files)):
            if os.path.islink(name):
                continue
            os.chown(name, -1, gid)
            mode = stat.S_IMODE(os.stat(name).st_mode)
            if os.path.isdir(name):
                os.chmod(name, mode | stat.S_IRGRP | stat.S_IWGRP | stat.S_IXGRP | stat.S_ISGID)
            else:
                os.chmod(name, mode | stat.S_IRGRP | stat.S_IWGRP)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]


def write_atomic(target: Path, files: Mapping[str, tuple[bytes, int]]) -> bool:
    """Make target hold exactly `files` (relative path -> content, mode); whether it changed."""
    target.mkdir(parents=True, exist_ok=True)
    data_link = target / DATA_LINK
    current = _read_current(target)
    if current == dict(files):
        return False
    stamp = target / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.time_ns() % 10**9}"
    stamp.mkdir()
    for rel, (content, mode) in files.items():
        path = stamp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode & 0o777)
    tmp_link = target / "..data_tmp"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(stamp.name)
    old = os.readlink(data_link) if data_link.is_symlink() else None
    os.replace(tmp_link, data_link)
    tops = {Path(rel).parts[0] for rel in files}
    for top in tops:
        link = target / top
        if not link.is_symlink():
            link.symlink_to(f"{DATA_LINK}/{top}")
    for entry in target.iterdir():
        if not entry.name.startswith("..") and entry.name not in tops and entry.is_symlink():
            entry.unlink()
    if old is not None and old != stamp.name:
        shutil.rmtree(target / old, ignore_errors=True)
    return True


def _read_current(target: Path) -> dict[str, tuple[bytes, int]] | None:
    data = target / DATA_LINK
    if not data.is_symlink():
        return None
    root = target / os.readlink(data)
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            out[str(path.relative_to(root))] = (path.read_bytes(), path.stat().st_mode & 0o777)
    return out
