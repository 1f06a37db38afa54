"""Docker's documents and the kubelet's types, both ways: the create specs a pod's sandbox and
a ContainerConfig become, and the ContainerStatus and ContainerStats that Docker's inspect
and stats documents become. Pure functions; the calls to Docker are in docker.py."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import docker.types

from k8slite.kubelet.runtime.base import (
    REASON_START_ERROR,
    ContainerConfig,
    ContainerState,
    ContainerStats,
    ContainerStatus,
    NamespaceMode,
    NamespaceOptions,
    Sandbox,
    container_info,
    pod_identity,
    terminated_reason,
)

STATES = {
    "created": ContainerState.CREATED,
    "running": ContainerState.RUNNING,
    "paused": ContainerState.RUNNING,
    "restarting": ContainerState.RUNNING,
    "exited": ContainerState.EXITED,
    "dead": ContainerState.EXITED,
    "removing": ContainerState.EXITED,
}
_PROPAGATION = {"None": None, "HostToContainer": "rslave", "Bidirectional": "rshared"}
# Upstream's kubelet default: containerLogMaxSize 10Mi, containerLogMaxFiles 5.
_LOG_CONFIG = docker.types.LogConfig(type="json-file", config={"max-size": "10m", "max-file": "5"})


def sandbox_spec(
    pod: Mapping[str, Any],
    attempt: int,
    namespaces: NamespaceOptions,
    labels: dict[str, str],
    image: str,
    network: str,
) -> dict[str, Any]:
    """The pause container that holds a pod's namespaces, on the pod network (or the host's)."""
    uid, namespace, name = pod_identity(pod)
    spec = pod.get("spec") or {}
    host_net = namespaces.network is NamespaceMode.NODE
    host_config: dict[str, Any] = {
        "network_mode": "host" if host_net else network,
        # "shareable" so app containers may join it; Docker's default IPC mode is private.
        "ipc_mode": "host" if namespaces.ipc is NamespaceMode.NODE else "shareable",
        "pid_mode": "host" if namespaces.pid is NamespaceMode.NODE else None,
        "log_config": _LOG_CONFIG,
    }
    ports = [] if host_net else _host_ports(spec)
    if ports:
        host_config["port_bindings"] = {key: (ip, hp) if ip else hp for key, ip, hp in ports}
    return {
        "image": image,
        "name": f"k8s_POD_{name}_{namespace}_{uid}_{attempt}",
        "hostname": None if host_net else _hostname(spec.get("hostname") or name),
        "labels": labels,
        "ports": [tuple(key.split("/")) for key, _, _ in ports] or None,
        "network": None if host_net else network,
        "host_config": host_config,
    }


def container_spec(
    sandbox: Sandbox, config: ContainerConfig, labels: dict[str, str]
) -> dict[str, Any]:
    ns = sandbox.namespaces
    join = f"container:{sandbox.id}"
    host_config: dict[str, Any] = {
        "network_mode": join,
        "ipc_mode": "host" if ns.ipc is NamespaceMode.NODE else join,
        "pid_mode": (
            f"container:{config.pid_target}"
            if config.pid_target
            else {NamespaceMode.NODE: "host", NamespaceMode.POD: join}.get(ns.pid)
        ),
        "mounts": [
            docker.types.Mount(
                m.container_path,
                m.host_path,
                type="bind",
                read_only=m.read_only,
                propagation=_PROPAGATION.get(m.propagation),
            )
            for m in config.mounts
        ]
        or None,
        "privileged": config.privileged,
        "log_config": _LOG_CONFIG,
    }
    if config.memory_limit_bytes is not None:
        # No swap, as upstream: the limit is the limit, and exceeding it is an OOM kill.
        host_config.update(
            mem_limit=config.memory_limit_bytes, memswap_limit=config.memory_limit_bytes
        )
    if config.cpu_limit_milli is not None:
        host_config["nano_cpus"] = config.cpu_limit_milli * 1_000_000
    # Upstream's shares: request * 1024 / 1000, at least 2 (also for BestEffort pods).
    host_config["cpu_shares"] = max(2, (config.cpu_request_milli or 0) * 1024 // 1000)
    user = None
    if config.run_as_user is not None:
        user = str(config.run_as_user)
        if config.run_as_group is not None:
            user += f":{config.run_as_group}"
    return {
        "image": config.image,
        "name": (
            f"k8s_{config.name}_{sandbox.name}_{sandbox.namespace}_{sandbox.pod_uid}_"
            f"{config.restart_count}"
        ),
        # Docker keeps the image's cmd only when no entrypoint is given, which is exactly
        # Kubernetes' rule for command and args.
        "entrypoint": config.command or None,
        "command": config.args or None,
        "environment": [f"{k}={v}" for k, v in config.env],
        "working_dir": config.working_dir or None,
        "user": user,
        "labels": labels,
        "host_config": host_config,
        "stdin_open": config.stdin,
        "tty": config.tty,
    }


def sigkilled_under_a_memory_limit(attrs: Mapping[str, Any]) -> bool:
    state = attrs["State"]
    if state.get("Status") != "exited" or state.get("OOMKilled") or state.get("ExitCode") != 137:
        return False
    return bool((attrs.get("HostConfig") or {}).get("Memory"))


def container_status_of(attrs: Mapping[str, Any]) -> ContainerStatus:
    state = attrs["State"]
    labels = attrs["Config"].get("Labels") or {}
    info = container_info(
        attrs["Id"],
        labels,
        STATES.get(state.get("Status", ""), ContainerState.UNKNOWN),
        attrs["Config"].get("Image", ""),
        parse_time(attrs["Created"]) or 0.0,
    )
    status = ContainerStatus(
        id=info.id,
        name=info.name,
        restart_count=info.restart_count,
        state=info.state,
        image=info.image,
        image_ref=attrs.get("Image", ""),
        created_at=info.created_at,
        started_at=parse_time(state.get("StartedAt")),
        labels=labels,
    )
    error = state.get("Error") or ""
    if error:
        # The command could not run (e.g. no such executable): Docker leaves it created.
        status.state = ContainerState.EXITED
        status.reason, status.message = REASON_START_ERROR, error
        status.exit_code = int(state.get("ExitCode") or 128)
        status.finished_at = parse_time(state.get("FinishedAt")) or status.created_at
        status.started_at = status.started_at or status.finished_at
    elif status.state is ContainerState.EXITED:
        status.exit_code = int(state.get("ExitCode") or 0)
        status.finished_at = parse_time(state.get("FinishedAt"))
        status.reason = terminated_reason(status.exit_code, bool(state.get("OOMKilled")))
    return status


def container_stats_of(raw: Mapping[str, Any]) -> ContainerStats:
    """Docker's stats document as cAdvisor's figures (cgroup v2 or v1 memory names)."""
    cpu = (raw.get("cpu_stats") or {}).get("cpu_usage") or {}
    memory = raw.get("memory_stats") or {}
    detail = memory.get("stats") or {}
    usage = int(memory.get("usage") or 0)
    inactive = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    return ContainerStats(
        timestamp=parse_time(raw.get("read")) or time.time(),
        cpu_usage_ns=int(cpu.get("total_usage") or 0),
        memory_usage=usage,
        memory_working_set=max(usage - int(inactive or 0), 0),
        memory_rss=int(detail.get("anon", detail.get("total_rss", 0)) or 0),
    )


def parse_time(value: str | None) -> float | None:
    """Docker's RFC 3339 nanosecond times as epoch seconds; its zero time as None."""
    if not value or value.startswith("0001-01-01"):
        return None
    main, _, rest = value.partition(".")
    frac = "".join(c for c in rest if c.isdigit())
    tz = rest[len(frac) :] if rest else main[19:]
    stamp = datetime.fromisoformat(main[:19] + (tz if tz and tz != "Z" else "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp() + (float(f"0.{frac}") if frac else 0.0)


def _hostname(name: str) -> str:
    # Upstream truncates to 63 characters and trims what may not end a hostname.
    return name[:63].rstrip("-.")


def _host_ports(spec: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """(port/proto, hostIP, hostPort) of every container port with a hostPort."""
    out = []
    for c in spec.get("containers") or ():
        for p in c.get("ports") or ():
            if p.get("hostPort"):
                proto = str(p.get("protocol") or "TCP").lower()
                out.append(
                    (f"{p['containerPort']}/{proto}", p.get("hostIP") or "", int(p["hostPort"]))
                )
    return out
