"""The controller manager: pick controllers, lead (or wait to), wire informers, run them."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio
from prometheus_client import REGISTRY, CollectorRegistry

from k8slite.client import ApiClient, ClientConfig, SharedInformerFactory, load_kubeconfig
from k8slite.component.events import EventBroadcaster
from k8slite.component.serving import ComponentServer, ServingOptions, serve
from k8slite.controllers.base import Controller, ControllerContext, ControllerOptions
from k8slite.controllers.deployment import DeploymentController
from k8slite.controllers.endpoints import EndpointsController
from k8slite.controllers.endpointslice import EndpointSliceController
from k8slite.controllers.garbagecollector import GarbageCollector
from k8slite.controllers.job import JobController
from k8slite.controllers.namespace import NamespaceController
from k8slite.controllers.nodelifecycle import NodeLifecycleController
from k8slite.controllers.podgc import PodGCController
from k8slite.controllers.replicaset import ReplicaSetController
from k8slite.controllers.tainteviction import TaintEvictionController
from k8slite.controllers.ttlafterfinished import TTLAfterFinishedController
from k8slite.leaderelection import LeaderElectionConfig

log = logging.getLogger(__name__)

# The lease the controller managers of one cluster compete for.
LEASE_NAME = "kube-controller-manager"
_CLOSE_TIMEOUT = 5.0


@dataclass(frozen=True)
class ControllerSpec:
    """A known controller: how to make it, its older aliases, how many workers."""

    make: Callable[[ControllerContext, int], Controller]
    workers: Callable[[ControllerOptions], int]
    aliases: tuple[str, ...] = ()


# Upstream's names (and the short names older flags used); all are on by default.
CONTROLLERS: dict[str, ControllerSpec] = {
    "replicaset-controller": ControllerSpec(
        ReplicaSetController, lambda o: o.concurrent_replicaset_syncs, ("replicaset",)
    ),
    "deployment-controller": ControllerSpec(
        DeploymentController, lambda o: o.concurrent_deployment_syncs, ("deployment",)
    ),
    "endpoints-controller": ControllerSpec(
        EndpointsController, lambda o: o.concurrent_endpoint_syncs, ("endpoint",)
    ),
    "endpointslice-controller": ControllerSpec(
        EndpointSliceController, lambda o: o.concurrent_service_endpoint_syncs, ("endpointslice",)
    ),
    "garbage-collector-controller": ControllerSpec(
        GarbageCollector, lambda o: o.concurrent_gc_syncs, ("garbagecollector",)
    ),
    "namespace-controller": ControllerSpec(
        NamespaceController, lambda o: o.concurrent_namespace_syncs, ("namespace",)
    ),
    "node-lifecycle-controller": ControllerSpec(
        NodeLifecycleController, lambda o: 1, ("nodelifecycle",)
    ),
    "taint-eviction-controller": ControllerSpec(TaintEvictionController, lambda o: 4),
    "job-controller": ControllerSpec(JobController, lambda o: o.concurrent_job_syncs, ("job",)),
    "ttl-after-finished-controller": ControllerSpec(
        TTLAfterFinishedController,
        lambda o: o.concurrent_ttl_after_finished_syncs,
        ("ttl-after-finished",),
    ),
    "pod-garbage-collector-controller": ControllerSpec(
        PodGCController, lambda o: 1, ("pod-garbage-collector", "podgc")
    ),
}
_ALIASES = {alias: name for name, spec in CONTROLLERS.items() for alias in spec.aliases}


class UnknownController(ValueError):
    """--controllers named something we do not run."""


def _canonical(name: str) -> str:
    name = _ALIASES.get(name, name)
    if name not in CONTROLLERS:
        raise UnknownController(f'"{name}" is not in the list of known controllers')
    return name


def enabled_controllers(flags: list[str]) -> list[str]:
    """Upstream's --controllers: "*" is every default controller, "foo" enables foo,
    "-foo" disables it (a disable wins)."""
    enabled, disabled, star = set(), set(), False
    for item in flags:
        item = item.strip()
        if item == "*":
            star = True
        elif item.startswith("-"):
            disabled.add(_canonical(item[1:]))
        elif item:
            enabled.add(_canonical(item))
    return [name for name in CONTROLLERS if name not in disabled and (name in enabled or star)]


@dataclass
class ControllerManagerConfig:
    kubeconfig: Path | None = None
    controllers: list[str] = field(default_factory=lambda: ["*"])
    leader_election: LeaderElectionConfig = field(
        default_factory=lambda: LeaderElectionConfig(resource_name=LEASE_NAME)
    )
    options: ControllerOptions = field(default_factory=ControllerOptions)
    serving: ServingOptions = field(default_factory=lambda: ServingOptions(secure_port=10257))
    kube_api_qps: float = 20.0
    kube_api_burst: int = 30
    identity: str | None = None


class ControllerManager:
    """Runs the enabled controllers while this process leads."""

    def __init__(
        self, config: ControllerManagerConfig, metrics_registry: CollectorRegistry = REGISTRY
    ) -> None:
        self.config = config
        self.registry = metrics_registry
        self.names = enabled_controllers(config.controllers)
        base = load_kubeconfig(config.kubeconfig)
        self.base_client_config = dataclasses.replace(
            base, qps=config.kube_api_qps, burst=config.kube_api_burst
        )

    def _client_config(self, name: str) -> ClientConfig:
        """Each controller its own client and rate limit, named in the user agent."""
        base = self.base_client_config
        return dataclasses.replace(base, user_agent=f"{base.user_agent}/{name}")

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve health and metrics; run the controllers whenever elected; never return."""
        async with trio.open_nursery() as nursery:
            app = ComponentServer(
                registry=self.registry,
                configz={"componentconfig": lambda: self.config},
                authorize=self.config.serving.authorizer(),
            )
            url, _ = await nursery.start(serve, app, self.config.serving)
            task_status.started(url)
            # The lease is renewed on a client of its own, so a busy controller's request
            # queue can never delay a renewal past the deadline.
            async with ApiClient(self._client_config("leader-election")) as client:
                await self.config.leader_election.run(
                    client,
                    self._lead,
                    identity=self.config.identity,
                    metrics_registry=self.registry,
                )
            nursery.cancel_scope.cancel()

    async def _lead(self, leader: trio.Nursery) -> None:
        log.info("starting controllers: %s", ", ".join(self.names))
        clients: list[ApiClient] = []

        def client_for(name: str) -> ApiClient:
            client = ApiClient(self._client_config(name))
            clients.append(client)
            return client

        try:
            # Informers start only now that we lead: their first list then comes after
            # the previous leader stopped writing, so no controller acts on its past.
            factory = SharedInformerFactory(client_for("shared-informers"))
            broadcaster = EventBroadcaster(
                client_for("event-broadcaster"), host=self.config.identity, registry=self.registry
            )
            ctx = ControllerContext(
                client_for, factory, broadcaster, self.config.options, self.registry
            )
            controllers = [
                CONTROLLERS[name].make(ctx, CONTROLLERS[name].workers(ctx.options))
                for name in self.names
            ]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(broadcaster.run)
                for controller in controllers:
                    await controller.setup()
                await factory.start(nursery)
                await factory.wait_for_cache_sync()
                for controller in controllers:
                    controller.after_sync()
                    await nursery.start(controller.run)
                log.info("controllers running")
        finally:
            with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                for client in clients:
                    await client.aclose()
