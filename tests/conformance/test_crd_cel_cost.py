"""CEL cost limits through the real kubectl, as upstream: a CRD whose rule is estimated above
the per-expression limit (the sizes its schema allows, times how often the rule can run in
one object) is refused, and accepted once maxItems/maxLength bound it; a schema whose rules
together exceed the per-CRD limit is refused naming the dearest; a rule within the static
limit whose evaluation on a request's values exceeds the per-call limit refuses that
write. Nothing is stored when refused."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conformance.conftest import Kubectl

GROUP = "cost.example.com"
ROOT = "spec.versions[0].schema.openAPIV3Schema"
HINT = (
    "(try simplifying the rule, or adding maxItems, maxProperties, and maxLength where "
    "arrays, maps, and strings are declared)"
)


def _crd(plural: str, spec: dict[str, Any]) -> str:
    kind = plural[:-1].capitalize()
    return json.dumps(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{GROUP}"},
            "spec": {
                "group": GROUP,
                "scope": "Namespaced",
                "names": {"plural": plural, "singular": plural[:-1], "kind": kind},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {"type": "object", "properties": {"spec": spec}}
                        },
                    }
                ],
            },
        }
    )


def _absent(kubectl: Kubectl, plural: str) -> bool:
    got = kubectl("get", "crd", f"{plural}.{GROUP}", check=False)
    return got.returncode == 1 and "NotFound" in got.stderr


@pytest.fixture
def cleanup(kubectl: Kubectl) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for plural in made:
        kubectl("delete", "crd", f"{plural}.{GROUP}", "--wait=false", check=False)


def _nested(bounded: bool) -> dict[str, Any]:
    inner: dict[str, Any] = {"type": "string"}
    lists: dict[str, Any] = {"type": "array", "items": inner}
    outer: dict[str, Any] = {"type": "array", "items": lists}
    if bounded:
        inner["maxLength"] = 64
        lists["maxItems"] = 10
        outer["maxItems"] = 10
    return {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.groups.all(g, g.all(n, n.startsWith('team-')))"}
        ],
        "properties": {"groups": outer},
    }


def test_unbounded_rule_refused_until_bounded(kubectl: Kubectl, cleanup: list[str]) -> None:
    out = kubectl("apply", "-f", "-", stdin=_crd("teams", _nested(False)), check=False)
    assert out.returncode == 1
    assert (
        f"{ROOT}.properties[spec].x-kubernetes-validations[0].rule: Forbidden: estimated rule "
        f"cost exceeds budget by factor of more than 100x {HINT}"
    ) in out.stderr, out.stderr
    assert _absent(kubectl, "teams")
    cleanup.append("teams")
    kubectl("apply", "-f", "-", stdin=_crd("teams", _nested(True)))
    kubectl("wait", "--for=condition=Established", f"crd/teams.{GROUP}", "--timeout=60s")


def test_rule_on_list_items_counts_every_item(kubectl: Kubectl, cleanup: list[str]) -> None:
    item = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 64}},
        "x-kubernetes-validations": [{"rule": "self.name.contains('x')"}],
    }
    spec = {"type": "object", "properties": {"items": {"type": "array", "items": item}}}
    out = kubectl("apply", "-f", "-", stdin=_crd("parts", spec), check=False)
    # Cheap on one item, but the list can hold a million of them (3 MiB of "{}").
    assert out.returncode == 1
    assert (
        f"{ROOT}.properties[spec].properties[items].items.x-kubernetes-validations[0].rule: "
        "Forbidden: estimated rule cost exceeds budget by factor of "
    ) in out.stderr, out.stderr
    assert _absent(kubectl, "parts")
    spec["properties"]["items"]["maxItems"] = 100  # type: ignore[index]
    cleanup.append("parts")
    kubectl("apply", "-f", "-", stdin=_crd("parts", spec))


def test_total_of_a_schema_over_the_crd_limit(kubectl: Kubectl) -> None:
    # Each rule is within the per-expression limit, eleven of them are not within the total.
    # 7,700 characters: up to 30,800 bytes, so 3,080 squared (about 9.5 million) a rule.
    text = {"type": "string", "maxLength": 7700}
    spec = {
        "type": "object",
        "properties": {"s": text, "t": text},
        "x-kubernetes-validations": [
            {"rule": "self.s.contains(self.t)", "message": f"rule {i}"} for i in range(11)
        ],
    }
    out = kubectl("apply", "-f", "-", stdin=_crd("texts", spec), check=False)
    assert out.returncode == 1
    assert "estimated rule cost exceeds budget" not in out.stderr, out.stderr
    contributed = (
        "Forbidden: contributed to estimated rule & messageExpression cost total exceeding "
        "cost limit for entire OpenAPIv3 schema"
    )
    assert out.stderr.count(contributed) == 4, out.stderr
    assert (
        f"{ROOT}: Forbidden: x-kubernetes-validations estimated rule & messageExpression cost "
        "total for entire OpenAPIv3 schema exceeds budget by factor of 1.0"
    ) in out.stderr, out.stderr
    assert _absent(kubectl, "texts")


def test_call_over_the_runtime_limit_refuses_the_write(
    kubectl: Kubectl, cleanup: list[str]
) -> None:
    # Within the static limit for 600 items, over the per-call limit when they are there.
    spec = {
        "type": "object",
        "properties": {
            "names": {
                "type": "array",
                "maxItems": 600,
                "items": {"type": "string", "maxLength": 10},
            }
        },
        "x-kubernetes-validations": [
            {
                "rule": "self.names.all(a, self.names.all(b, a == b || a != b))",
                "message": "names compared",
            }
        ],
    }
    cleanup.append("rosters")
    kubectl("apply", "-f", "-", stdin=_crd("rosters", spec))
    kubectl("wait", "--for=condition=Established", f"crd/rosters.{GROUP}", "--timeout=60s")
    ns = f"cost-{os.urandom(3).hex()}"
    kubectl("create", "namespace", ns)
    try:

        def roster(name: str, n: int) -> str:
            body = {
                "apiVersion": f"{GROUP}/v1",
                "kind": "Roster",
                "metadata": {"name": name},
                "spec": {"names": [f"n{i}" for i in range(n)]},
            }
            return json.dumps(body)

        kubectl("create", "-n", ns, "-f", "-", stdin=roster("small", 50))
        out = kubectl("create", "-n", ns, "-f", "-", stdin=roster("big", 600), check=False)
        assert out.returncode == 1
        assert (
            'The Roster "big" is invalid: spec: Invalid value: "object": \'operation cancelled: '
            "actual cost limit exceeded': no further validation rules will be run due to call "
            "cost exceeds limit for rule: names compared"
        ) in out.stderr, out.stderr
        assert "NotFound" in kubectl("get", "-n", ns, "roster", "big", check=False).stderr
    finally:
        kubectl("delete", "namespace", ns, "--wait=false", check=False)
