"""What the host offers and how it is doing: capacity, nodeInfo and pressure readings."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}
# Upstream's default hard eviction thresholds, used here as pressure thresholds.
MEMORY_AVAILABLE_MIN = 100 * 2**20
DISK_AVAILABLE_MIN_FRACTION = 0.10
PID_AVAILABLE_MIN_FRACTION = 0.10


def architecture() -> str:
    machine = platform.machine().lower()
    return _ARCH.get(machine, machine)


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out: dict[str, int] = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    return out


def os_image() -> str:
    """PRETTY_NAME of /etc/os-release, as upstream reports it."""
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.system()


def host_capacity(root_dir: Path, max_pods: int) -> dict[str, str]:
    """cpu, memory, ephemeral-storage (of the root dir's filesystem), pods, hugepages."""
    try:
        st = os.statvfs(root_dir)
        storage = st.f_blocks * st.f_frsize
    except OSError:
        storage = 0
    memory = meminfo().get("MemTotal", 0)
    return {
        "cpu": str(os.cpu_count() or 1),
        "ephemeral-storage": f"{storage // 1024}Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": f"{memory // 1024}Ki",
        "pods": str(max_pods),
    }


@dataclass(frozen=True, slots=True)
class NodeInfo:
    machine_id: str
    system_uuid: str
    boot_id: str
    kernel_version: str
    os_image: str
    operating_system: str
    architecture: str

    def to_api(self, kubelet_version: str, runtime_version: str) -> dict[str, str]:
        return {
            "architecture": self.architecture,
            "bootID": self.boot_id,
            "containerRuntimeVersion": runtime_version,
            "kernelVersion": self.kernel_version,
            "kubeProxyVersion": "",
            "kubeletVersion": kubelet_version,
            "machineID": self.machine_id,
            "operatingSystem": self.operating_system,
            "osImage": self.os_image,
            "systemUUID": self.system_uuid,
        }


def node_info() -> NodeInfo:
    return NodeInfo(
        machine_id=_read("/etc/machine-id"),
        system_uuid=_read("/sys/class/dmi/id/product_uuid") or _read("/etc/machine-id"),
        boot_id=_read("/proc/sys/kernel/random/boot_id"),
        kernel_version=platform.release(),
        os_image=os_image(),
        operating_system=platform.system().lower(),
        architecture=architecture(),
    )


@dataclass(frozen=True, slots=True)
class Pressure:
    memory: bool = False
    disk: bool = False
    pid: bool = False


def pressure(root_dir: Path) -> Pressure:
    """Whether memory, the root dir's disk or PIDs run short (upstream's eviction signals)."""
    available = meminfo().get("MemAvailable")
    memory = available is not None and available < MEMORY_AVAILABLE_MIN
    try:
        st = os.statvfs(root_dir)
        disk = st.f_blocks > 0 and st.f_bavail / st.f_blocks < DISK_AVAILABLE_MIN_FRACTION
    except OSError:
        disk = False
    pid = False
    pid_max = _read("/proc/sys/kernel/pid_max")
    threads = _read("/proc/loadavg").split()
    # The fourth field of loadavg is running/total scheduling entities: threads in use.
    if pid_max.isdigit() and len(threads) >= 4 and "/" in threads[3]:
        used = int(threads[3].split("/")[1])
        pid = (int(pid_max) - used) / int(pid_max) < PID_AVAILABLE_MIN_FRACTION
    return Pressure(memory, disk, pid)
