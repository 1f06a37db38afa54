"""Pod and node summaries, the scheduler profile file, and upstream's failure message."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from k8slite._native import NodeTable
from k8slite.scheduler.plugins import (
    DEFAULT_MEMORY,
    ConfigError,
    Profile,
    host_ports,
    load_profile,
    node_args,
    normalized_image,
    pod_requests,
    pod_spec,
    spread_key,
)
from k8slite.scheduler.scheduler import fit_error_message

MI = 1 << 20
GI = 1 << 30


def container(
    name: str, cpu: str | None = None, memory: str | None = None, **extra: Any
) -> dict[str, Any]:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    return {"name": name, "image": "x", "resources": {"requests": requests}, **extra}


# ------------------------------------------------------------------------ requests


def test_requests_sum_app_containers_and_take_the_largest_init() -> None:
    spec = {
        "containers": [container("a", "2", "1G"), container("b", "1", "1G")],
        "initContainers": [container("i1", "2", "1G"), container("i2", "2", "3G")],
    }
    requests, nonzero = pod_requests(spec)
    # upstream's own example: cpu 3, memory 3G.
    assert requests == {"cpu": 3000, "memory": 3 * 10**9}
    assert nonzero == (3000, 3 * 10**9)


def test_sidecars_run_beside_everything_after_them() -> None:
    spec = {
        "initContainers": [
            container("side", "500m", "100Mi", restartPolicy="Always"),
            container("setup", "2", "50Mi"),
        ],
        "containers": [container("app", "1", "200Mi")],
    }
    requests, _ = pod_requests(spec)
    # app + sidecar = 1.5 cpu; setup runs with the sidecar = 2.5 cpu (the larger).
    assert requests["cpu"] == 2500
    assert requests["memory"] == 300 * MI


def test_overhead_pod_level_and_defaults_for_scoring() -> None:
    spec = {
        "containers": [container("a"), container("b", "250m")],
        "overhead": {"cpu": "100m", "memory": "10Mi"},
        "resources": {"requests": {"memory": "1Gi"}},
    }
    requests, nonzero = pod_requests(spec)
    assert requests == {"cpu": 350, "memory": GI + 10 * MI}
    # For scoring, a container without requests counts as 100m and 200Mi; pod-level wins.
    assert nonzero == (100 + 250 + 100, GI + 10 * MI)
    _, best_effort = pod_requests({"containers": [container("a")]})
    assert best_effort == (100, DEFAULT_MEMORY)


def test_requests_round_up_and_keep_extended_resources_only() -> None:
    spec = {
        "containers": [
            {
                "name": "a",
                "resources": {
                    "requests": {
                        "cpu": "0.0001",
                        "memory": "1.5",
                        "nvidia.com/gpu": "1",
                        "hugepages-2Mi": "4Mi",
                        "bogus": "3",
                    }
                },
            }
        ]
    }
    requests, _ = pod_requests(spec)
    assert requests == {"cpu": 1, "memory": 2, "nvidia.com/gpu": 1, "hugepages-2Mi": 4 * MI}


# ------------------------------------------------------------------------- summary


def test_pod_summary_schedules_like_the_pod() -> None:
    table = NodeTable()
    table.set_node(
        "a",
        allocatable={"cpu": 4000, "memory": 8 * GI, "pods": 10},
        labels={"zone": "z1", "kubernetes.io/hostname": "a"},
    )
    table.set_node(
        "b",
        allocatable={"cpu": 4000, "memory": 8 * GI, "pods": 10},
        labels={"zone": "z2", "kubernetes.io/hostname": "b"},
        taints=[("dedicated", "db", "NoSchedule")],
    )
    pod = {
        "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "db"}},
        "spec": {
            "containers": [container("c", "1", "1Gi")],
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}
            ],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "zone", "operator": "In", "values": ["z2"]}
                                ]
                            }
                        ]
                    }
                }
            },
        },
    }
    assert table.schedule(pod_spec(pod)).node == "b"
    assert pod_spec(pod).namespace == "ns"
    assert pod_spec(pod).requests == {"cpu": 1000, "memory": GI, "ephemeral-storage": 0}
    table.add_pod("ns/p", "b", pod_spec(pod))
    anti: dict[str, Any] = {
        "metadata": {"name": "q", "namespace": "ns", "labels": {"app": "db"}},
        "spec": {
            "containers": [container("c")],
            "affinity": {
                "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "labelSelector": {"matchLabels": {"app": "db"}},
                            "topologyKey": "kubernetes.io/hostname",
                        }
                    ]
                }
            },
        },
    }
    assert table.schedule(pod_spec(anti)).node == "a"
    # Another namespace's db pod is not selected by a term without namespaces.
    other = {**anti, "metadata": {**anti["metadata"], "namespace": "other"}}
    table.add_pod("other/q", "a", pod_spec(other))
    assert table.schedule(pod_spec(anti)).node == "a"


def test_namespace_selector_resolves_through_namespace_labels() -> None:
    namespaces = [
        {"metadata": {"name": "prod", "labels": {"env": "prod"}}},
        {"metadata": {"name": "dev", "labels": {"env": "dev"}}},
    ]
    table = NodeTable()
    for n in ("a", "b"):
        table.set_node(
            n,
            allocatable={"cpu": 1000, "memory": GI, "pods": 10},
            labels={"kubernetes.io/hostname": n},
        )
    cache_pod = {
        "metadata": {"name": "c", "namespace": "prod", "labels": {"app": "cache"}},
        "spec": {"containers": [container("c")]},
    }
    table.add_pod("prod/c", "a", pod_spec(cache_pod))

    def anti(selector: dict[str, Any] | None) -> Any:
        term: dict[str, Any] = {
            "labelSelector": {"matchLabels": {"app": "cache"}},
            "topologyKey": "kubernetes.io/hostname",
        }
        if selector is not None:
            term["namespaceSelector"] = selector
        pod = {
            "metadata": {"name": "w", "namespace": "dev"},
            "spec": {
                "containers": [container("c")],
                "affinity": {
                    "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
                },
            },
        }
        return pod_spec(pod, lambda: namespaces)

    feasible = {n for n, reasons, _, _ in table.evaluate(anti(None)) if not reasons}
    assert feasible == {"a", "b"}  # only its own namespace, dev
    feasible = {
        n
        for n, reasons, _, _ in table.evaluate(anti({"matchLabels": {"env": "prod"}}))
        if not reasons
    }
    assert feasible == {"b"}
    feasible = {n for n, reasons, _, _ in table.evaluate(anti({})) if not reasons}
    assert feasible == {"b"}  # {} selects every namespace


def test_small_helpers() -> None:
    assert normalized_image("nginx") == "nginx:latest"
    assert normalized_image("reg:5000/nginx") == "reg:5000/nginx:latest"
    assert normalized_image("nginx:1.25") == "nginx:1.25"
    owner = {
        "metadata": {"ownerReferences": [{"kind": "ReplicaSet", "uid": "u1", "controller": True}]}
    }
    assert spread_key(owner) == "ReplicaSet/u1"
    assert spread_key({"metadata": {}}) == ""
    spec = {
        "hostNetwork": True,
        "containers": [{"ports": [{"containerPort": 53, "protocol": "UDP"}]}],
    }
    assert host_ports(spec) == [("", "UDP", 53)]
    spec = {
        "containers": [{"ports": [{"containerPort": 80}, {"containerPort": 80, "hostPort": 8080}]}]
    }
    assert host_ports(spec) == [("", "TCP", 8080)]


def test_node_args() -> None:
    node = {
        "metadata": {"name": "n", "labels": {"a": "b"}},
        "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}], "unschedulable": True},
        "status": {
            "allocatable": {
                "cpu": "3500m",
                "memory": "1Gi",
                "pods": "110",
                "ephemeral-storage": "10G",
                "example.com/x": "2",
                "junk": "1",
            },
            "images": [{"names": ["a:1", "reg/a:1"], "sizeBytes": 1000}],
        },
    }
    assert node_args(node) == {
        "allocatable": {
            "cpu": 3500,
            "memory": GI,
            "pods": 110,
            "ephemeral-storage": 10**10,
            "example.com/x": 2,
        },
        "labels": {"a": "b"},
        "taints": [("k", "", "NoSchedule")],
        "unschedulable": True,
        "images": [(["a:1", "reg/a:1"], 1000)],
    }


# ------------------------------------------------------------------------- profile


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_profile_file(tmp_path: Path) -> None:
    profile = load_profile(
        write(
            tmp_path,
            """
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: bin-packer
  plugins:
    score:
      disabled:
      - name: ImageLocality
      enabled:
      - name: NodeAffinity
        weight: 7
    filter:
      disabled:
      - name: NodePorts
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
        resources:
        - name: cpu
          weight: 2
        - name: memory
          weight: 1
