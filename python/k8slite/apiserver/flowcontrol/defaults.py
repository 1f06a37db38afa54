"""Upstream's bootstrap FlowSchemas and PriorityLevelConfigurations (mandatory and suggested)."""

from __future__ import annotations

from typing import Any

from k8slite.api import meta

Obj = dict[str, Any]
API_VERSION = "flowcontrol.apiserver.k8s.io/v1"
# Upstream marks the objects it maintains; with "true" the spec is reset at each start.
AUTOUPDATE = "apf.kubernetes.io/autoupdate-spec"
EXEMPT = "exempt"
CATCH_ALL = "catch-all"

_ALL_RESOURCES = {
    "verbs": ["*"],
    "apiGroups": ["*"],
    "resources": ["*"],
    "clusterScope": True,
    "namespaces": ["*"],
}
_ALL_PATHS = {"verbs": ["*"], "nonResourceURLs": ["*"]}
_EVERYONE = [
    {"kind": "Group", "group": {"name": "system:authenticated"}},
    {"kind": "Group", "group": {"name": "system:unauthenticated"}},
]


def _meta(name: str) -> Obj:
    return {"name": name, "annotations": {AUTOUPDATE: "true"}}


def _queued(shares: int, lendable: int, queues: int, hand: int) -> Obj:
    return {
        "nominalConcurrencyShares": shares,
        "lendablePercent": lendable,
        "limitResponse": {
            "type": "Queue",
            "queuing": {"queues": queues, "handSize": hand, "queueLengthLimit": 50},
        },
    }


def _level(name: str, spec: Obj) -> Obj:
    return {
        "apiVersion": API_VERSION,
        "kind": "PriorityLevelConfiguration",
        "metadata": _meta(name),
        "spec": spec,
    }


def _user(name: str) -> Obj:
    return {"kind": "User", "user": {"name": name}}


def _group(name: str) -> Obj:
    return {"kind": "Group", "group": {"name": name}}


def _service_account(namespace: str, name: str) -> Obj:
    return {"kind": "ServiceAccount", "serviceAccount": {"namespace": namespace, "name": name}}


def _leases(*verbs: str) -> Obj:
    return {
        "verbs": list(verbs),
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "namespaces": ["*"],
    }


def _schema(
    name: str, level: str, precedence: int, distinguisher: str | None, rules: list[Obj]
) -> Obj:
    spec: Obj = {
        "priorityLevelConfiguration": {"name": level},
        "matchingPrecedence": precedence,
        "rules": rules,
    }
    if distinguisher:
        spec["distinguisherMethod"] = {"type": distinguisher}
    # Every default level exists, so no default schema dangles.
    dangling = {
        "type": "Dangling",
        "status": "False",
        "lastTransitionTime": meta.now(),
        "reason": "Found",
        "message": "This FlowSchema references the PriorityLevelConfiguration object "
        f'named "{level}" and it exists',
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "FlowSchema",
        "metadata": _meta(name),
        "spec": spec,
        "status": {"conditions": [dangling]},
    }


def _everything(*subjects: Obj) -> list[Obj]:
    return [
        {
            "subjects": list(subjects),
            "resourceRules": [dict(_ALL_RESOURCES)],
            "nonResourceRules": [dict(_ALL_PATHS)],
        }
    ]


def priority_levels() -> list[Obj]:
    return [
        _level(
            EXEMPT,
            {"type": "Exempt", "exempt": {"nominalConcurrencyShares": 0, "lendablePercent": 0}},
        ),
        _level(
            CATCH_ALL,
            {
                "type": "Limited",
                "limited": {
                    "nominalConcurrencyShares": 5,
                    "lendablePercent": 0,
                    "limitResponse": {"type": "Reject"},
                },
            },
        ),
        _level("system", {"type": "Limited", "limited": _queued(30, 33, 64, 6)}),
        _level("node-high", {"type": "Limited", "limited": _queued(40, 25, 64, 6)}),
        _level("leader-election", {"type": "Limited", "limited": _queued(10, 0, 16, 4)}),
        _level("workload-high", {"type": "Limited", "limited": _queued(40, 50, 128, 6)}),
        _level("workload-low", {"type": "Limited", "limited": _queued(100, 90, 128, 6)}),
        _level("global-default", {"type": "Limited", "limited": _queued(20, 50, 128, 6)}),
    ]


def flow_schemas() -> list[Obj]:
    kube_system_sas = _service_account("kube-system", "*")
    return [
        _schema(EXEMPT, EXEMPT, 1, None, _everything(_group("system:masters"))),
        _schema(
            "probes",
            EXEMPT,
            2,
            None,
            [
                {
                    "subjects": list(_EVERYONE),
                    "nonResourceRules": [
                        {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/readyz", "/livez"]}
                    ],
                }
            ],
        ),
        _schema(
            "system-leader-election",
            "leader-election",
            100,
            "ByUser",
            [
                {
                    "subjects": [
                        _user("system:kube-controller-manager"),
                        _user("system:kube-scheduler"),
                        kube_system_sas,
                    ],
                    "resourceRules": [_leases("get", "create", "update")],
                }
            ],
        ),
        _schema(
            "endpoint-controller",
            "workload-high",
            150,
            "ByUser",
            [
                {
                    "subjects": [
                        _user("system:kube-controller-manager"),
                        _service_account("kube-system", "endpoint-controller"),
                        _service_account("kube-system", "endpointslicemirroring-controller"),
                    ],
                    "resourceRules": [
                        {
                            "verbs": ["get", "create", "update"],
                            "apiGroups": [""],
                            "resources": ["endpoints"],
                            "namespaces": ["*"],
                        }
                    ],
                }
            ],
        ),
        _schema(
            "workload-leader-election",
            "leader-election",
            200,
            "ByUser",
            [
                {
                    "subjects": [_group("system:serviceaccounts")],
                    "resourceRules": [_leases("get", "create", "update")],
                }
            ],
        ),
        _schema(
            "system-node-high",
            "node-high",
            400,
            "ByUser",
            [
                {
                    "subjects": [_group("system:nodes")],
                    "resourceRules": [
                        {
                            "verbs": ["*"],
                            "apiGroups": [""],
                            "resources": ["nodes", "nodes/status"],
                            "clusterScope": True,
                        },
                        _leases("*"),
                    ],
                }
            ],
        ),
        _schema("system-nodes", "system", 500, "ByUser", _everything(_group("system:nodes"))),
        _schema(
            "kube-controller-manager",
            "workload-high",
            800,
            "ByNamespace",
            _everything(_user("system:kube-controller-manager")),
        ),
        _schema(
            "kube-scheduler",
            "workload-high",
            800,
            "ByNamespace",
            _everything(_user("system:kube-scheduler")),
        ),
        _schema(
            "kube-system-service-accounts",
            "workload-high",
            900,
            "ByNamespace",
            _everything(kube_system_sas),
        ),
        _schema(
            "service-accounts",
            "workload-low",
            9000,
            "ByUser",
            _everything(_group("system:serviceaccounts")),
        ),
        _schema("global-default", "global-default", 9900, "ByUser", _everything(*_EVERYONE)),
        _schema(CATCH_ALL, CATCH_ALL, 10000, "ByUser", _everything(*_EVERYONE)),
    ]
