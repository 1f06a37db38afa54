"""Service accounts end to end: admission, controllers, tokens, bearer authn, reviews, OIDC.

A real API server (ServiceAccount admission on) and controller manager (serviceaccount,
root-ca-cert-publisher and token controllers), the real kubectl and the official client.
"""

from __future__ import annotations

import base64
import calendar
import json
import shutil
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from k8slite import pki
from k8slite.serviceaccount import claims
from k8slite.serviceaccount.jwt import load_private_key, sign
from tests.conftest import ServerHandle, kubectl_path, start_apiserver
from tests.integration.controller_harness import ManagerHandle, start_controller_manager
from tests.polling import wait_for

k8s = pytest.importorskip("kubernetes")
MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
ISSUER = claims.DEFAULT_ISSUER


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[ServerHandle, ManagerHandle]]:
    tmp = Path(tempfile.mkdtemp(prefix="k8slite-sa-"))
    server = start_apiserver(tmp, "--enable-admission-plugins=ServiceAccount")
    manager = start_controller_manager(
        server,
        "--service-account-private-key-file",
        str(pki.service_account_key_paths(server.pki)[0]),
    )
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


@pytest.fixture
def ns(admin: httpx.Client) -> str:
    """A fresh namespace whose default account the controller has made."""
    name = "sa-" + uuid.uuid4().hex[:6]
    assert admin.post("/api/v1/namespaces", json={"metadata": {"name": name}}).status_code == 201
    wait_for(
        lambda: admin.get(f"/api/v1/namespaces/{name}/serviceaccounts/default").status_code == 200,
        what="the default service account",
    )
    return name


def kubectl(server: ServerHandle, *args: str, token: str | None = None) -> Any:
    auth = (
        ["--kubeconfig", "/dev/null", "--server", server.url, "--token", token]
        + ["--certificate-authority", str(server.ca)]
        if token is not None
        else ["--kubeconfig", str(server.kubeconfig)]
    )
    return subprocess.run(
        [str(kubectl_path()), *auth, *args], capture_output=True, text=True, timeout=60
    )


def bearer(server: ServerHandle, token: str) -> httpx.Client:
    """An HTTPS client with no certificate, authenticating with the token alone."""
    ctx = ssl.create_default_context(cafile=str(server.ca))
    return httpx.Client(
        base_url=server.url,
        verify=ctx,
        timeout=30,
        headers={"Authorization": f"Bearer {token}"},
    )


def official(server: ServerHandle, token: str) -> Any:
    config = k8s.client.Configuration()
    config.host = server.url
    config.ssl_ca_cert = str(server.ca)
    config.api_key = {"authorization": f"Bearer {token}"}
    return k8s.client.CoreV1Api(k8s.client.ApiClient(config))


def pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}], **spec},
    }


