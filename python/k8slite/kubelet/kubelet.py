"""The kubelet: registers its Node, runs the pods bound to it and serves its API."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from k8slite import datadir
from k8slite.client import ApiClient, DeletedFinalStateUnknown, SharedInformerFactory
from k8slite.client.resource import NODES, PODS, SERVICES
from k8slite.component.events import EventBroadcaster
from k8slite.component.objects import Obj
from k8slite.component.serving import ServingOptions, serve
from k8slite.kubelet import emptydir, localpath, machine
from k8slite.kubelet.authz import Authorizer, sar_review
from k8slite.kubelet.config import KubeletConfig
from k8slite.kubelet.containers import WorkerEnv
from k8slite.kubelet.metrics import KubeletMetrics, MeteredRuntime
from k8slite.kubelet.node import MAX_IMAGES, Health, NodeStatusManager
from k8slite.kubelet.objects import ObjectFetcher
from k8slite.kubelet.pleg import Relister
from k8slite.kubelet.podworkers import Adopted, PodWorkers
from k8slite.kubelet.runtime.base import ContainerRuntimeError, Runtime
from k8slite.kubelet.server import KubeletApi, read_only_server
from k8slite.kubelet.stats import StatsProvider, host_stats
from k8slite.kubelet.systemlogs import SystemLogs
from k8slite.kubelet.tokens import TokenManager
from k8slite.kubelet.volumes import VolumeManager

log = logging.getLogger(__name__)


@dataclass
class KubeletServing:
    """What run() reports once the kubelet is registered: the ports it serves on."""

    port: int | None
    healthz_port: int | None


def pod_handlers(workers: PodWorkers) -> dict[str, Any]:
    """Informer callbacks feeding pod workers."""

    def deleted(obj: Obj | DeletedFinalStateUnknown) -> None:
        workers.remove(obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj)

    return {
        "on_add": workers.update,
        "on_update": lambda old, new: workers.update(new),
        "on_delete": deleted,
    }


async def image_list(runtime: Runtime) -> list[Obj]:
    """status.images: the largest images first, at most MAX_IMAGES, named ones only."""
    infos = [i for i in await runtime.list_images() if i.names]
    infos.sort(key=lambda i: i.size_bytes, reverse=True)
    return [{"names": list(i.names), "sizeBytes": i.size_bytes} for i in infos[:MAX_IMAGES]]


class Kubelet:
    """One node's kubelet over a real (docker, process) or fake runtime."""

    def __init__(self, config: KubeletConfig, client: ApiClient, runtime: Runtime) -> None:
        self.config = config
        self.client = client
        self.metrics = KubeletMetrics()
        self.runtime: Runtime = MeteredRuntime(runtime, self.metrics)  # type: ignore[assignment]
        self.simulated = runtime.name == "fake"
        self.relister = Relister(self.runtime, self._wake, config.pleg_relist_period)
        self.workers: PodWorkers | None = None
        self._image_cache: list[Obj] = []
        self._pod_cidr = config.pod_cidr

    async def _images(self) -> list[Obj]:
        # A runtime that stopped answering keeps the last list; Ready says what is wrong.
        try:
            self._image_cache = await image_list(self.runtime)
        except ContainerRuntimeError as e:
            log.debug("listing images failed: %s", e)
        return self._image_cache

    async def _runtime_version(self) -> str:
        delay = 1.0
        while True:
            try:
                return await self.runtime.version()
            except ContainerRuntimeError as e:
                log.warning(
                    "the container runtime does not answer (%s); retrying in %.0fs", e, delay
                )
            await trio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _wake(self, uid: str) -> None:
        if self.workers is not None:
            self.workers.wake(uid)

    async def _health(self) -> Health:
        pressure = await trio.to_thread.run_sync(machine.pressure, self.config.root_dir)
        return Health(self.relister.healthy, self.relister.last_error, pressure)

    async def run(
        self, *, task_status: trio.TaskStatus[KubeletServing] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled; reports the ports once the Node is registered."""
        cfg = self.config
        # Secret and token volumes live here: the owner's alone.
        datadir.private_dir(cfg.root_dir)
        version = await self._runtime_version()
        capacity = machine.host_capacity(cfg.root_dir, cfg.max_pods)
        capacity.update(cfg.capacity)
        objects = ObjectFetcher(self.client)
        events = EventBroadcaster(self.client, registry=self.metrics.registry)
        factory = SharedInformerFactory(self.client)
        pods = factory.informer(PODS, field_selector=f"spec.nodeName={cfg.node_name}")
        services = None if self.simulated else factory.informer(SERVICES)
        if cfg.pod_network == "bridge":
            self._follow_pod_cidr(factory)
        async with (
            httpx.AsyncClient(verify=False, trust_env=False) as probe_http,
            trio.open_nursery() as nursery,
        ):
            env = WorkerEnv(
                config=cfg,
                client=self.client,
                runtime=self.runtime,
                volumes=None
                if self.simulated
                else VolumeManager(
                    cfg.root_dir,
                    objects.get,
                    TokenManager(objects.token, cfg.token_refresh_fraction),
                ),
                objects=objects,
                services=(lambda: services.list()) if services else list,
                events=events.recorder("kubelet", host=cfg.node_name),
                metrics=self.metrics,
                allocatable=capacity,
                probe_http=probe_http,
            )
            workers = self.workers = PodWorkers(env)
            self.metrics.set_sources(workers.running_pods, self.relister.counts)
            api = KubeletApi(
                workers,
                self.runtime,
                self.metrics.registry,
                Authorizer(sar_review(self.client, cfg.node_name)),
                config=lambda: cfg,
                system_logs=SystemLogs(cfg.system_log_dir) if cfg.system_log_dir else None,
                stats=StatsProvider(
                    self.runtime,
                    workers,
                    cfg.node_name,
                    # A simulated node uses what its pods use; a real one what the host does.
                    host=None if self.simulated else host_stats,
                ),
            )
            port = await self._serve_api(nursery, api)
            healthz = None
            if cfg.healthz_port is not None:
                plain = ServingOptions(cfg.healthz_bind_address, cfg.healthz_port, secure=False)
                _, healthz = await nursery.start(serve, read_only_server(), plain)
            await self._snapshot(workers)
            node = NodeStatusManager(
                self.client,
                cfg,
                info=machine.node_info(),
                capacity=capacity,
                runtime_version=version,
                kubelet_port=port or 0,
                images=self._images,
                health=self._health,
            )
            await nursery.start(node.run)
            nursery.start_soon(events.run)
            await nursery.start(workers.run)
            pods.add_event_handler(**pod_handlers(workers))
            await factory.start(nursery)
            await factory.wait_for_cache_sync()
            await self._remove_orphans(workers, env.volumes)
            if not self.simulated:
                nursery.start_soon(self.relister.run)
                nursery.start_soon(
                    localpath.cleanup_loop, self.client, localpath.local_path_dir(cfg.root_dir)
                )
                nursery.start_soon(self._housekeeping, workers)
            log.info("kubelet %s running (%s)", cfg.node_name, version)
            task_status.started(KubeletServing(port, healthz))

    def _follow_pod_cidr(self, factory: SharedInformerFactory) -> None:
        """Hand the runtime the pod CIDR the node IPAM controller gives our Node (upstream's
        kubelet passes spec.podCIDR to the runtime through CRI's UpdateRuntimeConfig)."""
        update = getattr(self.runtime, "update_pod_cidr", None)
        if update is None:
            return
        nodes = factory.informer(NODES, field_selector=f"metadata.name={self.config.node_name}")

        def changed(node: Obj) -> None:
            cidr = (node.get("spec") or {}).get("podCIDR")
            if cidr and cidr != self._pod_cidr:
                log.info("node %s: pod CIDR %s", self.config.node_name, cidr)
                self._pod_cidr = cidr
                update(cidr)

        nodes.add_event_handler(on_add=changed, on_update=lambda _, new: changed(new))

    async def _housekeeping(self, workers: PodWorkers) -> None:
        """Evict pods whose disk-backed emptyDir uses more than its sizeLimit (upstream's
        eviction manager, local storage part), every --housekeeping-interval."""
        while True:
            await trio.sleep(self.config.housekeeping_period)
            for worker in list(workers.workers.values()):
                paths = worker.state.volume_paths
                if not worker.active or not paths or worker.eviction is not None:
                    continue
                if not emptydir.limited_disk_volumes(worker.pod):
                    continue
                message = await trio.to_thread.run_sync(emptydir.over_limit, worker.pod, paths)
                if message is not None:
                    log.info("evicting pod %s/%s: %s", worker.namespace, worker.name, message)
                    worker.evict(message)

    async def _serve_api(self, nursery: trio.Nursery, api: KubeletApi) -> int | None:
        cfg = self.config
        if cfg.port is None:
            return None
        files = cfg.tls_files
        if files is None or cfg.client_ca_file is None:
            raise ValueError(
                "the kubelet API needs --tls-cert-file, --tls-private-key-file and "
                "--client-ca-file (or --port=-1 to not serve it)"
            )
        options = ServingOptions(
            cfg.address,
            cfg.port,
            tls_cert_file=files[0],
            tls_private_key_file=files[1],
            client_ca_file=cfg.client_ca_file,
        )
        _, port = await nursery.start(serve, api.server(), options)
        return int(port)

    async def _snapshot(self, workers: PodWorkers) -> None:
        """What a previous kubelet left in the runtime, for the workers to adopt."""
        try:
            sandboxes = await self.runtime.list_sandboxes()
            containers = await self.runtime.list_containers()
        except ContainerRuntimeError as e:
            log.warning("cannot list what the runtime runs: %s", e)
            return
        for sandbox in sandboxes:
            workers.adopted.setdefault(sandbox.pod_uid, Adopted()).sandboxes.append(sandbox)
        for info in containers:
            workers.adopted.setdefault(info.pod_uid, Adopted()).containers.append(info)

    async def _remove_orphans(self, workers: PodWorkers, volumes: VolumeManager | None) -> None:
        """Remove what belongs to pods the API no longer has (deleted while we were away)."""
        for uid, adopted in list(workers.adopted.items()):
            del workers.adopted[uid]
            log.info("removing sandboxes and containers of pod %s, which is gone", uid)
            try:
                for sandbox in adopted.sandboxes:
                    await self.runtime.stop_sandbox(sandbox.id)
                    await self.runtime.remove_sandbox(sandbox.id)
                for info in adopted.containers:
                    await self.runtime.remove_container(info.id)
            except ContainerRuntimeError as e:
                log.warning("cleaning up pod %s: %s", uid, e)
        if volumes is not None:
            for uid in volumes.known_pods():
                if uid not in workers.workers:
                    volumes.cleanup(uid)
