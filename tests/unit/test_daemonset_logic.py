"""The DaemonSet controller's pure parts: node eligibility, daemon pods, rolling-update budgets."""

from __future__ import annotations

import datetime as dt

from k8slite.component.objects import Obj
from k8slite.controllers import daemonutil as du

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
STAMP = "2025-12-31T23:00:00Z"


def ds(template_spec: Obj | None = None, **spec: object) -> Obj:
    return {
        "metadata": {
            "name": "agent",
            "namespace": "default",
            "annotations": {"deprecated.daemonset.template.generation": "2"},
        },
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "c", "image": "i"}], **(template_spec or {})},
            },
            **spec,
        },
    }


def node(name: str, labels: dict[str, str] | None = None, taints: list[Obj] | None = None) -> Obj:
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []}}


def pod(
    name: str,
    node_name: str,
    *,
    updated: bool,
    ready: bool = True,
    created: str = STAMP,
    deleting: bool = False,
) -> Obj:
    labels = {"app": "agent", "pod-template-generation": "2" if updated else "1"}
    meta: Obj = {"name": name, "labels": labels, "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = STAMP
    cond = {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": STAMP}
    return {
        "metadata": meta,
        "spec": {"nodeName": node_name},
        "status": {"phase": "Running", "conditions": [cond]},
    }


def affinity(*terms: Obj) -> Obj:
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}
            }
        }
    }


# ------------------------------------------------------------------ eligibility


def test_node_selector_and_affinity_operators() -> None:
    d = ds({"nodeSelector": {"role": "edge"}})
    assert du.should_run(d, node("a", {"role": "edge"})) == (True, True)
    assert du.should_run(d, node("b", {"role": "core"})) == (False, False)

    d = ds(
        affinity(
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1", "z2"]}]},
            {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]},
        )
    )
    # Terms are ORed, the expressions of one term ANDed.
    assert du.should_run(d, node("a", {"zone": "z2"}))[0]
    assert du.should_run(d, node("b", {"cores": "16"}))[0]
    assert not du.should_run(d, node("c", {"cores": "4", "zone": "z3"}))[0]
    d = ds(
        affinity(
            {
                "matchExpressions": [
                    {"key": "gpu", "operator": "DoesNotExist"},
                    {"key": "zone", "operator": "NotIn", "values": ["z9"]},
                ],
                "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["x"]}],
            }
        )
    )
    assert du.should_run(d, node("a"))[0]
    assert not du.should_run(d, node("x"))[0]
    assert not du.should_run(d, node("a", {"gpu": "1"}))[0]
    assert not du.should_run(d, node("a", {"zone": "z9"}))[0]
    # An empty term selects nothing.
    assert not du.should_run(ds(affinity({})), node("a"))[0]


def test_taints_and_daemon_tolerations() -> None:
    d = ds()
    no_schedule = node("a", taints=[{"key": "dedicated", "value": "x", "effect": "NoSchedule"}])
    no_execute = node("b", taints=[{"key": "dedicated", "value": "x", "effect": "NoExecute"}])
    prefer = node("c", taints=[{"key": "dedicated", "effect": "PreferNoSchedule"}])
    # NoSchedule keeps a new pod off but lets a running one stay; NoExecute removes it.
    assert du.should_run(d, no_schedule) == (False, True)
    assert du.should_run(d, no_execute) == (False, False)
    assert du.should_run(d, prefer) == (True, True)
    tolerated = ds({"tolerations": [{"key": "dedicated", "operator": "Exists"}]})
    assert du.should_run(tolerated, no_schedule) == (True, True)
    assert du.should_run(tolerated, no_execute) == (True, True)

    for key, effect in (
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ):
        assert du.should_run(d, node("n", taints=[{"key": key, "effect": effect}])) == (True, True)
    # Not-ready as NoSchedule is not among them (upstream tolerates the NoExecute only).
    not_ready = node("n", taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}])
    assert du.should_run(d, not_ready) == (False, True)
    net = node(
        "n", taints=[{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]
    )
    assert du.should_run(d, net)[0] is False
    assert du.should_run(ds({"hostNetwork": True}), net)[0] is True


def test_daemon_pod_template_pinning_and_target() -> None:
    d = ds(
        {
            "tolerations": [
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                }
            ],
            **affinity({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}),
        }
    )
    template = du.pod_template(d, "abc123")
    labels = template["metadata"]["labels"]
    assert labels == {
        "app": "agent",
        "pod-template-generation": "2",
        "controller-revision-hash": "abc123",
    }
    tolerations = template["spec"]["tolerations"]
    # A daemon toleration the template already had is not doubled.
    assert len(tolerations) == 6
    assert len({(t["key"], t["effect"]) for t in tolerations}) == 6
    # The template itself is untouched.
    assert "controller-revision-hash" not in d["spec"]["template"]["metadata"]["labels"]

    spec = template["spec"]
    du.pin_to_node(spec, "n1")
    required = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required["nodeSelectorTerms"] == [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
    ]
    assert du.target_node({"spec": spec}) == "n1"
    assert du.target_node({"spec": {**spec, "nodeName": "n2"}}) == "n2"
    assert du.target_node({"spec": {}}) is None


