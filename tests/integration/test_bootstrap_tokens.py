"""Bootstrap tokens end to end: a real API server with --enable-bootstrap-token-auth, the
real kubectl, and a controller manager running the token cleaner and bootstrap signer.

Tokens authenticate as system:bootstrap:<id> (kubectl auth whoami --token); expired, wrong,
non-authentication and unknown tokens get 401; RBAC decides what bootstrappers may do;
cluster-info is readable without credentials (and nothing else is), carries the server and
CA, and is signed per signing token; the cleaner deletes expired tokens; `k8slite token`
creates, lists and deletes them.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from k8slite import bootstraptoken as bt
from tests.conftest import ServerHandle, kubectl_path, start_apiserver
from tests.integration.controller_harness import ManagerHandle, start_controller_manager
from tests.polling import wait_for

CLUSTER_INFO_URL = bt.CLUSTER_INFO_PATH


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[ServerHandle, ManagerHandle]]:
    tmp = Path(tempfile.mkdtemp(prefix="k8slite-bt-"))
    server = start_apiserver(
        tmp,
        "--enable-bootstrap-token-auth",
        f"--anonymous-auth-paths={CLUSTER_INFO_URL}",
    )
    manager = start_controller_manager(server, "--controllers=bootstrapsigner,tokencleaner")
    yield server, manager
    manager.stop()
    server.stop()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def server(cluster: tuple[ServerHandle, ManagerHandle]) -> ServerHandle:
    return cluster[0]


@pytest.fixture
def admin(server: ServerHandle) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def random_token() -> bt.TokenSecret:
    token = bt.generate()
    return bt.TokenSecret(token[:6], token[7:])


def create_token(admin: httpx.Client, token: bt.TokenSecret) -> None:
    r = admin.post("/api/v1/namespaces/kube-system/secrets", json=token.to_secret())
    assert r.status_code == 201, r.text


def secret_of(admin: httpx.Client, token_id: str) -> httpx.Response:
    return admin.get(f"/api/v1/namespaces/kube-system/secrets/bootstrap-token-{token_id}")


def anonymous(server: ServerHandle, token: str | None = None) -> httpx.Client:
    """HTTPS with the cluster CA and no certificate; a bearer token if given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ctx = ssl.create_default_context(cafile=str(server.ca))
    return httpx.Client(base_url=server.url, verify=ctx, timeout=30, headers=headers)


