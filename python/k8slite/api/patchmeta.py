"""Merge semantics of the served kinds' fields: upstream's patchMergeKey and listType tags.

The official client's models carry field names, types and descriptions but not how lists
and maps merge, so this table says it, learned from the `patchStrategy`, `patchMergeKey`,
`+listType`, `+listMapKey`, `+mapType` and `+structType` markers of upstream's API types.
Strategic merge patch, server-side apply and the OpenAPI extensions all read it.
"""

from __future__ import annotations

from dataclasses import dataclass

CORE = "io.k8s.api.core.v1."
APPS = "io.k8s.api.apps.v1."
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
DISCOVERY = "io.k8s.api.discovery.v1."
POLICY = "io.k8s.api.policy.v1."
BATCH = "io.k8s.api.batch.v1."


@dataclass(frozen=True, slots=True)
class FieldMeta:
    """How one field merges: SMP strategy and merge key; SSA list type, map keys, map type."""

    strategy: str = ""  # "", "merge", "retainKeys", "merge,retainKeys", "replace"
    merge_key: str = ""
    list_type: str = ""  # "", "atomic", "set", "map"
    keys: tuple[str, ...] = ()
    map_type: str = ""  # "", "atomic", "granular"


NONE = FieldMeta()
ATOMIC = FieldMeta(list_type="atomic")
ATOMIC_MAP = FieldMeta(map_type="atomic")
# A list of primitives merged as a set by both SMP (union) and SSA (v: keys).
MERGED_SET = FieldMeta(strategy="merge", list_type="set")
SET = FieldMeta(list_type="set")


def keyed(*keys: str, strategy: str = "merge") -> FieldMeta:
    """A list of objects merged by key: the first key is the SMP merge key."""
    return FieldMeta(strategy=strategy, merge_key=keys[0], list_type="map", keys=keys)


_CONTAINER = {
    "ports": keyed("containerPort", "protocol"),
    "env": keyed("name"),
    "volumeMounts": keyed("mountPath"),
    "volumeDevices": keyed("devicePath"),
    "command": ATOMIC,
    "args": ATOMIC,
    "envFrom": ATOMIC,
    "resizePolicy": ATOMIC,
    "restartPolicyRules": ATOMIC,
}
_CONDITIONS = {"conditions": keyed("type")}

