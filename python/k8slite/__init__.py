"""K8s-Lite: a small Kubernetes-compatible container orchestrator."""

__version__ = "0.1.0"
# The Kubernetes version whose API we speak, reported by /version and the kubelet.
KUBERNETES_VERSION = "v1.35.0"
# What /version's gitVersion and every command's --version report.
GIT_VERSION = f"{KUBERNETES_VERSION}+k8slite-{__version__}"

# Before any of our modules imports httpx or cel (see _cli_cuts).
from k8slite._cli_cuts import skip_library_clis as _skip_library_clis  # noqa: E402

_skip_library_clis()
