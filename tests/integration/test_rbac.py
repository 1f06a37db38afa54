"""RBAC: the bootstrap policy, users added by certificate and bindings, escalation, reviews."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from k8slite import pki
from tests.conftest import ServerHandle, kubectl_path, start_apiserver

RBAC = "/apis/rbac.authorization.k8s.io/v1"


def _user(server: ServerHandle, name: str, *groups: str) -> str:
    """Issue a client certificate for a new user; returns the identity for server.client()."""
    ident = f"user-{name}-{os.urandom(2).hex()}"
    pki.issue_client_cert(server.pki, ident, name, groups)
    return ident


def _ns(admin: httpx.Client, prefix: str) -> str:
    name = f"{prefix}-{os.urandom(3).hex()}"
    assert admin.post("/api/v1/namespaces", json={"metadata": {"name": name}}).status_code == 201
    return name


def _role(admin: httpx.Client, ns: str, name: str, rules: list[dict[str, object]]) -> None:
    r = admin.post(
        f"{RBAC}/namespaces/{ns}/roles", json={"metadata": {"name": name}, "rules": rules}
    )
    assert r.status_code == 201, r.text


def _bind(
    admin: httpx.Client,
    ns: str | None,
    name: str,
    role_kind: str,
    role: str,
    subjects: list[dict[str, str]],
) -> None:
    path = f"{RBAC}/namespaces/{ns}/rolebindings" if ns else f"{RBAC}/clusterrolebindings"
    r = admin.post(
        path,
        json={
            "metadata": {"name": name},
            "subjects": subjects,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        },
    )
    assert r.status_code == 201, r.text


@pytest.fixture
def admin(apiserver: ServerHandle) -> Iterator[httpx.Client]:
    with apiserver.client("admin") as c:
        yield c


def test_bootstrap_policy_is_served(admin: httpx.Client) -> None:
    r = admin.get(f"{RBAC}/clusterroles/cluster-admin")
    assert r.status_code == 200
    role = r.json()
    assert role["rules"] == [
        {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
        {"verbs": ["*"], "nonResourceURLs": ["*"]},
    ]
    assert role["metadata"]["labels"] == {"kubernetes.io/bootstrapping": "rbac-defaults"}
    binding = admin.get(f"{RBAC}/clusterrolebindings/cluster-admin").json()
    assert binding["subjects"] == [
        {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:masters"}
    ]
    names = {i["metadata"]["name"] for i in admin.get(f"{RBAC}/clusterroles").json()["items"]}
    assert {
        "admin",
        "edit",
        "view",
        "system:node",
        "system:node-proxier",
        "system:kube-dns",
        "system:kube-scheduler",
        "system:kube-controller-manager",
        "system:discovery",
        "system:basic-user",
        "system:public-info-viewer",
        "system:controller:replicaset-controller",
    } <= names


def test_new_user_gets_exactly_what_a_role_binding_grants(
    apiserver: ServerHandle, admin: httpx.Client
) -> None:
    ns, other = _ns(admin, "rbac"), _ns(admin, "rbac-other")
    alice = _user(apiserver, "alice", "dev-team")
    with apiserver.client(alice) as c:
        r = c.get(f"/api/v1/namespaces/{ns}/pods")
        assert r.status_code == 403
        assert r.json() == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f'pods is forbidden: User "alice" cannot list resource "pods" in API '
            f'group "" in the namespace "{ns}"',
            "reason": "Forbidden",
            "details": {"kind": "pods"},
            "code": 403,
        }
        _role(
            admin,
            ns,
            "pod-reader",
            [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
        )
        _bind(admin, ns, "alice-reads", "Role", "pod-reader", [{"kind": "User", "name": "alice"}])
        assert c.get(f"/api/v1/namespaces/{ns}/pods").status_code == 200
        assert c.get(f"/api/v1/namespaces/{other}/pods").status_code == 403
        assert c.get("/api/v1/pods").status_code == 403  # all namespaces: cluster scope
        r = c.post(f"/api/v1/namespaces/{ns}/pods", json={"metadata": {"name": "p"}})
        assert r.status_code == 403
        assert (
            r.json()["message"] == f'pods is forbidden: User "alice" cannot create '
            f'resource "pods" in API group "" in the namespace "{ns}"'
        )
        # Through a group, cluster-wide, with a bootstrap ClusterRole.
        _bind(
            admin,
            None,
            f"dev-team-view-{ns}",
            "ClusterRole",
            "view",
            [{"kind": "Group", "name": "dev-team"}],
        )
        assert c.get(f"/api/v1/namespaces/{other}/configmaps").status_code == 200
        assert c.get(f"/api/v1/namespaces/{other}/secrets").status_code == 403
        # Revoked as soon as the binding goes.
        assert admin.delete(f"{RBAC}/namespaces/{ns}/rolebindings/alice-reads").status_code == 200
        assert c.get(f"/api/v1/namespaces/{ns}/pods").status_code == 200  # still via view
        assert admin.delete(f"{RBAC}/clusterrolebindings/dev-team-view-{ns}").status_code == 200
        assert c.get(f"/api/v1/namespaces/{ns}/pods").status_code == 403


def test_resource_names_subresources_and_wildcards(
    apiserver: ServerHandle, admin: httpx.Client
) -> None:
    ns = _ns(admin, "rbac-rules")
    bob = _user(apiserver, "bob")
    for name in ("mine", "theirs"):
        assert (
            admin.post(
                f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": name}}
            ).status_code
            == 201
        )
    _role(
        admin,
        ns,
        "narrow",
        [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": ["mine"],
                "verbs": ["get", "list", "watch", "update"],
            },
            {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["get"]},
        ],
    )
    _bind(admin, ns, "bob-narrow", "Role", "narrow", [{"kind": "User", "name": "bob"}])
    with apiserver.client(bob) as c:
        assert c.get(f"/api/v1/namespaces/{ns}/configmaps/mine").status_code == 200
        assert c.get(f"/api/v1/namespaces/{ns}/configmaps/theirs").status_code == 403
        assert c.get(f"/api/v1/namespaces/{ns}/configmaps").status_code == 403
        # A list narrowed to the one name counts as a request for that name (upstream).
        one = c.get(f"/api/v1/namespaces/{ns}/configmaps?fieldSelector=metadata.name%3Dmine")
        assert one.status_code == 200
        assert [i["metadata"]["name"] for i in one.json()["items"]] == ["mine"]
        r = c.get(f"/apis/apps/v1/namespaces/{ns}/deployments/nope/scale")
        assert r.status_code == 404  # allowed by */scale, then not found
        assert c.get(f"/apis/apps/v1/namespaces/{ns}/deployments/nope").status_code == 403
        assert c.get(f"/api/v1/namespaces/{ns}/pods/nope/status").status_code == 404
        r = c.get(f"/api/v1/namespaces/{ns}/pods/nope")
        assert r.status_code == 403
        assert (
            r.json()["message"] == f'pods "nope" is forbidden: User "bob" cannot get '
            f'resource "pods" in API group "" in the namespace "{ns}"'
        )


def test_role_validation(admin: httpx.Client) -> None:
    ns = _ns(admin, "rbac-valid")
    r = admin.post(
        f"{RBAC}/namespaces/{ns}/roles",
        json={"metadata": {"name": "bad"}, "rules": [{"apiGroups": [""], "resources": ["pods"]}]},
    )
    assert r.status_code == 422
    assert (
        r.json()["message"] == 'Role.rbac.authorization.k8s.io "bad" is invalid: '
        "rules[0].verbs: Required value: verbs must contain at "
        "least one value"
    )
    r = admin.post(
        f"{RBAC}/namespaces/{ns}/roles",
        json={
            "metadata": {"name": "bad"},
            "rules": [{"verbs": ["get"], "nonResourceURLs": ["/x"]}],
        },
    )
    assert r.status_code == 422
    assert "namespaced rules cannot apply to non-resource URLs" in r.json()["message"]
    r = admin.post(
        f"{RBAC}/clusterrolebindings",
        json={
            "metadata": {"name": "bad"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "x"},
        },
    )
    assert r.status_code == 422
    message = r.json()["message"]
    assert 'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"' in message
    assert "subjects[0].namespace: Required value" in message
    _bind(admin, ns, "b", "ClusterRole", "view", [{"kind": "Group", "name": "g"}])
    path = f"{RBAC}/namespaces/{ns}/rolebindings/b"
    r = admin.patch(
        path,
        json={"roleRef": {"name": "edit"}},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert r.status_code == 422
    assert "roleRef: Invalid value" in r.json()["message"]
    assert "cannot change roleRef" in r.json()["message"]


def test_no_escalation_through_roles_or_bindings(
    apiserver: ServerHandle, admin: httpx.Client
) -> None:
    ns = _ns(admin, "rbac-esc")
    carol = _user(apiserver, "carol")
    _role(
        admin,
        ns,
        "rbac-manager",
        [
            {
                "apiGroups": ["rbac.authorization.k8s.io"],
                "resources": ["roles", "rolebindings"],
                "verbs": ["create", "get", "update", "patch"],
            },
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
        ],
    )
    _bind(admin, ns, "carol-rbac", "Role", "rbac-manager", [{"kind": "User", "name": "carol"}])
    with apiserver.client(carol) as c:
        grab = {
            "metadata": {"name": "grab"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
        }
        r = c.post(f"{RBAC}/namespaces/{ns}/roles", json=grab)
        assert r.status_code == 403
        assert r.json()["message"] == (
            'roles.rbac.authorization.k8s.io "grab" is forbidden: user "carol" '
            '(groups=["system:authenticated"]) is attempting to grant RBAC permissions not '
            'currently held:\n{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}'
        )
        fine = {
            "metadata": {"name": "fine"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
        }
        assert c.post(f"{RBAC}/namespaces/{ns}/roles", json=fine).status_code == 201
        r = c.patch(
            f"{RBAC}/namespaces/{ns}/roles/fine",
            json=[{"op": "add", "path": "/rules/0/verbs/-", "value": "delete"}],
            headers={"content-type": "application/json-patch+json"},
        )
        assert r.status_code == 403
        bind = {
            "metadata": {"name": "carol-admin"},
            "subjects": [{"kind": "User", "name": "carol"}],
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
        }
        r = c.post(f"{RBAC}/namespaces/{ns}/rolebindings", json=bind)
        assert r.status_code == 403
        assert "is attempting to grant RBAC permissions not currently held" in r.json()["message"]
        # A binding to a role whose rules carol holds is fine.
        ok = {
            **bind,
            "metadata": {"name": "carol-fine"},
            "roleRef": {**bind["roleRef"], "kind": "Role", "name": "fine"},
        }
        assert c.post(f"{RBAC}/namespaces/{ns}/rolebindings", json=ok).status_code == 201
        # The "bind" verb on a role lets her bind it without holding its rules.
        _role(
            admin,
            ns,
            "binder",
            [
                {
                    "apiGroups": ["rbac.authorization.k8s.io"],
                    "resources": ["clusterroles"],
                    "verbs": ["bind"],
                    "resourceNames": ["cluster-admin"],
                }
            ],
        )
        _bind(admin, ns, "carol-binder", "Role", "binder", [{"kind": "User", "name": "carol"}])
        assert c.post(f"{RBAC}/namespaces/{ns}/rolebindings", json=bind).status_code == 201
        assert c.get(f"/api/v1/namespaces/{ns}/secrets").status_code == 200


def test_access_reviews(apiserver: ServerHandle, admin: httpx.Client) -> None:
    ns = _ns(admin, "rbac-review")
    dave = _user(apiserver, "dave")
    _role(admin, ns, "cm", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}])
    _bind(admin, ns, "dave-cm", "Role", "cm", [{"kind": "User", "name": "dave"}])
    ssar = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"

    def can(client: httpx.Client, **attrs: str) -> bool:
        r = client.post(
            ssar,
            json={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attrs},
            },
        )
        assert r.status_code == 201, r.text
        return bool(r.json()["status"]["allowed"])

    with apiserver.client(dave) as c:
        assert can(c, verb="list", resource="configmaps", namespace=ns)
        assert not can(c, verb="list", resource="configmaps", namespace="default")
        assert not can(c, verb="delete", resource="configmaps", namespace=ns)
        r = c.post(ssar, json={"spec": {}})
        assert r.status_code == 422
        assert c.get(ssar).status_code == 403  # authorization comes first, as upstream
        assert admin.get(ssar).status_code == 405
        rules = c.post(
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            json={"spec": {"namespace": ns}},
        ).json()["status"]
        assert {"verbs": ["list"], "apiGroups": [""], "resources": ["configmaps"]} in rules[
            "resourceRules"
        ]
        assert rules["incomplete"] is False
        # Only those allowed to may ask about others.
        sar = {
            "spec": {
                "user": "dave",
                "resourceAttributes": {"verb": "list", "resource": "configmaps", "namespace": ns},
            }
        }
        assert (
            c.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=sar).status_code
            == 403
        )
    r = admin.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=sar)
    assert r.status_code == 201 and r.json()["status"]["allowed"] is True
    r = admin.post(
        f"/apis/authorization.k8s.io/v1/namespaces/{ns}/localsubjectaccessreviews", json=sar
    )
    assert r.status_code == 201 and r.json()["status"]["allowed"] is True
    assert can(admin, verb="get", resource="anything")  # masters may do anything


# Identity -> (question, expected answer) for `kubectl auth can-i`, as upstream answers.
_CAN_I = {
    "admin": [(["delete", "namespaces"], True), (["get", "/metrics"], True), (["*", "*"], True)],
    "scheduler": [
        (["create", "pods", "--subresource=binding"], True),
        (["list", "nodes"], True),
        (["delete", "namespaces"], False),
        (["update", "pods/status"], False),
        (["get", "secrets"], False),
        (["update", "leases.coordination.k8s.io/kube-scheduler", "-n", "kube-system"], True),
        (["update", "leases.coordination.k8s.io/other", "-n", "kube-system"], False),
    ],
    "controller-manager": [
        (["create", "pods"], True),
        (["list", "secrets", "-A"], True),
        (["update", "deployments.apps/status"], True),
        (["create", "clusterrolebindings"], False),
        (["delete", "namespaces"], True),
    ],
    "proxy": [
        (["watch", "endpointslices.discovery.k8s.io"], True),
        (["list", "services"], True),
        (["create", "pods"], False),
        (["get", "secrets"], False),
    ],
    "dns": [
        (["watch", "endpointslices.discovery.k8s.io", "-A"], True),
        (["list", "services", "-A"], True),
        (["list", "pods", "-A"], True),
        (["watch", "namespaces"], True),
        (["get", "services"], False),
        (["create", "pods"], False),
        (["get", "secrets"], False),
    ],
    "node-node1": [
        (["update", "nodes/status"], True),
        (["list", "pods"], True),
        (["get", "secrets"], False),
        (["delete", "namespaces"], False),
        (["create", "events"], True),
        (["update", "leases.coordination.k8s.io/node1", "-n", "kube-node-lease"], True),
        (["update", "leases.coordination.k8s.io/node2", "-n", "kube-node-lease"], False),
    ],
}


@pytest.mark.parametrize("identity", sorted(_CAN_I))
def test_kubectl_auth_can_i_for_system_identities(apiserver: ServerHandle, identity: str) -> None:
    kubeconfig = str(apiserver.kubeconfig_for(identity))
    for question, expected in _CAN_I[identity]:
        out = subprocess.run(
            [str(kubectl_path()), "--kubeconfig", kubeconfig, "auth", "can-i", *question],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        answer = out.stdout.strip().split(" ", 1)[0]
        assert answer == ("yes" if expected else "no"), (identity, question, out)


def test_kubectl_auth_whoami_and_list(apiserver: ServerHandle) -> None:
    kubeconfig = str(apiserver.kubeconfig_for("scheduler"))
    out = subprocess.run(
        [
            str(kubectl_path()),
            "--kubeconfig",
            kubeconfig,
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.stdout == "system:kube-scheduler", out
    out = subprocess.run(
        [str(kubectl_path()), "--kubeconfig", kubeconfig, "auth", "can-i", "--list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.split()[0] == "pods/binding" and "[create]" in line for line in lines)


def _policy_versions(admin: httpx.Client) -> dict[str, str]:
    """resourceVersion of every RBAC object, by kind and name."""
    out = {}
    for plural in ("clusterroles", "clusterrolebindings", "roles", "rolebindings"):
        for item in admin.get(f"{RBAC}/{plural}").json()["items"]:
            m = item["metadata"]
            out[f"{plural}/{m.get('namespace', '')}/{m['name']}"] = m["resourceVersion"]
    return out


def test_bootstrap_reconciliation_is_idempotent_and_respects_opt_out(tmp_path: Path) -> None:
    server = start_apiserver(tmp_path / "data")
    try:
        with server.client() as admin:
            first = _policy_versions(admin)
            # An administrator trims a default role, and opts another out of updates.
            view = admin.get(f"{RBAC}/clusterroles/view").json()
            trimmed = view["rules"][1:]
            assert (
                admin.put(f"{RBAC}/clusterroles/view", json={**view, "rules": trimmed}).status_code
                == 200
            )
            edit = admin.get(f"{RBAC}/clusterroles/edit").json()
            edit["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] = "false"
            edit["rules"] = edit["rules"][:1]
            assert admin.put(f"{RBAC}/clusterroles/edit", json=edit).status_code == 200
            extra = {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}
            view = admin.get(f"{RBAC}/clusterroles/view").json()
            view["rules"].append(extra)
            assert admin.put(f"{RBAC}/clusterroles/view", json=view).status_code == 200
        server.stop()
        server = start_apiserver(tmp_path / "data")
        with server.client() as admin:
            view = admin.get(f"{RBAC}/clusterroles/view").json()
            assert extra in view["rules"]  # additions are kept
            assert len(view["rules"]) == len(trimmed) + 2  # the trimmed rule is back
            assert len(admin.get(f"{RBAC}/clusterroles/edit").json()["rules"]) == 1
            settled = _policy_versions(admin)
            assert settled.keys() == first.keys()
        server.stop()
        server = start_apiserver(tmp_path / "data")
        with server.client() as admin:
            # A start with nothing to repair writes nothing.
            assert _policy_versions(admin) == settled
    finally:
        server.stop()