# definition name -> json field -> semantics. Lists absent here are atomic (SSA) and
# replaced (SMP), as upstream treats lists without markers.
FIELDS: dict[str, dict[str, FieldMeta]] = {
    META + "ObjectMeta": {
        "ownerReferences": keyed("uid"),
        "finalizers": MERGED_SET,
        "managedFields": ATOMIC,
    },
    META + "LabelSelector": {"matchExpressions": ATOMIC},
    META + "LabelSelectorRequirement": {"values": ATOMIC},
    CORE + "PodSpec": {
        "volumes": keyed("name", strategy="merge,retainKeys"),
        "initContainers": keyed("name"),
        "containers": keyed("name"),
        "ephemeralContainers": keyed("name"),
        "imagePullSecrets": keyed("name"),
        "hostAliases": keyed("ip"),
        "topologySpreadConstraints": keyed("topologyKey", "whenUnsatisfiable"),
        "schedulingGates": keyed("name"),
        "resourceClaims": keyed("name", strategy="merge,retainKeys"),
        "nodeSelector": ATOMIC_MAP,
        "tolerations": ATOMIC,
        "readinessGates": ATOMIC,
    },
    CORE + "Container": _CONTAINER,
    CORE + "EphemeralContainer": _CONTAINER,
    CORE + "ResourceRequirements": {"claims": keyed("name", strategy="")},
    CORE + "PodStatus": {
        **_CONDITIONS,
        "podIPs": keyed("ip"),
        # Upstream keeps a merge key for SMP but declares the list atomic for SSA.
        "hostIPs": FieldMeta(strategy="merge", merge_key="ip", list_type="atomic"),
        "initContainerStatuses": ATOMIC,
        "containerStatuses": ATOMIC,
        "ephemeralContainerStatuses": ATOMIC,
        "resourceClaimStatuses": keyed("name", strategy="merge,retainKeys"),
    },
    CORE + "ContainerStatus": {
        "volumeMounts": keyed("mountPath"),
        "allocatedResourcesStatus": keyed("name"),
    },
    CORE + "PodSecurityContext": {"supplementalGroups": ATOMIC, "sysctls": ATOMIC},
    CORE + "PodDNSConfig": {"nameservers": ATOMIC, "searches": ATOMIC, "options": ATOMIC},
    CORE + "HostAlias": {"hostnames": ATOMIC},
    CORE + "Capabilities": {"add": ATOMIC, "drop": ATOMIC},
    CORE + "ExecAction": {"command": ATOMIC},
    CORE + "HTTPGetAction": {"httpHeaders": ATOMIC},
    CORE + "NodeSelector": {"nodeSelectorTerms": ATOMIC},
    CORE + "NodeSelectorTerm": {"matchExpressions": ATOMIC, "matchFields": ATOMIC},
    CORE + "NodeSelectorRequirement": {"values": ATOMIC},
    CORE + "NodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": ATOMIC},
    CORE + "PodAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": ATOMIC,
        "preferredDuringSchedulingIgnoredDuringExecution": ATOMIC,
    },
    CORE + "PodAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": ATOMIC,
        "preferredDuringSchedulingIgnoredDuringExecution": ATOMIC,
    },
    CORE + "PodAffinityTerm": {
        "namespaces": ATOMIC,
        "matchLabelKeys": ATOMIC,
        "mismatchLabelKeys": ATOMIC,
    },
    CORE + "SecretVolumeSource": {"items": ATOMIC},
    CORE + "ConfigMapVolumeSource": {"items": ATOMIC},
    CORE + "ProjectedVolumeSource": {"sources": ATOMIC},
    CORE + "DownwardAPIVolumeSource": {"items": ATOMIC},
    CORE + "ServiceSpec": {
        "ports": keyed("port", "protocol"),
        "selector": ATOMIC_MAP,
        "clusterIPs": ATOMIC,
        "externalIPs": ATOMIC,
        "loadBalancerSourceRanges": ATOMIC,
        "ipFamilies": ATOMIC,
    },
    CORE + "ServiceStatus": _CONDITIONS,
    CORE + "LoadBalancerStatus": {"ingress": ATOMIC},
    CORE + "ServiceAccount": {"secrets": keyed("name"), "imagePullSecrets": ATOMIC},
    CORE + "Endpoints": {"subsets": ATOMIC},
    CORE + "EndpointSubset": {"addresses": ATOMIC, "notReadyAddresses": ATOMIC, "ports": ATOMIC},
    CORE + "NodeSpec": {"podCIDRs": MERGED_SET, "taints": ATOMIC},
    CORE + "NodeStatus": {
        **_CONDITIONS,
        "addresses": keyed("type"),
        "images": ATOMIC,
        "volumesInUse": ATOMIC,
        "volumesAttached": ATOMIC,
        "runtimeHandlers": ATOMIC,
    },
    CORE + "ContainerImage": {"names": ATOMIC},
    CORE + "NamespaceSpec": {"finalizers": ATOMIC},
    CORE + "NamespaceStatus": _CONDITIONS,
    APPS + "DeploymentSpec": {"strategy": FieldMeta(strategy="retainKeys")},
    APPS + "DeploymentStatus": _CONDITIONS,
    APPS + "ReplicaSetStatus": _CONDITIONS,
    APPS + "StatefulSetSpec": {"volumeClaimTemplates": ATOMIC},
    APPS + "StatefulSetStatus": _CONDITIONS,
    CORE + "ReplicationControllerStatus": _CONDITIONS,
    CORE + "PersistentVolumeClaimSpec": {"accessModes": ATOMIC},
    CORE + "PersistentVolumeClaimStatus": {**_CONDITIONS, "accessModes": ATOMIC},
    POLICY + "PodDisruptionBudgetStatus": _CONDITIONS,
    APPS + "DaemonSetStatus": _CONDITIONS,
    BATCH + "JobStatus": {
        # Upstream merges conditions by type in SMP but owns them whole in SSA.
        "conditions": FieldMeta(strategy="merge", merge_key="type", list_type="atomic")
    },
    BATCH + "UncountedTerminatedPods": {"succeeded": SET, "failed": SET},
    BATCH + "PodFailurePolicy": {"rules": ATOMIC},
    BATCH + "PodFailurePolicyRule": {"onPodConditions": ATOMIC},
    BATCH + "PodFailurePolicyOnExitCodesRequirement": {"values": SET},
    BATCH + "SuccessPolicy": {"rules": ATOMIC},
    DISCOVERY + "EndpointSlice": {"endpoints": ATOMIC, "ports": ATOMIC},
    DISCOVERY + "Endpoint": {"addresses": SET},
    DISCOVERY + "EndpointHints": {"forZones": ATOMIC, "forNodes": ATOMIC},
}

