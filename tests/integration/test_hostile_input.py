"""Hostile numbers and strings over real HTTPS: a 4xx Status in upstream's words, nothing stored."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
from typing import Any

import httpx

from tests.conftest import ServerHandle, kubectl_path

CONFIGMAPS = "/api/v1/namespaces/{ns}/configmaps"


def _status(r: httpx.Response, code: int, reason: str | None = None) -> dict[str, Any]:
    """A whole Status answer (not a stream cut short), with the code asked for."""
    assert r.status_code == code, r.text[:2000]
    assert r.headers["content-type"].startswith("application/json")
    status: dict[str, Any] = r.json()
    assert (status["kind"], status["status"], status["code"]) == ("Status", "Failure", code)
    if reason is not None:
        assert status["reason"] == reason
    return status


def _token(**fields: Any) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", **fields}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _revision(api: httpx.Client, ns: str) -> int:
    return int(api.get(CONFIGMAPS.format(ns=ns)).json()["metadata"]["resourceVersion"])


def test_oversized_query_integers_answer_400(
    apiserver: ServerHandle, api: httpx.Client, namespace: str
) -> None:
    url = CONFIGMAPS.format(ns=namespace)
    assert api.post(url, json={"metadata": {"name": "x"}}).status_code == 201
    big, huge = str(2**70), str(2**64)
    cases: list[tuple[dict[str, str], str]] = [
        ({"limit": big}, f'strconv.ParseInt: parsing "{big}": value out of range'),
        ({"limit": "1_0"}, 'strconv.ParseInt: parsing "1_0": invalid syntax'),
        (
            {"resourceVersion": big, "resourceVersionMatch": "Exact"},
            f'resourceVersion: Invalid value: "{big}": strconv.ParseUint: parsing "{big}": '
            "value out of range",
        ),
        (
            {"watch": "1", "resourceVersion": huge},
            f'resourceVersion: Invalid value: "{huge}": strconv.ParseUint: parsing "{huge}": '
            "value out of range",
        ),
        (
            {"watch": "1", "timeoutSeconds": huge},
            f'strconv.ParseInt: parsing "{huge}": value out of range',
        ),
    ]
    bad_rv = (
        "continue key is not valid: incorrect encoded start resourceVersion "
        "(version meta.k8s.io/v1)"
    )
    tokens: list[tuple[str, str]] = [
        (
            base64.urlsafe_b64encode(b'{"v":"meta.k8s.io/v1","rv":1e400,"start":"x"}').decode(),
            f"{bad_rv}: json: cannot unmarshal number 1e400 into Go struct field "
            "continueToken.rv of type int64",
        ),
        (
            _token(rv=2**70, start="x"),
            f"{bad_rv}: json: cannot unmarshal number {2**70} into Go struct field "
            "continueToken.rv of type int64",
        ),
        (
            _token(rv=1, start=None),
            "continue key is not valid: encoded start key empty (version meta.k8s.io/v1)",
        ),
        (
            _token(rv=1, start=["x"]),
            f"{bad_rv}: json: cannot unmarshal array into Go struct field "
            "continueToken.start of type string",
        ),
    ]
    cases += [({"limit": "1", "continue": t}, message) for t, message in tokens]
    for params, message in cases:
        assert _status(api.get(url, params=params), 400, "BadRequest")["message"] == message
    r = api.delete(f"{url}/x", params={"gracePeriodSeconds": big})
    assert _status(r, 400)["message"] == f'strconv.ParseInt: parsing "{big}": value out of range'
    assert api.get(f"{url}/x").status_code == 200
    # The largest values that parse are answered too: nothing overflows past the parser.
    assert api.get(url, params={"limit": str(2**63 - 1)}).status_code == 200
    log = (apiserver.data_dir / "apiserver.log").read_text()
    assert "OverflowError" not in log


def test_future_resource_version_answers_504(api: httpx.Client, namespace: str) -> None:
    url = CONFIGMAPS.format(ns=namespace)
    future = _revision(api, namespace) + 10**9
    queries = [
        {"watch": "1", "resourceVersion": str(future)},
        {"resourceVersion": str(future)},
        {"resourceVersion": str(future), "resourceVersionMatch": "Exact"},
        {"limit": "1", "continue": _token(rv=future, start="x")},
        {"watch": "1", "resourceVersion": str(2**64 - 1)},
    ]
    for params in queries:
        status = _status(api.get(url, params=params, timeout=30), 504, "Timeout")
        assert status["message"].startswith(
            f"Too large resource version: {params.get('resourceVersion', future)}, current: "
        )
        assert status["details"] == {
            "causes": [
                {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
            ],
            "retryAfterSeconds": 1,
        }


def _deployment(name: str, replicas: Any = 1) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }


def test_out_of_range_integers_are_refused(
    apiserver: ServerHandle, api: httpx.Client, namespace: str
) -> None:
    pods = f"/api/v1/namespaces/{namespace}/pods"
    deployments = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    grace = 2**200
    pod = {
        "metadata": {"name": "p"},
        "spec": {
            "terminationGracePeriodSeconds": grace,
            "containers": [{"name": "c", "image": "busybox"}],
        },
    }
    r = api.post(pods, json=pod)
    assert _status(r, 400, "BadRequest")["message"] == (
        'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal number '
        f"{grace} into Go struct field PodSpec.spec.terminationGracePeriodSeconds of type int64"
    )
    pod["spec"]["terminationGracePeriodSeconds"] = 30
    pod["spec"]["securityContext"] = {"supplementalGroups": [1, -(2**63) - 1]}
    r = api.post(pods, json=pod)
    assert _status(r, 400)["message"].endswith(
        f"cannot unmarshal number {-(2**63) - 1} into Go struct field "
        "PodSecurityContext.spec.securityContext.supplementalGroups of type int64"
    )
    big = 2**40
    r = api.post(deployments, json=_deployment("d", big))
    assert _status(r, 400)["message"] == (
        'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal '
        f"number {big} into Go struct field DeploymentSpec.spec.replicas of type int32"
    )
    assert api.get(f"{deployments}/d").status_code == 404
    assert api.post(deployments, json=_deployment("d")).status_code == 201
    before = api.get(f"{deployments}/d").json()
    refused = f"json: cannot unmarshal number {big} into Go struct field"
    patches = [
        ("application/merge-patch+json", {"spec": {"replicas": big}}),
        ("application/strategic-merge-patch+json", {"spec": {"replicas": big}}),
        (
            "application/json-patch+json",
            [{"op": "replace", "path": "/spec/replicas", "value": big}],
        ),
        ("application/apply-patch+yaml", _deployment("d", big)),
    ]
    for ctype, patch in patches:
        r = api.patch(
            f"{deployments}/d",
            content=json.dumps(patch),
            headers={"content-type": ctype},
            params={"fieldManager": "t", "force": "true"} if "apply" in ctype else {},
        )
        cause = _status(r, 422, "Invalid")["details"]["causes"][0]
        assert cause["field"] == "patch"
        assert refused in cause["message"], cause
    r = api.put(f"{deployments}/d", json=_deployment("d", big) | {"metadata": before["metadata"]})
    assert refused in _status(r, 400)["message"]
    scale = api.get(f"{deployments}/d/scale").json()
    scale["spec"]["replicas"] = big
    r = api.put(f"{deployments}/d/scale", json=scale)
    assert _status(r, 400)["message"] == (
        'Scale in version "v1" cannot be handled as a Scale: json: cannot unmarshal number '
        f"{big} into Go struct field ScaleSpec.spec.replicas of type int32"
    )
    r = api.request("DELETE", f"{deployments}/d", json={"gracePeriodSeconds": 2**64})
    assert _status(r, 400)["message"] == (
        'DeleteOptions in version "v1" cannot be handled as a DeleteOptions: json: cannot '
        f"unmarshal number {2**64} into Go struct field DeleteOptions.gracePeriodSeconds of "
        "type int64"
    )
    assert api.get(f"{deployments}/d").json() == before
    # The largest value an int32 holds is stored, and the real kubectl decodes the list.
    r = api.patch(
        f"{deployments}/d",
        json={"spec": {"replicas": 2**31 - 1}},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    out = subprocess.run(
        [
            str(kubectl_path()),
            "--kubeconfig",
            str(apiserver.kubeconfig),
            "get",
            "deployments,pods",
            "-n",
            namespace,
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert [i["spec"]["replicas"] for i in json.loads(out.stdout)["items"]] == [2**31 - 1]


def test_configmap_and_secret_data_is_limited_to_1mib(api: httpx.Client, namespace: str) -> None:
    configmaps = CONFIGMAPS.format(ns=namespace)
    secrets = f"/api/v1/namespaces/{namespace}/secrets"
    limit = 1 << 20
    too_long = f"Too long: may not be more than {limit} bytes"
    big = {"metadata": {"name": "big"}, "data": {"a": "x" * (limit - 10), "b": "y" * 11}}
    r = api.post(configmaps, json=big)
    assert _status(r, 422, "Invalid")["message"] == f'ConfigMap "big" is invalid: []: {too_long}'
    binary = base64.b64encode(b"\0" * 11).decode()
    both = {
        "metadata": {"name": "big"},
        "data": {"a": "x" * (limit - 10)},
        "binaryData": {"b": binary},
    }
    assert _status(api.post(configmaps, json=both), 422)["details"]["causes"] == [
        {"reason": "FieldValueTooLong", "message": too_long, "field": "[]"}
    ]
    assert api.get(f"{configmaps}/big").status_code == 404
    big["data"]["b"] = "y" * 10  # exactly 1 MiB of values
    assert api.post(configmaps, json=big).status_code == 201
    r = api.patch(
        f"{configmaps}/big",
        json={"data": {"c": "z"}},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert _status(r, 422)["message"] == f'ConfigMap "big" is invalid: []: {too_long}'
    assert "c" not in api.get(f"{configmaps}/big").json()["data"]
    payload = base64.b64encode(b"s" * (limit + 1)).decode()
    r = api.post(secrets, json={"metadata": {"name": "big"}, "data": {"k": payload}})
    assert _status(r, 422)["message"] == f'Secret "big" is invalid: data: {too_long}'
    r = api.post(
        secrets, json={"metadata": {"name": "big"}, "stringData": {"k": "s" * (limit + 1)}}
    )
    assert _status(r, 422)["message"] == f'Secret "big" is invalid: data: {too_long}'
    assert api.get(f"{secrets}/big").status_code == 404
    exact = base64.b64encode(b"s" * limit).decode()
    assert (
        api.post(secrets, json={"metadata": {"name": "big"}, "data": {"k": exact}}).status_code
        == 201
    )


def test_chunk_size_of_2_80_is_refused_at_once(
    apiserver: ServerHandle, api: httpx.Client, namespace: str
) -> None:
    """A chunk of 2**80 bytes is refused on its header, not waited for.

    hypercorn's HTTP/1.1 parser (h11) takes at most 20 hex digits of chunk size; this pins it.
    """
    host, port = apiserver.url.removeprefix("https://").rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(apiserver.ca))
    ctx.load_cert_chain(*apiserver.cert("admin"))
    url = CONFIGMAPS.format(ns=namespace)
    head = (
        f"POST {url} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    with (
        socket.create_connection((host, int(port)), timeout=20) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        # The body never comes: only an answer to the header can end this read.
        tls.sendall(head.encode() + format(2**80, "x").encode() + b'\r\n{"metadata":')
        answer = tls.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"connection: close" in answer.lower()
    assert api.get(url).json()["items"] == []


def test_lone_surrogate_escape_is_stored_as_replacement_character(
    api: httpx.Client, namespace: str
) -> None:
    url = CONFIGMAPS.format(ns=namespace)
    body = b'{"metadata":{"name":"s","annotations":{"a":"x\\udc00"}},"data":{"k":"\\ud800\\u0041"}}'
    r = api.post(url, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 201, r.text
    stored = api.get(f"{url}/s").json()
    assert stored["data"] == {"k": "\ufffdA"}
    assert stored["metadata"]["annotations"] == {"a": "x\ufffd"}
    # What is stored is plain UTF-8: the raw answer carries the character, not an escape.
    assert "\ufffdA".encode() in api.get(f"{url}/s").content