""",
        )
    )
    assert profile.scheduler_name == "bin-packer"
    assert profile.strategy == "MostAllocated"
    assert profile.fit_resources == (("cpu", 2), ("memory", 1))
    assert profile.weights["ImageLocality"] == 0 and profile.weights["NodeAffinity"] == 7
    assert profile.disabled == frozenset({"NodePorts"})
    table = profile.node_table()
    assert table.weights["NodeAffinity"] == 7


def test_profile_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="kind"):
        load_profile(write(tmp_path, "kind: Other\n"))
    with pytest.raises(ConfigError, match="unknown plugin"):
        load_profile(
            write(
                tmp_path,
                "kind: KubeSchedulerConfiguration\nprofiles:\n"
                "- plugins: {filter: {disabled: [{name: Nope}]}}\n",
            )
        )
    with pytest.raises(ConfigError, match="scoringStrategy"):
        load_profile(
            write(
                tmp_path,
                "kind: KubeSchedulerConfiguration\nprofiles:\n"
                "- pluginConfig: [{name: NodeResourcesFit, args: "
                "{scoringStrategy: {type: RequestedToCapacityRatio}}}]\n",
            )
        )
    assert Profile().node_table().weights["TaintToleration"] == 3


# ------------------------------------------------------------------------- messages


def result(**kw: Any) -> Any:
    base = {"nodes": 3, "feasible": 0, "reasons": [], "unresolvable": 0, "prefilter": None}
    return SimpleNamespace(**(base | kw))


def test_fit_error_message_matches_upstream() -> None:
    r = result(
        reasons=[("Insufficient cpu", 2), ("node(s) had untolerated taint(s)", 1)], unresolvable=1
    )
    assert fit_error_message(r, {}) == (
        "0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 Insufficient cpu. "
        "no new claims to deallocate, preemption: 0/3 nodes are available: 1 Preemption is "
        "not helpful for scheduling, 2 No preemption victims found for incoming pod."
    )
    # Counts sort as text, as upstream sorts them ("10 ..." before "2 ...").
    r = result(
        nodes=12, reasons=[("Insufficient cpu", 2), ("Insufficient memory", 10)], unresolvable=12
    )
    assert fit_error_message(r, {}).startswith(
        "0/12 nodes are available: 10 Insufficient memory, 2 Insufficient cpu."
    )
    never = {"spec": {"preemptionPolicy": "Never"}}
    assert fit_error_message(result(reasons=[("Too many pods", 3)]), never).endswith(
        "preemption: not eligible due to preemptionPolicy=Never."
    )
    conflict = result(prefilter="pod affinity terms conflict", unresolvable=3)
    assert fit_error_message(conflict, {}) == (
        "0/3 nodes are available: pod affinity terms conflict. no new claims to deallocate, "
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    )
    assert fit_error_message(result(nodes=0), {}) == "no nodes available to schedule pods"
