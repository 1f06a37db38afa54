"""What every controller shares: its context, a keyed workqueue, workers and error metrics."""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import trio
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from k8slite.client import (
    ApiClient,
    Conflict,
    DeletedFinalStateUnknown,
    SharedInformerFactory,
    WorkQueue,
    object_key,
    run_workers,
)
from k8slite.component.events import EventBroadcaster, EventRecorder
from k8slite.component.objects import Obj

log = logging.getLogger(__name__)

# A write lost an optimistic-concurrency race: our cache was a step behind. The informer
# catches up within milliseconds, so retry soon rather than with growing backoff.
CONFLICT_RETRY = 0.05

_errors_by_registry: dict[int, Counter] = {}


def reconcile_errors(registry: CollectorRegistry = REGISTRY) -> Counter:
    """controller_reconcile_errors_total{controller}: syncs that failed and were retried."""
    counter = _errors_by_registry.get(id(registry))
    if counter is None:
        counter = Counter(
            "controller_reconcile_errors_total",
            "Number of reconciles of a controller that ended in an error.",
            ("controller",),
            registry=registry,
        )
        _errors_by_registry[id(registry)] = counter
    return counter


@dataclass(frozen=True)
class AutoscalerOptions:
    """Upstream's --horizontal-pod-autoscaler-* flags."""

    sync_period: float = 15.0
    downscale_stabilization: float = 300.0
    tolerance: float = 0.1
    cpu_initialization_period: float = 300.0
    initial_readiness_delay: float = 30.0


@dataclass
class ControllerOptions:
    """Tunables from the command line (upstream's flag names in comments)."""

    concurrent_replicaset_syncs: int = 5  # --concurrent-replicaset-syncs
    concurrent_rc_syncs: int = 5  # --concurrent-rc-syncs
    concurrent_deployment_syncs: int = 5  # --concurrent-deployment-syncs
    concurrent_daemonset_syncs: int = 2  # --concurrent-daemonset-syncs
    concurrent_cron_job_syncs: int = 5  # --concurrent-cron-job-syncs
    concurrent_statefulset_syncs: int = 5  # --concurrent-statefulset-syncs
    concurrent_endpoint_syncs: int = 5  # --concurrent-endpoint-syncs
    concurrent_service_endpoint_syncs: int = 5  # --concurrent-service-endpoint-syncs
    concurrent_gc_syncs: int = 20  # --concurrent-gc-syncs
    concurrent_namespace_syncs: int = 10  # --concurrent-namespace-syncs
    node_monitor_period: float = 5.0  # --node-monitor-period
    node_monitor_grace_period: float = 40.0  # --node-monitor-grace-period
    node_startup_grace_period: float = 60.0  # --node-startup-grace-period
    # NoExecute tainting of not-ready nodes, per zone: nodes a second in a healthy (or a
    # fully disrupted) zone, in a partially disrupted one (0 in a zone of no more than
    # large_cluster_size_threshold nodes), and the share of not-ready nodes from which a
    # zone is partially disrupted.
    node_eviction_rate: float = 0.1  # --node-eviction-rate
    secondary_node_eviction_rate: float = 0.01  # --secondary-node-eviction-rate
    large_cluster_size_threshold: int = 50  # --large-cluster-size-threshold
    unhealthy_zone_threshold: float = 0.55  # --unhealthy-zone-threshold
    root_ca_file: Path | None = None  # --root-ca-file (default: the kubeconfig's CA)
    # --service-account-private-key-file: signs legacy tokens; none, no token controller.
    service_account_private_key_file: Path | None = None
    concurrent_job_syncs: int = 5  # --concurrent-job-syncs
    concurrent_ttl_after_finished_syncs: int = 5  # --concurrent-ttl-after-finished-syncs
    concurrent_horizontal_pod_autoscaler_syncs: int = (
        5  # --concurrent-horizontal-pod-autoscaler-syncs
    )
    terminated_pod_gc_threshold: int = 12500  # --terminated-pod-gc-threshold
    # Back-off before a failed Job pod is replaced (10s doubling to 6m; upstream has no
    # flag: tests shorten it).
    job_pod_failure_backoff: float = 10.0
    job_pod_failure_max_backoff: float = 360.0
    # Pod events queue their Job this long later (upstream's syncJobBatchPeriod, 1s, no
    # flag): the changes of a burst (created, bound, running, finished) meet in one sync.
    job_sync_batch_period: float = 1.0
    # The pod GC's sweep period and missing-node quarantine (upstream's constants, 20s/40s).
    pod_gc_period: float = 20.0
    pod_gc_quarantine: float = 40.0
    # --horizontal-pod-autoscaler-* (sync period, downscale stabilization, tolerance, CPU
    # initialization period, initial readiness delay).
    autoscaler: AutoscalerOptions = field(default_factory=AutoscalerOptions)
    # --cluster-signing-cert-file / --cluster-signing-key-file: the CA csrsigning issues
    # with (without them it stays off); --cluster-signing-duration: the longest certificate.
    cluster_signing_cert_file: Path | None = None
    cluster_signing_key_file: Path | None = None
    cluster_signing_duration: float = 8760 * 3600.0
    # Node IPAM: --allocate-node-cidrs, --cluster-cidr, --node-cidr-mask-size-ipv4/-ipv6
    # (--node-cidr-mask-size sets the one of a single-stack range).
    allocate_node_cidrs: bool = False
    cluster_cidr: str = ""
    node_cidr_mask_size_ipv4: int = 24
    node_cidr_mask_size_ipv6: int = 64


