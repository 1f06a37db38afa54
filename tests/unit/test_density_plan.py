"""The density bench's pure parts: the Deployment plan and the histogram quantile."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benches"))
import density


@pytest.mark.parametrize(("pods", "namespaces"), [(200, 1), (30000, 10), (150000, 50), (7, 3)])
def test_plan_sums_to_the_pod_count(pods: int, namespaces: int) -> None:
    layout = density.plan(pods, namespaces)
    assert sum(r for _, _, r in layout) == pods
    assert len({ns for ns, _, _ in layout}) == min(namespaces, pods)
    assert len({(ns, name) for ns, name, _ in layout}) == len(layout)  # names unique


def test_plan_has_three_sizes_at_scale() -> None:
    sizes = {r for _, _, r in density.plan(30000, 10)}
    assert {250, 30, 5} <= sizes


def test_quantile_interpolates_within_the_bucket() -> None:
    buckets = [(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert density.quantile(0.5, buckets) == pytest.approx(0.1)
    assert density.quantile(0.99, buckets) == pytest.approx(0.95)
    assert density.quantile(0.7, buckets) == pytest.approx(0.3)


def test_api_latency_classes() -> None:
    text = "\n".join(
        f'apiserver_request_duration_seconds_bucket{{component="apiserver",group="",'
        f'resource="pods",scope="{scope}",subresource="",verb="{verb}",version="v1",'
        f'le="{le}"}} {count}'
        for verb, scope in (
            ("POST", "resource"),
            ("DELETE", "namespace"),
            ("LIST", "cluster"),
            ("GET", "resource"),
        )
        for le, count in (("0.5", 0), ("2", 10), ("+Inf", 10))
    )
    api = density.api_latency(text)
    assert api["mutating"]["worst"] == "POST pods resource"
    assert api["mutating"]["over_slo"] == ["POST pods resource"]
    # A delete-collection is no single-object call: reported, not held to the SLO.
    assert api["mutating_collections"]["worst"] == "DELETE pods namespace"
    assert api["mutating_collections"]["over_slo"] == []
    assert api["cluster_list"]["over_slo"] == []
    assert api["get"]["worst_p99_s"] == pytest.approx(1.985)
    assert api["namespace_list"]["worst"] is None
