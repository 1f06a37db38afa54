"""The native filter and score kernel against hand-built clusters and the Python reference."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k8slite import _native
from tests.reference import scheduler as ref

GI = 1 << 30
MI = 1 << 20
IMPLS = [pytest.param(_native, id="native"), pytest.param(ref, id="reference")]


def alloc(cpu: int = 4000, memory: int = 8 * GI, pods: int = 110, **extra: int) -> dict[str, int]:
    return {"cpu": cpu, "memory": memory, "pods": pods, **extra}


def pod(impl: Any, namespace: str = "default", **kw: Any) -> Any:
    requests = kw.get("requests") or {}
    kw.setdefault("nonzero", (requests.get("cpu", 100), requests.get("memory", 200 * MI)))
    return impl.PodSpec(namespace=namespace, **kw)


def verdicts(table: Any, spec: Any) -> dict[str, tuple[list[str], bool, dict[str, int] | None]]:
    return {name: (reasons, unres, scores) for name, reasons, unres, scores in table.evaluate(spec)}


def feasible(table: Any, spec: Any) -> set[str]:
    return {name for name, (reasons, _, _) in verdicts(table, spec).items() if not reasons}


# ------------------------------------------------------------------------ filters


@pytest.mark.parametrize("impl", IMPLS)
class TestFilters:
    def test_node_unschedulable(self, impl: Any) -> None:
        t = impl.NodeTable()
        t.set_node("a", allocatable=alloc(), unschedulable=True)
        t.set_node("b", allocatable=alloc())
        v = verdicts(t, pod(impl))
        assert v["a"][:2] == (["node(s) were unschedulable"], True)
        assert v["b"][0] == []
        tolerant = pod(
            impl, tolerations=[("node.kubernetes.io/unschedulable", "Exists", "", "NoSchedule")]
        )
        assert feasible(t, tolerant) == {"a", "b"}

    def test_node_name(self, impl: Any) -> None:
        t = impl.NodeTable()
        for n in ("a", "b"):
            t.set_node(n, allocatable=alloc())
        v = verdicts(t, pod(impl, node_name="b"))
        assert v["a"][:2] == (["node(s) didn't match the requested node name"], True)
        assert v["b"][0] == []

    def test_taints(self, impl: Any) -> None:
        t = impl.NodeTable()
        t.set_node(
            "cp",
            allocatable=alloc(),
            taints=[("node-role.kubernetes.io/control-plane", "", "NoSchedule")],
        )
        t.set_node("gpu", allocatable=alloc(), taints=[("gpu", "true", "NoExecute")])
        t.set_node("soft", allocatable=alloc(), taints=[("x", "y", "PreferNoSchedule")])
        assert feasible(t, pod(impl)) == {"soft"}
        v = verdicts(t, pod(impl))
        assert v["cp"][:2] == (["node(s) had untolerated taint(s)"], True)
        assert feasible(t, pod(impl, tolerations=[("gpu", "Equal", "true", "NoExecute")])) == {
            "gpu",
            "soft",
        }
        # Wrong value, wrong effect: still untolerated.
        assert feasible(t, pod(impl, tolerations=[("gpu", "Equal", "false", "")])) == {"soft"}
        assert feasible(t, pod(impl, tolerations=[("gpu", "Exists", "", "NoSchedule")])) == {"soft"}
        # An empty key with Exists tolerates every taint.
        assert feasible(t, pod(impl, tolerations=[("", "Exists", "", "")])) == {"cp", "gpu", "soft"}

    def test_node_selector_and_required_affinity(self, impl: Any) -> None:
        t = impl.NodeTable()
        t.set_node("a", allocatable=alloc(), labels={"zone": "z1", "disk": "ssd", "cores": "8"})
        t.set_node("b", allocatable=alloc(), labels={"zone": "z2", "cores": "32"})
        t.set_node("c", allocatable=alloc(), labels={"zone": "z3", "cores": "x"})
        assert feasible(t, pod(impl, node_selector={"disk": "ssd"})) == {"a"}
        v = verdicts(t, pod(impl, node_selector={"disk": "ssd"}))
        assert v["b"][:2] == (["node(s) didn't match Pod's node affinity/selector"], True)

        def req(*exprs: tuple[str, str, list[str]], fields: tuple[Any, ...] = ()) -> Any:
            return pod(impl, required=[(list(exprs), list(fields))])

        assert feasible(t, req(("zone", "In", ["z1", "z2"]))) == {"a", "b"}
        assert feasible(t, req(("zone", "NotIn", ["z1"]))) == {"b", "c"}
        assert feasible(t, req(("disk", "NotIn", ["hdd"]))) == {"a", "b", "c"}
        assert feasible(t, req(("disk", "Exists", []))) == {"a"}
        assert feasible(t, req(("disk", "DoesNotExist", []))) == {"b", "c"}
        assert feasible(t, req(("cores", "Gt", ["10"]))) == {"b"}
        assert feasible(t, req(("cores", "Lt", ["10"]))) == {"a"}
        # Malformed requirements make their term match nothing.
        assert feasible(t, req(("cores", "Gt", ["ten"]))) == set()
        assert feasible(t, req(("zone", "In", []))) == set()
        assert feasible(t, req(("zone", "Exists", ["z1"]))) == set()
        assert feasible(t, req(("zone", "Like", ["z1"]))) == set()
        # Terms are ORed; an empty term matches nothing.
        two = pod(impl, required=[([("zone", "In", ["z1"])], []), ([("zone", "In", ["z3"])], [])])
        assert feasible(t, two) == {"a", "c"}
        assert feasible(t, pod(impl, required=[([], [])])) == set()
        assert feasible(t, req(fields=(("metadata.name", "NotIn", ["a"]),))) == {"b", "c"}
        # Selector and affinity must both hold.
        both = pod(impl, node_selector={"zone": "z1"}, required=[([("cores", "Gt", ["10"])], [])])
        assert feasible(t, both) == set()

    def test_match_fields_prefilter(self, impl: Any) -> None:
        t = impl.NodeTable()
        for n in ("a", "b", "c"):
            t.set_node(n, allocatable=alloc())
        daemon = pod(impl, required=[([], [("metadata.name", "In", ["b"])])])
        v = verdicts(t, daemon)
        assert v["b"][0] == []
        assert v["a"][:2] == (["node(s) didn't satisfy plugin(s) [NodeAffinity]"], True)
        conflict = pod(
            impl, required=[([], [("metadata.name", "In", ["a"]), ("metadata.name", "In", ["b"])])]
        )
        result = t.schedule(conflict)
        assert (result.node, result.prefilter, result.unresolvable) == (
            None,
            "pod affinity terms conflict",
            3,
        )

    def test_host_ports(self, impl: Any) -> None:
        t = impl.NodeTable()
        for n in ("a", "b", "c"):
            t.set_node(n, allocatable=alloc())
        t.add_pod("ns/x", "a", pod(impl, ports=[("", "TCP", 8080)]))
        t.add_pod("ns/y", "b", pod(impl, ports=[("10.0.0.2", "UDP", 53)]))
        assert feasible(t, pod(impl, ports=[("", "", 8080)])) == {"b", "c"}
        v = verdicts(t, pod(impl, ports=[("", "", 8080)]))
        assert v["a"][:2] == (["node(s) didn't have free ports for the requested pod ports"], False)
        # Another IP conflicts with a bind-all port; another protocol does not.
        assert feasible(t, pod(impl, ports=[("10.0.0.9", "TCP", 8080)])) == {"b", "c"}
        assert feasible(t, pod(impl, ports=[("", "UDP", 8080)])) == {"a", "b", "c"}
        assert feasible(t, pod(impl, ports=[("10.0.0.3", "UDP", 53)])) == {"a", "b", "c"}
        assert feasible(t, pod(impl, ports=[("0.0.0.0", "UDP", 53)])) == {"a", "c"}
        t.remove_pod("ns/x")
        assert feasible(t, pod(impl, ports=[("", "", 8080)])) == {"a", "b", "c"}

    def test_resources(self, impl: Any) -> None:
        t = impl.NodeTable()
        t.set_node("small", allocatable=alloc(cpu=1000, memory=GI))
        t.set_node("full", allocatable=alloc(cpu=4000, memory=8 * GI, pods=2))
        t.set_node("gpu", allocatable=alloc(cpu=8000, memory=16 * GI, **{"nvidia.com/gpu": 2}))
        for i in range(2):
            t.add_pod(f"ns/p{i}", "full", pod(impl, requests={"cpu": 1500, "memory": GI}))
        v = verdicts(t, pod(impl, requests={"cpu": 2000, "memory": 2 * GI}))
        assert v["small"][:2] == (["Insufficient cpu", "Insufficient memory"], True)
        # Too many pods and insufficient cpu, resolvable (the pods could go).
        assert v["full"][:2] == (["Too many pods", "Insufficient cpu"], False)
        assert v["gpu"][0] == []
        wants_gpu = pod(impl, requests={"cpu": 100, "nvidia.com/gpu": 1})
        assert feasible(t, wants_gpu) == {"gpu"}
        assert verdicts(t, wants_gpu)["small"][:2] == (["Insufficient nvidia.com/gpu"], True)
        t.add_pod("ns/g", "gpu", pod(impl, requests={"nvidia.com/gpu": 2}))
        assert verdicts(t, wants_gpu)["gpu"][:2] == (["Insufficient nvidia.com/gpu"], False)
        # A pod asking for nothing fits wherever a pod slot is free.
        assert feasible(t, pod(impl, requests={})) == {"small", "gpu"}
        eph = pod(impl, requests={"ephemeral-storage": 5 * GI})
        assert verdicts(t, eph)["gpu"][:2] == (["Insufficient ephemeral-storage"], True)

    def test_first_failing_filter_reports(self, impl: Any) -> None:
        t = impl.NodeTable()
        t.set_node("a", allocatable=alloc(cpu=100), taints=[("k", "", "NoSchedule")])
        v = verdicts(t, pod(impl, requests={"cpu": 1000}))
        assert v["a"][0] == ["node(s) had untolerated taint(s)"]

    def test_anti_affinity_hostname_both_directions(self, impl: Any) -> None:
        t = impl.NodeTable()
        for n in ("n1", "n2", "n3"):
            t.set_node(
                n,
                allocatable=alloc(),
                labels={"kubernetes.io/hostname": n, "zone": "z1" if n != "n3" else "z2"},
            )
        host = "kubernetes.io/hostname"
        web = [([("app", "In", ["web"])], None, host)]
        t.add_pod("default/web-1", "n1", pod(impl, labels={"app": "web"}, anti_affinity=web))
        incoming = pod(
            impl,
            labels={"app": "web"},
            anti_affinity=[([("app", "In", ["web"])], ["default"], host)],
        )
        v = verdicts(t, incoming)
        assert v["n1"][:2] == (["node(s) didn't match pod anti-affinity rules"], False)
        assert feasible(t, incoming) == {"n2", "n3"}
        # A pod without terms is still kept off n1 by web-1's own anti-affinity...
        plain = pod(impl, labels={"app": "web"})
        assert verdicts(t, plain)["n1"][:2] == (
            ["node(s) didn't satisfy existing pods anti-affinity rules"],
            False,
        )
        # ... unless it is not selected by it (labels, or another namespace).
        assert feasible(t, pod(impl, labels={"app": "db"})) == {"n1", "n2", "n3"}
        t.add_pod("other/web-x", "n2", pod(impl, "other", labels={"app": "web"}))
        assert feasible(t, incoming) == {"n2", "n3"}
        # Zone topology: web-1 in z1 keeps a zone-anti-affine pod to z2.
        zonal = pod(
            impl,
            labels={"app": "api"},
            anti_affinity=[([("app", "In", ["web"])], ["default"], "zone")],
        )
        assert feasible(t, zonal) == {"n3"}
        t.remove_pod("default/web-1")
        assert feasible(t, plain) == {"n1", "n2", "n3"}

    def test_required_pod_affinity(self, impl: Any) -> None:
        t = impl.NodeTable()
        for n, zone in (("n1", "z1"), ("n2", "z2"), ("n3", None)):
            t.set_node(n, allocatable=alloc(), labels={"zone": zone} if zone else {})
        terms = [([("app", "In", ["cache"])], None, "zone")]
        # No cache pod anywhere, and the pod is not one: nowhere.
        v = verdicts(t, pod(impl, labels={"app": "web"}, affinity=terms))
        assert v["n1"][:2] == (["node(s) didn't match pod affinity rules"], True)
        # The first cache pod selects itself: any node with the topology label.
        assert feasible(t, pod(impl, labels={"app": "cache"}, affinity=terms)) == {"n1", "n2"}
        t.add_pod("default/cache", "n2", pod(impl, labels={"app": "cache"}))
        assert feasible(t, pod(impl, labels={"app": "web"}, affinity=terms)) == {"n2"}

    def test_disabled_filter(self, impl: Any) -> None:
        t = impl.NodeTable(disabled=["TaintToleration"])
        t.set_node("a", allocatable=alloc(), taints=[("k", "", "NoSchedule")])
        assert feasible(t, pod(impl)) == {"a"}

    def test_ghost_nodes_keep_accounting(self, impl: Any) -> None:
        t = impl.NodeTable()
        t.add_pod("ns/early", "late", pod(impl, requests={"cpu": 3000}))
        assert len(t) == 0
        t.set_node("late", allocatable=alloc(cpu=4000))
        assert verdicts(t, pod(impl, requests={"cpu": 2000}))["late"][0] == ["Insufficient cpu"]
        assert t.remove_node("late")
        t.set_node("late", allocatable=alloc(cpu=4000))
        assert verdicts(t, pod(impl, requests={"cpu": 2000}))["late"][0] == ["Insufficient cpu"]
        assert t.pod_node("ns/early") == "late"
        assert t.remove_pod("ns/early") and not t.remove_pod("ns/early")


# ------------------------------------------------------------------------- scores


@pytest.mark.parametrize("impl", IMPLS)
class TestScores:
    def test_least_allocated_and_balanced(self, impl: Any) -> None:
        t = impl.NodeTable()
        t.set_node("a", allocatable=alloc(cpu=4000, memory=8 * GI))
        scores = verdicts(t, pod(impl, requests={"cpu": 1000, "memory": GI}))["a"][2]
        assert scores is not None
        # cpu (4000-1000)/4000 = 75, memory 7/8 = 87; the mean, 81.
        assert scores["NodeResourcesFit"] == 81
        # fractions 0.25 and 0.125: std 0.0625, (1 - std) * 100 = 93.
        assert scores["NodeResourcesBalancedAllocation"] == 93

    def test_nonzero_defaults_in_fit_score(self, impl: Any) -> None:
        t = impl.NodeTable()
        t.set_node("a", allocatable=alloc(cpu=1000, memory=1000 * MI))
        # Best effort: scored as 100m and 200Mi; BalancedAllocation skips it.
        scores = verdicts(t, pod(impl, requests={}))["a"][2]
        assert scores is not None
        assert scores["NodeResourcesFit"] == (90 + 80) // 2
        assert scores["NodeResourcesBalancedAllocation"] == 0

    def test_most_allocated(self, impl: Any) -> None:
        t = impl.NodeTable(strategy="MostAllocated")
        t.set_node("a", allocatable=alloc(cpu=4000, memory=8 * GI))
        t.set_node("b", allocatable=alloc(cpu=4000, memory=8 * GI))
        t.add_pod("ns/x", "b", pod(impl, requests={"cpu": 2000, "memory": 4 * GI}))
        spec = pod(impl, requests={"cpu": 1000, "memory": GI})
        v = verdicts(t, spec)
        assert v["a"][2]["NodeResourcesFit"] == (25 + 12) // 2  # type: ignore[index]
        assert v["b"][2]["NodeResourcesFit"] == (75 + 62) // 2  # type: ignore[index]
        assert t.schedule(spec).node == "b"

    def test_least_allocated_spreads(self, impl: Any) -> None:
        t = impl.NodeTable()
        t.set_node("a", allocatable=alloc())
        t.set_node("b", allocatable=alloc())
        t.add_pod("ns/x", "a", pod(impl, requests={"cpu": 2000, "memory": 4 * GI}))
        assert t.schedule(pod(impl, requests={"cpu": 1000, "memory": GI})).node == "b"

    def test_preferred_node_affinity(self, impl: Any) -> None:
        t = impl.NodeTable()
        t.set_node("a", allocatable=alloc(), labels={"disk": "ssd", "zone": "z1"})
        t.set_node("b", allocatable=alloc(), labels={"disk": "ssd"})
        t.set_node("c", allocatable=alloc())
        spec = pod(
            impl,
            preferred=[(30, ([("disk", "In", ["ssd"])], [])), (10, ([("zone", "Exists", [])], []))],
        )
        v = verdicts(t, spec)
        got = {n: s[2]["NodeAffinity"] for n, s in v.items()}  # type: ignore[index]
        assert got == {"a": 100, "b": 75, "c": 0}
        assert t.schedule(spec).node == "a"

    def test_taint_toleration_score(self, impl: Any) -> None:
        t = impl.NodeTable()
        t.set_node(
            "a",
            allocatable=alloc(),
            taints=[("x", "", "PreferNoSchedule"), ("y", "", "PreferNoSchedule")],
        )
        t.set_node("b", allocatable=alloc(), taints=[("x", "", "PreferNoSchedule")])
        t.set_node("c", allocatable=alloc())
        v = verdicts(t, pod(impl))
        got = {n: s[2]["TaintToleration"] for n, s in v.items()}  # type: ignore[index]
        assert got == {"a": 0, "b": 50, "c": 100}
        tolerant = pod(impl, tolerations=[("y", "Exists", "", "PreferNoSchedule")])
        got = {
            n: s[2]["TaintToleration"]  # type: ignore[index]
            for n, s in verdicts(t, tolerant).items()
        }
        assert got == {"a": 0, "b": 0, "c": 100}

    def test_image_locality(self, impl: Any) -> None:
        t = impl.NodeTable()
        t.set_node("a", allocatable=alloc(), images=[(["web:1", "reg/web:1"], 500 * MI)])
        t.set_node("b", allocatable=alloc(), images=[(["web:1"], 500 * MI), (["side:1"], 300 * MI)])
        t.set_node("c", allocatable=alloc())
        t.set_node("d", allocatable=alloc())
        spec = pod(impl, images=["web:1", "side:1"])
        got = {
            n: s[2]["ImageLocality"]  # type: ignore[index]
            for n, s in verdicts(t, spec).items()
        }
        # web:1 on 2 of 4 nodes: 250 MiB; side:1 on 1 of 4: 75 MiB; over 2 containers.
        web = 250 * MI
        assert got["a"] == 100 * (web - 23 * MI) // (2000 * MI - 23 * MI)
        assert got["b"] == 100 * (web + 75 * MI - 23 * MI) // (2000 * MI - 23 * MI)
        assert got["c"] == 0

    def test_selector_spread(self, impl: Any) -> None:
        t = impl.NodeTable()
        for n in ("a", "b", "c"):
            t.set_node(n, allocatable=alloc())
        rs = "default/rs-uid"
        for i, n in enumerate(("a", "a", "b")):
            t.add_pod(f"default/web-{i}", n, pod(impl, spread_key=rs))
        got = {
            n: s[2]["SelectorSpread"]  # type: ignore[index]
            for n, s in verdicts(t, pod(impl, spread_key=rs)).items()
        }
        assert got == {"a": 0, "b": 50, "c": 100}
        assert t.schedule(pod(impl, spread_key=rs)).node == "c"

    def test_weights(self, impl: Any) -> None:
        t = impl.NodeTable(weights={"TaintToleration": 0, "ImageLocality": 5})
        t.set_node("a", allocatable=alloc())
        scores = verdicts(t, pod(impl))["a"][2]
        assert scores is not None and "TaintToleration" not in scores
        assert t.weights["ImageLocality"] == 5

    def test_ties_are_random(self, impl: Any) -> None:
        t = impl.NodeTable()
        for n in ("a", "b", "c", "d"):
            t.set_node(n, allocatable=alloc())
        chosen = {t.schedule(pod(impl), seed=s).node for s in range(64)}
        assert chosen == {"a", "b", "c", "d"}


# ------------------------------------------------------------------ whole decisions


def test_schedule_result_histogram() -> None:
    t = _native.NodeTable()
    t.set_node(
        "cp",
        allocatable=alloc(),
        taints=[("node-role.kubernetes.io/control-plane", "", "NoSchedule")],
    )
    t.set_node("w1", allocatable=alloc(cpu=1000))
    t.set_node("w2", allocatable=alloc(cpu=1000))
    t.add_pod("default/x", "w2", pod(_native, requests={"cpu": 800}))
    result = t.schedule(pod(_native, requests={"cpu": 900}))
    assert result.node == "w1"
    result = t.schedule(pod(_native, requests={"cpu": 1500}))
    assert result.node is None and result.feasible == 0 and result.nodes == 3
    assert dict(result.reasons) == {"node(s) had untolerated taint(s)": 1, "Insufficient cpu": 2}
    assert result.unresolvable == 3
    assert set(result.rejected_by) == {"TaintToleration", "NodeResourcesFit"}


def test_native_rejects_bad_config() -> None:
    with pytest.raises(ValueError, match="strategy"):
        _native.NodeTable(strategy="Random")
    with pytest.raises(ValueError, match="plugin"):
        _native.NodeTable(weights={"Nope": 1})
    with pytest.raises(ValueError, match="resource"):
        _native.NodeTable(resources=[("gpu", 1)])


def test_node_info_accounting() -> None:
    t = _native.NodeTable()
    t.set_node("a", allocatable=alloc(**{"example.com/foo": 4}))
    spec = pod(
        _native, requests={"cpu": 250, "memory": GI, "example.com/foo": 1}, ports=[("", "TCP", 80)]
    )
    t.add_pod("ns/p", "a", spec)
    t.add_pod("ns/p", "a", spec)  # re-adding replaces, never double counts
    info = t.node_info("a")
    assert info is not None
    assert info["requested"] == {
        "cpu": 250,
        "memory": GI,
        "ephemeral-storage": 0,
        "example.com/foo": 1,
    }
    assert info["pods"] == 1 and info["ports"] == [("0.0.0.0", "TCP", 80)]
    t.remove_pod("ns/p")
    info = t.node_info("a")
    assert info is not None and info["pods"] == 0 and info["requested"]["cpu"] == 0
    assert t.pod_count() == 0


# ------------------------------------------------------- property: native == reference

KEYS = ["zone", "disk", "cores", "kubernetes.io/hostname"]
VALUES = ["a", "b", "1", "12", "-3", ""]
NODES = ["n0", "n1", "n2", "n3", "n4", "n5"]


def mostly(common: Any, *rare: Any) -> st.SearchStrategy[Any]:
    """The common value four times in five, else one of the rare ones."""
    return st.sampled_from([common] * 4 * max(1, len(rare)) + list(rare))


label_maps = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3)
ops = st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "Bad"])
exprs = st.tuples(st.sampled_from(KEYS), ops, st.lists(st.sampled_from(VALUES), max_size=2))
field_exprs = st.tuples(
    mostly("metadata.name", "other"),
    mostly("In", "NotIn", "Exists"),
    st.lists(st.sampled_from(NODES[:4]), min_size=1, max_size=2),
)
node_terms = st.tuples(
    st.lists(exprs, max_size=2), st.one_of(st.just([]), st.lists(field_exprs, max_size=1))
)
pod_label_keys = st.sampled_from(["app", "tier"])
pod_labels = st.dictionaries(pod_label_keys, st.sampled_from(["web", "db"]), max_size=2)
selector_exprs = st.tuples(
    pod_label_keys,
    mostly("In", "NotIn", "Exists", "Gt"),
    st.lists(st.sampled_from(["web", "db"]), max_size=2),
)
pod_terms = st.tuples(
    st.one_of(st.lists(selector_exprs, max_size=2), st.none()),
    st.one_of(st.none(), st.lists(st.sampled_from(["ns1", "ns2"]), max_size=2)),
    st.sampled_from(["zone", "kubernetes.io/hostname", "kubernetes.io/hostname", "missing"]),
)
effects = st.sampled_from(["NoSchedule", "NoExecute", "PreferNoSchedule", "PreferNoSchedule"])
taints = st.lists(
    st.tuples(st.sampled_from(["k1", "k2"]), st.sampled_from(["", "v"]), effects), max_size=2
)
tolerations = st.lists(
    st.tuples(
        st.sampled_from(["", "k1", "k2", "k2"]),
        mostly("Exists", "", "Equal", "Gt"),
        st.sampled_from(["", "v"]),
        st.sampled_from(["", "NoSchedule", "NoExecute", "PreferNoSchedule"]),
    ),
    max_size=3,
)
ports = st.lists(
    st.tuples(
        st.sampled_from(["", "0.0.0.0", "10.0.0.1"]),
        st.sampled_from(["", "TCP", "UDP"]),
        st.sampled_from([0, 80, 443]),
    ),
    max_size=2,
)
images = st.lists(st.sampled_from(["web:1", "db:2", "big:3"]), max_size=3)
requests = st.fixed_dictionaries(
    {},
    optional={
        "cpu": st.sampled_from([0, 100, 500, 1500, 5000]),
        "memory": st.sampled_from([0, 64 * MI, GI, 3 * GI, 9 * GI]),
        "ephemeral-storage": st.sampled_from([0, GI]),
        "example.com/dev": st.integers(0, 3),
    },
)


# Built once: strategies made inside a composite are rebuilt and revalidated on every draw,
# which was most of this module's run time.
namespaces = st.sampled_from(["ns1", "ns2"])
node_names = mostly("", "n1")
node_selectors = st.one_of(
    st.just({}), st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=1)
)
required_terms = st.one_of(st.none(), st.none(), st.lists(node_terms, max_size=2))
preferred_terms = st.lists(st.tuples(st.integers(0, 50), node_terms), max_size=3)
spread_keys = st.sampled_from(["", "rs-a", "rs-b"])
affinity_terms = st.one_of(st.just([]), st.lists(pod_terms, max_size=1))
anti_affinity_terms = st.one_of(st.just([]), st.lists(pod_terms, max_size=2))


@st.composite
def pod_specs(draw: st.DrawFn) -> dict[str, Any]:
    reqs = draw(requests)
    default = (100, 200 * MI)
    return {
        "namespace": draw(namespaces),
        "labels": draw(pod_labels),
        "node_name": draw(node_names),
        "requests": reqs,
        "nonzero": (reqs.get("cpu", default[0]), reqs.get("memory", default[1])),
        "node_selector": draw(node_selectors),
        "required": draw(required_terms),
        "preferred": draw(preferred_terms),
        "tolerations": draw(tolerations),
        "ports": draw(ports),
        "images": draw(images),
        "spread_key": draw(spread_keys),
        "affinity": draw(affinity_terms),
        "anti_affinity": draw(anti_affinity_terms),
    }


@st.composite
def node_specs(draw: st.DrawFn) -> dict[str, Any]:
    allocatable = {
        "cpu": draw(mostly(4000, 1000, 0)),
        "memory": draw(mostly(8 * GI, 2 * GI, 0)),
        "ephemeral-storage": draw(mostly(10 * GI, 0)),
        "pods": draw(mostly(110, 2, 0)),
    }
    if draw(st.booleans()):
        allocatable["example.com/dev"] = draw(st.integers(0, 4))
    return {
        "allocatable": allocatable,
        "labels": draw(label_maps),
        "taints": draw(st.one_of(st.just([]), taints)),
        "unschedulable": draw(mostly(False, True)),
        "images": draw(
            st.lists(
                st.tuples(
                    st.lists(st.sampled_from(["web:1", "db:2", "big:3"]), min_size=1, max_size=2),
                    st.sampled_from([10 * MI, 300 * MI, 3000 * MI]),
                ),
                max_size=2,
            )
        ),
    }


# A cluster's history: nodes first, then bound pods, then any mix of changes.
@st.composite
def histories(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    names = NODES[: draw(st.integers(2, len(NODES)))]
    history: list[tuple[Any, ...]] = [("node", n, draw(node_specs())) for n in names]
    pod_keys = [f"p{i}" for i in range(10)]
    for key in draw(st.lists(st.sampled_from(pod_keys), max_size=10)):
        history.append(("pod", key, draw(st.sampled_from([*names, "ghost"])), draw(pod_specs())))
    history += draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("node"), st.sampled_from(NODES), node_specs()),
                st.tuples(st.just("rmnode"), st.sampled_from(NODES)),
                st.tuples(
                    st.just("pod"), st.sampled_from(pod_keys), st.sampled_from(NODES), pod_specs()
                ),
                st.tuples(st.just("rmpod"), st.sampled_from(pod_keys)),
            ),
            max_size=6,
        )
    )
    return history


configs: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {},
        optional={
            "strategy": st.sampled_from(["LeastAllocated", "MostAllocated"]),
            "resources": st.lists(
                st.tuples(
                    st.sampled_from(["cpu", "memory", "ephemeral-storage"]), st.integers(1, 3)
                ),
                min_size=1,
                max_size=3,
            ),
            "balanced_resources": st.lists(
                st.sampled_from(["cpu", "memory", "ephemeral-storage"]), min_size=1, max_size=3
            ),
            "weights": st.dictionaries(st.sampled_from(list(ref.SCORES)), st.integers(0, 5)),
            "disabled": st.lists(st.sampled_from(list(ref.FILTERS)), max_size=2),
        },
    ),
)


def build(impl: Any, config: dict[str, Any], history: list[tuple[Any, ...]]) -> Any:
    table = impl.NodeTable(**config)
    for step in history:
        if step[0] == "node":
            table.set_node(step[1], **step[2])
        elif step[0] == "rmnode":
            table.remove_node(step[1])
        elif step[0] == "pod":
            table.add_pod(step[1], step[2], impl.PodSpec(**step[3]))
        else:
            table.remove_pod(step[1])
    return table


@settings(max_examples=100, deadline=None)
@given(configs, histories(), st.lists(pod_specs(), min_size=1, max_size=3))
def test_native_matches_reference(
    config: dict[str, Any], history: list[tuple[Any, ...]], incoming: list[dict[str, Any]]
) -> None:
    native, oracle = build(_native, config, history), build(ref, config, history)
    assert len(native) == len(oracle)
    for kwargs in incoming:
        n_spec, r_spec = _native.PodSpec(**kwargs), ref.PodSpec(**kwargs)
        expected = sorted(oracle.evaluate(r_spec))
        got = sorted(native.evaluate(n_spec))
        assert got == expected
        n_res, r_res = native.schedule(n_spec), oracle.schedule(r_spec)
        summary = SimpleNamespace(
            feasible=r_res.feasible,
            nodes=r_res.nodes,
            reasons=dict(r_res.reasons),
            unresolvable=r_res.unresolvable,
            rejected_by=r_res.rejected_by,
            prefilter=r_res.prefilter,
            score=r_res.score,
        )
        assert (
            SimpleNamespace(
                feasible=n_res.feasible,
                nodes=n_res.nodes,
                reasons=dict(n_res.reasons),
                unresolvable=n_res.unresolvable,
                rejected_by=list(n_res.rejected_by),
                prefilter=n_res.prefilter,
                score=n_res.score,
            )
            == summary
        )
        best = {
            name
            for name, reasons, _, scores in expected
            if not reasons
            and scores is not None
            and sum(v * oracle.weights[k] for k, v in scores.items()) == r_res.score
        }
        assert (n_res.node is None) == (r_res.node is None)
        assert n_res.node is None or n_res.node in best
