"""Controller rules that need no server: pod ranking, expectations, --controllers, taints,
tolerations, Endpoints subsets and EndpointSlice plans."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from k8slite.cmd.controller_manager import parse_args
from k8slite.component.objects import Obj
from k8slite.controllers.endpoints import build_subsets
from k8slite.controllers.endpointslice import MAX_ENDPOINTS, plan_slices
from k8slite.controllers.expectations import Expectations
from k8slite.controllers.manager import UnknownController, enabled_controllers
from k8slite.controllers.nodelifecycle import desired_taints, merge_taints
from k8slite.controllers.ranking import pods_to_delete
from k8slite.controllers.tainteviction import tolerates, toleration_seconds

NOW = dt.datetime(2024, 6, 1, 12, 0, 0, tzinfo=dt.UTC)


def stamp(seconds_ago: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    name: str,
    *,
    node: str = "n1",
    phase: str = "Running",
    ready: bool = True,
    ready_for: float = 3600,
    age: float = 7200,
    restarts: int = 0,
    cost: int | None = None,
    ip: str = "10.0.0.1",
    labels: dict[str, str] | None = None,
) -> Obj:
    annotations = {} if cost is None else {"controller.kubernetes.io/pod-deletion-cost": str(cost)}
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "creationTimestamp": stamp(age),
            "annotations": annotations,
            "labels": labels or {"app": "web"},
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}],
        },
        "status": {
            "phase": phase,
            "podIP": ip,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": stamp(ready_for),
                }
            ],
            "containerStatuses": [{"name": "app", "restartCount": restarts}],
        },
    }


# ------------------------------------------------------------------- ranking


def first_victim(*pods: Obj, related: list[Obj] | None = None) -> str:
    chosen = pods_to_delete(list(pods), related or list(pods), 1, NOW)
    return str(chosen[0]["metadata"]["name"])


def test_ranking_prefers_the_least_established_pod() -> None:
    assert first_victim(pod("placed"), pod("unplaced", node="")) == "unplaced"
    assert first_victim(pod("running"), pod("pending", phase="Pending")) == "pending"
    assert first_victim(pod("ready"), pod("unready", ready=False)) == "unready"
    assert first_victim(pod("dear", cost=10), pod("cheap", cost=-5)) == "cheap"
    assert first_victim(pod("steady"), pod("crashy", restarts=4)) == "crashy"
    # Ready for minutes versus hours: the recent one goes (log-scale buckets differ).
    assert first_victim(pod("old", ready_for=36000), pod("fresh", ready_for=60)) == "fresh"


def test_ranking_spreads_what_remains_across_nodes() -> None:
    crowded = [pod("a1", node="a"), pod("a2", node="a")]
    alone = pod("b1", node="b")
    assert first_victim(alone, *crowded) in ("a1", "a2")


def test_ranking_returns_everything_when_asked_for_more() -> None:
    pods = [pod("x"), pod("y")]
    assert pods_to_delete(pods, pods, 5, NOW) == pods


# --------------------------------------------------------------- expectations


def test_expectations_wait_for_every_creation_and_deletion() -> None:
    clock = [0.0]
    exp = Expectations(ttl=300, clock=lambda: clock[0])
    assert exp.satisfied("ns/rs")
    exp.expect_creations("ns/rs", 2)
    exp.creation_observed("ns/rs")
    assert not exp.satisfied("ns/rs")
    exp.creation_observed("ns/rs")
    assert exp.satisfied("ns/rs")
    exp.expect_deletions("ns/rs", ["ns/p1", "ns/p2"])
    exp.deletion_observed("ns/rs", "ns/p1")
    exp.deletion_observed("ns/rs", "ns/p1")  # seen twice (terminating, then gone): once
    assert not exp.satisfied("ns/rs")
    clock[0] = 301.0
    assert exp.satisfied("ns/rs"), "a record too old to trust is ignored"


# ---------------------------------------------------------------- controllers


def test_controllers_flag_follows_upstream() -> None:
    every = enabled_controllers(["*"])
    assert "replicaset-controller" in every and "taint-eviction-controller" in every
    assert "garbage-collector-controller" not in enabled_controllers(["*", "-garbagecollector"])
    assert enabled_controllers(["deployment", "replicaset"]) == [
        "replicaset-controller",
        "deployment-controller",
    ]
    assert enabled_controllers(["replicaset", "-replicaset-controller"]) == []
    with pytest.raises(UnknownController, match="not in the list of known controllers"):
        enabled_controllers(["*", "-nosuch"])


# ---------------------------------------------------------------------- taints


def node(ready: str | None, **conditions: str) -> Obj:
    conds = [{"type": t, "status": s} for t, s in conditions.items()]
    if ready is not None:
        conds.append({"type": "Ready", "status": ready})
    return {"metadata": {"name": "n"}, "spec": {}, "status": {"conditions": conds}}


def test_conditions_map_to_taints() -> None:
    assert desired_taints(node("True")) == []
    assert ("node.kubernetes.io/unreachable", "NoExecute") in desired_taints(node("Unknown"))
    assert ("node.kubernetes.io/not-ready", "NoExecute") in desired_taints(node("False"))
    assert desired_taints(node(None)) == [], "a new node is not lost"
    assert desired_taints(node("True", DiskPressure="True")) == [
        ("node.kubernetes.io/disk-pressure", "NoSchedule")
    ]


def test_taints_are_swapped_and_foreign_ones_kept() -> None:
    n = node("False")
    n["spec"]["taints"] = [
        {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
    ]
    taints = merge_taints(n)
    assert taints is not None
    keys = {(t["key"], t["effect"]) for t in taints}
    assert keys == {
        ("dedicated", "NoSchedule"),
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/not-ready", "NoSchedule"),
    }
    assert all(t.get("timeAdded") for t in taints if t["effect"] == "NoExecute")
    n["spec"]["taints"] = taints
    assert merge_taints(n) is None


def test_tolerations_decide_how_long_a_pod_stays() -> None:
    taint = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
    exists = {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    }
    assert tolerates(exists, taint)
    assert tolerates({"operator": "Exists"}, taint), "an empty key with Exists tolerates all"
    assert not tolerates({"key": "other", "operator": "Exists"}, taint)
    assert not tolerates({"key": taint["key"], "value": "x"}, taint)

    def with_tolerations(*tolerations: Obj) -> Obj:
        return {"spec": {"tolerations": list(tolerations)}}

    assert toleration_seconds(with_tolerations(exists), [taint]) == 300
    assert toleration_seconds(with_tolerations(), [taint]) == 0
    forever = {k: v for k, v in exists.items() if k != "tolerationSeconds"}
    assert toleration_seconds(with_tolerations(forever), [taint]) is None
    other = {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}
    short = {**exists, "key": other["key"], "tolerationSeconds": 5}
    assert toleration_seconds(with_tolerations(exists, short), [taint, other]) == 5


# ------------------------------------------------------------------ endpoints


def service(**spec: Any) -> Obj:
    return {
        "metadata": {"name": "web", "namespace": "ns"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"name": "web", "port": 80, "targetPort": "http"}],
            **spec,
        },
    }


def test_subsets_resolve_named_ports_and_split_readiness() -> None:
    subsets = build_subsets(
        service(), [pod("a", ip="10.0.0.2"), pod("b", ip="10.0.0.1", ready=False), pod("c", ip="")]
    )
    assert len(subsets) == 1
    [subset] = subsets
    assert [a["ip"] for a in subset["addresses"]] == ["10.0.0.2"]
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.0.0.1"]
    assert subset["ports"] == [{"port": 8080, "protocol": "TCP", "name": "web"}]
    published = build_subsets(
        service(publishNotReadyAddresses=True), [pod("b", ip="10.0.0.1", ready=False)]
    )
    assert [a["ip"] for a in published[0]["addresses"]] == ["10.0.0.1"]


def endpoint(i: int) -> Obj:
    return {
        "addresses": [f"10.1.{i // 250}.{i % 250}"],
        "targetRef": {"uid": f"u{i}"},
        "conditions": {"ready": True},
    }


PORTS = [{"name": "web", "port": 8080, "protocol": "TCP"}]
GROUP = ("IPv4", (("web", 8080, "TCP"),))


def existing_slice(name: str, endpoints: list[Obj], ports: list[Obj] | None = None) -> Obj:
    return {
        "metadata": {"name": name},
        "addressType": "IPv4",
        "ports": PORTS if ports is None else ports,
        "endpoints": endpoints,
    }


def test_slice_plan_fills_existing_slices_then_adds_new_ones() -> None:
    eps = [endpoint(i) for i in range(MAX_ENDPOINTS + 30)]
    current = existing_slice("web-a", eps[:10])
    plan = plan_slices({GROUP: (PORTS, eps)}, [current], "IPv4")
    assert plan.delete == []
    [(updated, _, kept)] = plan.update
    assert updated is current and len(kept) == MAX_ENDPOINTS
    assert kept[:10] == eps[:10], "endpoints stay where they were"
    [(kind, _, created)] = plan.create
    assert kind == "IPv4" and len(created) == 30


def test_slice_plan_reuses_a_slice_rather_than_delete_and_create() -> None:
    placeholder = existing_slice("web-a", [], ports=[])
    plan = plan_slices({GROUP: (PORTS, [endpoint(1)])}, [placeholder], "IPv4")
    assert plan.create == [] and plan.delete == []
    [(slice_, ports, eps)] = plan.update
    assert slice_ is placeholder and ports == PORTS and eps == [endpoint(1)]


def test_slice_plan_keeps_one_placeholder_when_nothing_is_ready() -> None:
    full = existing_slice("web-a", [endpoint(1)])
    other = existing_slice("web-b", [endpoint(2)])
    plan = plan_slices({}, [full, other], "IPv4")
    [(reused, ports, eps)] = plan.update
    assert ports == [] and eps == [] and plan.create == []
    assert len(plan.delete) == 1 and plan.delete[0] is not reused


def test_command_line_follows_upstream_flags() -> None:
    config, _ = parse_args(
        [
            "--kubeconfig",
            "/x",
            "--controllers=*,-garbagecollector",
            "--node-monitor-grace-period=3s",
            "--concurrent-deployment-syncs=2",
            "--leader-elect=false",
            "--secure-port=0",
        ]
    )
    assert config.controllers == ["*", "-garbagecollector"]
    assert config.options.node_monitor_grace_period == 3.0
    assert config.options.concurrent_deployment_syncs == 2
    assert config.leader_election.leader_elect is False
    assert config.leader_election.resource_name == "kube-controller-manager"
    assert config.leader_election.resource_namespace == "kube-system"
    defaults, _ = parse_args([])
    assert (
        defaults.leader_election.lease_duration,
        defaults.leader_election.renew_deadline,
        defaults.leader_election.retry_period,
    ) == (15.0, 10.0, 2.0)
    assert defaults.serving.secure_port == 10257
    assert defaults.options.node_monitor_grace_period == 40.0
    # The horizontal pod autoscaler's flags and upstream's defaults.
    hpa = defaults.options.autoscaler
    assert (
        hpa.sync_period,
        hpa.downscale_stabilization,
        hpa.tolerance,
        hpa.cpu_initialization_period,
        hpa.initial_readiness_delay,
    ) == (15.0, 300.0, 0.1, 300.0, 30.0)
    tuned, _ = parse_args(
        [
            "--horizontal-pod-autoscaler-sync-period=1s",
            "--horizontal-pod-autoscaler-downscale-stabilization=30s",
            "--horizontal-pod-autoscaler-tolerance=0.05",
            "--horizontal-pod-autoscaler-cpu-initialization-period=1m",
            "--horizontal-pod-autoscaler-initial-readiness-delay=10s",
            "--controllers=horizontalpodautoscaling",
        ]
    )
    hpa = tuned.options.autoscaler
    assert (hpa.sync_period, hpa.downscale_stabilization, hpa.tolerance) == (1.0, 30.0, 0.05)
    assert (hpa.cpu_initialization_period, hpa.initial_readiness_delay) == (60.0, 10.0)
    assert enabled_controllers(tuned.controllers) == ["horizontal-pod-autoscaler-controller"]
    with pytest.raises(SystemExit):
        parse_args(["--controllers=*,-nosuch"])
    with pytest.raises(SystemExit):
        parse_args(["--leader-elect-renew-deadline=20s"])
