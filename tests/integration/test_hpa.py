"""The HorizontalPodAutoscaler end to end: fake-runtime kubelets whose synthetic CPU usage the
test sets through the pods' annotation, k8slite-metrics-server behind its APIService, the
controller manager's HPA controller scaling a Deployment through its scale subresource, and
the real kubectl autoscale, get hpa and describe hpa."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerHandle
from tests.integration.cluster_harness import nodes_with_control_plane
from tests.integration.kubelet_harness import kubectl
from tests.integration.metrics_harness import metrics_api
from tests.polling import wait_for

USAGE = "k8slite.io/synthetic-usage"
KIND = "HorizontalPodAutoscaler"
HPAS = "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"
DEPLOYMENTS = "/apis/apps/v1/namespaces/{ns}/deployments"


@pytest.fixture(scope="module")
def cluster(
    module_apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerHandle]:
    """Controller manager (HPA sync every 3 s), scheduler, two fake nodes whose pods use
    10m CPU unless annotated, and the metrics API, Available."""
    workdir: Path = tmp_path_factory.mktemp("hpa")
    with (
        nodes_with_control_plane(
            module_apiserver,
            workdir,
            "hpa",
            manager_flags=("--horizontal-pod-autoscaler-sync-period=3s",),
            kubelet_flags=("--synthetic-usage", "cpu=10m,memory=16Mi"),
        ),
        metrics_api(module_apiserver, workdir, wait=True),
    ):
        yield module_apiserver


@pytest.fixture
def ns(cluster: ServerHandle) -> Iterator[str]:
    name = f"hpa-{os.urandom(3).hex()}"
    with cluster.client() as api:
        assert api.post("/api/v1/namespaces", json={"metadata": {"name": name}}).is_success
    yield name


def _deployment(name: str, cpu_usage: str | None, request: str | None = "100m") -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "busybox:1.35"}
    if request:
        container["resources"] = {"requests": {"cpu": request}}
    annotations = {USAGE: f"cpu={cpu_usage}"} if cpu_usage else {}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {"containers": [container]},
            },
        },
    }


def _replicas(api: httpx.Client, ns: str, name: str) -> int:
    scale = api.get(f"{DEPLOYMENTS.format(ns=ns)}/{name}/scale").json()
    return int(scale["spec"]["replicas"])


def _condition(hpa: dict[str, Any], ctype: str) -> dict[str, Any]:
    for c in (hpa.get("status") or {}).get("conditions") or ():
        if c["type"] == ctype:
            return c  # type: ignore[no-any-return]
    return {}


def _events(api: httpx.Client, ns: str, name: str) -> list[dict[str, Any]]:
    items = api.get(
        f"/api/v1/namespaces/{ns}/events",
        params={"fieldSelector": f"involvedObject.name={name},involvedObject.kind={KIND}"},
    ).json()["items"]
    return items  # type: ignore[no-any-return]


def _event(api: httpx.Client, ns: str, name: str, reason: str, message: str) -> bool:
    return any(e["reason"] == reason and e["message"] == message for e in _events(api, ns, name))


def _counted_sample(api: httpx.Client, ns: str, selector: str) -> bool:
    """Every selected pod has a CPU sample taken a window after it became ready (what the
    HPA counts within the CPU initialization period)."""
    pods = api.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": selector}).json()
    metrics = api.get(
        f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods", params={"labelSelector": selector}
    ).json()
    samples = {m["metadata"]["name"]: m for m in metrics.get("items") or ()}
    if not pods["items"]:
        return False
    for pod in pods["items"]:
        ready = _condition(pod, "Ready")
        sample = samples.get(pod["metadata"]["name"])
        if ready.get("status") != "True" or sample is None:
            return False
        became = dt.datetime.fromisoformat(ready["lastTransitionTime"])
        window = float(sample["window"].removesuffix("s"))
        if dt.datetime.fromisoformat(sample["timestamp"]) < became + dt.timedelta(seconds=window):
            return False
    return True


def test_hpa_scales_a_deployment_up_under_load_and_down_after_it(
    cluster: ServerHandle, ns: str
) -> None:
    with cluster.client() as api:
        # One pod using 300m of its 100m request: 300% against a 50% target.
        r = api.post(DEPLOYMENTS.format(ns=ns), json=_deployment("web", "300m"))
        assert r.status_code == 201, r.text
        # Each sync that cannot compute a count writes two Warning events, and an object's
        # events are rate limited (25, then one per 5 minutes, as client-go's spam filter):
        # the HPA starts once its pod has a sample it will count, so that its rescale
        # events are not crowded out.
        wait_for(lambda: _counted_sample(api, ns, "app=web"), 120, 0.5, what="a counted sample")
        done = kubectl(
            cluster, "autoscale", "deployment", "web", "-n", ns, "--min=1", "--max=4", "--cpu=50%"
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "horizontalpodautoscaler.autoscaling/web autoscaled"
        # A short scale-down stabilization window instead of the 5 minutes of the default.
        done = kubectl(
            cluster,
            "patch",
            "hpa",
            "web",
            "-n",
            ns,
            "--type=merge",
            "-p",
            '{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":5}}}}',
        )
        assert done.returncode == 0, done.stderr
        hpa = api.get(f"{HPAS.format(ns=ns)}/web").json()
        # The API server filled in the rest of behavior with upstream's defaults.
        assert hpa["spec"]["behavior"]["scaleUp"]["policies"][0] == {
            "type": "Pods",
            "value": 4,
            "periodSeconds": 15,
        }
        assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 5

        wait_for(lambda: _replicas(api, ns, "web") == 4, 120, 0.5, what="scale-up to 4")

        def settled() -> dict[str, Any] | None:
            hpa = api.get(f"{HPAS.format(ns=ns)}/web").json()
            status = hpa.get("status") or {}
            current = (status.get("currentMetrics") or [{}])[0].get("resource") or {}
            utilization = (current.get("current") or {}).get("averageUtilization", 0)
            # Every pod reporting (300%): the proposal is far above max, so it is limited.
            limited = _condition(hpa, "ScalingLimited").get("reason") == "TooManyReplicas"
            return (
                hpa
                if status.get("currentReplicas") == 4 and utilization > 250 and limited
                else None
            )

        hpa = wait_for(settled, 120, 0.5, what="the HPA's status at 4 replicas")
        status = hpa["status"]
        assert status["desiredReplicas"] == 4 and status.get("lastScaleTime")
        metric = status["currentMetrics"][0]
        assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
        # 300m of 100m, give or take a millicore of rate rounding.
        assert 295 <= metric["resource"]["current"]["averageUtilization"] <= 305
        assert _condition(hpa, "AbleToScale")["status"] == "True"
        active = _condition(hpa, "ScalingActive")
        assert (active["status"], active["reason"], active["message"]) == (
            "True",
            "ValidMetricFound",
            "the HPA was able to successfully calculate a replica count from cpu resource "
            "utilization (percentage of request)",
        )
        limited = _condition(hpa, "ScalingLimited")
        assert (limited["status"], limited["message"]) == (
            "True",
            "the desired replica count is more than the maximum replica count",
        )
        assert _event(
            api,
            ns,
            "web",
            "SuccessfulRescale",
            "New size: 4; reason: cpu resource utilization (percentage of request) above target",
        )
        # autoscaling/v1 readers: the CPU utilization, the rest in upstream's annotations.
        old = api.get(f"{HPAS.format(ns=ns).replace('/v2/', '/v1/')}/web").json()
        assert old["status"]["currentCPUUtilizationPercentage"] > 250
        conditions = json.loads(
            old["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/conditions"]
        )
        assert [c["type"] for c in conditions] == ["AbleToScale", "ScalingActive", "ScalingLimited"]
        current = json.loads(
            old["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/current-metrics"]
        )
        assert current[0]["resource"]["name"] == "cpu"
        assert current[0]["resource"]["currentAverageValue"].endswith("m")

        # kubectl's table and description.
        listed = kubectl(cluster, "get", "hpa", "-n", ns)
        assert listed.returncode == 0, listed.stderr
        header, row = listed.stdout.splitlines()
        assert header.split() == [
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE",
        ]
        cells = re.split(r"\s{2,}", row.strip())
        assert cells[:2] == ["web", "Deployment/web"]
        assert re.fullmatch(r"cpu: \d+%/50%", cells[2]), cells
        assert cells[3:6] == ["1", "4", "4"]
        described = kubectl(cluster, "describe", "hpa", "web", "-n", ns)
        assert described.returncode == 0, described.stderr
        text = described.stdout
        assert re.search(r"Reference:\s+Deployment/web", text), text
        assert re.search(
            r"resource cpu on pods\s+\(as a percentage of request\):\s+\d+% \(\d+m\) / 50%", text
        ), text
        assert re.search(r"Deployment pods:\s+4 current / 4 desired", text), text
        assert re.search(r"ScalingActive\s+True\s+ValidMetricFound", text), text
        assert re.search(r"ScalingLimited\s+True\s+TooManyReplicas", text), text
        assert "SuccessfulRescale" in text and "New size: 4; reason: cpu resource" in text

        # The load drops: new pods use 10m (10% of request); after the 5 s window the HPA
        # goes to minReplicas.
        r = api.patch(
            f"{DEPLOYMENTS.format(ns=ns)}/web",
            json={"spec": {"template": {"metadata": {"annotations": {USAGE: "cpu=10m"}}}}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code == 200, r.text
        wait_for(lambda: _replicas(api, ns, "web") == 1, 180, 0.5, what="scale-down to 1")
        assert wait_for(
            lambda: _event(
                api, ns, "web", "SuccessfulRescale", "New size: 1; reason: All metrics below target"
            ),
            60,
            what="the scale-down event",
        )
        hpa = api.get(f"{HPAS.format(ns=ns)}/web").json()
        assert hpa["status"]["desiredReplicas"] == 1


def test_hpa_reports_what_keeps_it_from_scaling(cluster: ServerHandle, ns: str) -> None:
    with cluster.client() as api:
        r = api.post(DEPLOYMENTS.format(ns=ns), json=_deployment("norequest", "50m", None))
        assert r.status_code == 201, r.text
        for name, kind, target in (
            ("norequest", "Deployment", "norequest"),
            ("missing", "Deployment", "nope"),
            ("unknown", "Gizmo", "g"),
        ):
            r = api.post(
                HPAS.format(ns=ns),
                json={
                    "metadata": {"name": name},
                    "spec": {
                        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": target},
                        "maxReplicas": 3,
                    },
                },
            )
            assert r.status_code == 201, r.text
            # The API server's default target: 80% CPU.
            assert r.json()["spec"]["metrics"][0]["resource"]["target"] == {
                "type": "Utilization",
                "averageUtilization": 80,
            }

        def condition(name: str, ctype: str, reason: str, message: str = ".*") -> Any:
            hpa = api.get(f"{HPAS.format(ns=ns)}/{name}").json()
            found = _condition(hpa, ctype)
            matches = re.fullmatch(message, found.get("message", ""))
            return found if found.get("reason") == reason and matches else None

        # No CPU request on the pods: no utilization can be computed. (Until the pod has a
        # sample, the message says it has no metrics: the same reason, another cause.)
        missing_request = (
            r"the HPA was unable to compute the replica count: failed to get cpu utilization: "
            r"missing request for cpu in container app of Pod norequest-[a-z0-9]+-[a-z0-9]+"
        )
        active = wait_for(
            lambda: condition(
                "norequest", "ScalingActive", "FailedGetResourceMetric", missing_request
            ),
            120,
            0.5,
            what="ScalingActive False for the missing request",
        )
        assert active["status"] == "False"
        # The controller's events go out through its recorder after the status write.
        wait_for(
            lambda: (
                {"FailedGetResourceMetric", "FailedComputeMetricsReplicas"}
                <= {e["reason"] for e in _events(api, ns, "norequest")}
            ),
            30,
            0.5,
            what="the failed-metric events",
        )
        # A target that does not exist: its scale cannot be read.
        able = wait_for(
            lambda: condition("missing", "AbleToScale", "FailedGetScale"),
            60,
            0.5,
            what="FailedGetScale",
        )
        assert (able["status"], able["message"]) == (
            "False",
            "the HPA controller was unable to get the target's current scale: "
            'deployments.apps "nope" not found',
        )
        wait_for(
            lambda: _event(
                api, ns, "missing", "FailedGetScale", 'deployments.apps "nope" not found'
            ),
            30,
            0.5,
            what="the FailedGetScale event",
        )
        # A kind its group does not serve.
        able = wait_for(
            lambda: condition("unknown", "AbleToScale", "FailedGetScale"), 60, 0.5, what="no kind"
        )
        assert able["message"] == (
            "the HPA controller was unable to get the target's current scale: "
            'no matches for kind "Gizmo" in group "apps"'
        )
        assert _replicas(api, ns, "norequest") == 1


def test_hpa_api_validation_v1_conversion_and_explain(
    apiserver: ServerHandle, api: httpx.Client, namespace: str
) -> None:
    v2, v1 = HPAS.format(ns=namespace), HPAS.format(ns=namespace).replace("/v2/", "/v1/")
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    bad = api.post(
        v2,
        json={
            "metadata": {"name": "bad"},
            "spec": {
                "scaleTargetRef": ref,
                "minReplicas": 3,
                "maxReplicas": 2,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {}}}],
                "behavior": {
                    "scaleDown": {
                        "stabilizationWindowSeconds": 4000,
                        "selectPolicy": "Most",
                        "policies": [{"type": "Pods", "value": 0, "periodSeconds": 15}],
                    }
                },
            },
        },
    )
    assert bad.status_code == 422, bad.text
    causes = {(c["field"], c["message"]) for c in bad.json()["details"]["causes"]}
    assert causes == {
        ("spec.maxReplicas", "Invalid value: 2: must be greater than or equal to `minReplicas`"),
        (
            "spec.metrics[0].resource.target.type",
            "Required value: must specify a metric target type",
        ),
        (
            "spec.metrics[0].resource.target.type",
            'Invalid value: "": must be either Utilization, Value, or AverageValue',
        ),
        (
            "spec.metrics[0].resource.target.averageUtilization",
            "Required value: must set either a target raw value or a target utilization",
        ),
        (
            "spec.behavior.scaleDown.stabilizationWindowSeconds",
            "Invalid value: 4000: must be less than or equal to 3600",
        ),
        (
            "spec.behavior.scaleDown.selectPolicy",
            'Unsupported value: "Most": supported values: "Disabled", "Max", "Min"',
        ),
        (
            "spec.behavior.scaleDown.policies[0].value",
            "Invalid value: 0: must be greater than zero",
        ),
    }
    assert api.get(f"{v2}/bad").status_code == 404

    # A v1 object is stored as v2: its CPU target is the v2 Utilization metric.
    body = {"metadata": {"name": "old"}, "spec": {"scaleTargetRef": ref, "maxReplicas": 3}}
    body["spec"]["targetCPUUtilizationPercentage"] = 40
    made = api.post(v1, json=body)
    assert made.status_code == 201, made.text
    assert made.json()["apiVersion"] == "autoscaling/v1"
    assert made.json()["spec"]["targetCPUUtilizationPercentage"] == 40
    stored = api.get(f"{v2}/old").json()
    assert stored["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 40},
            },
        }
    ]
    # What v1 cannot say survives a v1 update: a memory metric and behavior added in v2.
    stored["spec"]["metrics"].append(
        {
            "type": "Resource",
            "resource": {
                "name": "memory",
                "target": {"type": "AverageValue", "averageValue": "64Mi"},
            },
        }
    )
    stored["spec"]["behavior"] = {"scaleDown": {"stabilizationWindowSeconds": 60}}
    assert api.put(f"{v2}/old", json=stored).status_code == 200
    old = api.get(f"{v1}/old").json()
    assert "metrics" not in old["spec"] and "behavior" not in old["spec"]
    # v1 readers see them in upstream's annotations, v1's shape.
    annotations = old["metadata"]["annotations"]
    assert json.loads(annotations["autoscaling.alpha.kubernetes.io/metrics"]) == [
        {"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "64Mi"}}
    ]
    behavior = api.get(f"{v2}/old").json()["spec"]["behavior"]
    assert json.loads(annotations["autoscaling.alpha.kubernetes.io/behavior"]) == behavior
    old["spec"]["targetCPUUtilizationPercentage"] = 60
    assert api.put(f"{v1}/old", json=old).status_code == 200, old
    # ... which a v1 writer sends back: they are views, never stored.
    assert "annotations" not in api.get(f"{v2}/old").json()["metadata"]
    after = api.get(f"{v2}/old").json()["spec"]
    assert [m["resource"]["name"] for m in after["metrics"]] == ["cpu", "memory"]
    assert after["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    assert after["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 60
    # A v1 watcher is woken by a write through v2 and sees the v1 shape.
    rv = api.get(f"{v1}/old").json()["metadata"]["resourceVersion"]
    changed = api.get(f"{v2}/old").json()
    changed["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] = 65
    timer = threading.Timer(0.5, lambda: api.put(f"{v2}/old", json=changed))
    timer.start()
    try:
        with api.stream(
            "GET", v1, params={"watch": "1", "resourceVersion": rv, "timeoutSeconds": "30"}
        ) as watch:
            event = json.loads(next(watch.iter_lines()))
    finally:
        timer.join()
    assert event["type"] == "MODIFIED"
    assert event["object"]["apiVersion"] == "autoscaling/v1"
    assert event["object"]["spec"]["targetCPUUtilizationPercentage"] == 65
    # Discovery: both versions, v2 preferred.
    group = api.get("/apis/autoscaling").json()
    assert [v["version"] for v in group["versions"]] == ["v2", "v1"]
    assert group["preferredVersion"]["version"] == "v2"
    listed = kubectl(apiserver, "get", "horizontalpodautoscalers.v1.autoscaling", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    # The v1 table shows what v1 says: the CPU target.
    row = re.split(r"\s{2,}", listed.stdout.splitlines()[1])
    assert row[:5] == ["old", "Deployment/web", "cpu: <unknown>/65%", "1", "3"], row
    explained = kubectl(apiserver, "explain", "hpa.spec.behavior.scaleDown")
    assert explained.returncode == 0, explained.stderr
    assert "stabilizationWindowSeconds" in explained.stdout
    assert "selectPolicy" in explained.stdout


def test_hpa_scales_any_target_through_its_scale_subresource(
    cluster: ServerHandle, ns: str
) -> None:
    """ReplicaSets, StatefulSets, RCs and custom resources: above maxReplicas the HPA
    brings the target down without looking at metrics; at zero it leaves it alone."""
    group = f"hpa{os.urandom(3).hex()}.example.com"
    crd = {
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                    "subresources": {
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                        }
                    },
                }
            ],
        },
    }
    template = {
        "metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.35"}]},
    }
    selector = {"matchLabels": {"app": "x"}}
    targets = [
        ("apps/v1", "ReplicaSet", "replicasets", 5, {"selector": selector}),
        ("apps/v1", "StatefulSet", "statefulsets", 0, {"selector": selector, "serviceName": "x"}),
        ("v1", "ReplicationController", "replicationcontrollers", 0, {"selector": {"app": "x"}}),
        (f"{group}/v1", "Widget", "widgets", 7, {}),
    ]
    with cluster.client() as api:
        crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        assert api.post(crds, json=crd).status_code == 201
        try:
            for api_version, kind, plural, replicas, extra in targets:
                base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
                spec: dict[str, Any] = {"replicas": replicas, **extra}
                if kind != "Widget":
                    spec["template"] = template
                body = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "t"}}
                url = f"{base}/namespaces/{ns}/{plural}"
                wait_for(
                    lambda url=url, body=body, spec=spec: (
                        api.post(url, json={**body, "spec": spec}).status_code in (201, 409)
                    ),
                    60,
                    0.5,
                    what=f"a {kind} to be created",
                )
                hpa = {
                    "metadata": {"name": kind.lower()},
                    "spec": {
                        "scaleTargetRef": {"apiVersion": api_version, "kind": kind, "name": "t"},
                        "minReplicas": 1,
                        "maxReplicas": 3,
                    },
                }
                assert api.post(HPAS.format(ns=ns), json=hpa).status_code == 201

            def scale_of(api_version: str, plural: str) -> int:
                base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
                scale = api.get(f"{base}/namespaces/{ns}/{plural}/t/scale").json()
                return int(scale["spec"]["replicas"])

            for api_version, kind, plural, replicas, _ in targets:
                name = kind.lower()
                if replicas == 0:
                    disabled = wait_for(
                        lambda name=name: (
                            _condition(
                                api.get(f"{HPAS.format(ns=ns)}/{name}").json(), "ScalingActive"
                            ).get("reason")
                            == "ScalingDisabled"
                        ),
                        60,
                        0.5,
                        what=f"ScalingDisabled for the {kind}",
                    )
                    assert disabled
                    assert scale_of(api_version, plural) == 0
                else:
                    wait_for(
                        lambda v=api_version, p=plural: scale_of(v, p) == 3,
                        60,
                        0.5,
                        what=f"the {kind} scaled down to maxReplicas",
                    )
                    assert wait_for(
                        lambda name=name: _event(
                            api,
                            ns,
                            name,
                            "SuccessfulRescale",
                            "New size: 3; reason: Current number of replicas above "
                            "Spec.MaxReplicas",
                        ),
                        30,
                        what=f"the {kind}'s rescale event",
                    )
        finally:
            api.delete(f"{crds}/widgets.{group}")