class ControllerContext:
    """What the manager hands each controller: clients, shared informers, events, options."""

    def __init__(
        self,
        client_for: Callable[[str], ApiClient],
        informers: SharedInformerFactory,
        broadcaster: EventBroadcaster,
        options: ControllerOptions,
        metrics_registry: CollectorRegistry = REGISTRY,
        root_ca: bytes = b"",
    ) -> None:
        self.client_for = client_for
        self.informers = informers
        self.broadcaster = broadcaster
        self.options = options
        self.metrics_registry = metrics_registry
        # The cluster CA bundle published to namespaces and put into token Secrets.
        self.root_ca = root_ca


class Controller(abc.ABC):
    """A level-based controller: informer events put keys on a queue, workers sync keys.

    Subclasses set `name` (upstream's controller name, also the event source and the
    client's user agent suffix), wire their informers in __init__, and implement sync(key),
    which returns a delay to look at the key again, or None.
    """

    name: ClassVar[str]
    queue_name: ClassVar[str]
    event_source: ClassVar[str] = ""

    def __init__(self, ctx: ControllerContext, workers: int = 1) -> None:
        self.ctx = ctx
        self.workers = workers
        self.client = ctx.client_for(self.name)
        self.recorder: EventRecorder = ctx.broadcaster.recorder(self.event_source or self.name)
        self.queue: WorkQueue[str] = WorkQueue(
            self.queue_name, metrics_registry=ctx.metrics_registry
        )
        self._errors = reconcile_errors(ctx.metrics_registry).labels(self.name)

    async def setup(self) -> None:
        """Async wiring done before informers start (discovery, for instance)."""

    def after_sync(self) -> None:
        """Work to queue once the informers have synced (say, a sweep for leftovers)."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Work the queue until cancelled (informers are already synced)."""
        await run_workers(self.queue, self._reconcile, self.workers, task_status=task_status)

    async def _reconcile(self, key: str) -> float | None:
        try:
            return await self.sync(key)
        except Conflict as e:
            self._errors.inc()
            log.debug("%s: %s: %s; retrying", self.name, key, e)
            return CONFLICT_RETRY
        except Exception:
            self._errors.inc()
            raise

    @abc.abstractmethod
    async def sync(self, key: str) -> float | None:
        """Make the world match the object named by key; a delay asks for another look."""

    def enqueue(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        self.queue.add(object_key(obj))

    def enqueue_after(self, obj: Obj, delay: float) -> None:
        self.queue.add_after(object_key(obj), delay)
