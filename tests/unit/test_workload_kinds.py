"""ReplicationController defaults and validation, PodDisruptionBudget validation, and the
printers of both (what `kubectl get rc|pdb` shows)."""

from __future__ import annotations

import datetime as dt

from k8slite.api.printers import pdb_row, replicationcontroller_row
from k8slite.api.strategy import strategy_for
from k8slite.api.validation import FieldErrors
from k8slite.component.objects import Obj
from k8slite.controllers.replicaset import rc_selector_of

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def rc(**spec: object) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": "rc", "namespace": "ns"},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "rc"}},
                "spec": {"containers": [{"name": "a", "image": "busybox:1.35"}]},
            },
            **spec,
        },
    }


def problems(obj: Obj, group: str, kind: str) -> list[str]:
    errs = FieldErrors()
    strategy = strategy_for(group, kind)
    strategy.default(obj)
    strategy.validate(obj, errs, True)
    return [f"{c['field']}: {c['message']}" for c in errs.causes]


def test_rc_selector_and_labels_default_from_the_template() -> None:
    obj = rc()
    assert problems(obj, "", "ReplicationController") == []
    assert obj["spec"]["selector"] == {"app": "rc"}
    assert obj["metadata"]["labels"] == {"app": "rc"}
    assert obj["spec"]["replicas"] == 1
    assert obj["spec"]["template"]["spec"]["restartPolicy"] == "Always"


def test_rc_selector_must_select_the_template() -> None:
    found = problems(rc(selector={"app": "other"}), "", "ReplicationController")
    assert found == [
        'spec.template.metadata.labels: Invalid value: "map[string]string{\\"app\\":\\"rc\\"}": '
        "`selector` does not match template `labels`"
    ]
    bare = rc()
    bare["spec"]["template"]["metadata"]["labels"] = {}
    assert problems(bare, "", "ReplicationController") == ["spec.selector: Required value"]


def test_rc_selector_is_a_plain_map() -> None:
    assert rc_selector_of(rc(selector={"a": "1", "b": "2"})).matches({"a": "1", "b": "2", "c": "3"})
    assert not rc_selector_of(rc(selector={"a": "1", "b": "2"})).matches({"a": "1"})
    assert not rc_selector_of(rc()).matches({"app": "rc"})  # no selector selects nothing


def pdb(**spec: object) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web", "namespace": "ns"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec},
    }


def test_pdb_validation_as_upstream() -> None:
    assert problems(pdb(minAvailable=2), "policy", "PodDisruptionBudget") == []
    assert problems(pdb(maxUnavailable="25%"), "policy", "PodDisruptionBudget") == []
    assert problems(pdb(minAvailable=1, maxUnavailable=1), "policy", "PodDisruptionBudget") == [
        'spec: Invalid value: "minAvailable: 1, maxUnavailable: 1": '
        "minAvailable and maxUnavailable cannot be both set"
    ]
    assert problems(pdb(minAvailable=-1), "policy", "PodDisruptionBudget") == [
        "spec.minAvailable: Invalid value: -1: must be greater than or equal to 0"
    ]
    assert problems(pdb(maxUnavailable="101%"), "policy", "PodDisruptionBudget") == [
        'spec.maxUnavailable: Invalid value: "101%": must not be greater than 100%'
    ]
    (bad_percent,) = problems(pdb(minAvailable="half"), "policy", "PodDisruptionBudget")
    assert bad_percent.startswith(
        'spec.minAvailable: Invalid value: "half": a valid percent string must be'
    )
    assert problems(
        pdb(minAvailable=1, unhealthyPodEvictionPolicy="Never"), "policy", "PodDisruptionBudget"
    ) == [
        'spec.unhealthyPodEvictionPolicy: Unsupported value: "Never": supported values: '
        '"AlwaysAllow", "IfHealthyBudget"'
    ]


def test_printers() -> None:
    obj = rc(replicas=3, selector={"app": "rc"})
    obj["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    obj["status"] = {"replicas": 3, "readyReplicas": 2}
    assert replicationcontroller_row(obj, NOW) == [
        "rc",
        3,
        3,
        2,
        "0s",
        "a",
        "busybox:1.35",
        "app=rc",
    ]
    budget = pdb(maxUnavailable="25%")
    budget["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    budget["status"] = {"disruptionsAllowed": 1}
    assert pdb_row(budget, NOW) == ["web", "N/A", "25%", 1, "0s"]
