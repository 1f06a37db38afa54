"""Admission webhooks against a real HTTPS webhook server on loopback: mutation by JSON
patch, denial with upstream's message (seen through the real kubectl), failurePolicy,
namespaceSelector and a webhook reached through its Service's EndpointSlice."""

from __future__ import annotations

import base64
import json
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from k8slite import pki
from tests.conformance.conftest import Kubectl
from tests.conftest import start_apiserver
from tests.polling import wait_for

ARG = "/apis/admissionregistration.k8s.io/v1"
Reviewer = Callable[[str, dict[str, Any]], dict[str, Any]]


class WebhookServer:
    """An HTTPS server answering AdmissionReviews with `review(path, request)`."""

    def __init__(self, directory: Path, host: str, review: Reviewer) -> None:
        cert, key = pki.self_signed(directory, host)
        chain = cert.read_text()
        # The one-off CA follows the leaf in the chain: it is the caBundle.
        self.ca_bundle = base64.b64encode(
            chain[chain.index("-----END CERTIFICATE-----") + 26 :].encode()
        ).decode()
        self.calls: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                request = body["request"]
                outer.calls.append(request)
                response = {"uid": request["uid"], "allowed": True}
                response.update(review(self.path.split("?")[0], request))
                data = json.dumps(
                    {
                        "apiVersion": "admission.k8s.io/v1",
                        "kind": "AdmissionReview",
                        "response": response,
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _patch(ops: list[dict[str, Any]]) -> dict[str, Any]:
    return {"patchType": "JSONPatch", "patch": base64.b64encode(json.dumps(ops).encode()).decode()}


def _review(path: str, request: dict[str, Any]) -> dict[str, Any]:
    obj = request.get("object") or {}
    name = (obj.get("metadata") or {}).get("name", "")
    if path == "/mutate":
        labels = (obj.get("metadata") or {}).get("labels")
        ops = [] if labels else [{"op": "add", "path": "/metadata/labels", "value": {}}]
        ops.append({"op": "add", "path": "/metadata/labels/mutated", "value": "yes"})
        return _patch(ops)
    if path == "/validate" and name.startswith("bad"):
        return {
            "allowed": False,
            "status": {"code": 403, "message": f"pod {name} is not welcome"},
        }
    if path == "/validate":
        return {"warnings": ["seen by the validating webhook"]}
    if path == "/first":
        # Notes whether the second webhook's label was there when it was called.
        seen = "b" in ((obj.get("metadata") or {}).get("labels") or {})
        return _patch(
            [{"op": "add", "path": "/metadata/annotations", "value": {"a-saw-b": str(seen)}}]
        )
    if path == "/second":
        labels = (obj.get("metadata") or {}).get("labels")
        ops = [] if labels else [{"op": "add", "path": "/metadata/labels", "value": {}}]
        return _patch([*ops, {"op": "add", "path": "/metadata/labels/b", "value": "1"}])
    if path == "/slow":
        # A webhook slower than its 1 s timeoutSeconds: what the timeout test is about (not a
        # wait for something; a busy machine only makes it slower).
        time.sleep(3)
    return {}


@pytest.fixture
def webhook(tmp_path: Path) -> Iterator[WebhookServer]:
    server = WebhookServer(tmp_path, "hooks.example.svc", _review)
    yield server
    server.close()


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]},
    }


def _hook(name: str, client_config: dict[str, Any], namespace: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "clientConfig": client_config,
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
                "operations": ["CREATE", "UPDATE"],
            }
        ],
        "namespaceSelector": {"matchLabels": {"webhook-test": namespace}},
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        **extra,
    }


@pytest.fixture
def configs(api: httpx.Client) -> Iterator[list[str]]:
    """Paths of webhook configurations the test made, deleted after it."""
    made: list[str] = []
    yield made
    for path in made:
        api.delete(path)


def _configure(api: httpx.Client, made: list[str], plural: str, kind: str, hooks: list[Any]) -> str:
    name = f"{plural[:4]}-{os.urandom(3).hex()}"
    r = api.post(
        f"{ARG}/{plural}",
        json={
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": name},
            "webhooks": hooks,
        },
    )
    assert r.status_code == 201, r.text
    made.append(f"{ARG}/{plural}/{name}")
    return name


