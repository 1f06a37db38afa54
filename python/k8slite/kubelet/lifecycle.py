"""Pieces of a pod's lifecycle that need no worker state: hooks, DNS, restart rules, grace."""

from __future__ import annotations

import httpx
import trio

from k8slite.component.objects import Obj, meta, namespace_of
from k8slite.kubelet.config import KubeletConfig
from k8slite.kubelet.probes import USER_AGENT, resolve_port
from k8slite.kubelet.runtime.base import ContainerRuntimeError, DNSConfig, Runtime

# Upstream gives a container at least this long after its preStop hook before SIGKILL.
MIN_GRACE_AFTER_HOOK = 2.0


class HookError(Exception):
    """A lifecycle hook failed; the message is what upstream's event says."""


async def run_hook(
    hook: Obj, *, runtime: Runtime, container_id: str, container: Obj, pod_ip: str, timeout: float
) -> None:
    """Run a postStart or preStop handler (exec, httpGet or sleep) within timeout seconds."""
    if "exec" in hook:
        command = list((hook["exec"] or {}).get("command") or ())
        try:
            result = await runtime.exec(container_id, command, max(timeout, 0.1))
        except ContainerRuntimeError as e:
            raise HookError(f"Exec lifecycle hook ({command}) failed: {e.message}") from None
        if result.exit_code != 0:
            output = result.output.decode(errors="replace")
            raise HookError(
                f"Exec lifecycle hook ({command}) for Container "
                f'"{container["name"]}" failed - error: command '
                f"'{' '.join(command)}' exited with {result.exit_code}: {output}"
            )
    elif "httpGet" in hook:
        await _http_hook(hook["httpGet"], container, pod_ip, timeout)
    elif "sleep" in hook:
        await trio.sleep(min(float((hook["sleep"] or {}).get("seconds") or 0), timeout))


async def _http_hook(get: Obj, container: Obj, pod_ip: str, timeout: float) -> None:
    try:
        port = resolve_port(get.get("port", 80), container)
    except Exception as e:  # noqa: BLE001 - resolve_port's own error type is private
        raise HookError(f"HTTP lifecycle hook failed: {e}") from None
    host = get.get("host") or pod_ip
    path = get.get("path") or "/"
    url = (
        f"{str(get.get('scheme') or 'HTTP').lower()}://{host}:{port}"
        f"{path if path.startswith('/') else '/' + path}"
    )
    headers = {"User-Agent": USER_AGENT}
    for h in get.get("httpHeaders") or ():
        headers[h["name"]] = h.get("value", "")
    try:
        async with httpx.AsyncClient(verify=False, trust_env=False) as client:
            response = await client.get(url, headers=headers, timeout=max(timeout, 0.1))
    except httpx.HTTPError as e:
        raise HookError(f'HTTP lifecycle hook ({path}) failed: Get "{url}": {e}') from None
    if response.status_code >= 400:
        raise HookError(f"HTTP lifecycle hook ({path}) failed with status {response.status_code}")


def should_restart(policy: str, exit_code: int | None, sidecar: bool = False) -> bool:
    """Whether an exited container is started again under the pod's restartPolicy."""
    if sidecar or policy == "Always":
        return True
    return policy == "OnFailure" and exit_code != 0


def grace_period(pod: Obj) -> float:
    """Seconds a terminating pod's containers get: the deletion's grace, else the spec's."""
    m = meta(pod)
    if m.get("deletionGracePeriodSeconds") is not None:
        return float(m["deletionGracePeriodSeconds"])
    spec = pod.get("spec") or {}
    value = spec.get("terminationGracePeriodSeconds")
    return float(30 if value is None else value)


def dns_config(pod: Obj, config: KubeletConfig) -> DNSConfig | None:
    """The pod's resolv.conf per dnsPolicy and dnsConfig; None keeps the runtime's default.

    ClusterFirst uses --cluster-dns when set (otherwise the node's resolver, as upstream
    falls back to); Default always the node's; None only what dnsConfig gives.
    """
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "ClusterFirstWithHostNet":
        policy = "ClusterFirst"
    elif policy == "ClusterFirst" and spec.get("hostNetwork"):
        policy = "Default"
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    if policy == "ClusterFirst" and config.cluster_dns:
        ns = namespace_of(pod) or "default"
        domain = config.cluster_domain
        servers = list(config.cluster_dns)
        searches = [f"{ns}.svc.{domain}", f"svc.{domain}", domain]
        options = ["ndots:5"]
    extra = spec.get("dnsConfig") or {}
    if policy != "None" and not servers and not extra:
        return None
    servers += [s for s in extra.get("nameservers") or () if s not in servers]
    searches += [s for s in extra.get("searches") or () if s not in searches]
    for opt in extra.get("options") or ():
        text = opt["name"] + (f":{opt['value']}" if opt.get("value") else "")
        options = [o for o in options if o.split(":")[0] != opt["name"]] + [text]
    return DNSConfig(tuple(servers), tuple(searches), tuple(options))
