"""K8s-Lite: a small Kubernetes-compatible container orchestrator."""

__version__ = "0.1.0"
# The Kubernetes version whose API we speak, reported by /version and the kubelet.
KUBERNETES_VERSION = "v1.35.0"
