"""The HPA's resource metrics client: PodMetrics from metrics.k8s.io through the API server.

As upstream's REST metrics client: one LIST of the namespace's PodMetrics by the target's
selector; a pod's value is its containers' summed usage (or one container's), in
thousandths, with the sample's timestamp and window.
"""

from __future__ import annotations

from k8slite.api.meta import parse_time
from k8slite.api.quantity import QuantityError, milli_value
from k8slite.client import ApiClient, ApiError
from k8slite.client.resource import POD_METRICS
from k8slite.component.flags import Duration
from k8slite.component.objects import Obj, meta
from k8slite.controllers.hpacalc import MetricsError, PodMetric


def _sample_time(item: Obj) -> tuple[float, float]:
    try:
        timestamp = parse_time(str(item.get("timestamp") or "")).timestamp()
    except ValueError:
        timestamp = 0.0
    try:
        window = Duration.parse(str(item.get("window") or "0s")).seconds
    except ValueError:
        window = 0.0
    return timestamp, window


def _pod_value(item: Obj, resource: str, container: str) -> int | None:
    """The pod's usage; None when a container lacks the resource (upstream skips the pod),
    or an error naming the container when one container is asked for and lacks it."""
    containers = item.get("containers") or []
    if not container and not containers:
        return None
    total = 0
    for c in containers:
        if container and c.get("name") != container:
            continue
        usage = (c.get("usage") or {}).get(resource)
        if usage is None:
            if container:
                m = meta(item)
                raise MetricsError(
                    f"failed to get container metrics: missing resource metric {resource} for "
                    f"container {container} in pod {m.get('namespace')}/{m.get('name')}"
                )
            return None
        try:
            total += milli_value(usage)
        except QuantityError:
            return None
    return total


async def resource_metrics(
    client: ApiClient, resource: str, namespace: str, selector: str, container: str = ""
) -> dict[str, PodMetric]:
    """GetResourceMetric: the selected pods' usage by pod name."""
    try:
        listing = await client.list(POD_METRICS, namespace=namespace, label_selector=selector)
    except ApiError as e:
        raise MetricsError(
            f"unable to get metrics for resource {resource}: unable to fetch metrics from "
            f"resource metrics API: {e.message}"
        ) from e
    items = listing.get("items") or []
    if not items:
        raise MetricsError(
            f"unable to get metrics for resource {resource}: no metrics returned from resource "
            "metrics API"
        )
    out: dict[str, PodMetric] = {}
    for item in items:
        value = _pod_value(item, resource, container)
        if value is not None:
            timestamp, window = _sample_time(item)
            out[str(meta(item).get("name"))] = PodMetric(value, timestamp, window)
    return out


def milli_quantity(milli: int) -> str:
    """resource.NewMilliQuantity(v, DecimalSI).String(): "1500m", "2", "128M"."""
    if milli % 1000:
        return f"{milli}m"
    value = milli // 1000
    for suffix in ("", "k", "M", "G", "T", "P"):
        if value == 0 or value % 1000:
            return f"{value}{suffix}"
        value //= 1000
    return f"{value}E"
