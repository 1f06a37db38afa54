"""StatefulSet pure parts: ordinals, update selection under a partition and maxUnavailable,
revision hashing and data, status counts, defaults, validation and printer rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

from k8slite.api.printers import controllerrevision_row, statefulset_row
from k8slite.api.strategy import strategy_for
from k8slite.api.validation import FieldErrors
from k8slite.component.objects import Obj
from k8slite.controllers import history
from k8slite.controllers.statefulset import (
    REVISION_LABEL,
    claim_name,
    compute_status,
    identity_matches,
    max_unavailable,
    new_pod,
    parent_and_ordinal,
    pods_to_update,
    split_pods,
)

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
READY = [{"type": "Ready", "status": "True"}]


def sts(replicas: int = 3, **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "generation": 2},
        "spec": {
            "replicas": replicas,
            "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "a", "image": "busybox:1.35"}]},
            },
            **spec,
        },
    }


def pod(ordinal: int, revision: str = "web-a", ready: bool = True, deleting: bool = False) -> Obj:
    m: Obj = {"name": f"web-{ordinal}", "labels": {REVISION_LABEL: revision}}
    if deleting:
        m["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: Obj = {"phase": "Running", "conditions": READY} if ready else {"phase": "Pending"}
    return {"metadata": m, "status": status}


def problems(obj: Obj) -> list[str]:
    errs = FieldErrors()
    strategy = strategy_for("apps", "StatefulSet")
    strategy.default(obj)
    strategy.validate(obj, errs, True)
    return [f"{c['field']}: {c['message']}" for c in errs.causes]


def test_parent_and_ordinal() -> None:
    assert parent_and_ordinal("web-12") == ("web", 12)
    assert parent_and_ordinal("my-db-0") == ("my-db", 0)
    assert parent_and_ordinal("web") is None
    assert parent_and_ordinal("web-x") is None


def test_split_pods_places_replicas_and_condemns_the_rest_highest_first() -> None:
    part = split_pods(sts(3), [pod(4), pod(0), pod(2), pod(7)])
    assert [p and p["metadata"]["name"] for p in part.replicas] == ["web-0", None, "web-2"]
    assert [p["metadata"]["name"] for p in part.condemned] == ["web-7", "web-4"]


def test_split_pods_honours_ordinals_start() -> None:
    part = split_pods(sts(2, ordinals={"start": 5}), [pod(0), pod(5), pod(6)])
    assert [p and p["metadata"]["name"] for p in part.replicas] == ["web-5", "web-6"]
    assert [p["metadata"]["name"] for p in part.condemned] == ["web-0"]


def test_update_selection_respects_the_partition() -> None:
    s = sts(3, updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}})
    chosen = pods_to_update(s, [pod(0), pod(1), pod(2)], "web-b", 0)
    assert [p["metadata"]["name"] for p in chosen] == ["web-2"]


def test_update_selection_goes_highest_first_one_at_a_time() -> None:
    s = sts(3, updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    replicas = [pod(0), pod(1), pod(2, "web-b")]
    assert [p["metadata"]["name"] for p in pods_to_update(s, replicas, "web-b", 0)] == ["web-1"]
    # An unhealthy pod uses up maxUnavailable 1: nothing else goes until it is back.
    replicas = [pod(0), pod(1), pod(2, "web-b", ready=False)]
    assert pods_to_update(s, replicas, "web-b", 0) == []
    # So does one below the partition.
    s["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = 1
    assert pods_to_update(s, [pod(0, ready=False), pod(1), pod(2)], "web-b", 0) == []


def test_update_selection_with_max_unavailable() -> None:
    rolling = {"partition": 0, "maxUnavailable": 2}
    s = sts(4, updateStrategy={"type": "RollingUpdate", "rollingUpdate": rolling})
    chosen = pods_to_update(s, [pod(i) for i in range(4)], "web-b", 0)
    assert [p["metadata"]["name"] for p in chosen] == ["web-3", "web-2"]


def test_max_unavailable_percent_rounds_up() -> None:
    rolling = {"partition": 0, "maxUnavailable": "10%"}
    assert max_unavailable(sts(15, updateStrategy={"rollingUpdate": rolling})) == 2
    rolling["maxUnavailable"] = "1%"
    assert max_unavailable(sts(3, updateStrategy={"rollingUpdate": rolling})) == 1


def test_revision_hash_depends_on_data_and_collision_count() -> None:
    a = history.template_patch({"spec": {"containers": [{"image": "a"}]}})
    b = history.template_patch({"spec": {"containers": [{"image": "b"}]}})
    assert history.hash_revision(a) == history.hash_revision(dict(a))
    assert history.hash_revision(a) != history.hash_revision(b)
    assert history.hash_revision(a, 1) != history.hash_revision(a)
    assert set(history.hash_revision(a)) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_revision_data_is_the_undo_patch() -> None:
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}
    data = history.template_patch(template)
    assert data == {"spec": {"template": {**template, "$patch": "replace"}}}
    assert history.template_of({"data": data}) == template


def test_new_revision_names_and_labels() -> None:
    s = sts()
    ref = {"kind": "StatefulSet", "name": "web", "uid": "u1", "controller": True}
    data = history.template_patch(s["spec"]["template"])
    rev = history.new_revision(s, ref, {"app": "web"}, data, 3)
    assert rev["metadata"]["name"] == f"web-{history.hash_revision(data)}"
    assert rev["metadata"]["labels"] == {"app": "web"} and rev["revision"] == 3
    assert history.next_revision_number([rev, {"revision": 1}]) == 4


def test_new_pod_identity_and_claims() -> None:
    claim = {"metadata": {"name": "data"}, "spec": {}}
    s = sts(volumeClaimTemplates=[claim])
    p = new_pod(s, s["spec"]["template"], 1, "web-abc")
    assert p["metadata"]["name"] == "web-1"
    assert p["metadata"]["labels"] == {
        "app": "web",
        "statefulset.kubernetes.io/pod-name": "web-1",
        "apps.kubernetes.io/pod-index": "1",
        "controller-revision-hash": "web-abc",
    }
    assert p["spec"]["hostname"] == "web-1" and p["spec"]["subdomain"] == "web"
    assert p["spec"]["volumes"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}}
    ]
    assert claim_name(claim, "web-1") == "data-web-1"


def test_status_counts_and_current_revision_catch_up() -> None:
    s = sts(2, updateStrategy={"type": "RollingUpdate"})
    mid = compute_status(s, [pod(0, "web-a"), pod(1, "web-b")], "web-a", "web-b", 0, 0)
    assert mid["currentRevision"] == "web-a" and mid["currentReplicas"] == 1
    assert mid["updatedReplicas"] == 1 and mid["readyReplicas"] == 2
    assert mid["observedGeneration"] == 2
    done = compute_status(s, [pod(0, "web-b"), pod(1, "web-b")], "web-a", "web-b", 0, 0)
    assert done["currentRevision"] == "web-b" and done["currentReplicas"] == 2


def test_defaults() -> None:
    obj = sts()
    assert problems(obj) == []
    spec = obj["spec"]
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"partition": 0, "maxUnavailable": 1},
    }
    assert spec["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    assert spec["revisionHistoryLimit"] == 10


def test_validation_messages() -> None:
    assert problems(sts(podManagementPolicy="Sometimes")) == [
        "spec.podManagementPolicy: Invalid value: \"Sometimes\": must be 'OrderedReady' or "
        "'Parallel'"
    ]
    bad = sts()
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    (found,) = problems(bad)
    assert found.startswith("spec.template.metadata.labels: Invalid value: ")
    assert found.endswith(": `selector` does not match template `labels`")
    on_delete = sts(updateStrategy={"type": "OnDelete", "rollingUpdate": {"partition": 1}})
    assert problems(on_delete) == [
        'spec.updateStrategy.rollingUpdate: Invalid value: "{...}": only allowed for '
        "updateStrategy 'RollingUpdate'"
    ]
    retention = sts(persistentVolumeClaimRetentionPolicy={"whenDeleted": "Keep"})
    assert problems(retention) == [
        "spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Unsupported value: "
        '"Keep": supported values: "Retain", "Delete"'
    ]


def test_update_may_change_only_some_fields() -> None:
    old = sts()
    strategy = strategy_for("apps", "StatefulSet")
    strategy.default(old)
    new = sts(replicas=5)
    strategy.default(new)
    errs = FieldErrors()
    strategy.validate_update(new, old, errs, True)
    assert errs.causes == []
    new["spec"]["serviceName"] = "other"
    strategy.validate_update(new, old, errs, True)
    assert [c["field"] for c in errs.causes] == ["spec"]


def test_printer_rows() -> None:
    s = sts(3)
    s["metadata"]["creationTimestamp"] = "2025-12-31T23:00:00Z"
    s["status"] = {"readyReplicas": 2}
    assert statefulset_row(s, NOW) == ["web", "2/3", "60m", "a", "busybox:1.35"]
    rev = {
        "metadata": {
            "name": "web-abc",
            "creationTimestamp": "2025-12-31T23:59:00Z",
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": True}
            ],
        },
        "revision": 2,
    }
    assert controllerrevision_row(rev, NOW) == ["web-abc", "statefulset.apps/web", 2, "60s"]


def test_identity_matches() -> None:
    p = pod(1)
    assert not identity_matches(p, 1)
    p["metadata"]["labels"].update(
        {"statefulset.kubernetes.io/pod-name": "web-1", "apps.kubernetes.io/pod-index": "1"}
    )
    assert identity_matches(p, 1)
    assert not identity_matches(p, 2)


def test_containers_may_mount_claim_templates_by_name() -> None:
    obj = sts(
        volumeClaimTemplates=[
            {
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }
        ]
    )
    container = obj["spec"]["template"]["spec"]["containers"][0]
    container["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    assert problems(obj) == []
    # The template is stored as given: the claim volumes are the controller's to add.
    assert "volumes" not in obj["spec"]["template"]["spec"]
    container["volumeMounts"].append({"name": "nope", "mountPath": "/nope"})
    assert problems(obj) == [
        'spec.template.spec.containers[0].volumeMounts[1].name: Not found: "nope"'
    ]
