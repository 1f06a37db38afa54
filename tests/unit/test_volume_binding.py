"""The binder's matching (smallest fitting volume, pre-bound volumes, class, modes, selector,
volume mode, node affinity), claim update rules, the scheduler's term combination and the
`kubectl get pv,pvc,sc` rows; fsGroup ownership of a volume."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from k8slite.api.nodeaffinity import node_matches_terms
from k8slite.api.printers import pv_row, pvc_row, storageclass_row
from k8slite.api.strategy import strategy_for
from k8slite.api.validation import FieldErrors
from k8slite.component.objects import Obj
from k8slite.controllers.volumematch import find_best_match
from k8slite.kubelet.volumes import set_group_ownership
from k8slite.scheduler.plugins import combine_terms

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def pv(name: str, size: str, cls: str = "", **spec: Any) -> Obj:
    return {
        "metadata": {"name": name, "labels": spec.pop("labels", {})},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.pop("modes", ["ReadWriteOnce"]),
            "storageClassName": cls,
            "volumeMode": "Filesystem",
            "hostPath": {"path": f"/tmp/{name}"},
            **spec,
        },
        "status": {"phase": "Available"},
    }


def claim(size: str = "1Gi", cls: str = "", **spec: Any) -> Obj:
    return {
        "metadata": {"name": "c", "namespace": "ns", "uid": "u1"},
        "spec": {
            "accessModes": spec.pop("modes", ["ReadWriteOnce"]),
            "resources": {"requests": {"storage": size}},
            "storageClassName": cls,
            "volumeMode": "Filesystem",
            **spec,
        },
    }


def test_smallest_fitting_volume_wins() -> None:
    volumes = [pv("big", "10Gi"), pv("small", "1Gi"), pv("tiny", "500Mi"), pv("mid", "2Gi")]
    assert find_best_match(claim("1Gi"), volumes)["metadata"]["name"] == "small"
    assert find_best_match(claim("1500Mi"), volumes)["metadata"]["name"] == "mid"
    assert find_best_match(claim("20Gi"), volumes) is None


def test_class_modes_selector_and_volume_mode_must_fit() -> None:
    assert find_best_match(claim(cls="fast"), [pv("a", "1Gi", "slow")]) is None
    assert find_best_match(claim(cls="fast"), [pv("a", "1Gi", "fast")]) is not None
    rwx = claim(modes=["ReadWriteMany"])
    assert find_best_match(rwx, [pv("a", "1Gi")]) is None
    assert find_best_match(rwx, [pv("b", "1Gi", modes=["ReadWriteOnce", "ReadWriteMany"])])
    selected = claim(selector={"matchLabels": {"tier": "db"}})
    assert find_best_match(selected, [pv("a", "1Gi")]) is None
    assert find_best_match(selected, [pv("a", "1Gi", labels={"tier": "db"})]) is not None
    assert find_best_match(claim(volumeMode="Block"), [pv("a", "1Gi")]) is None


def test_volumes_bound_elsewhere_or_released_are_skipped() -> None:
    taken = pv("a", "1Gi", claimRef={"namespace": "ns", "name": "other", "uid": "u2"})
    released = pv("b", "1Gi")
    released["status"]["phase"] = "Released"
    assert find_best_match(claim(), [taken, released]) is None


def test_prebound_volume_wins_over_a_smaller_one() -> None:
    mine = pv("mine", "5Gi", claimRef={"namespace": "ns", "name": "c"})
    assert find_best_match(claim(), [pv("small", "1Gi"), mine])["metadata"]["name"] == "mine"
    # A claimRef with another uid is a different (deleted and recreated) claim.
    stale = pv("stale", "5Gi", claimRef={"namespace": "ns", "name": "c", "uid": "old"})
    assert find_best_match(claim(), [stale]) is None


def test_node_affinity_limits_delayed_binding() -> None:
    affinity = {
        "required": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}
                    ]
                }
            ]
        }
    }
    local = pv("local", "1Gi", nodeAffinity=affinity)
    n1 = {"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}}}
    n2 = {"metadata": {"name": "n2", "labels": {"kubernetes.io/hostname": "n2"}}}
    assert find_best_match(claim(), [local], n1) is local
    assert find_best_match(claim(), [local], n2) is None
    by_name = [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]
    assert node_matches_terms(by_name, n2) and not node_matches_terms(by_name, n1)
    assert not node_matches_terms([{}], n1)  # an empty term matches nothing


def test_combined_terms_are_a_cross_product() -> None:
    a = [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]
    b = [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]
    assert combine_terms(None, [b]) == b
    (term,) = combine_terms(a, [b]) or []
    assert term["matchExpressions"] == a[0]["matchExpressions"]
    assert term["matchFields"] == b[0]["matchFields"]


def _problems(obj: Obj, kind: str, old: Obj | None = None, group: str = "") -> list[str]:
    errs = FieldErrors()
    strategy = strategy_for(group, kind)
    strategy.default(obj)
    if old is None:
        strategy.validate(obj, errs, kind == "PersistentVolumeClaim")
    else:
        strategy.validate_update(obj, old, errs, kind == "PersistentVolumeClaim")
    return [f"{c['field']}: {c['message']}" for c in errs.causes]


def test_claim_updates() -> None:
    old = claim()
    old["status"] = {"phase": "Bound", "capacity": {"storage": "1Gi"}}
    grown = claim("2Gi")
    assert _problems(grown, "PersistentVolumeClaim", old) == []
    changed = claim(modes=["ReadWriteMany"])
    assert _problems(changed, "PersistentVolumeClaim", old) == [
        "spec: Forbidden: spec is immutable after creation except resources.requests and "
        "volumeAttributesClassName for bound claims"
    ]
    bigger_old = claim("2Gi")
    bigger_old["status"] = {"phase": "Bound", "capacity": {"storage": "2Gi"}}
    assert _problems(claim("1Gi"), "PersistentVolumeClaim", bigger_old) == [
        "spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"
    ]
    # Binding sets volumeName once.
    assert _problems(claim(volumeName="pv1"), "PersistentVolumeClaim", claim()) == []


def test_storage_class_defaults_and_immutability() -> None:
    sc: Obj = {"metadata": {"name": "s"}, "provisioner": "p"}
    assert _problems(sc, "StorageClass", group="storage.k8s.io") == []
    assert sc["reclaimPolicy"] == "Delete" and sc["volumeBindingMode"] == "Immediate"
    new = dict(sc, provisioner="q", volumeBindingMode="WaitForFirstConsumer")
    assert _problems(new, "StorageClass", sc, "storage.k8s.io") == [
        "provisioner: Forbidden: updates to provisioner are forbidden.",
        'volumeBindingMode: Invalid value: "WaitForFirstConsumer": field is immutable',
    ]


def test_rows() -> None:
    created = {"creationTimestamp": "2025-12-31T23:00:00Z"}
    volume = pv("v", "1Gi", "local-path", claimRef={"namespace": "ns", "name": "c"})
    volume["metadata"].update(created)
    volume["spec"]["persistentVolumeReclaimPolicy"] = "Delete"
    volume["spec"]["accessModes"] = ["ReadWriteMany", "ReadWriteOnce"]
    volume["status"] = {"phase": "Bound"}
    assert pv_row(volume, NOW)[:10] == [
        "v",
        "1Gi",
        "RWO,RWX",
        "Delete",
        "Bound",
        "ns/c",
        "local-path",
        "<unset>",
        "",
        "60m",
    ]
    c = claim(volumeName="v", cls="local-path")
    c["metadata"].update(created, deletionTimestamp="2026-01-01T00:00:00Z")
    c["status"] = {
        "phase": "Bound",
        "capacity": {"storage": "1Gi"},
        "accessModes": ["ReadWriteOnce"],
    }
    assert pvc_row(c, NOW)[:8] == [
        "c",
        "Terminating",
        "v",
        "1Gi",
        "RWO",
        "local-path",
        "<unset>",
        "60m",
    ]
    sc = {
        "metadata": {
            "name": "local-path",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            **created,
        },
        "provisioner": "rancher.io/local-path",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
    }
    assert storageclass_row(sc, NOW) == [
        "local-path (default)",
        "rancher.io/local-path",
        "Delete",
        "WaitForFirstConsumer",
        True,
        "60m",
    ]


def test_fs_group_ownership(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing a file's group to any gid needs root")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f").write_text("x")
    (tmp_path / "sub" / "f").chmod(0o600)
    set_group_ownership(str(tmp_path), 4321)
    for path in (tmp_path, tmp_path / "sub", tmp_path / "sub" / "f"):
        assert path.stat().st_gid == 4321
    assert (tmp_path / "sub").stat().st_mode & stat.S_ISGID
    assert stat.S_IMODE((tmp_path / "sub" / "f").stat().st_mode) == 0o660