# Structs owned as a whole by server-side apply (upstream's +structType=atomic).
ATOMIC_STRUCTS = frozenset(
    {
        META + "LabelSelector",
        META + "OwnerReference",
        CORE + "ObjectReference",
        CORE + "LocalObjectReference",
        CORE + "SecretReference",
        CORE + "TypedLocalObjectReference",
        CORE + "ConfigMapKeySelector",
        CORE + "SecretKeySelector",
        CORE + "FileKeySelector",
        CORE + "ObjectFieldSelector",
        CORE + "ResourceFieldSelector",
        CORE + "EnvVarSource",
        CORE + "NodeSelector",
        CORE + "NodeSelectorTerm",
        CORE + "EndpointAddress",
        CORE + "EndpointPort",
        DISCOVERY + "EndpointPort",
        DISCOVERY + "ForNode",
    }
)

# Defaults of list-map key fields: an applied element may omit them (upstream declares the
# same defaults in its OpenAPI so that apply can key such elements).
KEY_DEFAULTS = {"protocol": "TCP"}

# Enumerations worth showing in `kubectl explain` (upstream's `+enum` types).
ENUMS: dict[tuple[str, str], tuple[str, ...]] = {
    (APPS + "DeploymentStrategy", "type"): ("Recreate", "RollingUpdate"),
    (APPS + "DaemonSetUpdateStrategy", "type"): ("OnDelete", "RollingUpdate"),
    (APPS + "StatefulSetSpec", "podManagementPolicy"): ("OrderedReady", "Parallel"),
    (APPS + "StatefulSetUpdateStrategy", "type"): ("OnDelete", "RollingUpdate"),
    (APPS + "StatefulSetPersistentVolumeClaimRetentionPolicy", "whenDeleted"): ("Delete", "Retain"),
    (APPS + "StatefulSetPersistentVolumeClaimRetentionPolicy", "whenScaled"): ("Delete", "Retain"),
    (CORE + "PodSpec", "restartPolicy"): ("Always", "Never", "OnFailure"),
    (CORE + "PodSpec", "dnsPolicy"): ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"),
    (CORE + "Container", "imagePullPolicy"): ("Always", "IfNotPresent", "Never"),
    (CORE + "ContainerPort", "protocol"): ("SCTP", "TCP", "UDP"),
    (CORE + "ServicePort", "protocol"): ("SCTP", "TCP", "UDP"),
    (CORE + "ServiceSpec", "type"): ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort"),
    (CORE + "PodStatus", "phase"): ("Failed", "Pending", "Running", "Succeeded", "Unknown"),
    (CORE + "NamespaceStatus", "phase"): ("Active", "Terminating"),
    (BATCH + "JobSpec", "completionMode"): ("Indexed", "NonIndexed"),
    (BATCH + "JobSpec", "podReplacementPolicy"): ("Failed", "TerminatingOrFailed"),
    (BATCH + "PodFailurePolicyRule", "action"): ("Count", "FailIndex", "FailJob", "Ignore"),
    (BATCH + "PodFailurePolicyOnExitCodesRequirement", "operator"): ("In", "NotIn"),
}

# JSON field names whose untyped ("object") values are upstream's IntOrString.
INT_OR_STRING = frozenset({"maxSurge", "maxUnavailable", "port", "targetPort", "minAvailable"})
# Fields holding resource quantities (a string or a number on the wire).
QUANTITY_FIELDS = frozenset(
    {
        "limits",
        "requests",
        "capacity",
        "allocatable",
        "overhead",
        "sizeLimit",
        "allocatedResources",
        "hard",
        "used",
    }
)
# Time fields with microsecond precision (metav1.MicroTime rather than metav1.Time).
MICRO_TIME_FIELDS = frozenset({"acquireTime", "renewTime", "eventTime", "lastObservedTime"})


def field_meta(definition: str, field: str) -> FieldMeta:
    return FIELDS.get(definition, {}).get(field, NONE)
