"""Container probes (exec, httpGet, tcpSocket, grpc) and the Prober that applies thresholds."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from k8slite import KUBERNETES_VERSION, protowire
from k8slite.kubelet.runtime.base import ContainerRuntimeError, ExecTimeoutError, Runtime

# Upstream's User-Agent, "kube-probe/<major>.<minor>".
USER_AGENT = "kube-probe/" + ".".join(KUBERNETES_VERSION.lstrip("v").split(".")[:2])
# Upstream keeps at most this much of a probe's output or body for its message.
MAX_OUTPUT = 10 * 1024
# grpc.health.v1.HealthCheckResponse.ServingStatus names, by number.
_GRPC_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


@dataclass(frozen=True, slots=True)
class ProbeResult:
    success: bool
    message: str = ""


async def run_probe(
    probe: Mapping[str, Any],
    *,
    pod_ip: str,
    runtime: Runtime,
    container_id: str,
    container: Mapping[str, Any] | None = None,
    http_client: httpx.AsyncClient | None = None,
) -> ProbeResult:
    """Run one probe of a container once, within its timeoutSeconds.

    container (the pod's container spec) resolves named ports; http_client, when given, is
    used for httpGet (it must not verify certificates nor follow redirects, as upstream).
    """
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if "exec" in probe:
            return await _exec(probe["exec"], runtime, container_id, timeout)
        if "httpGet" in probe:
            return await _http_get(probe["httpGet"], pod_ip, container, timeout, http_client)
        if "tcpSocket" in probe:
            return await _tcp(probe["tcpSocket"], pod_ip, container, timeout)
        if "grpc" in probe:
            return await _grpc(probe["grpc"], pod_ip, timeout)
    except _PortError as e:
        return ProbeResult(False, str(e))
    return ProbeResult(False, "the probe has no handler (exec, httpGet, tcpSocket or grpc)")


class _PortError(Exception):
    pass


def resolve_port(port: int | str, container: Mapping[str, Any] | None) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    for p in (container or {}).get("ports") or ():
        if p.get("name") == port:
            return int(p["containerPort"])
    raise _PortError(f"couldn't find port {port!r} in the container's ports")


def _host(probe: Mapping[str, Any], pod_ip: str) -> str:
    host = probe.get("host") or pod_ip
    return f"[{host}]" if ":" in host else host


async def _exec(
    probe: Mapping[str, Any], runtime: Runtime, container_id: str, timeout: float
) -> ProbeResult:
    command = list(probe.get("command") or ())
    try:
        result = await runtime.exec(container_id, command, timeout)
    except ExecTimeoutError:
        return ProbeResult(False, f"command {command!r} timed out")
    except ContainerRuntimeError as e:
        return ProbeResult(False, e.message)
    output = result.output[:MAX_OUTPUT].decode(errors="replace")
    return ProbeResult(result.exit_code == 0, output)


async def _http_get(
    probe: Mapping[str, Any],
    pod_ip: str,
    container: Mapping[str, Any] | None,
    timeout: float,
    client: httpx.AsyncClient | None,
) -> ProbeResult:
    port = resolve_port(probe.get("port", 80), container)
    scheme = str(probe.get("scheme") or "HTTP").lower()
    path = probe.get("path") or "/"
    url = f"{scheme}://{_host(probe, pod_ip)}:{port}{path if path.startswith('/') else '/' + path}"
    # One connection per probe, as upstream (no keep-alive): a probe sees a fresh accept.
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*", "Connection": "close"}
    for h in probe.get("httpHeaders") or ():
        headers[h["name"]] = h.get("value", "")
    if client is None:
        # trust_env off: a proxy from the environment must not see pod traffic.
        async with httpx.AsyncClient(verify=False, trust_env=False) as own:
            return await _http_request(own, url, headers, timeout)
    return await _http_request(client, url, headers, timeout)


async def _http_request(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], timeout: float
) -> ProbeResult:
    body = b""
    with trio.move_on_after(timeout):
        try:
            async with client.stream(
                "GET", url, headers=headers, timeout=timeout, follow_redirects=False
            ) as response:
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) >= MAX_OUTPUT:
                        break
        except httpx.TimeoutException:
            return ProbeResult(False, f'Get "{url}": context deadline exceeded')
        except httpx.HTTPError as e:
            return ProbeResult(False, f'Get "{url}": {e or type(e).__name__}')
        text = body[:MAX_OUTPUT].decode(errors="replace")
        # 3xx counts as success without following it, as upstream does for other hosts.
        if 200 <= response.status_code < 400:
            return ProbeResult(True, text)
        return ProbeResult(False, f"HTTP probe failed with statuscode: {response.status_code}")
    return ProbeResult(False, f'Get "{url}": context deadline exceeded')


async def _tcp(
    probe: Mapping[str, Any], pod_ip: str, container: Mapping[str, Any] | None, timeout: float
) -> ProbeResult:
    port = resolve_port(probe.get("port", 0), container)
    host = probe.get("host") or pod_ip
    with trio.move_on_after(timeout):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as e:
            return ProbeResult(False, f"dial tcp {_host(probe, pod_ip)}:{port}: {e.strerror or e}")
        await stream.aclose()
        return ProbeResult(True)
    return ProbeResult(False, f"dial tcp {_host(probe, pod_ip)}:{port}: i/o timeout")


async def _grpc(probe: Mapping[str, Any], pod_ip: str, timeout: float) -> ProbeResult:
    """grpc.health.v1.Health/Check over HTTP/2 without TLS, as upstream's gRPC probe."""
    target = f"{_host(probe, pod_ip)}:{int(probe['port'])}"
    service = str(probe.get("service") or "")
    # HealthCheckRequest{service = 1}, in a gRPC frame: no compression, 4-byte length.
    message = protowire.string(1, service)
    frame = b"\x00" + len(message).to_bytes(4, "big") + message
    headers = {"content-type": "application/grpc", "te": "trailers", "user-agent": USER_AGENT}
    with trio.move_on_after(timeout):
        try:
            # http1 off: HTTP/2 with prior knowledge over plain TCP (h2c), as gRPC speaks.
            async with httpx.AsyncClient(http1=False, http2=True, trust_env=False) as client:
                response = await client.post(
                    f"http://{target}/grpc.health.v1.Health/Check",
                    content=frame,
                    headers=headers,
                    timeout=timeout,
                )
        except httpx.HTTPError as e:
            return ProbeResult(False, f'failed to connect service "{target}": {e}')
        grpc_status = response.headers.get("grpc-status", "0")
        if response.status_code != 200 or grpc_status != "0":
            detail = response.headers.get("grpc-message") or f"HTTP {response.status_code}"
            return ProbeResult(False, f"health rpc probe failed: code {grpc_status}: {detail}")
        status = _grpc_serving_status(response.content)
        if status == 1:
            return ProbeResult(True)
        return ProbeResult(
            False, f'service unhealthy (responded with "{_GRPC_STATUS.get(status, status)}")'
        )
    return ProbeResult(False, f"timeout: health rpc did not complete within {timeout:g}s")


def _grpc_serving_status(body: bytes) -> int:
    """HealthCheckResponse.status (field 1, a varint) of the first gRPC frame; 0 if absent."""
    message = body[5 : 5 + int.from_bytes(body[1:5], "big")] if len(body) >= 5 else b""
    if len(message) >= 2 and message[0] == 0x08:
        value, shift = 0, 0
        for byte in message[1:]:
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value
    return 0


class Prober:
    """One probe of one container run periodically, like upstream's probe worker.

    The reported result changes only after failureThreshold consecutive failures or
    successThreshold consecutive successes. Before that it is the kind's initial one:
    liveness healthy, readiness not ready, startup not started. A startup prober stops once
    it succeeded; a liveness prober should be replaced (not resumed) once its container is
    restarted.
    """

    def __init__(
        self,
        kind: str,
        probe: Mapping[str, Any],
        check: Callable[[], Awaitable[ProbeResult]],
        *,
        started_at: float | None = None,
    ) -> None:
        if kind not in ("liveness", "readiness", "startup"):
            raise ValueError(f"unknown probe kind {kind!r}")
        self.kind = kind
        self.check = check
        self.started_at = started_at
        self.initial_delay = float(probe.get("initialDelaySeconds") or 0)
        self.period = float(probe.get("periodSeconds") or 10)
        self.success_threshold = int(probe.get("successThreshold") or 1)
        self.failure_threshold = int(probe.get("failureThreshold") or 3)
        self.healthy = kind == "liveness"
        # A startup probe that failed failureThreshold times in a row: kill the container.
        self.failed = False
        self.last: ProbeResult | None = None
        self._streak = 0

    def observe(self, result: ProbeResult) -> bool:
        """Count one probe result; True when the reported state (healthy or failed) changed."""
        if self.last is not None and self.last.success == result.success:
            self._streak += 1
        else:
            self._streak = 1
        self.last = result
        threshold = self.success_threshold if result.success else self.failure_threshold
        if result.success != self.healthy and self._streak >= threshold:
            self.healthy = result.success
            return True
        if (
            self.kind == "startup"
            and not result.success
            and not self.failed
            and self._streak >= threshold
        ):
            # Startup starts unhealthy, so failing changes nothing but still must be told.
            self.failed = True
            return True
        return False

    async def run(self, on_change: Callable[[Prober], object]) -> None:
        """Probe every periodSeconds until cancelled (a startup probe: until it succeeds or fails).

        on_change(self) is called on every change of healthy. The initial delay counts from
        the container's start (started_at, epoch seconds), so an adopted container is not
        kept waiting again after a kubelet restart.
        """
        delay = self.initial_delay
        if self.started_at is not None:
            delay -= time.time() - self.started_at
        await trio.sleep(max(0.0, delay))
        next_run = trio.current_time()
        while True:
            if self.observe(await self.check()):
                on_change(self)
            if self.kind == "startup" and (self.healthy or self.failed):
                return
            # Ticks stay on the period's grid; a probe slower than its period skips ticks.
            now = trio.current_time()
            while next_run <= now:
                next_run += self.period
            await trio.sleep_until(next_run)
