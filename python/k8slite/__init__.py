"""K8s-Lite: a small Kubernetes-compatible container orchestrator."""

__version__ = "0.1.0"
# The Kubernetes version whose API we speak, reported by /version and the kubelet.
KUBERNETES_VERSION = "v1.35.0"
# What /version's gitVersion and every command's --version report.
GIT_VERSION = f"{KUBERNETES_VERSION}+k8slite-{__version__}"