def claims_of(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def create_token(server: ServerHandle, ns: str, account: str, *args: str) -> str:
    done = kubectl(server, "-n", ns, "create", "token", account, *args)
    assert done.returncode == 0, done.stderr
    return str(done.stdout.strip())


# ------------------------------------------------------------------ controllers


def test_new_namespace_gets_default_account_and_root_ca(
    server: ServerHandle, admin: httpx.Client, ns: str
) -> None:
    cm = wait_for(
        lambda: admin.get(f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt").json()["data"],
        what="kube-root-ca.crt",
    )
    assert cm == {"ca.crt": server.ca.read_text()}
    annotations = admin.get(f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt").json()[
        "metadata"
    ]["annotations"]
    assert annotations["kubernetes.io/description"].startswith("Contains a CA bundle")
    # Deleted, each comes back (a new account, with a new uid).
    old = admin.get(f"/api/v1/namespaces/{ns}/serviceaccounts/default").json()["metadata"]["uid"]
    assert admin.delete(f"/api/v1/namespaces/{ns}/serviceaccounts/default").status_code == 200
    assert admin.delete(f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt").status_code == 200
    wait_for(
        lambda: (
            admin.get(f"/api/v1/namespaces/{ns}/serviceaccounts/default").json()["metadata"]["uid"]
            != old
        ),
        what="the default account recreated",
    )
    wait_for(
        lambda: (
            admin.get(f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt").status_code == 200
        ),
        what="kube-root-ca.crt recreated",
    )
    # Edited, the CA is put back.
    r = admin.patch(
        f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt",
        json={"data": {"ca.crt": "junk"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200
    wait_for(
        lambda: (
            admin.get(f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt").json()["data"][
                "ca.crt"
            ]
            == server.ca.read_text()
        ),
        what="kube-root-ca.crt restored",
    )


# -------------------------------------------------------------------- admission


def _check_token_volume(spec: dict[str, Any], account: str = "default") -> None:
    assert spec["serviceAccountName"] == spec["serviceAccount"] == account
    (volume,) = [v for v in spec["volumes"] if v["name"].startswith("kube-api-access-")]
    assert len(volume["name"]) == len("kube-api-access-") + 5
    assert volume["projected"] == {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {
                "configMap": {
                    "name": "kube-root-ca.crt",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }
            },
            {
                "downwardAPI": {
                    "items": [
                        {
                            "path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                        }
                    ]
                }
            },
        ],
    }
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        assert {"name": volume["name"], "readOnly": True, "mountPath": MOUNT} in container[
            "volumeMounts"
        ]


def test_admission_with_kubectl(server: ServerHandle, ns: str) -> None:
    done = kubectl(server, "-n", ns, "run", "p", "--image", "busybox:1.35")
    assert done.returncode == 0, done.stderr
    spec = json.loads(kubectl(server, "-n", ns, "get", "pod", "p", "-o", "json").stdout)["spec"]
    _check_token_volume(spec)


def test_admission_with_the_python_client(
    server: ServerHandle, admin: httpx.Client, ns: str
) -> None:
    k8s.config.load_kube_config(str(server.kubeconfig))
    core = k8s.client.CoreV1Api()
    body = pod("p", initContainers=[{"name": "init", "image": "busybox:1.35"}])
    created = core.create_namespaced_pod(ns, body)
    assert created.spec.service_account_name == "default"
    _check_token_volume(admin.get(f"/api/v1/namespaces/{ns}/pods/p").json()["spec"])


def test_automount_false_on_account_and_on_pod(admin: httpx.Client, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}"
    account = {"metadata": {"name": "quiet"}, "automountServiceAccountToken": False}
    assert admin.post(f"{base}/serviceaccounts", json=account).status_code == 201
    r = admin.post(f"{base}/pods", json=pod("a", serviceAccountName="quiet"))
    assert r.status_code == 201, r.text
    assert "volumes" not in r.json()["spec"]
    assert "volumeMounts" not in r.json()["spec"]["containers"][0]
    # The pod's own setting wins over the account's, either way.
    r = admin.post(
        f"{base}/pods", json=pod("b", serviceAccountName="quiet", automountServiceAccountToken=True)
    )
    _check_token_volume(r.json()["spec"], "quiet")
    r = admin.post(f"{base}/pods", json=pod("c", automountServiceAccountToken=False))
    assert r.status_code == 201 and "volumes" not in r.json()["spec"]
    assert r.json()["spec"]["serviceAccountName"] == "default"


def test_missing_account_is_refused(server: ServerHandle, admin: httpx.Client, ns: str) -> None:
    r = admin.post(f"/api/v1/namespaces/{ns}/pods", json=pod("p", serviceAccountName="ghost"))
    assert r.status_code == 403
    assert r.json()["message"] == (
        f'pods "p" is forbidden: error looking up service account {ns}/ghost: '
        'serviceaccount "ghost" not found'
    )
    assert r.json()["reason"] == "Forbidden"
    done = kubectl(server, "-n", ns, "run", "q", "--image", "busybox:1.35", "--overrides",
                   '{"spec": {"serviceAccountName": "ghost"}}')  # fmt: skip
    assert done.returncode != 0
    assert 'serviceaccount "ghost" not found' in done.stderr


# ----------------------------------------------------------------------- tokens


def test_token_with_kubectl_and_the_python_client(server: ServerHandle, ns: str) -> None:
    assert kubectl(server, "-n", ns, "create", "sa", "bot").returncode == 0
    token = create_token(server, ns, "bot")
    c = claims_of(token)
    assert c["iss"] == ISSUER and c["aud"] == [ISSUER]
    assert c["sub"] == f"system:serviceaccount:{ns}:bot"
    assert c["exp"] - c["iat"] == 3600 and c["nbf"] == c["iat"] and c["jti"]
    assert c["kubernetes.io"]["namespace"] == ns
    assert c["kubernetes.io"]["serviceaccount"]["name"] == "bot"
    # RBAC applies as to anyone: refused first, with upstream's message ...
    denied = kubectl(server, "-n", ns, "get", "configmaps", token=token)
    assert denied.returncode != 0
    assert (
        f'User "system:serviceaccount:{ns}:bot" cannot list resource "configmaps" in API '
        f'group "" in the namespace "{ns}"'
    ) in denied.stderr
    with pytest.raises(k8s.client.ApiException) as refused:
        official(server, token).list_namespaced_config_map(ns)
    assert refused.value.status == 403
    # ... allowed once bound.
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "bot-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": ns}],
    }
    with server.client() as admin:
        granted = admin.post(
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", json=binding
        )
        assert granted.status_code == 201, granted.text
    ok = wait_for(
        lambda: kubectl(server, "-n", ns, "get", "configmaps", token=token).returncode == 0,
        what="the binding to take effect",
    )
    assert ok
    names = [
        cm.metadata.name for cm in official(server, token).list_namespaced_config_map(ns).items
    ]
    assert "kube-root-ca.crt" in names
    # Too short a duration is refused as upstream refuses it.
    short = kubectl(server, "-n", ns, "create", "token", "bot", "--duration", "1m")
    assert "may not specify a duration less than 10 minutes" in short.stderr
    long = claims_of(create_token(server, ns, "bot", "--duration", "2h"))
    assert long["exp"] - long["iat"] == 7200


def test_pod_bound_token_dies_with_the_pod(
    server: ServerHandle, admin: httpx.Client, ns: str
) -> None:
    r = admin.post(f"/api/v1/namespaces/{ns}/pods", json=pod("p"))
    assert r.status_code == 201
    uid = r.json()["metadata"]["uid"]
    token = create_token(
        server, ns, "default", "--bound-object-kind", "Pod", "--bound-object-name", "p"
    )
    assert claims_of(token)["kubernetes.io"]["pod"] == {"name": "p", "uid": uid}
    with bearer(server, token) as c:
        r = c.post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        assert r.status_code == 201, r.text
        extra = r.json()["status"]["userInfo"]["extra"]
        assert extra["authentication.kubernetes.io/pod-name"] == ["p"]
        assert extra["authentication.kubernetes.io/pod-uid"] == [uid]
        assert extra["authentication.kubernetes.io/credential-id"] == [
            f"JTI={claims_of(token)['jti']}"
        ]
        assert (
            admin.delete(
                f"/api/v1/namespaces/{ns}/pods/p", params={"gracePeriodSeconds": 0}
            ).status_code
            == 200
        )
        r = c.get("/api")
        assert r.status_code == 401
        assert r.json()["reason"] == "Unauthorized" and r.json()["message"] == "Unauthorized"
    # Binding to a pod of another account is refused.
    admin.post(f"/api/v1/namespaces/{ns}/serviceaccounts", json={"metadata": {"name": "x"}})
    admin.post(f"/api/v1/namespaces/{ns}/pods", json=pod("q"))
    done = kubectl(
        server, "-n", ns, "create", "token", "x", "--bound-object-kind", "Pod",
        "--bound-object-name", "q",
    )  # fmt: skip
    assert "to pod running with different serviceaccount name" in done.stderr


def _signed(key: Any, ns: str, account: dict[str, Any], **overrides: Any) -> str:
    now = int(time.time())
    body = claims.bound(
        issuer=ISSUER, audiences=[ISSUER], now=now, expires=now + 3600, account=account
    )
    body.update(overrides)
    return sign(key, body)


def test_bad_tokens_are_unauthorized(server: ServerHandle, admin: httpx.Client, ns: str) -> None:
    account = admin.get(f"/api/v1/namespaces/{ns}/serviceaccounts/default").json()
    key = load_private_key(pki.service_account_key_paths(server.pki)[0])
    now = int(time.time())
    good = _signed(key, ns, account)
    bad = {
        "other key": _signed(ec.generate_private_key(ec.SECP256R1()), ns, account),
        "expired": _signed(key, ns, account, iat=now - 7200, nbf=now - 7200, exp=now - 3600),
        "not yet valid": _signed(key, ns, account, nbf=now + 3600, exp=now + 7200),
        "wrong audience": _signed(key, ns, account, aud=["somebody-else"]),
        "wrong issuer": _signed(key, ns, account, iss="https://elsewhere"),
        "tampered": good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
    }
    with bearer(server, good) as c:
        assert c.get("/api").status_code == 200
    for what, token in bad.items():
        with bearer(server, token) as c:
            r = c.get("/api")
            assert r.status_code == 401, what
            assert r.json()["reason"] == "Unauthorized", what
        done = kubectl(server, "get", "--raw", "/api", token=token)
        assert "Unauthorized" in done.stderr, what


def test_token_review(server: ServerHandle, admin: httpx.Client, ns: str) -> None:
    token = create_token(server, ns, "default")
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview"}
    path = "/apis/authentication.k8s.io/v1/tokenreviews"
    r = admin.post(path, json={**review, "spec": {"token": token}})
    assert r.status_code == 201, r.text
    status = r.json()["status"]
    assert status["authenticated"] is True
    assert status["user"]["username"] == f"system:serviceaccount:{ns}:default"
    assert status["user"]["groups"] == [
        "system:serviceaccounts",
        f"system:serviceaccounts:{ns}",
        "system:authenticated",
    ]
    assert status["audiences"] == [ISSUER]
    r = admin.post(path, json={**review, "spec": {"token": token + "x"}})
    assert r.status_code == 201
    assert not r.json()["status"].get("authenticated") and r.json()["status"]["user"] == {}
    # An audience the token was not made for does not authenticate it.
    aud = admin.post(path, json={**review, "spec": {"token": token, "audiences": ["vault"]}})
    assert not aud.json()["status"].get("authenticated")
    vault = create_token(server, ns, "default", "--audience", "vault")
    aud = admin.post(path, json={**review, "spec": {"token": vault, "audiences": ["vault"]}})
    assert aud.json()["status"]["authenticated"] is True
    assert aud.json()["status"]["audiences"] == ["vault"]
    # ... and it is no key to the API itself.
    with bearer(server, vault) as c:
        assert c.get("/api").status_code == 401


def test_auth_whoami_for_certificate_and_token_users(server: ServerHandle, ns: str) -> None:
    done = kubectl(server, "auth", "whoami", "-o", "json")
    assert json.loads(done.stdout)["status"]["userInfo"]["username"] == "admin"
    token = create_token(server, ns, "default")
    done = kubectl(server, "auth", "whoami", "-o", "json", token=token)
    info = json.loads(done.stdout)["status"]["userInfo"]
    assert info["username"] == f"system:serviceaccount:{ns}:default"
    assert "system:serviceaccounts" in info["groups"] and info["uid"]


def test_oidc_discovery(server: ServerHandle, ns: str) -> None:
    token = create_token(server, ns, "default")
    with bearer(server, token) as c:
        config = c.get("/.well-known/openid-configuration")
        assert config.status_code == 200, config.text
        doc = config.json()
        assert doc["issuer"] == ISSUER
        assert doc["jwks_uri"] == f"{server.url}/openid/v1/jwks"
        assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
        assert doc["response_types_supported"] == ["id_token"]
        assert doc["subject_types_supported"] == ["public"]
        jwks = c.get("/openid/v1/jwks")
        assert jwks.headers["content-type"] == "application/jwk-set+json"
        (key,) = jwks.json()["keys"]
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert key["kid"] == header["kid"] and key["kty"] == "RSA" and key["alg"] == "RS256"


def test_legacy_token_secret(server: ServerHandle, admin: httpx.Client, ns: str) -> None:
    secret = {
        "metadata": {
            "name": "bot-token",
            "annotations": {"kubernetes.io/service-account.name": "default"},
        },
        "type": "kubernetes.io/service-account-token",
    }
    assert admin.post(f"/api/v1/namespaces/{ns}/secrets", json=secret).status_code == 201
    path = f"/api/v1/namespaces/{ns}/secrets/bot-token"
    data = wait_for(
        lambda: (d := admin.get(path).json().get("data") or {}).get("token") and d,
        what="the token controller to fill in the secret",
    )
    assert base64.b64decode(data["ca.crt"]).decode() == server.ca.read_text()
    assert base64.b64decode(data["namespace"]).decode() == ns
    token = base64.b64decode(data["token"]).decode()
    c = claims_of(token)
    assert c["iss"] == "kubernetes/serviceaccount" and "exp" not in c
    assert c["kubernetes.io/serviceaccount/secret.name"] == "bot-token"
    account = admin.get(f"/api/v1/namespaces/{ns}/serviceaccounts/default").json()
    annotations = admin.get(path).json()["metadata"]["annotations"]
    assert annotations["kubernetes.io/service-account.uid"] == account["metadata"]["uid"]
    done = kubectl(server, "auth", "whoami", "-o", "json", token=token)
    assert json.loads(done.stdout)["status"]["userInfo"]["username"] == (
        f"system:serviceaccount:{ns}:default"
    )
    # The Secret gone, the token is worth nothing.
    assert admin.delete(path).status_code == 200
    with bearer(server, token) as client:
        assert client.get("/api").status_code == 401


def test_malformed_pods_are_refused_not_crashed(admin: httpx.Client, ns: str) -> None:
    """Admission runs before validation: odd shapes must reach validation's 4xx answers."""
    for spec in (
        {"volumes": 5},
        {"containers": [{"name": "c", "image": "busybox:1.35", "volumeMounts": 7}]},
        {"containers": "nope"},
        {"serviceAccountName": 5},
    ):
        body = pod("odd")
        body["spec"].update(spec)
        r = admin.post(f"/api/v1/namespaces/{ns}/pods", json=body)
        assert 400 <= r.status_code < 500, (spec, r.status_code, r.text)


def test_secret_and_node_bound_tokens(server: ServerHandle, admin: httpx.Client, ns: str) -> None:
    secret = {"metadata": {"name": "anchor"}, "data": {"k": "dg=="}}
    assert admin.post(f"/api/v1/namespaces/{ns}/secrets", json=secret).status_code == 201
    token = create_token(
        server, ns, "default", "--bound-object-kind", "Secret", "--bound-object-name", "anchor"
    )
    assert claims_of(token)["kubernetes.io"]["secret"]["name"] == "anchor"
    node = f"sa-node-{uuid.uuid4().hex[:6]}"
    created = admin.post("/api/v1/nodes", json={"metadata": {"name": node}})
    assert created.status_code == 201, created.text
    node_token = create_token(
        server, ns, "default", "--bound-object-kind", "Node", "--bound-object-name", node
    )
    assert claims_of(node_token)["kubernetes.io"]["node"] == {
        "name": node,
        "uid": created.json()["metadata"]["uid"],
    }
    whoami = kubectl(server, "auth", "whoami", "-o", "json", token=node_token)
    extra = json.loads(whoami.stdout)["status"]["userInfo"]["extra"]
    assert extra["authentication.kubernetes.io/node-name"] == [node]
    with bearer(server, token) as by_secret, bearer(server, node_token) as by_node:
        assert by_secret.get("/api").status_code == 200
        assert by_node.get("/api").status_code == 200
        assert admin.delete(f"/api/v1/namespaces/{ns}/secrets/anchor").status_code == 200
        assert admin.delete(f"/api/v1/nodes/{node}").status_code == 200
        assert by_secret.get("/api").status_code == 401
        assert by_node.get("/api").status_code == 401
    # A binding to something that is not there, or of a kind that cannot be bound.
    missing = kubectl(
        server, "-n", ns, "create", "token", "default", "--bound-object-kind", "Pod",
        "--bound-object-name", "nowhere",
    )  # fmt: skip
    assert 'pods "nowhere" not found' in missing.stderr


def test_legacy_token_secret_goes_with_its_account(admin: httpx.Client, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}"
    assert (
        admin.post(f"{base}/serviceaccounts", json={"metadata": {"name": "temp"}}).status_code
        == 201
    )
    secret = {
        "metadata": {
            "name": "temp-token",
            "annotations": {"kubernetes.io/service-account.name": "temp"},
        },
        "type": "kubernetes.io/service-account-token",
    }
    assert admin.post(f"{base}/secrets", json=secret).status_code == 201
    wait_for(
        lambda: (admin.get(f"{base}/secrets/temp-token").json().get("data") or {}).get("token"),
        what="the token",
    )
    assert admin.delete(f"{base}/serviceaccounts/temp").status_code == 200
    wait_for(
        lambda: admin.get(f"{base}/secrets/temp-token").status_code == 404,
        what="the token Secret deleted with its account",
    )


def test_kubelet_style_token_is_extended_with_warnafter(admin: httpx.Client, ns: str) -> None:
    created = admin.post(f"/api/v1/namespaces/{ns}/pods", json=pod("p")).json()
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": [],
            "expirationSeconds": 3607,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "p"},
        },
    }
    r = admin.post(f"/api/v1/namespaces/{ns}/serviceaccounts/default/token", json=request)
    assert r.status_code == 201, r.text
    answer = r.json()
    assert answer["kind"] == "TokenRequest"
    assert answer["spec"]["expirationSeconds"] == 3607
    assert answer["spec"]["audiences"] == [ISSUER]
    assert answer["spec"]["boundObjectRef"]["uid"] == created["metadata"]["uid"]
    c = claims_of(answer["status"]["token"])
    assert c["exp"] - c["iat"] == 365 * 24 * 3600
    assert c["kubernetes.io"]["warnafter"] == c["iat"] + 3607
    # The answer tells the kubelet the hour it asked for, so it refreshes in time.
    expires = answer["status"]["expirationTimestamp"]
    assert calendar.timegm(time.strptime(expires, "%Y-%m-%dT%H:%M:%SZ")) == c["iat"] + 3607
    # Any other lifetime is taken as asked.
    request["spec"]["expirationSeconds"] = 7200
    r = admin.post(f"/api/v1/namespaces/{ns}/serviceaccounts/default/token", json=request)
    c = claims_of(r.json()["status"]["token"])
    assert c["exp"] - c["iat"] == 7200 and "warnafter" not in c["kubernetes.io"]
    # A wrong uid in the reference is a conflict, as upstream.
    request["spec"]["boundObjectRef"]["uid"] = "not-the-uid"
    r = admin.post(f"/api/v1/namespaces/{ns}/serviceaccounts/default/token", json=request)
    assert r.status_code == 409 and "does not match the UID in record" in r.json()["message"]
