"""CEL x-kubernetes-validations on a CRD, through the real kubectl: a rule on spec, a
messageExpression, a fieldPath and reason, a transition rule with oldSelf, and a rule that
does not compile refused with the CRD."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from tests.conformance.conftest import Kubectl

GROUP = "cel.example.com"
CRD = f"""\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.{GROUP}
spec:
  group: {GROUP}
  scope: Namespaced
  names: {{plural: gadgets, singular: gadget, kind: Gadget}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: self.minReplicas <= self.maxReplicas
              message: minReplicas cannot be larger than maxReplicas
            - rule: "!has(self.mode) || self.mode.lowerAscii() != 'off'"
              messageExpression: "'mode ' + self.mode + ' is not allowed'"
              fieldPath: .mode
              reason: FieldValueForbidden
            properties:
              minReplicas: {{type: integer}}
              maxReplicas: {{type: integer}}
              mode: {{type: string}}
              owner:
                type: string
                x-kubernetes-validations:
                - rule: self == oldSelf
                  message: owner is immutable
"""


@pytest.fixture(scope="module")
def gadgets(kubectl: Kubectl) -> Iterator[str]:
    kubectl("apply", "-f", "-", stdin=CRD)
    kubectl("wait", "--for=condition=Established", f"crd/gadgets.{GROUP}", "--timeout=60s")
    yield "gadgets"
    kubectl("delete", "crd", f"gadgets.{GROUP}", "--wait=false")


def _gadget(name: str, **spec: object) -> str:
    return json.dumps(
        {"apiVersion": f"{GROUP}/v1", "kind": "Gadget", "metadata": {"name": name}, "spec": spec}
    )


@pytest.fixture
def ns(kubectl: Kubectl) -> Iterator[str]:
    name = f"cel-{os.urandom(3).hex()}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


def test_rules_refuse_violating_writes(kubectl: Kubectl, gadgets: str, ns: str) -> None:
    out = kubectl(
        "create",
        "-n",
        ns,
        "-f",
        "-",
        stdin=_gadget("g1", minReplicas=5, maxReplicas=2),
        check=False,
    )
    assert out.returncode == 1
    assert (
        'The Gadget "g1" is invalid: spec: Invalid value: "object": '
        "minReplicas cannot be larger than maxReplicas" in out.stderr
    ), out.stderr
    assert "NotFound" in kubectl("get", "-n", ns, "gadget", "g1", check=False).stderr
    out = kubectl(
        "create",
        "-n",
        ns,
        "-f",
        "-",
        stdin=_gadget("g2", minReplicas=1, maxReplicas=2, mode="OFF"),
        check=False,
    )
    assert out.returncode == 1
    assert 'The Gadget "g2" is invalid: spec.mode: Forbidden: mode OFF is not allowed' in (
        out.stderr
    ), out.stderr
    kubectl("create", "-n", ns, "-f", "-", stdin=_gadget("g3", minReplicas=1, maxReplicas=2))


def test_transition_rule_with_old_self(kubectl: Kubectl, gadgets: str, ns: str) -> None:
    kubectl(
        "create", "-n", ns, "-f", "-", stdin=_gadget("t1", minReplicas=1, maxReplicas=2, owner="a")
    )
    out = kubectl(
        "patch",
        "-n",
        ns,
        "gadget",
        "t1",
        "--type=merge",
        "-p",
        '{"spec":{"owner":"b"}}',
        check=False,
    )
    assert out.returncode == 1
    assert 'spec.owner: Invalid value: "string": owner is immutable' in out.stderr, out.stderr
    kubectl("patch", "-n", ns, "gadget", "t1", "--type=merge", "-p", '{"spec":{"maxReplicas":3}}')
    got = json.loads(kubectl("get", "-n", ns, "gadget", "t1", "-o", "json").stdout)
    assert got["spec"]["owner"] == "a" and got["spec"]["maxReplicas"] == 3


def test_rule_that_does_not_compile_refuses_the_crd(kubectl: Kubectl) -> None:
    bad = (
        CRD.replace(f"gadgets.{GROUP}", f"widgets.{GROUP}")
        .replace(
            "plural: gadgets, singular: gadget, kind: Gadget",
            "plural: widgets, singular: widget, kind: Widget",
        )
        .replace("self.minReplicas <= self.maxReplicas", "self.minReplicas <=")
    )
    out = kubectl("apply", "-f", "-", stdin=bad, check=False)
    assert out.returncode == 1
    assert (
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0]"
        '.rule: Invalid value: "self.minReplicas <=": compilation failed: ERROR: <input>:1:20: '
        "Syntax error" in out.stderr
    ), out.stderr
