"""k8slite-proxy in both modes, in a network namespace of the test's own, with test backends.

Each test makes a namespace with only a loopback device (and a dummy "node" address), runs
the backends and a real k8slite-proxy child process inside it, and reaches the host's API
server through a relay. Services are selector-less and their EndpointSlices are written by
the test, so the endpoints are exactly what the test says.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from k8slite.client import ApiClient, NotFound, load_kubeconfig
from k8slite.client.resource import ENDPOINTSLICES, NAMESPACES, SERVICES
from tests.conftest import ServerHandle
from tests.integration.proxy_harness import (
    NetNS,
    ProxyProcess,
    eventually,
    fetch,
    http_get,
    proxy_kubeconfig,
    refused,
    relay_api,
    require_netns,
    require_nft,
    serve_backend,
    serve_udp_backend,
    udp_ask,
)

MODES = ["userspace", "nftables"]
NODE_IP = "198.51.100.1"  # the namespace's stand-in for the node's address (TEST-NET-2)
BACKENDS = {"b1": "127.0.0.11", "b2": "127.0.0.12", "b3": "127.0.0.13"}


def service(name: str, *, ports: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    ports = ports or [{"name": "http", "port": 80, "targetPort": 8080}]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"ports": ports, **spec},
    }


def endpoint_slice(
    svc: str,
    ready: dict[str, bool],
    *,
    port: int = 8080,
    port_name: str = "http",
    protocol: str = "TCP",
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{svc}-test",
            "labels": {
                "kubernetes.io/service-name": svc,
                "endpointslice.kubernetes.io/managed-by": "test",
            },
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [BACKENDS[name]], "conditions": {"ready": is_ready}}
            for name, is_ready in ready.items()
        ],
        "ports": [{"name": port_name, "port": port, "protocol": protocol}],
    }


@dataclass
class Env:
    ns: NetNS
    api: ApiClient
    namespace: str
    kubeconfig: Path
    mode: str
    tmp: Path
    nursery: trio.Nursery
    proxy: ProxyProcess | None = None
    extra: list[str] = field(default_factory=list)

    async def start_proxy(self) -> ProxyProcess:
        argv = self.ns.exec_argv(ProxyProcess.command(self.kubeconfig, self.mode, *self.extra))
        self.proxy = ProxyProcess(argv, self.tmp / "proxy.log")
        await self.proxy.start()
        return self.proxy

    async def stop_proxy(self) -> int | None:
        code = await self.proxy.stop() if self.proxy else None
        self.proxy = None
        return code

    async def backends(self, *names: str, port: int = 8080) -> None:
        for name in names:
            await self.nursery.start(serve_backend, self.ns, BACKENDS[name], port, name)

    async def create(
        self, svc: dict[str, Any], ready: dict[str, bool] | None = None, **slice_args: Any
    ) -> dict[str, Any]:
        created = await self.api.create(SERVICES, svc, namespace=self.namespace)
        if ready is not None:
            await self.api.create(
                ENDPOINTSLICES,
                endpoint_slice(svc["metadata"]["name"], ready, **slice_args),
                namespace=self.namespace,
            )
        return created

    async def set_ready(self, svc: str, ready: dict[str, bool], **slice_args: Any) -> None:
        body = endpoint_slice(svc, ready, **slice_args)
        current = await self.api.get(ENDPOINTSLICES, f"{svc}-test", namespace=self.namespace)
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await self.api.update(ENDPOINTSLICES, body, namespace=self.namespace)

    async def spread(self, ip: str, port: int, n: int, **kw: Any) -> Counter[str]:
        return Counter([await fetch(self.ns, ip, port, **kw) for _ in range(n)])

    async def metrics(self) -> str:
        assert self.proxy is not None
        status, body = await http_get(self.ns, *self.proxy.address("metrics"), "/metrics")
        assert status == 200
        return body


@asynccontextmanager
async def environment(
    apiserver: ServerHandle, tmp_path: Path, mode: str, *extra: str
) -> AsyncIterator[Env]:
    require_netns()
    if mode == "nftables":
        require_nft()
    ns = NetNS()
    try:
        ns.add_address(f"{NODE_IP}/32")
        async with (
            ApiClient(load_kubeconfig(apiserver.kubeconfig)) as api,
            trio.open_nursery() as nursery,
        ):
            host, port = apiserver.url.removeprefix("https://").rsplit(":", 1)
            relay_port = await nursery.start(relay_api, ns, (host, int(port)))
            kubeconfig = proxy_kubeconfig(
                apiserver, f"https://127.0.0.1:{relay_port}", tmp_path / "proxy.kubeconfig"
            )
            namespace = f"proxy-{os.urandom(4).hex()}"
            await api.create(NAMESPACES, {"metadata": {"name": namespace}})
            env = Env(ns, api, namespace, kubeconfig, mode, tmp_path, nursery, extra=list(extra))
            try:
                yield env
            finally:
                with trio.CancelScope(shield=True):
                    await env.stop_proxy()
                    with suppress(NotFound):
                        await api.delete(NAMESPACES, namespace)
                nursery.cancel_scope.cancel()
    finally:
        ns.delete()


@pytest.mark.parametrize("mode", MODES)
async def test_round_robin_readiness_and_metrics(
    apiserver: ServerHandle, tmp_path: Path, mode: str
) -> None:
    async with environment(apiserver, tmp_path, mode) as env:
        await env.backends("b1", "b2", "b3")
        svc = await env.create(service("web"), {"b1": True, "b2": True, "b3": True})
        ip = svc["spec"]["clusterIP"]
        await env.start_proxy()
        # The routing guard holds while the proxy runs: the range is this host's.
        route = env.ns.ip("route", "get", ip)
        assert route.startswith(f"local {ip} dev lo"), route

        counts = await env.spread(ip, 80, 60)
        assert set(counts) == {"b1", "b2", "b3"}
        if mode == "userspace":
            assert counts == {"b1": 20, "b2": 20, "b3": 20}  # strict round robin

        # A backend that stops being ready gets no new connections.
        await env.set_ready("web", {"b1": True, "b2": True, "b3": False})

        async def b3_gone() -> bool:
            return "b3" not in await env.spread(ip, 80, 30)

        await eventually(b3_gone, what="b3 to leave the rotation")
        assert set(await env.spread(ip, 80, 30)) == {"b1", "b2"}

        metrics = await env.metrics()
        for name in (
            "kubeproxy_sync_proxy_rules_duration_seconds_count",
            "kubeproxy_network_programming_duration_seconds_count",
        ):
            line = next(x for x in metrics.splitlines() if x.startswith(name))
            assert float(line.split()[-1]) >= 1, line
        assert env.proxy is not None
        status, body = await http_get(env.ns, *env.proxy.address("healthz"), "/healthz")
        assert status == 200 and '"nodeHealthy": true' in body


@pytest.mark.parametrize("mode", MODES)
async def test_client_ip_affinity(apiserver: ServerHandle, tmp_path: Path, mode: str) -> None:
    async with environment(apiserver, tmp_path, mode) as env:
        await env.backends("b1", "b2", "b3")
        svc = await env.create(
            service("sticky", sessionAffinity="ClientIP"), {"b1": True, "b2": True, "b3": True}
        )
        assert svc["spec"]["sessionAffinity"] == "ClientIP"
        ip = svc["spec"]["clusterIP"]
        await env.start_proxy()
        # Each client address sticks to one backend ...
        for client in ("127.0.0.101", "127.0.0.102"):
            assert len(await env.spread(ip, 80, 10, source=client)) == 1
        # ... while different clients are still spread over the backends.
        firsts = {await fetch(env.ns, ip, 80, source=f"127.0.0.{i}") for i in range(110, 130)}
        assert len(firsts) > 1


@pytest.mark.parametrize("mode", MODES)
async def test_no_endpoints_refused_then_deleted(
    apiserver: ServerHandle, tmp_path: Path, mode: str
) -> None:
    async with environment(apiserver, tmp_path, mode) as env:
        await env.backends("b1")
        svc = await env.create(service("lonely"), {})
        ip = svc["spec"]["clusterIP"]
        await env.start_proxy()
        # No endpoints: refused at once (a timeout would fail inside `refused`).
        assert await refused(env.ns, ip, 80)
        # A port the service does not have, and an address no service has, too.
        assert await refused(env.ns, ip, 81)
        await env.set_ready("lonely", {"b1": True})
        assert await eventually(lambda: fetch(env.ns, ip, 80)) == "b1"
        # Deleting the service removes its listener or rules.
        await env.api.delete(SERVICES, "lonely", namespace=env.namespace)
        await eventually(lambda: refused(env.ns, ip, 80), what="the service to go away")


@pytest.mark.parametrize("mode", MODES)
async def test_node_port(apiserver: ServerHandle, tmp_path: Path, mode: str) -> None:
    async with environment(apiserver, tmp_path, mode) as env:
        await env.backends("b1", "b2")
        svc = await env.create(service("np", type="NodePort"), {"b1": True, "b2": True})
        node_port = svc["spec"]["ports"][0]["nodePort"]
        await env.start_proxy()
        assert set(await env.spread(NODE_IP, node_port, 40)) == {"b1", "b2"}
        if mode == "userspace":
            # nftables mode, like upstream's, does not answer NodePorts on loopback.
            assert set(await env.spread("127.0.0.1", node_port, 20)) == {"b1", "b2"}
        # A node port of a service without endpoints is refused, not left hanging.
        empty = await env.create(service("np-empty", type="NodePort"), {})
        empty_port = empty["spec"]["ports"][0]["nodePort"]
        assert await eventually(lambda: refused(env.ns, NODE_IP, empty_port))


@pytest.mark.parametrize("mode", MODES)
async def test_restart_restores_and_drains(
    apiserver: ServerHandle, tmp_path: Path, mode: str
) -> None:
    async with environment(apiserver, tmp_path, mode) as env:
        await env.backends("b1", "b2")
        svc = await env.create(service("durable"), {"b1": True, "b2": False})
        ip = svc["spec"]["clusterIP"]
        await env.start_proxy()
        assert await fetch(env.ns, ip, 80) == "b1"

        # A connection open while its endpoint goes away finishes its work (draining);
        # new connections go to the endpoint that is left.
        conn = env.ns.socket()
        with conn:
            await conn.connect((ip, 80))
            assert (await conn.recv(100)).strip() == b"b1"
            await env.set_ready("durable", {"b1": False, "b2": True})

            async def only_b2() -> bool:
                return set(await env.spread(ip, 80, 6)) == {"b2"}

            await eventually(only_b2, what="traffic to move to b2")
            await conn.send(b"still there\n")
            assert (await conn.recv(100)) == b"still there\n"

        assert await env.stop_proxy() == 0
        if mode == "nftables":
            listed = await trio.run_process(
                env.ns.exec_argv(["nft", "list", "table", "ip", "k8slite"]),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            assert listed.returncode != 0  # the table went with the proxy
        # The guard stays after exit: the range is still local, so nothing leaks out.
        assert env.ns.ip("route", "get", ip).startswith("local ")
        assert await refused(env.ns, ip, 80)
        await env.start_proxy()
        assert await fetch(env.ns, ip, 80) == "b2"


@pytest.mark.parametrize("mode", MODES)
async def test_udp(apiserver: ServerHandle, tmp_path: Path, mode: str) -> None:
    async with environment(apiserver, tmp_path, mode) as env:
        for name in ("b1", "b2"):
            await env.nursery.start(serve_udp_backend, env.ns, BACKENDS[name], 5353, name)
        ports = [{"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"}]
        svc = await env.create(
            service("dns", ports=ports),
            {"b1": True, "b2": True},
            port=5353,
            port_name="dns",
            protocol="UDP",
        )
        ip = svc["spec"]["clusterIP"]
        await env.start_proxy()
        answers = {await udp_ask(env.ns, ip, 53) for _ in range(20)}
        assert answers == {"b1", "b2"}


async def test_refuses_to_start_without_routing(apiserver: ServerHandle, tmp_path: Path) -> None:
    """Without CAP_NET_ADMIN the range cannot be routed locally: a clear error, exit 1."""
    require_netns()
    ns = NetNS()
    try:
        argv = ns.exec_argv(
            [
                "setpriv",
                "--bounding-set=-net_admin",
                "--inh-caps=-net_admin",
                *ProxyProcess.command(apiserver.kubeconfig, "userspace"),
            ]
        )
        done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
        assert done.returncode == 1
        err = done.stderr.decode()
        assert "cannot route the service range 10.96.0.0/12 to this host" in err, err
        assert "refusing to start" in err
        assert "local" not in ns.ip("route", "show", "table", "local", "10.96.0.0/12")
    finally:
        ns.delete()
