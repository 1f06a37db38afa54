"""Console scripts: each module turns flags into a config and runs one component."""

from prometheus_client import disable_created_metrics

# Upstream's components serve no `<name>_created` series (prometheus_client adds one per
# counter, histogram and summary child, doubling what Prometheus stores); ours neither.
disable_created_metrics()
