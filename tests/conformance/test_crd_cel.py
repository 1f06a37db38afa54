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


LIBRARIES = {
    "memory": (
        "isQuantity(self.memory) && quantity(self.memory).compareTo(quantity('64Gi')) <= 0",
        "memory must be a quantity of at most 64Gi",
    ),
    "endpoint": (
        "isURL(self.endpoint) && url(self.endpoint).getScheme() == 'https'",
        "endpoint must be an https URL",
    ),
    "subnet": (
        "isCIDR(self.subnet) && cidr('10.0.0.0/8').containsCIDR(self.subnet)",
        "subnet must be within 10.0.0.0/8",
    ),
    "gateway": ("ip(self.gateway).family() == 4", "gateway must be IPv4"),
    "versions": ("self.versions.isSorted()", "versions must be sorted"),
    "name": ("self.name.find('[0-9]+') != ''", "name needs a digit"),
}


def test_kubernetes_cel_libraries(kubectl: Kubectl, ns: str) -> None:
    text = {"type": "string", "maxLength": 64}
    spec = {
        "type": "object",
        "properties": {
            "memory": text,
            "endpoint": text,
            "subnet": text,
            "gateway": text,
            "name": text,
            "versions": {"type": "array", "maxItems": 10, "items": {"type": "integer"}},
        },
        "x-kubernetes-validations": [
            {"rule": f"!has(self.{field}) || ({rule})", "message": message}
            for field, (rule, message) in LIBRARIES.items()
        ],
    }
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"nets.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "nets", "singular": "net", "kind": "Net"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec}}},
                }
            ],
        },
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(crd))
    try:
        kubectl("wait", "--for=condition=Established", f"crd/nets.{GROUP}", "--timeout=60s")

        def net(object_name: str, fields: dict[str, object]) -> str:
            meta = {"name": object_name}
            return json.dumps(
                {"apiVersion": f"{GROUP}/v1", "kind": "Net", "metadata": meta, "spec": fields}
            )

        good = {
            "memory": "512Mi",
            "endpoint": "https://example.com:8443/hook?x=1",
            "subnet": "10.1.0.0/16",
            "gateway": "10.1.0.1",
            "versions": [1, 2, 5],
            "name": "net1",
        }
        kubectl("create", "-n", ns, "-f", "-", stdin=net("good", good))
        bad = {
            "memory": "128Gi",
            "endpoint": "http://example.com/",
            "subnet": "192.168.0.0/16",
            "gateway": "fd00::1",
            "versions": [3, 1],
            "name": "net",
        }
        for field, value in bad.items():
            out = kubectl(
                "create", "-n", ns, "-f", "-", stdin=net("bad", {field: value}), check=False
            )
            assert out.returncode == 1
            message = LIBRARIES[field][1]
            assert f'The Net "bad" is invalid: spec: Invalid value: "object": {message}' in (
                out.stderr
            ), out.stderr
        # A library function's own error is the rule's error, in upstream's words.
        out = kubectl(
            "create", "-n", ns, "-f", "-", stdin=net("bad", {"gateway": "10.0.0.300"}), check=False
        )
        assert out.returncode == 1
        assert "IP Address '10.0.0.300' parse error during conversion from string" in (
            out.stderr
        ), out.stderr
        assert "NotFound" in kubectl("get", "-n", ns, "net", "bad", check=False).stderr
    finally:
        kubectl("delete", "crd", f"nets.{GROUP}", "--wait=false", check=False)