def test_pod_updated_by_generation_or_hash() -> None:
    p = {"metadata": {"labels": {"pod-template-generation": "3", "controller-revision-hash": "h"}}}
    assert du.is_pod_updated(p, "h", 9)
    assert du.is_pod_updated(p, "other", 3)
    assert not du.is_pod_updated(p, "other", 4)
    assert not du.is_pod_updated(p, "", None)


# ------------------------------------------------------------------ manage


def test_plan_node_creates_prunes_and_kills_failed() -> None:
    plan = du.NodePlan()
    du.plan_node(plan, "a", True, True, [], "h", False, 0, NOW)
    assert plan.create_on == ["a"]
    # Two pods without surge: the oldest stays.
    older = pod("old", "b", updated=True, created="2025-01-01T00:00:00Z")
    newer = pod("new", "b", updated=True)
    du.plan_node(plan, "b", True, True, [newer, older], "h", False, 0, NOW)
    assert [p["metadata"]["name"] for p in plan.delete] == ["new"]
    # A node that must not keep its pod loses it (a terminating one is left alone).
    plan = du.NodePlan()
    du.plan_node(
        plan,
        "c",
        False,
        False,
        [pod("x", "c", updated=True), pod("y", "c", updated=True, deleting=True)],
        "h",
        False,
        0,
        NOW,
    )
    assert [p["metadata"]["name"] for p in plan.delete] == ["x"]
    # A failed pod is reported for a kill; a terminating pod keeps a new one from coming.
    plan = du.NodePlan()
    failed = pod("f", "d", updated=True)
    failed["status"]["phase"] = "Failed"
    du.plan_node(plan, "d", True, True, [failed], "h", False, 0, NOW)
    assert plan.failed == [("d", failed)] and not plan.create_on
    plan = du.NodePlan()
    du.plan_node(
        plan, "e", True, True, [pod("t", "e", updated=True, deleting=True)], "h", False, 0, NOW
    )
    assert plan.create_on == [] and plan.delete == []


def test_plan_node_with_surge_keeps_old_until_new_is_available() -> None:
    old = pod("old", "a", updated=False, created="2025-01-01T00:00:00Z")
    new = pod("new", "a", updated=True, ready=False)
    new["metadata"]["labels"]["controller-revision-hash"] = "h"
    plan = du.NodePlan()
    du.plan_node(plan, "a", True, True, [old, new], "h", True, 0, NOW)
    assert plan.delete == []
    new["status"]["conditions"][0]["status"] = "True"
    du.plan_node(plan, "a", True, True, [old, new], "h", True, 0, NOW)
    assert plan.delete == [old]


# ------------------------------------------------------------------ rolling update


def budget(**rolling: object) -> Obj:
    return ds(updateStrategy={"type": "RollingUpdate", "rollingUpdate": rolling})


def test_surge_and_unavailable_round_up() -> None:
    assert du.surge_and_unavailable(budget(maxUnavailable="10%", maxSurge=0), 15) == (0, 2)
    assert du.surge_and_unavailable(budget(maxUnavailable=0, maxSurge="25%"), 5) == (2, 0)
    assert du.surge_and_unavailable(budget(maxUnavailable="0%", maxSurge="0%"), 4) == (0, 1)
    assert du.surge_and_unavailable(budget(maxUnavailable=0, maxSurge=0), 0) == (0, 0)


def test_rolling_update_respects_max_unavailable() -> None:
    d = budget(maxUnavailable=2, maxSurge=0)
    node_pods = {f"n{i}": [pod(f"p{i}", f"n{i}", updated=False)] for i in range(5)}
    eligible = set(node_pods)
    delete, create = du.rolling_update_plan(d, node_pods, eligible, "h", NOW)
    assert len(delete) == 2 and create == []
    # One node already unavailable (a new pod not ready): one more may go.
    node_pods["n0"] = [pod("p0", "n0", updated=True, ready=False)]
    delete, _ = du.rolling_update_plan(d, node_pods, eligible, "h", NOW)
    assert len(delete) == 1
    # An old pod that is not available is replaced whatever the budget.
    node_pods["n1"] = [pod("p1", "n1", updated=False, ready=False)]
    node_pods["n2"] = [pod("p2", "n2", updated=True, ready=False)]
    delete, _ = du.rolling_update_plan(d, node_pods, eligible, "h", NOW)
    assert [p["metadata"]["name"] for p in delete] == ["p1"]
    # A node with no pod yet counts as unavailable.
    node_pods = {"n0": [], "n1": [pod("p1", "n1", updated=False)]}
    delete, _ = du.rolling_update_plan(
        budget(maxUnavailable=1, maxSurge=0), node_pods, {"n0", "n1"}, "h", NOW
    )
    assert delete == []


