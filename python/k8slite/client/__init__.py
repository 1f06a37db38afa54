"""The client side every component uses: REST client, informers, workqueue."""

from k8slite.client.errors import (
    AlreadyExists,
    ApiConnectionError,
    ApiError,
    BadRequest,
    Conflict,
    Expired,
    Forbidden,
    Gone,
    Invalid,
    MethodNotAllowed,
    NotFound,
    ServerError,
    TooManyRequests,
    Unauthorized,
)
from k8slite.client.informer import EventHandler, SharedInformer, SharedInformerFactory
from k8slite.client.kubeconfig import (
    ClientConfig,
    InClusterError,
    KubeconfigError,
    in_cluster_config,
    load_kubeconfig,
)
from k8slite.client.ratelimit import TokenBucket, default_controller_rate_limiter
from k8slite.client.reflector import Reflector
from k8slite.client.resource import Resource, discover, group_version_path, resource
from k8slite.client.rest import ApiClient, Watch
from k8slite.client.store import (
    NAMESPACE_INDEX,
    NODE_NAME_INDEX,
    OWNER_UID_INDEX,
    DeletedFinalStateUnknown,
    Indexer,
    object_key,
    split_key,
)
from k8slite.client.workqueue import ShutDown, WorkQueue, run_workers

__all__ = [
    "NAMESPACE_INDEX",
    "NODE_NAME_INDEX",
    "OWNER_UID_INDEX",
    "AlreadyExists",
    "ApiClient",
    "ApiConnectionError",
    "ApiError",
    "BadRequest",
    "ClientConfig",
    "Conflict",
    "DeletedFinalStateUnknown",
    "EventHandler",
    "Expired",
    "Forbidden",
    "Gone",
    "Indexer",
    "Invalid",
    "KubeconfigError",
    "MethodNotAllowed",
    "NotFound",
    "Reflector",
    "Resource",
    "ServerError",
    "SharedInformer",
    "SharedInformerFactory",
    "ShutDown",
    "TokenBucket",
    "TooManyRequests",
    "Unauthorized",
    "Watch",
    "WorkQueue",
    "default_controller_rate_limiter",
    "discover",
    "group_version_path",
    "load_kubeconfig",
    "in_cluster_config",
    "InClusterError",
    "object_key",
    "resource",
    "run_workers",
    "split_key",
]
