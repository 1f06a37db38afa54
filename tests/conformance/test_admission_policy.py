"""ValidatingAdmissionPolicy with a ConfigMap parameter: Deny refuses replicas above the
parameter (seen through the real kubectl), Warn lets the write through with a warning, a
missing parameter is denied as parameterNotFoundAction says."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conformance.conftest import Kubectl

ARG = "/apis/admissionregistration.k8s.io/v1"


def _deployment(name: str, replicas: int) -> dict[str, Any]:
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
                "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]},
            },
        },
    }


@pytest.fixture
def policy(api: httpx.Client) -> Iterator[str]:
    name = f"max-replicas-{os.urandom(3).hex()}"
    body = {
        "metadata": {"name": name},
        "spec": {
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["deployments"],
                    }
                ]
            },
            "variables": [{"name": "limit", "expression": "int(params.data.maxReplicas)"}],
            "validations": [
                {
                    "expression": "object.spec.replicas <= variables.limit",
                    "messageExpression": "'replicas ' + string(object.spec.replicas) + "
                    "' exceed the limit of ' + string(variables.limit)",
                    "reason": "Forbidden",
                }
            ],
        },
    }
    r = api.post(f"{ARG}/validatingadmissionpolicies", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["failurePolicy"] == "Fail"
    yield name
    api.delete(f"{ARG}/validatingadmissionpolicies/{name}")


def _bind(api: httpx.Client, policy: str, namespace: str, actions: list[str]) -> str:
    name = f"{policy}-{actions[0].lower()}"
    body = {
        "metadata": {"name": name},
        "spec": {
            "policyName": policy,
            "validationActions": actions,
            "paramRef": {
                "name": "limits",
                "namespace": namespace,
                "parameterNotFoundAction": "Deny",
            },
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            },
        },
    }
    r = api.post(f"{ARG}/validatingadmissionpolicybindings", json=body)
    assert r.status_code == 201, r.text
    return name


def test_policy_denies_replicas_above_the_parameter(
    api: httpx.Client, namespace: str, policy: str, kubectl: Kubectl
) -> None:
    binding = _bind(api, policy, namespace, ["Deny"])
    try:
        who = f"ValidatingAdmissionPolicy '{policy}' with binding '{binding}'"
        # No parameter yet: parameterNotFoundAction Deny.
        r = api.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", json=_deployment("d0", 1))
        assert r.status_code == 422, r.text
        assert r.json()["message"] == (
            f"{who} denied request: no params found for policy binding with `Deny` "
            "parameterNotFoundAction"
        )
        cm = {"metadata": {"name": "limits"}, "data": {"maxReplicas": "3"}}
        assert api.post(f"/api/v1/namespaces/{namespace}/configmaps", json=cm).status_code == 201
        out = kubectl(
            "create",
            "-n",
            namespace,
            "-f",
            "-",
            stdin=json.dumps(_deployment("big", 5)),
            check=False,
        )
        assert out.returncode == 1
        assert out.stderr == (
            'Error from server (Forbidden): error when creating "STDIN": '
            f"{who} denied request: replicas 5 exceed the limit of 3\n"
        ), out.stderr
        assert api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/big").status_code == 404
        kubectl("create", "-n", namespace, "-f", "-", stdin=json.dumps(_deployment("ok", 3)))
        out = kubectl(
            "patch",
            "-n",
            namespace,
            "deployment/ok",
            "--type=merge",
            "-p",
            '{"spec":{"replicas":4}}',
            check=False,
        )
        assert out.returncode == 1 and "replicas 4 exceed the limit of 3" in out.stderr
        rows = kubectl("get", "validatingadmissionpolicy", policy).stdout.split("\n")
        assert rows[0].split() == ["NAME", "VALIDATIONS", "PARAMKIND", "AGE"]
        assert rows[1].split()[:3] == [policy, "1", "v1/ConfigMap"]
        rows = kubectl("get", "validatingadmissionpolicybinding", binding).stdout.split("\n")
        assert rows[0].split() == ["NAME", "POLICYNAME", "PARAMREF", "AGE"]
        assert rows[1].split()[:3] == [binding, policy, f"{namespace}/limits"]
    finally:
        api.delete(f"{ARG}/validatingadmissionpolicybindings/{binding}")


def test_warn_action_lets_the_write_through(api: httpx.Client, namespace: str, policy: str) -> None:
    binding = _bind(api, policy, namespace, ["Warn", "Audit"])
    try:
        cm = {"metadata": {"name": "limits"}, "data": {"maxReplicas": "2"}}
        assert api.post(f"/api/v1/namespaces/{namespace}/configmaps", json=cm).status_code == 201
        r = api.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", json=_deployment("w", 4))
        assert r.status_code == 201, r.text
        assert r.headers["Warning"] == (
            f"299 - \"Validation failed for ValidatingAdmissionPolicy '{policy}' with binding "
            f"'{binding}': replicas 4 exceed the limit of 2\""
        )
    finally:
        api.delete(f"{ARG}/validatingadmissionpolicybindings/{binding}")


def test_policy_and_binding_validation(api: httpx.Client) -> None:
    r = api.post(
        f"{ARG}/validatingadmissionpolicybindings",
        json={"metadata": {"name": "bad-binding"}, "spec": {"policyName": "x"}},
    )
    assert r.status_code == 422, r.text
    assert (
        "spec.validationActions: Required value: at least one validation action is required"
        in r.json()["message"]
    )
    r = api.post(
        f"{ARG}/validatingadmissionpolicies",
        json={"metadata": {"name": "bad-policy"}, "spec": {"validations": [{"expression": "1 +"}]}},
    )
    assert r.status_code == 422, r.text
    message = r.json()["message"]
    assert "spec.matchConstraints: Required value" in message
    assert 'spec.validations[0].expression: Invalid value: "1 +": compilation failed' in message


def test_expression_over_the_call_cost_limit_is_an_error(
    api: httpx.Client, namespace: str, kubectl: Kubectl
) -> None:
    # Quadratic in the ConfigMap's keys: cheap on a few, over upstream's per-call limit of
    # 1,000,000 on 1,500 (the failure policy, Fail, then refuses the write).
    name = f"pairs-{os.urandom(3).hex()}"
    expression = "object.data.all(k, object.data.all(j, k == j || k != j))"
    policy = {
        "metadata": {"name": name},
        "spec": {
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["configmaps"],
                    }
                ]
            },
            "validations": [{"expression": expression}],
        },
    }
    binding = {
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            },
        },
    }
    assert api.post(f"{ARG}/validatingadmissionpolicies", json=policy).status_code == 201
    assert api.post(f"{ARG}/validatingadmissionpolicybindings", json=binding).status_code == 201
    try:
        small = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "small"}}
        small["data"] = {f"k{i}": "v" for i in range(3)}
        kubectl("create", "-n", namespace, "-f", "-", stdin=json.dumps(small))
        big = {**small, "metadata": {"name": "big"}, "data": {f"k{i}": "v" for i in range(1500)}}
        out = kubectl("create", "-n", namespace, "-f", "-", stdin=json.dumps(big), check=False)
        assert out.returncode == 1
        assert (
            f"ValidatingAdmissionPolicy '{name}' with binding '{name}' denied request: "
            f"expression '{expression}' resulted in error: operation cancelled: actual cost "
            "limit exceeded"
        ) in out.stderr, out.stderr
        assert api.get(f"/api/v1/namespaces/{namespace}/configmaps/big").status_code == 404
    finally:
        api.delete(f"{ARG}/validatingadmissionpolicybindings/{name}")
        api.delete(f"{ARG}/validatingadmissionpolicies/{name}")