def test_rolling_update_with_surge() -> None:
    d = budget(maxUnavailable=0, maxSurge=1)
    node_pods = {f"n{i}": [pod(f"p{i}", f"n{i}", updated=False)] for i in range(3)}
    eligible = set(node_pods)
    delete, create = du.rolling_update_plan(d, node_pods, eligible, "h", NOW)
    assert delete == [] and create == ["n0"]
    # n0 surged and the new pod is not available yet: nothing more.
    node_pods["n0"].append(pod("q0", "n0", updated=True, ready=False))
    assert du.rolling_update_plan(d, node_pods, eligible, "h", NOW) == ([], [])
    # Available: its old pod goes, and the next node may surge.
    node_pods["n0"][1]["status"]["conditions"][0]["status"] = "True"
    delete, create = du.rolling_update_plan(d, node_pods, eligible, "h", NOW)
    assert [p["metadata"]["name"] for p in delete] == ["p0"] and create == ["n1"]
    # An unavailable old pod gets its replacement beside it at once.
    node_pods["n2"][0]["status"]["conditions"][0]["status"] = "False"
    _, create = du.rolling_update_plan(d, node_pods, eligible, "h", NOW)
    assert "n2" in create


def test_compute_status_counts_per_node() -> None:
    d = ds(minReadySeconds=0)
    node_pods = {
        "a": [pod("pa", "a", updated=True)],
        "b": [pod("pb", "b", updated=False, ready=False)],
        "gone": [pod("pg", "gone", updated=True)],
    }
    runs = {"a": True, "b": True, "c": True, "gone": False}
    status = du.compute_status(d, runs, node_pods, "h", NOW)
    assert status == {
        "currentNumberScheduled": 2,
        "numberMisscheduled": 1,
        "desiredNumberScheduled": 3,
        "numberReady": 1,
        "updatedNumberScheduled": 1,
        "numberAvailable": 1,
        "numberUnavailable": 2,
    }


def test_revision_data_replaces_the_template() -> None:
    data = du.revision_data(ds())
    assert data["spec"]["template"]["$patch"] == "replace"
    assert du.same_data(data, du.revision_data(ds()))
    assert not du.same_data(data, du.revision_data(ds({"hostNetwork": True})))


def test_node_verdicts_are_kept_until_node_or_template_changes() -> None:
    from types import SimpleNamespace

    from k8slite.controllers.daemonset import DaemonSetController

    controller = SimpleNamespace(verdict_cache={})

    def verdicts(daemon: Obj, nodes: dict[str, Obj]) -> dict[str, tuple[bool, bool]]:
        return DaemonSetController._verdicts(controller, "default/agent", daemon, nodes)  # type: ignore[arg-type]

    daemon = ds({"nodeSelector": {"disk": "ssd"}})
    daemon["metadata"].update(uid="u1", generation=1)
    a = node("a", {"disk": "ssd"})
    a["metadata"]["resourceVersion"] = "10"
    b = node("b")
    b["metadata"]["resourceVersion"] = "11"
    assert verdicts(daemon, {"a": a, "b": b}) == {"a": (True, True), "b": (False, False)}

    # A node whose resourceVersion is unchanged keeps its verdict (the cache is used)...
    stale = {**b, "metadata": {**b["metadata"], "labels": {"disk": "ssd"}}}
    assert verdicts(daemon, {"a": a, "b": stale})["b"] == (False, False)
    # ...a changed node is judged again...
    stale["metadata"]["resourceVersion"] = "12"
    assert verdicts(daemon, {"a": a, "b": stale})["b"] == (True, True)
    # ...and so is every node once the template changes (a new generation).
    changed = ds({"nodeSelector": {"disk": "hdd"}})
    changed["metadata"].update(uid="u1", generation=2)
    assert verdicts(changed, {"a": a, "b": stale}) == {"a": (False, False), "b": (False, False)}
    # Nodes that are gone leave the cache.
    verdicts(changed, {"a": a})
    assert set(controller.verdict_cache["default/agent"][1]) == {"a"}
