"""The resource table: every served kind, driving routing, discovery, storage and caches."""

from __future__ import annotations

from dataclasses import dataclass, field

# Verbs of a fully served resource, in the order discovery lists them upstream.
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """One served resource (a plural under a group/version) and what it supports."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    # Subresources served: status, scale, binding, log, eviction, ...
    subresources: tuple[str, ...] = ()
    # Selectable fields besides metadata.name and metadata.namespace (upstream's per kind).
    fields: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    extra: dict[str, object] = field(default_factory=dict, compare=False, hash=False)

    @property
    def singular(self) -> str:
        # A CRD may name its singular; built-in kinds use the lower-cased kind.
        return str(self.extra.get("singular") or self.kind.lower())

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def key_prefix(self) -> str:
        """Storage keys: /registry/<group>/<plural>/[<namespace>/]<name>."""
        return f"/registry/{self.group or 'core'}/{self.plural}/"

    def key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"{self.key_prefix}{namespace}/{name}"
        return f"{self.key_prefix}{name}"

    def prefix(self, namespace: str | None) -> str:
        """The key prefix of a list: one namespace, or everything of this resource."""
        if self.namespaced and namespace:
            return f"{self.key_prefix}{namespace}/"
        return self.key_prefix

    @property
    def selectable_fields(self) -> tuple[str, ...]:
        base = ("metadata.name", "metadata.namespace") if self.namespaced else ("metadata.name",)
        return base + self.fields


_POD_FIELDS = (
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)
_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)

_RBAC = "rbac.authorization.k8s.io"

RESOURCES: list[ResourceType] = [
    ResourceType(
        "",
        "v1",
        "Namespace",
        "namespaces",
        False,
        ("ns",),
        ("status", "finalize"),
        fields=("status.phase",),
    ),
    ResourceType(
        "",
        "v1",
        "Node",
        "nodes",
        False,
        ("no",),
        ("status", "proxy"),
        fields=("spec.unschedulable",),
    ),
    ResourceType(
        "",
        "v1",
        "Pod",
        "pods",
        True,
        ("po",),
        (
            "status",
            "binding",
            "log",
            "eviction",
            "exec",
            "attach",
            "portforward",
            "ephemeralcontainers",
            "proxy",
        ),
        fields=_POD_FIELDS,
        categories=("all",),
    ),
    ResourceType(
        "", "v1", "Service", "services", True, ("svc",), ("status", "proxy"), categories=("all",)
    ),
    ResourceType("", "v1", "Endpoints", "endpoints", True, ("ep",)),
    ResourceType("", "v1", "ConfigMap", "configmaps", True, ("cm",)),
    ResourceType("", "v1", "Secret", "secrets", True, (), fields=("type",)),
    ResourceType("", "v1", "Event", "events", True, ("ev",), fields=_EVENT_FIELDS),
    ResourceType("", "v1", "ServiceAccount", "serviceaccounts", True, ("sa",), ("token",)),
    ResourceType(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        True,
        ("deploy",),
        ("status", "scale"),
        categories=("all",),
    ),
    ResourceType(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        True,
        ("rs",),
        ("status", "scale"),
        fields=("status.replicas",),
        categories=("all",),
    ),
    ResourceType(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        True,
        ("sts",),
        ("status", "scale"),
        categories=("all",),
    ),
    ResourceType(
        "", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ("pvc",), ("status",)
    ),
    ResourceType(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        True,
        ("rc",),
        ("status", "scale"),
        fields=("status.replicas",),
        categories=("all",),
    ),
    ResourceType(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        True,
        ("hpa",),
        ("status",),
        categories=("all",),
    ),
    # Stored as v2 (the first of a kind's versions here is its storage version); v1 is
    # converted on the way in and out (api/autoscaling_v1.py).
    ResourceType(
        "autoscaling",
        "v1",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        True,
        ("hpa",),
        ("status",),
        categories=("all",),
    ),
    ResourceType(
        "policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, ("pdb",), ("status",)
    ),
    ResourceType("batch", "v1", "Job", "jobs", True, (), ("status",), categories=("all",)),
    ResourceType(
        "batch", "v1", "CronJob", "cronjobs", True, ("cj",), ("status",), categories=("all",)
    ),
    ResourceType(
        "apps", "v1", "DaemonSet", "daemonsets", True, ("ds",), ("status",), categories=("all",)
    ),
    ResourceType("apps", "v1", "ControllerRevision", "controllerrevisions", True),
    ResourceType("", "v1", "PersistentVolume", "persistentvolumes", False, ("pv",), ("status",)),
    ResourceType("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, ("sc",)),
    ResourceType("coordination.k8s.io", "v1", "Lease", "leases", True),
    ResourceType(
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        False,
        ("csr",),
        ("status", "approval"),
        fields=("spec.signerName",),
    ),
    ResourceType("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True),
    ResourceType(_RBAC, "v1", "ClusterRole", "clusterroles", False),
    ResourceType(_RBAC, "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    ResourceType(_RBAC, "v1", "Role", "roles", True),
    ResourceType(_RBAC, "v1", "RoleBinding", "rolebindings", True),
    # API Priority and Fairness: upstream's defaults, made at start and served read-only.
    ResourceType(
        "flowcontrol.apiserver.k8s.io",
        "v1",
        "FlowSchema",
        "flowschemas",
        False,
        verbs=("get", "list", "watch"),
    ),
    ResourceType(
        "flowcontrol.apiserver.k8s.io",
        "v1",
        "PriorityLevelConfiguration",
        "prioritylevelconfigurations",
        False,
        verbs=("get", "list", "watch"),
    ),
    # Access reviews: answered per request and never stored, so create is their only verb.
    ResourceType(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        False,
        verbs=("create",),
    ),
    ResourceType(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        False,
        verbs=("create",),
    ),
    ResourceType(
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        False,
        verbs=("create",),
    ),
    ResourceType(
        "authorization.k8s.io",
        "v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        True,
        verbs=("create",),
    ),
    ResourceType(
        "authentication.k8s.io", "v1", "TokenReview", "tokenreviews", False, verbs=("create",)
    ),
    ResourceType(
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        False,
        verbs=("create",),
    ),
    # Admission webhooks: called by the API server on the writes their rules match.
    ResourceType(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        False,
        categories=("api-extensions",),
    ),
    ResourceType(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        False,
        categories=("api-extensions",),
    ),
    ResourceType(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
        False,
        subresources=("status",),
        categories=("api-extensions",),
    ),
    ResourceType(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        False,
        categories=("api-extensions",),
    ),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        ("crd", "crds"),
        ("status",),
        categories=("api-extensions",),
    ),
    ResourceType(
        "apiregistration.k8s.io",
        "v1",
        "APIService",
        "apiservices",
        False,
        (),
        ("status",),
        categories=("api-extensions",),
    ),
]

_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
# Kinds added at runtime (custom resources, aggregated APIs' resources), keyed like
# _BY_PATH. Replaced whole by set_dynamic so that readers iterating it never see it change
# under them.
_DYNAMIC: dict[tuple[str, str, str], ResourceType] = {}
# The runtime kinds by who serves them ("customresourcedefinitions", "apiservices").
_SOURCES: dict[str, list[ResourceType]] = {}


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    """The resource served at /api(s)/<group>/<version>/<plural>, if any."""
    key = (group, version, plural)
    # Built-in kinds answer from the first dict; only custom resources reach the second.
    return _BY_PATH.get(key) or _DYNAMIC.get(key)


def set_dynamic(resources: list[ResourceType], source: str = "customresourcedefinitions") -> None:
    """Serve exactly these runtime kinds of `source` (besides the built-in table and the
    other sources' kinds) from now on."""
    global _DYNAMIC
    _SOURCES[source] = list(resources)
    _DYNAMIC = {(r.group, r.version, r.plural): r for rs in _SOURCES.values() for r in rs}


def served() -> list[ResourceType]:
    """Every served resource: the built-in table, then the runtime kinds."""
    return RESOURCES + list(_DYNAMIC.values()) if _DYNAMIC else RESOURCES


def group_versions(builtin: bool = False) -> dict[str, list[str]]:
    """Served groups (core is "") and their versions, in table order (built-in ones only
    when builtin is set)."""
    out: dict[str, list[str]] = {}
    for r in RESOURCES if builtin else served():
        versions = out.setdefault(r.group, [])
        if r.version not in versions:
            versions.append(r.version)
    return out