def kubectl_token(server: ServerHandle, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    auth = ["--kubeconfig", "/dev/null", "--server", server.url, "--token", token]
    auth += ["--certificate-authority", str(server.ca)]
    return subprocess.run(
        [str(kubectl_path()), *auth, *args], capture_output=True, text=True, timeout=60
    )


def whoami(server: ServerHandle, token: str) -> Any:
    out = kubectl_token(server, token, "auth", "whoami", "-o", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["status"]["userInfo"]


def test_token_authenticates_as_its_bootstrap_user(
    server: ServerHandle, admin: httpx.Client
) -> None:
    token = random_token()
    token.usages = ["authentication"]
    token.extra_groups = ["system:bootstrappers:team-b", "system:bootstrappers:kubeadm:x"]
    token.expiration = bt.format_time(datetime.now(UTC) + timedelta(hours=1))
    create_token(admin, token)
    user = whoami(server, token.token)
    assert user["username"] == f"system:bootstrap:{token.token_id}"
    assert user["groups"] == [
        "system:bootstrappers",
        "system:bootstrappers:kubeadm:x",
        "system:bootstrappers:team-b",
        "system:authenticated",
    ]
    # TokenReview knows bootstrap tokens too; they hold the API's audiences only.
    reviews = "/apis/authentication.k8s.io/v1/tokenreviews"
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview"}
    r = admin.post(reviews, json={**review, "spec": {"token": token.token}})
    assert r.status_code == 201, r.text
    status = r.json()["status"]
    assert status["authenticated"] is True
    assert status["user"]["username"] == f"system:bootstrap:{token.token_id}"
    assert status["user"]["groups"] == user["groups"]
    r = admin.post(reviews, json={**review, "spec": {"token": token.token, "audiences": ["x"]}})
    assert not r.json()["status"].get("authenticated"), r.text


def _refused(server: ServerHandle, token: str) -> None:
    with anonymous(server, token) as c:
        r = c.get("/api/v1/namespaces")
    assert r.status_code == 401, (token, r.status_code, r.text)
    assert r.json()["reason"] == "Unauthorized"


def test_refused_tokens_get_401(server: ServerHandle, admin: httpx.Client) -> None:
    past = random_token()
    past.usages = ["authentication"]
    past.expiration = bt.format_time(datetime.now(UTC) - timedelta(minutes=1))
    signing_only = random_token()
    signing_only.usages = ["signing"]
    bad_group = random_token()
    bad_group.usages = ["authentication"]
    bad_group.extra_groups = ["system:masters"]
    good = random_token()
    good.usages = ["authentication"]
    for t in (past, signing_only, bad_group, good):
        create_token(admin, t)
    # The cleaner may already have deleted the expired one: 401 either way.
    _refused(server, past.token)
    _refused(server, signing_only.token)
    _refused(server, bad_group.token)
    wrong_secret = good.token[:-1] + ("a" if good.token[-1] != "a" else "b")
    _refused(server, wrong_secret)
    _refused(server, random_token().token)  # no such Secret
    out = kubectl_token(server, wrong_secret, "auth", "whoami")
    assert out.returncode != 0 and "Unauthorized" in out.stderr, out.stderr
    # The good one works, until it is deleted.
    assert whoami(server, good.token)["username"] == f"system:bootstrap:{good.token_id}"
    assert admin.delete(secret_of(admin, good.token_id).url.path).status_code == 200
    _refused(server, good.token)


def test_rbac_applies_to_bootstrappers(server: ServerHandle, admin: httpx.Client) -> None:
    group = "system:bootstrappers:readers-" + uuid.uuid4().hex[:6]
    reader = random_token()
    reader.usages = ["authentication"]
    reader.extra_groups = [group]
    other = random_token()
    other.usages = ["authentication"]
    create_token(admin, reader)
    create_token(admin, other)
    with anonymous(server, reader.token) as c:
        assert c.get("/api/v1/nodes").status_code == 403
    name = "bt-" + uuid.uuid4().hex[:6]
    role = {
        "metadata": {"name": name},
        "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}],
    }
    binding = {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
    }
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    assert admin.post(f"{rbac}/clusterroles", json=role).status_code == 201
    assert admin.post(f"{rbac}/clusterrolebindings", json=binding).status_code == 201
    with anonymous(server, reader.token) as c:
        wait_for(lambda: c.get("/api/v1/nodes").status_code == 200, what="the binding to apply")
        assert c.get("/api/v1/namespaces/kube-system/secrets").status_code == 403
    with anonymous(server, other.token) as c:
        assert c.get("/api/v1/nodes").status_code == 403
    can = kubectl_token(server, reader.token, "auth", "can-i", "list", "nodes")
    assert can.stdout.strip() == "yes", can
    cannot = kubectl_token(server, other.token, "auth", "can-i", "list", "nodes")
    assert cannot.stdout.strip() == "no", cannot


def test_cluster_info_is_public_and_nothing_else(server: ServerHandle) -> None:
    with anonymous(server) as c:
        r = c.get(CLUSTER_INFO_URL)
        assert r.status_code == 200, r.text
        config = yaml.safe_load(r.json()["data"]["kubeconfig"])
        cluster = config["clusters"][0]["cluster"]
        assert cluster["server"] == server.url
        assert base64.b64decode(cluster["certificate-authority-data"]) == server.ca.read_bytes()
        # Only that path, and only get.
        assert c.get("/api/v1/namespaces/kube-public/configmaps").status_code == 401
        assert c.get("/api/v1/namespaces/kube-system/configmaps/cluster-info").status_code == 401
        assert c.get("/api/v1/namespaces").status_code == 401
        assert c.delete(CLUSTER_INFO_URL).status_code == 403


def test_cluster_info_is_signed_per_signing_token(
    server: ServerHandle, admin: httpx.Client
) -> None:
    signer = random_token()
    signer.usages = ["signing", "authentication"]
    not_signing = random_token()
    not_signing.usages = ["authentication"]
    create_token(admin, signer)
    create_token(admin, not_signing)
    key = bt.JWS_PREFIX + signer.token_id

    def data() -> dict[str, str]:
        with anonymous(server) as c:
            return c.get(CLUSTER_INFO_URL).json()["data"]  # type: ignore[no-any-return]

    signed = wait_for(lambda: data() if key in data() else None, what="the jws key")
    assert bt.verify_detached_jws(
        signed[key], signed["kubeconfig"], signer.token_id, signer.token_secret
    )
    assert not bt.verify_detached_jws(
        signed[key], signed["kubeconfig"], signer.token_id, not_signing.token_secret
    )
    assert bt.JWS_PREFIX + not_signing.token_id not in signed
    assert admin.delete(secret_of(admin, signer.token_id).url.path).status_code == 200
    wait_for(lambda: key not in data(), what="the signature of a deleted token to go")


def test_cleaner_deletes_expired_tokens(server: ServerHandle, admin: httpx.Client) -> None:
    expired = random_token()
    expired.expiration = bt.format_time(datetime.now(UTC) - timedelta(seconds=1))
    soon = random_token()
    soon.expiration = bt.format_time(datetime.now(UTC) + timedelta(seconds=3))
    forever = random_token()
    for t in (expired, soon, forever):
        create_token(admin, t)
    wait_for(lambda: secret_of(admin, expired.token_id).status_code == 404, what="expired gone")
    wait_for(lambda: secret_of(admin, soon.token_id).status_code == 404, what="soon gone")
    assert secret_of(admin, forever.token_id).status_code == 200


def k8slite(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "k8slite.cmd.k8slite", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ,
    )


def test_token_cli_round_trip(server: ServerHandle, tmp_path: Path) -> None:
    data_dir = tmp_path / "dd"
    data_dir.mkdir()
    shutil.copy(server.kubeconfig, data_dir / "kubeconfig")
    dd = ["token", "--data-dir", str(data_dir)]
    made = k8slite(*dd, "create", "--ttl", "2h", "--description", "for node-x")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert bt.TOKEN_RE.match(token), made.stdout
    listed = k8slite(*dd, "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == [
        "TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA", "GROUPS",
    ]  # fmt: skip
    row = next(line for line in listed.stdout.splitlines() if line.startswith(token))
    assert row.split()[1] in ("1h", "2h")
    assert "signing,authentication" in row and "for node-x" in row
    assert row.split()[-1] == bt.DEFAULT_NODE_GROUP
    assert whoami(server, token)["groups"] == [
        "system:bootstrappers",
        bt.DEFAULT_NODE_GROUP,
        "system:authenticated",
    ]
    join = k8slite(*dd, "create", "--print-join-command", "--ttl", "0")
    assert join.returncode == 0, join.stderr
    words = join.stdout.split()
    assert words[:4] == ["k8slite", "join", "--server", server.url], join.stdout
    assert words[4] == "--token" and bt.TOKEN_RE.match(words[5])
    assert words[6:] == ["--discovery-token-ca-cert-hash", bt.ca_cert_hash(server.ca.read_bytes())]
    forever = next(
        line for line in k8slite(*dd, "list").stdout.splitlines() if line.startswith(words[5])
    )
    assert forever.split()[1:3] == ["<forever>", "<never>"]
    refused = k8slite(*dd, "create", "--groups", "admins")
    assert refused.returncode == 1 and "is invalid" in refused.stderr
    gone = k8slite(*dd, "delete", token[:6], words[5])
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout.splitlines() == [
        f'bootstrap token "{token[:6]}" deleted',
        f'bootstrap token "{words[5][:6]}" deleted',
    ]
    assert token not in k8slite(*dd, "list").stdout
    again = k8slite(*dd, "delete", token)
    assert again.returncode == 1 and "failed to delete bootstrap token" in again.stderr
    bad = k8slite(*dd, "delete", "nope")
    assert bad.returncode == 1 and "didn't match pattern" in bad.stderr
