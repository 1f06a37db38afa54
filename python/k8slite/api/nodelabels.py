"""The Node labels a kubelet may set on its own Node (upstream's kubelet label set)."""

from __future__ import annotations

# Well-known labels the kubelet owns, and label domains (with their subdomains) all its own.
KUBELET_LABELS = frozenset(
    {
        "kubernetes.io/hostname",
        "kubernetes.io/arch",
        "kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
    }
)
KUBELET_LABEL_DOMAINS = ("kubelet.kubernetes.io", "node.kubernetes.io")
# Labels only administrators set: the scheduler trusts them to steer workloads to nodes.
RESTRICTED_LABEL_DOMAIN = "node-restriction.kubernetes.io"


def domain(key: str) -> str:
    """The prefix of a label key ("" when it has none)."""
    return key.split("/", 1)[0] if "/" in key else ""


def within(name: str, parent: str) -> bool:
    """Whether a domain is `parent` or one of its subdomains."""
    return name == parent or name.endswith("." + parent)


def is_kubernetes_label(key: str) -> bool:
    """A label in the kubernetes.io or k8s.io domains (or their subdomains)."""
    return within(domain(key), "kubernetes.io") or within(domain(key), "k8s.io")


def is_kubelet_label(key: str) -> bool:
    return key in KUBELET_LABELS or any(within(domain(key), d) for d in KUBELET_LABEL_DOMAINS)


def node_may_set(key: str) -> bool:
    """Whether a node may add, change or remove this label on its own Node."""
    if within(domain(key), RESTRICTED_LABEL_DOMAIN):
        return False
    return not is_kubernetes_label(key) or is_kubelet_label(key)