def _labelled_namespace(api: httpx.Client, namespace: str) -> None:
    r = api.patch(
        f"/api/v1/namespaces/{namespace}",
        json={"metadata": {"labels": {"webhook-test": namespace}}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text


def test_mutating_webhook_labels_pods_in_selected_namespaces(
    api: httpx.Client, namespace: str, webhook: WebhookServer, configs: list[str], kubectl: Kubectl
) -> None:
    _labelled_namespace(api, namespace)
    config = {"url": webhook.url("/mutate"), "caBundle": webhook.ca_bundle}
    name = _configure(
        api,
        configs,
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        [_hook("label.hooks.example.com", config, namespace)],
    )
    r = api.post(f"/api/v1/namespaces/{namespace}/pods", json=_pod("p1"))
    assert r.status_code == 201, r.text
    assert r.json()["metadata"]["labels"] == {"mutated": "yes"}
    stored = api.get(f"/api/v1/namespaces/{namespace}/pods/p1").json()
    assert stored["metadata"]["labels"] == {"mutated": "yes"}
    request = webhook.calls[-1]
    assert request["operation"] == "CREATE"
    assert request["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert request["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert request["namespace"] == namespace and request["name"] == "p1"
    assert request["userInfo"]["username"] == "admin"
    assert request["options"]["kind"] == "CreateOptions"
    # The defaults the webhook configuration got, and kubectl's columns.
    got = kubectl("get", "mutatingwebhookconfiguration", name).stdout.split("\n")
    assert got[0].split() == ["NAME", "WEBHOOKS", "AGE"]
    assert got[1].split()[:2] == [name, "1"]
    hook = api.get(f"{ARG}/mutatingwebhookconfigurations/{name}").json()["webhooks"][0]
    assert hook["failurePolicy"] == "Fail" and hook["timeoutSeconds"] == 10
    assert hook["reinvocationPolicy"] == "Never" and hook["matchPolicy"] == "Equivalent"
    # A namespace the selector does not pick is left alone.
    other = f"{namespace[:50]}-x"
    assert api.post("/api/v1/namespaces", json={"metadata": {"name": other}}).status_code == 201
    r = api.post(f"/api/v1/namespaces/{other}/pods", json=_pod("p2"))
    assert r.status_code == 201, r.text
    assert "labels" not in r.json()["metadata"]
    api.delete(f"/api/v1/namespaces/{other}")


def test_validating_webhook_denies_with_upstreams_message(
    api: httpx.Client,
    namespace: str,
    webhook: WebhookServer,
    configs: list[str],
    kubectl: Kubectl,
    tmp_path: Path,
) -> None:
    _labelled_namespace(api, namespace)
    config = {"url": webhook.url("/validate"), "caBundle": webhook.ca_bundle}
    _configure(
        api,
        configs,
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        [_hook("deny.hooks.example.com", config, namespace)],
    )
    r = api.post(f"/api/v1/namespaces/{namespace}/pods", json=_pod("bad-pod"))
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        'admission webhook "deny.hooks.example.com" denied the request: pod bad-pod is not welcome'
    )
    assert api.get(f"/api/v1/namespaces/{namespace}/pods/bad-pod").status_code == 404
    manifest = tmp_path / "pod.json"
    manifest.write_text(json.dumps(_pod("bad-two")))
    out = kubectl("create", "-n", namespace, "-f", str(manifest), check=False)
    assert out.returncode == 1
    assert (
        'admission webhook "deny.hooks.example.com" denied the request: pod bad-two is not welcome'
        in out.stderr
    )
    # An allowed write carries the webhook's warning; a dry run reaches it as such.
    r = api.post(f"/api/v1/namespaces/{namespace}/pods?dryRun=All", json=_pod("good"))
    assert r.status_code == 201, r.text
    assert r.headers["Warning"] == '299 - "seen by the validating webhook"'
    assert webhook.calls[-1]["dryRun"] is True
    assert api.get(f"/api/v1/namespaces/{namespace}/pods/good").status_code == 404


def test_failure_policy_when_the_webhook_is_down(
    api: httpx.Client, namespace: str, webhook: WebhookServer, configs: list[str]
) -> None:
    _labelled_namespace(api, namespace)
    url = webhook.url("/validate")
    webhook.close()  # nothing listens there any more
    config = {"url": url, "caBundle": webhook.ca_bundle}
    _configure(
        api,
        configs,
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        [_hook("ignore.hooks.example.com", config, namespace, failurePolicy="Ignore")],
    )
    r = api.post(f"/api/v1/namespaces/{namespace}/pods", json=_pod("through"))
    assert r.status_code == 201, r.text
    _configure(
        api,
        configs,
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        [_hook("fail.hooks.example.com", config, namespace, timeoutSeconds=5)],
    )
    r = api.post(f"/api/v1/namespaces/{namespace}/pods", json=_pod("refused"))
    assert r.status_code == 500, r.text
    body = r.json()
    assert body["reason"] == "InternalError"
    assert body["message"] == (
        f'Internal error occurred: failed calling webhook "fail.hooks.example.com": '
        f'failed to call webhook: Post "{url}?timeout=5s": '
        f"dial tcp 127.0.0.1:{webhook.port}: connect: connection refused"
    )
    assert api.get(f"/api/v1/namespaces/{namespace}/pods/refused").status_code == 404


def test_webhook_reached_through_its_service(
    api: httpx.Client, tmp_path: Path, configs: list[str]
) -> None:
    # Short: the serving certificate's CN is hooks.<namespace>.svc (64 bytes at most).
    namespace = f"wh-svc-{os.urandom(3).hex()}"
    r = api.post("/api/v1/namespaces", json={"metadata": {"name": namespace}})
    assert r.status_code == 201, r.text
    _labelled_namespace(api, namespace)
    server = WebhookServer(tmp_path, f"hooks.{namespace}.svc", _review)
    try:
        svc = {
            "metadata": {"name": "hooks"},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": server.port}]},
        }
        assert api.post(f"/api/v1/namespaces/{namespace}/services", json=svc).status_code == 201
        slice_ = {
            "metadata": {"name": "hooks-1", "labels": {"kubernetes.io/service-name": "hooks"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": server.port, "protocol": "TCP"}],
        }
        r = api.post(
            f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices", json=slice_
        )
        assert r.status_code == 201, r.text
        config = {
            "service": {"namespace": namespace, "name": "hooks", "path": "/mutate"},
            "caBundle": server.ca_bundle,
        }
        _configure(
            api,
            configs,
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            [_hook("svc.hooks.example.com", config, namespace)],
        )
        r = api.post(f"/api/v1/namespaces/{namespace}/pods", json=_pod("via-service"))
        assert r.status_code == 201, r.text
        assert r.json()["metadata"]["labels"] == {"mutated": "yes"}
    finally:
        server.close()
        api.delete(f"/api/v1/namespaces/{namespace}")


def test_webhook_configuration_validation(api: httpx.Client) -> None:
    bad = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "invalid-hooks"},
        "webhooks": [
            {"name": "short", "clientConfig": {"url": "http://127.0.0.1/x"}, "timeoutSeconds": 31}
        ],
    }
    r = api.post(f"{ARG}/validatingwebhookconfigurations", json=bad)
    assert r.status_code == 422, r.text
    message = r.json()["message"]
    for part in (
        'webhooks[0].name: Invalid value: "short": should be a domain with at least three '
        "segments separated by dots",
        "webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1",
        "webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun",
        "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 "
        "and 30 seconds",
        'webhooks[0].clientConfig.url: Invalid value: "http://127.0.0.1/x": '
        "'https' is the only allowed URL scheme",
    ):
        assert part in message, message


def test_match_conditions_pick_the_objects_a_webhook_sees(
    api: httpx.Client, namespace: str, webhook: WebhookServer, configs: list[str]
) -> None:
    _labelled_namespace(api, namespace)
    config = {"url": webhook.url("/mutate"), "caBundle": webhook.ca_bundle}
    condition = {"name": "m-only", "expression": "object.metadata.name.startsWith('m-')"}
    _configure(
        api,
        configs,
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        [_hook("cond.hooks.example.com", config, namespace, matchConditions=[condition])],
    )
    r = api.post(f"/api/v1/namespaces/{namespace}/pods", json=_pod("m-one"))
    assert r.status_code == 201, r.text
    assert r.json()["metadata"]["labels"] == {"mutated": "yes"}
    r = api.post(f"/api/v1/namespaces/{namespace}/pods", json=_pod("other"))
    assert r.status_code == 201, r.text
    assert "labels" not in r.json()["metadata"]
    bad = _hook("bad.hooks.example.com", config, namespace)
    bad["matchConditions"] = [{"name": "broken", "expression": "object.metadata.name =="}]
    r = api.post(
        f"{ARG}/mutatingwebhookconfigurations",
        json={"metadata": {"name": "bad-conditions"}, "webhooks": [bad]},
    )
    assert r.status_code == 422, r.text
    assert (
        'webhooks[0].matchConditions[0].expression: Invalid value: "object.metadata.name ==": '
        "compilation failed: ERROR: <input>:1:24: Syntax error" in r.json()["message"]
    )


def test_audit_annotations_of_webhooks_and_policies(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    server = start_apiserver(tmp_path / "data", f"--audit-log-path={log}")
    hooks = WebhookServer(
        tmp_path, "hooks.example.svc", lambda path, request: {"auditAnnotations": {"seen": "yes"}}
    )
    try:
        with server.client() as api:
            config = {"url": hooks.url("/audit"), "caBundle": hooks.ca_bundle}
            hook = _hook("audit.hooks.example.com", config, "default")
            hook["namespaceSelector"] = {}
            _configure(
                api, [], "validatingwebhookconfigurations", "ValidatingWebhookConfiguration", [hook]
            )
            policy = {
                "metadata": {"name": "audited"},
                "spec": {
                    "matchConstraints": {
                        "resourceRules": [
                            {
                                "apiGroups": [""],
                                "apiVersions": ["v1"],
                                "operations": ["CREATE"],
                                "resources": ["pods"],
                            }
                        ]
                    },
                    "validations": [{"expression": "false", "message": "always fails"}],
                    "auditAnnotations": [{"key": "pod", "valueExpression": "object.metadata.name"}],
                },
            }
            assert api.post(f"{ARG}/validatingadmissionpolicies", json=policy).status_code == 201
            binding = {
                "metadata": {"name": "audited-b"},
                "spec": {"policyName": "audited", "validationActions": ["Audit"]},
            }
            r = api.post(f"{ARG}/validatingadmissionpolicybindings", json=binding)
            assert r.status_code == 201, r.text
            r = api.post("/api/v1/namespaces/default/pods", json=_pod("audited-pod"))
            assert r.status_code == 201, r.text

        def audited() -> dict[str, Any] | None:
            # The event is written once the response is complete: it may trail the answer.
            events = [json.loads(line) for line in log.read_text().splitlines()]
            return next(
                (
                    e
                    for e in events
                    if e["verb"] == "create" and e.get("objectRef", {}).get("name") == "audited-pod"
                ),
                None,
            )

        create = wait_for(audited, what="the pod's audit event")
        notes = create["annotations"]
        assert notes["audit.hooks.example.com/seen"] == "yes"
        assert notes["audited/pod"] == "audited-pod"
        assert json.loads(notes["validation.policy.admission.k8s.io/validation_failure"]) == [
            {
                "message": "always fails",
                "policy": "audited",
                "binding": "audited-b",
                "validationActions": ["Audit"],
                "expressionIndex": 0,
            }
        ]
    finally:
        hooks.close()
        server.stop()


def test_a_webhook_past_its_timeout_fails_the_write(
    api: httpx.Client, namespace: str, webhook: WebhookServer, configs: list[str]
) -> None:
    _labelled_namespace(api, namespace)
    config = {"url": webhook.url("/slow"), "caBundle": webhook.ca_bundle}
    _configure(
        api,
        configs,
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        [_hook("slow.hooks.example.com", config, namespace, timeoutSeconds=1)],
    )
    r = api.post(f"/api/v1/namespaces/{namespace}/pods", json=_pod("late"))
    assert r.status_code == 500, r.text
    assert r.json()["message"] == (
        'Internal error occurred: failed calling webhook "slow.hooks.example.com": '
        f'failed to call webhook: Post "{webhook.url("/slow")}?timeout=1s": '
        "context deadline exceeded"
    )
    assert api.get(f"/api/v1/namespaces/{namespace}/pods/late").status_code == 404


def test_reinvocation_if_needed(
    api: httpx.Client, namespace: str, webhook: WebhookServer, configs: list[str]
) -> None:
    _labelled_namespace(api, namespace)
    first = {"url": webhook.url("/first"), "caBundle": webhook.ca_bundle}
    second = {"url": webhook.url("/second"), "caBundle": webhook.ca_bundle}
    # Configurations run in name order: the first webhook's comes first.
    for name, config, policy in (("a", first, "IfNeeded"), ("b", second, "Never")):
        hook = _hook(f"{name}.hooks.example.com", config, namespace, reinvocationPolicy=policy)
        r = api.post(
            f"{ARG}/mutatingwebhookconfigurations",
            json={"metadata": {"name": f"0-{name}-{namespace}"}, "webhooks": [hook]},
        )
        assert r.status_code == 201, r.text
        configs.append(f"{ARG}/mutatingwebhookconfigurations/0-{name}-{namespace}")
    r = api.post(f"/api/v1/namespaces/{namespace}/pods", json=_pod("again"))
    assert r.status_code == 201, r.text
    m = r.json()["metadata"]
    assert m["labels"] == {"b": "1"}
    assert m["annotations"] == {"a-saw-b": "True"}
    paths = [c["object"]["metadata"]["name"] for c in webhook.calls]
    assert paths == ["again", "again", "again"]
