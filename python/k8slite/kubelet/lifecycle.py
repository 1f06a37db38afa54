"""Pieces of a pod's lifecycle that need no worker state: hooks, restart rules, grace."""

from __future__ import annotations

import httpx
import trio

from k8slite.component.objects import Obj, meta
from k8slite.kubelet.probes import USER_AGENT, resolve_port
from k8slite.kubelet.runtime.base import ContainerRuntimeError, Runtime

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
