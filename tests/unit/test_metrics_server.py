"""The metrics server's pure parts: parsing /metrics/resource, usage from two scrapes,
upstream's quantity and duration formats, and the metrics.k8s.io objects."""

from __future__ import annotations

from k8slite.component.serving import Request
from k8slite.metricsserver import quantity
from k8slite.metricsserver.api import MetricsApi
from k8slite.metricsserver.scrape import Point, parse, usage
from k8slite.metricsserver.store import MetricsStore

PAGE = """# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",namespace="ns",pod="web"} 2.5 1000000002000
container_memory_working_set_bytes{container="app",namespace="ns",pod="web"} 1048576.0 1000000002000
container_start_time_seconds{container="app",namespace="ns",pod="web"} 1000000000.0 1000000002000
node_cpu_usage_seconds_total 100.0 1000000002000
node_memory_working_set_bytes 2097152.0 1000000002000
resource_scrape_error 0
"""


def test_parse_and_rate_from_the_container_start() -> None:
    scrape = parse(PAGE, now=0.0)
    assert scrape.node == Point(1_000_000_002.0, 100.0, 2 * 1024 * 1024)
    point = scrape.containers[("ns", "web", "app")]
    assert point == Point(1_000_000_002.0, 2.5, 1024 * 1024, 1_000_000_000.0)
    store = MetricsStore()
    store.record("n1", scrape)
    # A new container's counter counts from its start: 2.5 CPU-seconds in 2 s.
    (only,) = store.pod_usage()[("ns", "web")].values()
    assert (only.nanocores, only.memory, only.window) == (1_250_000_000, 1024 * 1024, 2.0)
    # The node needs a second scrape.
    assert store.node_usage("n1") is None
    later = PAGE.replace("1000000002000", "1000000004000").replace(" 100.0 ", " 101.0 ")
    store.record("n1", parse(later.replace(" 2.5 ", " 3.5 "), now=0.0))
    node = store.node_usage("n1")
    assert node is not None and node.nanocores == 500_000_000
    assert store.pod_usage()[("ns", "web")]["app"].nanocores == 500_000_000
    store.forget(set())
    assert store.pod_usage() == {} and store.node_usage("n1") is None


def test_counter_going_back_is_not_a_rate() -> None:
    assert usage(Point(1.0, 5.0, 0), Point(2.0, 1.0, 0)) is None
    assert usage(Point(1.0, 5.0, 0), Point(1.0, 6.0, 0)) is None


def test_quantities_as_upstream() -> None:
    assert [quantity.cpu(n) for n in (0, 1, 1_500_000, 500_000_000, 2_000_000_000, 123_456)] == [
        "0",
        "1n",
        "1500u",
        "500m",
        "2",
        "123456n",
    ]
    assert [quantity.memory(b) for b in (0, 1536, 1024, 64 * 1024 * 1024, 1000)] == [
        "0",
        "1536",
        "1Ki",
        "64Mi",
        "1000",
    ]
    assert [quantity.duration(s) for s in (15.0, 0.5, 1.25, 75.0, 0.0)] == [
        "15s",
        "500ms",
        "1.25s",
        "1m15s",
        "0s",
    ]


async def test_pod_metrics_objects_and_selectors() -> None:
    store = MetricsStore()
    store.record("n1", parse(PAGE, now=0.0))
    pod = {
        "metadata": {"name": "web", "namespace": "ns", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app"}]},
        "status": {"containerStatuses": [{"name": "app", "state": {"running": {}}}]},
    }
    api = MetricsApi(store, list, lambda ns: [pod], lambda: 1_000_000_005.0)

    base = "/apis/metrics.k8s.io/v1beta1"
    answer = await api.handle(Request("GET", f"{base}/namespaces/ns/pods", {}, {}))
    import json

    listed = json.loads(answer.body)  # type: ignore[arg-type]
    assert listed["kind"] == "PodMetricsList"
    (item,) = listed["items"]
    assert item["containers"] == [{"name": "app", "usage": {"cpu": "1250m", "memory": "1Mi"}}]
    assert item["window"] == "2s" and item["timestamp"] == "2001-09-09T01:46:42Z"
    none = await api.handle(
        Request("GET", f"{base}/namespaces/ns/pods", {"labelSelector": ["app=db"]}, {})
    )
    assert json.loads(none.body)["items"] == []  # type: ignore[arg-type]
    missing = await api.handle(Request("GET", f"{base}/namespaces/ns/pods/db", {}, {}))
    assert missing.status == 404
    assert json.loads(missing.body)["message"] == 'podmetrics.metrics.k8s.io "ns/db" not found'  # type: ignore[arg-type]
    bad = await api.handle(Request("GET", f"{base}/pods", {"labelSelector": ["a in (b"]}, {}))
    assert bad.status == 400
