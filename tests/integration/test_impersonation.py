"""Impersonation with the real kubectl (--as, --as-group, --as-uid) over HTTPS, and its audit."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from k8slite import pki
from tests.conftest import ServerHandle, kubectl_path, start_apiserver

NS = "default"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    root = Path(tmp_path_factory.mktemp("impersonation"))
    handle = start_apiserver(root / "data", f"--audit-log-path={root / 'audit.log'}")
    # carol: a user with no roles at all.
    pki.issue_client_cert(handle.pki, "carol", "carol")
    # kubectl's discovery as a user who may not impersonate fails with a bare "unknown"
    # (its discovery client does not read the Status): as someone who first learned the
    # server's resources, it sends the request itself and prints the server's message. The
    # cache is this server's own, not one left by an earlier server on the same port.
    warm = _kubectl(handle, "admin", "api-resources")
    assert warm.returncode == 0, warm.stderr
    yield handle
    handle.stop()


def _kubectl(server: ServerHandle, identity: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(kubectl_path()),
            "--kubeconfig",
            str(server.kubeconfig_for(identity)),
            "--cache-dir",
            str(server.data_dir / "kubectl-cache"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _whoami(server: ServerHandle, identity: str, *args: str) -> dict[str, Any]:
    out = _kubectl(server, identity, "auth", "whoami", "-o", "json", *args)
    assert out.returncode == 0, out.stderr
    info: dict[str, Any] = json.loads(out.stdout)["status"]["userInfo"]
    return info


def test_admin_acts_as_another_user(server: ServerHandle) -> None:
    assert _kubectl(server, "admin", "auth", "can-i", "list", "secrets").stdout.strip() == "yes"
    r = _kubectl(server, "admin", "--as=mallory", "auth", "can-i", "list", "secrets")
    assert (r.returncode, r.stdout.strip()) == (1, "no")
    r = _kubectl(server, "admin", "--as=mallory", "get", "secrets", "-n", NS)
    assert r.returncode == 1
    assert (
        'Error from server (Forbidden): secrets is forbidden: User "mallory" cannot list '
        'resource "secrets" in API group "" in the namespace "default"'
    ) in r.stderr
    assert _whoami(server, "admin", "--as=mallory") == {
        "username": "mallory",
        "groups": ["system:authenticated"],
    }
    assert _whoami(server, "admin", "--as=mallory", "--as-group=g1", "--as-uid=u-1") == {
        "username": "mallory",
        "uid": "u-1",
        "groups": ["g1", "system:authenticated"],
    }
    assert _whoami(server, "admin", "--as=system:serviceaccount:default:robot") == {
        "username": "system:serviceaccount:default:robot",
        "groups": [
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated",
        ],
    }
    r = _kubectl(
        server, "admin", "--as=mallory", "--as-group=system:masters", "get", "secrets", "-n", NS
    )
    assert r.returncode == 0, r.stderr


def test_roleless_user_may_not_impersonate(server: ServerHandle) -> None:
    r = _kubectl(server, "carol", "--as=admin", "create", "configmap", "stolen", "-n", NS)
    assert r.returncode == 1
    assert r.stderr.strip().endswith(
        ': users "admin" is forbidden: User "carol" cannot '
        'impersonate resource "users" in API group "" at the cluster scope'
    )
    r = _kubectl(server, "carol", "--as=system:serviceaccount:kube-system:default", "get", "pods")
    assert (
        'serviceaccounts "default" is forbidden: User "carol" cannot impersonate resource '
        '"serviceaccounts" in API group "" in the namespace "kube-system"'
    ) in r.stderr
    assert _kubectl(server, "admin", "get", "configmap", "stolen", "-n", NS).returncode == 1


def test_impersonation_is_authorized_per_user_group_and_extra(server: ServerHandle) -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "impersonate-mallory"},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["users"],
                "verbs": ["impersonate"],
                "resourceNames": ["mallory"],
            },
            {
                "apiGroups": ["authentication.k8s.io"],
                "resources": ["userextras/scopes"],
                "verbs": ["impersonate"],
                "resourceNames": ["view"],
            },
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "carol-impersonates-mallory"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "impersonate-mallory",
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"}],
    }
    with server.client("admin") as admin:
        for url, obj in (
            ("/apis/rbac.authorization.k8s.io/v1/clusterroles", role),
            ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding),
        ):
            assert admin.post(url, json=obj).status_code == 201
    assert _whoami(server, "carol", "--as=mallory")["username"] == "mallory"
    r = _kubectl(server, "carol", "--as=mallory", "--as-group=system:masters", "get", "pods")
    assert (
        'groups "system:masters" is forbidden: User "carol" cannot impersonate resource '
        '"groups" in API group "" at the cluster scope'
    ) in r.stderr
    r = _kubectl(server, "carol", "--as=bob", "get", "pods")
    assert 'users "bob" is forbidden: User "carol" cannot impersonate' in r.stderr
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    url = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
    with server.client("carol") as carol:
        ok = carol.post(
            url,
            json=review,
            headers=[("Impersonate-User", "mallory"), ("Impersonate-Extra-Scopes", "view")],
        )
        assert ok.status_code == 201, ok.text
        assert ok.json()["status"]["userInfo"]["extra"] == {"scopes": ["view"]}
        r = carol.post(
            url,
            json=review,
            headers=[("Impersonate-User", "mallory"), ("Impersonate-Extra-Scopes", "edit")],
        )
        assert r.status_code == 403
        assert r.json()["message"] == (
            'userextras.authentication.k8s.io "edit" is forbidden: User "carol" cannot '
            'impersonate resource "userextras/scopes" in API group "authentication.k8s.io" '
            "at the cluster scope"
        )
        # Groups without a user: upstream's plain-text internal error.
        r = carol.get("/api/v1/pods", headers={"Impersonate-Group": "system:masters"})
        assert r.status_code == 500
        assert r.text == (
            'Internal Server Error: "/api/v1/pods": requested '
            "[{Group  system:masters    }] without impersonating a user\n"
        )


def test_audit_records_both_identities(server: ServerHandle) -> None:
    r = _kubectl(
        server,
        "admin",
        "--as=mallory",
        "--as-group=system:masters",
        "create",
        "configmap",
        "by-mallory",
        "-n",
        NS,
    )
    assert r.returncode == 0, r.stderr
    log = server.data_dir.parent / "audit.log"
    deadline = time.monotonic() + 10
    mine: list[dict[str, Any]] = []
    while not mine and time.monotonic() < deadline:
        lines = log.read_text().split("\n")[:-1]
        events = [json.loads(line) for line in lines]
        mine = [e for e in events if e.get("objectRef", {}).get("name") == "by-mallory"]
        time.sleep(0.05)
    assert mine, "no audit event for the create"
    event = mine[0]
    assert event["user"] == {
        "username": "admin",
        "groups": ["system:masters", "system:authenticated"],
    }
    assert event["impersonatedUser"] == {
        "username": "mallory",
        "groups": ["system:masters", "system:authenticated"],
    }
    with server.client("admin") as admin:
        assert admin.get(f"/api/v1/namespaces/{NS}/configmaps/by-mallory").status_code == 200
