"""Classification by upstream's default FlowSchemas: who lands in which priority level."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from k8slite.apiserver.authn import UserInfo
from k8slite.apiserver.flowcontrol import defaults
from k8slite.apiserver.flowcontrol.controller import FlowControl
from k8slite.apiserver.metrics import ApiMetrics

_AUTH = "system:authenticated"
NODE = UserInfo("system:node:n1", ("system:nodes", _AUTH))
ADMIN = UserInfo("admin", ("system:masters", _AUTH))
MANAGER = UserInfo("system:kube-controller-manager", (_AUTH,))
KUBE_SYSTEM_SA = UserInfo("system:serviceaccount:kube-system:ds", ("system:serviceaccounts", _AUTH))
APP_SA = UserInfo("system:serviceaccount:apps:web", ("system:serviceaccounts", _AUTH))
ALICE = UserInfo("alice", (_AUTH,))


@pytest.fixture
def flowcontrol() -> FlowControl:
    metrics = ApiMetrics(CollectorRegistry())
    return FlowControl(defaults.flow_schemas(), defaults.priority_levels(), 600, 15, metrics)


@pytest.mark.parametrize(
    ("user", "method", "path", "schema", "level"),
    [
        (ADMIN, "DELETE", "/api/v1/namespaces/x", "exempt", "exempt"),
        (ALICE, "GET", "/readyz", "probes", "exempt"),
        (NODE, "PATCH", "/api/v1/nodes/n1/status", "system-node-high", "node-high"),
        (
            NODE,
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
            "system-node-high",
            "node-high",
        ),
        (NODE, "GET", "/api/v1/pods", "system-nodes", "system"),
        (
            MANAGER,
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kcm",
            "system-leader-election",
            "leader-election",
        ),
        (
            MANAGER,
            "PUT",
            "/api/v1/namespaces/default/endpoints/web",
            "endpoint-controller",
            "workload-high",
        ),
        (MANAGER, "GET", "/apis/apps/v1/deployments", "kube-controller-manager", "workload-high"),
        (
            KUBE_SYSTEM_SA,
            "GET",
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/ds",
            "system-leader-election",
            "leader-election",
        ),
        (
            APP_SA,
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/apps/leases/web",
            "workload-leader-election",
            "leader-election",
        ),
        (KUBE_SYSTEM_SA, "GET", "/api/v1/pods", "kube-system-service-accounts", "workload-high"),
        (APP_SA, "GET", "/api/v1/namespaces/apps/pods", "service-accounts", "workload-low"),
        (ALICE, "POST", "/api/v1/namespaces/a/configmaps", "global-default", "global-default"),
        (ALICE, "GET", "/version", "global-default", "global-default"),
        (ALICE, "GET", "/api/v1/nosuchthings", "global-default", "global-default"),
    ],
)
def test_default_classification(
    flowcontrol: FlowControl, user: UserInfo, method: str, path: str, schema: str, level: str
) -> None:
    flow = flowcontrol.classify(user, {"method": method, "path": path, "headers": []})
    assert (flow.schema, flow.level.name) == (schema, level)


def test_flows_are_per_user_and_cached_without_object_names(flowcontrol: FlowControl) -> None:
    def classify(user: UserInfo, name: str) -> object:
        scope = {"method": "GET", "path": f"/api/v1/namespaces/a/configmaps/{name}"}
        return flowcontrol.classify(user, scope)

    bob = UserInfo("bob", (_AUTH,))
    assert classify(ALICE, "one") is classify(ALICE, "two")  # one cache entry
    assert classify(ALICE, "one").hand != classify(bob, "one").hand  # ByUser: own queues


def test_seats_are_upstream_shares_of_the_total(flowcontrol: FlowControl) -> None:
    seats = {name: level.seats for name, level in flowcontrol.levels.items()}
    assert seats == {
        "exempt": None,
        "catch-all": 13,
        "system": 74,
        "node-high": 98,
        "leader-election": 25,
        "workload-high": 98,
        "workload-low": 245,
        "global-default": 49,
    }
