"""k8slite-metrics-server: the resource metrics API (metrics.k8s.io) from the kubelets."""
