"""Deployment arithmetic: template hashes, fenceposts, rolling steps, proportional scaling."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import k8slite.controllers.deploymentstatus as ds
import k8slite.controllers.deploymentutil as du
from k8slite.api.meta import format_time
from k8slite.component.objects import Obj, get_condition
from k8slite.controllers import rollout
from k8slite.controllers.podutil import utcnow

TEMPLATE: Obj = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
}


def deploy(
    replicas: int,
    surge: int | str = "25%",
    unavailable: int | str = "25%",
    strategy: str = "RollingUpdate",
    status_replicas: int = 0,
) -> Obj:
    spec: Obj = {
        "replicas": replicas,
        "template": copy.deepcopy(TEMPLATE),
        "strategy": {"type": strategy},
    }
    if strategy == "RollingUpdate":
        spec["strategy"]["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {
        "metadata": {"name": "web", "generation": 1},
        "spec": spec,
        "status": {"replicas": status_replicas},
    }


def rs(
    name: str,
    replicas: int,
    available: int | None = None,
    actual: int | None = None,
    created: str = "2024-01-01T00:00:00Z",
    annotations: dict[str, str] | None = None,
) -> Obj:
    available = replicas if available is None else available
    actual = replicas if actual is None else actual
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": created,
            "annotations": dict(annotations or {}),
        },
        "spec": {"replicas": replicas},
        "status": {"replicas": actual, "availableReplicas": available},
    }


# --------------------------------------------------------------------- hashes


def test_template_hash_is_stable_safe_and_changes_with_collisions() -> None:
    first = du.compute_hash(TEMPLATE, None)
    assert first == du.compute_hash(copy.deepcopy(TEMPLATE), None)
    assert set(first) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(first) <= 10
    assert du.compute_hash(TEMPLATE, 1) != first
    other = copy.deepcopy(TEMPLATE)
    other["spec"]["containers"][0]["image"] = "nginx:1.28"
    assert du.compute_hash(other, None) != first


def test_templates_compare_without_the_hash_label_and_empty_fields() -> None:
    labelled = copy.deepcopy(TEMPLATE)
    labelled["metadata"]["labels"][du.POD_TEMPLATE_HASH] = "abc"
    labelled["metadata"]["annotations"] = {}
    assert du.equal_ignore_hash(labelled, TEMPLATE)
    changed = copy.deepcopy(labelled)
    changed["spec"]["containers"][0]["image"] = "other"
    assert not du.equal_ignore_hash(changed, TEMPLATE)


# ----------------------------------------------------------------- fenceposts


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "expected"),
    [
        (10, "25%", "25%", (3, 2)),  # surge rounds up, unavailable rounds down
        (5, 1, 0, (1, 0)),
        (3, "10%", "10%", (1, 0)),
        (1, "0%", "0%", (0, 1)),  # both zero after rounding: one may be unavailable
        (4, 0, "100%", (0, 4)),
    ],
)
def test_fenceposts(replicas: int, surge: Any, unavailable: Any, expected: tuple[int, int]) -> None:
    d = deploy(replicas, surge, unavailable)
    assert (du.max_surge(d), du.max_unavailable(d)) == expected


def test_recreate_has_no_surge_or_unavailability() -> None:
    d = deploy(4, strategy="Recreate")
    assert du.max_surge(d) == 0 and du.max_unavailable(d) == 0


# ------------------------------------------------------------- rolling update


def test_new_replica_set_grows_up_to_the_surge() -> None:
    d = deploy(5, surge=1, unavailable=0)
    old, new = rs("old", 5), rs("new", 0)
    assert rollout.reconcile_new(d, [old, new], new) == 1
    old_down = rs("old", 4, available=4)
    new_one = rs("new", 1)
    assert rollout.reconcile_new(d, [old_down, new_one], new_one) == 2


def test_pods_not_yet_removed_still_count_against_the_surge() -> None:
    d = deploy(5, surge=1, unavailable=0)
    # Scaled down to 4, but its fifth pod is not gone yet: no room for a second new pod.
    old = rs("old", 4, actual=5)
    new = rs("new", 1)
    assert rollout.reconcile_new(d, [old, new], new) is None


def test_old_replica_sets_shrink_only_above_minimum_availability() -> None:
    d = deploy(5, surge=1, unavailable=0)
    old = rs("old", 5)
    assert rollout.reconcile_old(d, [old], rs("new", 1, available=0)) == []
    plan = rollout.reconcile_old(d, [old], rs("new", 1, available=1))
    assert [(r["metadata"]["name"], size) for r, size in plan] == [("old", 4)]
    # An RS just scaled down may still report its doomed pods available: never count them.
    stale = rs("old", 4, available=5)
    assert rollout.reconcile_old(d, [stale], rs("new", 2, available=1)) == []


def test_unhealthy_old_pods_go_first() -> None:
    d = deploy(4, surge=0, unavailable=1)
    old = rs("old", 4, available=2)
    # One may go (4 counted, 3 must stay); it is taken from the two that are not available,
    # and the healthy ones are left alone since only 2 are available.
    plan = rollout.reconcile_old(d, [old], rs("new", 0))
    assert [(r["metadata"]["name"], size) for r, size in plan] == [("old", 3)]


def test_oldest_replica_set_is_scaled_down_first() -> None:
    d = deploy(6, surge=0, unavailable=2)
    older = rs("older", 3, created="2024-01-01T00:00:00Z")
    newer = rs("newer", 3, created="2024-02-01T00:00:00Z")
    plan = rollout.reconcile_old(d, [newer, older], rs("new", 0))
    assert [(r["metadata"]["name"], size) for r, size in plan] == [("older", 1)]


# ---------------------------------------------------------------- scaling


def test_single_active_replica_set_takes_the_whole_size() -> None:
    only = rs("a", 3)
    assert rollout.find_active_or_latest(None, [only, rs("b", 0)]) is only
    newest = rs("new", 0, created="2024-03-01T00:00:00Z")
    assert rollout.find_active_or_latest(None, [rs("x", 0), newest]) is newest
    assert rollout.find_active_or_latest(rs("n", 1), [rs("o", 1)]) is None


def test_saturation_needs_the_annotation_the_size_and_availability() -> None:
    d = deploy(3)
    full = rs("new", 3, annotations={du.DESIRED_REPLICAS: "3"})
    assert rollout.is_saturated(d, full)
    unavailable = rs("new", 3, available=2, annotations={du.DESIRED_REPLICAS: "3"})
    assert not rollout.is_saturated(d, unavailable)
    assert not rollout.is_saturated(d, rs("new", 3))


def test_proportional_scaling_mid_rollout() -> None:
    # 10 replicas, surge 3: the RSes were sized for a ceiling of 13; now 20 are wanted.
    d = deploy(20, surge="25%", unavailable="25%", status_replicas=13)
    old = rs("old", 8, created="2024-01-01T00:00:00Z", annotations={du.MAX_REPLICAS: "13"})
    new = rs("new", 5, created="2024-02-01T00:00:00Z", annotations={du.MAX_REPLICAS: "13"})
    plan, direction = rollout.proportional_plan(d, new, [old])
    sizes = {r["metadata"]["name"]: size for r, size in plan}
    assert direction == "up"
    assert sum(sizes.values()) == 20 + du.max_surge(d)
    # Each grows by its share of 25/13, rounded: 8 -> 15 and 5 -> 10.
    assert sizes == {"old": 15, "new": 10}


def test_proportional_scaling_down_takes_from_the_larger_first() -> None:
    d = deploy(4, surge=1, unavailable=0, status_replicas=11)
    old = rs("old", 6, annotations={du.MAX_REPLICAS: "11"})
    new = rs("new", 5, created="2024-02-01T00:00:00Z", annotations={du.MAX_REPLICAS: "11"})
    plan, direction = rollout.proportional_plan(d, new, [old])
    sizes = {r["metadata"]["name"]: size for r, size in plan}
    assert direction == "down" and sum(sizes.values()) == 5
    assert sizes["old"] >= sizes["new"]


# -------------------------------------------------------------- annotations


def test_rollback_moves_the_revision_and_keeps_history() -> None:
    d: Obj = {
        "metadata": {"annotations": {"team": "blue", du.REVISION: "2"}},
        "spec": {"replicas": 2, "strategy": {"type": "Recreate"}},
    }
    back: Obj = {"metadata": {"annotations": {du.REVISION: "1"}}, "spec": {"replicas": 0}}
    assert du.set_new_rs_annotations(d, back, 3, exists=True)
    annotations = back["metadata"]["annotations"]
    assert annotations[du.REVISION] == "3" and annotations[du.REVISION_HISTORY] == "1"
    assert annotations["team"] == "blue"
    assert not du.set_new_rs_annotations(d, back, 3, exists=True)


def test_new_replica_set_gets_replica_annotations() -> None:
    d = deploy(4, surge=1, unavailable=0)
    new: Obj = {"metadata": {}, "spec": {"replicas": 0}}
    du.set_new_rs_annotations(d, new, 1, exists=False)
    annotations = new["metadata"]["annotations"]
    assert annotations[du.REVISION] == "1"
    assert (annotations[du.DESIRED_REPLICAS], annotations[du.MAX_REPLICAS]) == ("4", "5")


# ------------------------------------------------------------------- status


def status_rs(name: str, replicas: int, ready: int) -> Obj:
    return {
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
        "status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": ready},
    }


def with_progress(d: Obj, reason: str, updated: str, status: str = "True") -> Obj:
    d["spec"]["progressDeadlineSeconds"] = 60
    d["status"]["conditions"] = [
        {
            "type": "Progressing",
            "status": status,
            "reason": reason,
            "message": "",
            "lastUpdateTime": updated,
            "lastTransitionTime": updated,
        }
    ]
    return d


def test_complete_rollout_reports_new_replica_set_available() -> None:
    d = with_progress(deploy(2), du.RS_UPDATED_REASON, "2024-01-01T00:00:00Z")
    new = status_rs("web-abc", 2, 2)
    status = ds.rollout_status(d, [new], new)
    progressing = get_condition(status, "Progressing")
    assert progressing is not None and progressing["reason"] == du.NEW_RS_AVAILABLE_REASON
    assert progressing["message"] == 'ReplicaSet "web-abc" has successfully progressed.'
    available = get_condition(status, "Available")
    assert available is not None and available["status"] == "True"
    assert status["updatedReplicas"] == 2 and "unavailableReplicas" not in status


def test_progress_refreshes_the_deadline_and_silence_exceeds_it() -> None:
    d = with_progress(deploy(4), du.RS_UPDATED_REASON, "2024-01-01T00:00:00Z")
    d["status"].update(replicas=4, updatedReplicas=1)
    new, old = status_rs("web-new", 2, 0), status_rs("web-old", 3, 3)
    moving = ds.rollout_status(d, [old, new], new)
    cond = get_condition(moving, "Progressing")
    assert cond is not None and cond["reason"] == du.RS_UPDATED_REASON
    assert cond["lastUpdateTime"] != "2024-01-01T00:00:00Z"
    d["status"].update(replicas=5, updatedReplicas=2, readyReplicas=3, availableReplicas=3)
    stuck = ds.rollout_status(d, [old, new], new)
    cond = get_condition(stuck, "Progressing")
    assert cond is not None and cond["reason"] == du.TIMED_OUT_REASON
    assert cond["status"] == "False"
    assert cond["message"] == 'ReplicaSet "web-new" has timed out progressing.'


def test_unchanged_rollout_is_rechecked_when_its_deadline_passes() -> None:
    stamp = format_time(utcnow())
    d = with_progress(deploy(2), du.RS_UPDATED_REASON, stamp)
    delay = ds.recheck_after(d, {"replicas": 2})
    assert delay is not None and 55 <= delay <= 62
