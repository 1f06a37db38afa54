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
from k8slite.client.informer import strip_managed_fields
from k8slite.component.events import EventBroadcaster
from k8slite.component.serving import ComponentServer, ServingOptions, serve
from k8slite.controllers.base import Controller, ControllerContext, ControllerOptions
from k8slite.controllers.bootstrapsigner import BootstrapSigner
from k8slite.controllers.certificates import CSRApprovingController, CSRSigningController
from k8slite.controllers.cronjob import CronJobController
from k8slite.controllers.daemonset import DaemonSetController
from k8slite.controllers.deployment import DeploymentController
from k8slite.controllers.disruption import DisruptionController
from k8slite.controllers.endpoints import EndpointsController
from k8slite.controllers.endpointslice import EndpointSliceController
from k8slite.controllers.garbagecollector import GarbageCollector
from k8slite.controllers.job import JobController
from k8slite.controllers.localpath import LocalPathProvisioner
from k8slite.controllers.namespace import NamespaceController
from k8slite.controllers.nodeipam import NodeIPAMController
from k8slite.controllers.nodelifecycle import NodeLifecycleController
from k8slite.controllers.persistentvolume import PersistentVolumeController
from k8slite.controllers.podautoscaler import HorizontalPodAutoscalerController
from k8slite.controllers.podgc import PodGCController
from k8slite.controllers.replicaset import (
    ReplicaSetController,
    ReplicationControllerController,
)
from k8slite.controllers.rootcacertpublisher import RootCACertPublisher
from k8slite.controllers.serviceaccount import ServiceAccountsController
from k8slite.controllers.statefulset import StatefulSetController
from k8slite.controllers.tainteviction import TaintEvictionController
from k8slite.controllers.tokencleaner import TokenCleaner
from k8slite.controllers.tokens import TokensController
from k8slite.controllers.ttlafterfinished import TTLAfterFinishedController
from k8slite.controllers.volumeprotection import PVCProtectionController, PVProtectionController
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
    # What the controller cannot run without, as a flag name, if the options lack it.
    missing: Callable[[ControllerOptions], str | None] = lambda _o: None
    # Upstream's disabled-by-default controllers run only when named ("*" leaves them off).
    default_on: bool = True


# Upstream's names (and the short names older flags used); on by default but for the two
# bootstrap-token controllers, as upstream.
CONTROLLERS: dict[str, ControllerSpec] = {
    "replicaset-controller": ControllerSpec(
        ReplicaSetController, lambda o: o.concurrent_replicaset_syncs, ("replicaset",)
    ),
    "deployment-controller": ControllerSpec(
        DeploymentController, lambda o: o.concurrent_deployment_syncs, ("deployment",)
    ),
    "cronjob-controller": ControllerSpec(
        CronJobController, lambda o: o.concurrent_cron_job_syncs, ("cronjob",)
    ),
    "daemonset-controller": ControllerSpec(
        DaemonSetController, lambda o: o.concurrent_daemonset_syncs, ("daemonset",)
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
    # Upstream's nodeUpdateWorkerSize: 8 workers keep the NoSchedule taints in step.
    "node-lifecycle-controller": ControllerSpec(
        NodeLifecycleController, lambda o: 8, ("nodelifecycle",)
    ),
    "taint-eviction-controller": ControllerSpec(TaintEvictionController, lambda o: 4),
    "replicationcontroller-controller": ControllerSpec(
        ReplicationControllerController, lambda o: o.concurrent_rc_syncs, ("replicationcontroller",)
    ),
    "disruption-controller": ControllerSpec(DisruptionController, lambda o: 1, ("disruption",)),
    "serviceaccount-controller": ControllerSpec(
        ServiceAccountsController, lambda o: 1, ("serviceaccount",)
    ),
    "serviceaccount-token-controller": ControllerSpec(
        TokensController,
        lambda o: 1,
        ("serviceaccount-token",),
        lambda o: (
            None if o.service_account_private_key_file else "--service-account-private-key-file"
        ),
    ),
    "root-ca-certificate-publisher-controller": ControllerSpec(
        RootCACertPublisher, lambda o: 1, ("root-ca-cert-publisher",)
    ),
    "statefulset-controller": ControllerSpec(
        StatefulSetController, lambda o: o.concurrent_statefulset_syncs, ("statefulset",)
    ),
    "persistentvolume-binder-controller": ControllerSpec(
        PersistentVolumeController, lambda o: 1, ("persistentvolume-binder",)
    ),
    "persistentvolume-protection-controller": ControllerSpec(
        PVProtectionController, lambda o: 1, ("pv-protection",)
    ),
    "persistentvolumeclaim-protection-controller": ControllerSpec(
        PVCProtectionController, lambda o: 1, ("pvc-protection",)
    ),
    # k3s runs its local-path provisioner in the cluster; here it is one more controller.
    "local-path-provisioner": ControllerSpec(LocalPathProvisioner, lambda o: 1),
    "job-controller": ControllerSpec(JobController, lambda o: o.concurrent_job_syncs, ("job",)),
    "ttl-after-finished-controller": ControllerSpec(
        TTLAfterFinishedController,
        lambda o: o.concurrent_ttl_after_finished_syncs,
        ("ttl-after-finished",),
    ),
    "horizontal-pod-autoscaler-controller": ControllerSpec(
        HorizontalPodAutoscalerController,
        lambda o: o.concurrent_horizontal_pod_autoscaler_syncs,
        ("horizontalpodautoscaling",),
    ),
    "pod-garbage-collector-controller": ControllerSpec(
        PodGCController, lambda o: 1, ("pod-garbage-collector", "podgc")
    ),
    "bootstrap-signer-controller": ControllerSpec(
        BootstrapSigner, lambda o: 1, ("bootstrapsigner",), default_on=False
    ),
    "token-cleaner-controller": ControllerSpec(
        TokenCleaner, lambda o: 1, ("tokencleaner",), default_on=False
    ),
    "node-ipam-controller": ControllerSpec(
        NodeIPAMController,
        lambda o: 1,
        ("nodeipam",),
        lambda o: (
            None
            if o.allocate_node_cidrs and o.cluster_cidr
            else "--allocate-node-cidrs and --cluster-cidr"
        ),
    ),
    "certificatesigningrequest-approving-controller": ControllerSpec(
        CSRApprovingController, lambda o: 5, ("csrapproving",)
    ),
    "certificatesigningrequest-signing-controller": ControllerSpec(
        CSRSigningController,
        lambda o: 5,
        ("csrsigning",),
        lambda o: (
            None
            if o.cluster_signing_cert_file and o.cluster_signing_key_file
            else "--cluster-signing-cert-file and --cluster-signing-key-file"
        ),
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
    return [
        name
        for name, spec in CONTROLLERS.items()
        if name not in disabled and (name in enabled or (star and spec.default_on))
    ]


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
        ca_file = config.options.root_ca_file
        self.root_ca = ca_file.read_bytes() if ca_file else (base.ca_data or b"")
        for name in list(self.names):
            missing = CONTROLLERS[name].missing(config.options)
            if missing:
                # As upstream: the controller stays off, the rest run.
                log.warning("%s is disabled: it needs %s", name, missing)
                self.names.remove(name)

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
            factory = SharedInformerFactory(
                client_for("shared-informers"), transform=strip_managed_fields
            )
            broadcaster = EventBroadcaster(
                client_for("event-broadcaster"), host=self.config.identity, registry=self.registry
            )
            ctx = ControllerContext(
                client_for,
                factory,
                broadcaster,
                self.config.options,
                self.registry,
                self.root_ca,
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
