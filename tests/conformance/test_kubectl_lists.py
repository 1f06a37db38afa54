"""`kind: List` files with the real kubectl: create, apply, the `get -o yaml` round trip, and
validation of their items.

kubectl never asks the server whether it validates fields for a List (v1/List has no
endpoint): it validates the items itself against the OpenAPI v2 models, fetched from
/openapi/v2 as gnostic protobuf, and sends each item with fieldValidation. This module
has its own API server (module_apiserver): it adds a CRD, which changes discovery.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conformance.conftest import Kubectl

STRICT_HINT = "if you choose to ignore these errors, turn validation off with --validate=false"


def a_list(*items: dict[str, Any]) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": list(items)})


def configmap(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"set": "lists"}},
        "data": {"a": "1"},
        **extra,
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"set": "lists"}},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def get(k: Kubectl, ns: str, what: str) -> dict[str, Any]:
    return json.loads(k("get", what, "-n", ns, "-o", "json").stdout)  # type: ignore[no-any-return]


@pytest.fixture
def lns(k: Kubectl, request: pytest.FixtureRequest) -> str:
    name = "l-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    name = f"{name}-{os.urandom(2).hex()}"
    k("create", "namespace", name)
    return name


def test_create_and_apply_a_list(k: Kubectl, lns: str, tmp_path: Path) -> None:
    created = tmp_path / "created.yaml"
    created.write_text(a_list(configmap("cm1"), service("svc1")))
    out = k("create", "-n", lns, "-f", str(created)).stdout
    assert out.splitlines() == ["configmap/cm1 created", "service/svc1 created"]
    assert get(k, lns, "configmap/cm1")["data"] == {"a": "1"}
    assert get(k, lns, "service/svc1")["spec"]["ports"][0]["targetPort"] == 8080

    applied = tmp_path / "applied.yaml"
    applied.write_text(a_list(configmap("cm2"), service("svc2")))
    out = k("apply", "-n", lns, "-f", str(applied)).stdout
    assert out.splitlines() == ["configmap/cm2 created", "service/svc2 created"]
    changed = service("svc2")
    changed["spec"]["ports"][0]["port"] = 81
    applied.write_text(a_list(configmap("cm2", data={"a": "2"}), changed))
    out = k("apply", "-n", lns, "-f", str(applied)).stdout
    assert out.splitlines() == ["configmap/cm2 configured", "service/svc2 configured"]
    assert get(k, lns, "configmap/cm2")["data"] == {"a": "2"}
    assert get(k, lns, "service/svc2")["spec"]["ports"][0]["port"] == 81


def test_get_yaml_delete_create_round_trip(k: Kubectl, lns: str, tmp_path: Path) -> None:
    source = tmp_path / "source.yaml"
    source.write_text(a_list(configmap("rt-cm"), service("rt-svc")))
    k("create", "-n", lns, "-f", str(source))
    before = {
        "cm": get(k, lns, "configmap/rt-cm"),
        "svc": get(k, lns, "service/rt-svc"),
    }

    dumped = tmp_path / "dumped.yaml"
    dumped.write_text(k("get", "cm,svc", "-n", lns, "-l", "set=lists", "-o", "yaml").stdout)
    listed = yaml.safe_load(dumped.read_text())
    assert (listed["apiVersion"], listed["kind"]) == ("v1", "List")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["rt-cm", "rt-svc"]
    assert all(i["metadata"].get("resourceVersion") for i in listed["items"])

    k("delete", "-n", lns, "-f", str(dumped), "--wait=true")
    assert k("get", "cm,svc", "-n", lns, "-l", "set=lists", "-o", "name").stdout == ""
    out = k("create", "-f", str(dumped)).stdout  # its items name their namespace
    assert out.splitlines() == ["configmap/rt-cm created", "service/rt-svc created"]
    after = {"cm": get(k, lns, "configmap/rt-cm"), "svc": get(k, lns, "service/rt-svc")}
    assert after["cm"]["data"] == before["cm"]["data"]
    assert after["cm"]["metadata"]["uid"] != before["cm"]["metadata"]["uid"]
    assert after["svc"]["spec"]["ports"] == before["svc"]["spec"]["ports"]
    assert after["svc"]["spec"]["clusterIP"] == before["svc"]["spec"]["clusterIP"]


def test_strict_validation_refuses_an_unknown_field_in_an_item(
    k: Kubectl, lns: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(a_list(configmap("v-cm", bogus=1), service("v-svc")))
    for verb in ("create", "apply"):
        proc = k(verb, "--validate=strict", "-n", lns, "-f", str(bad), check=False)
        assert proc.returncode == 1
        assert proc.stderr.strip() == (
            f'error: error validating "{bad}": error validating data: '
            'ValidationError(ConfigMap): unknown field "bogus" in io.k8s.api.core.v1.ConfigMap; '
            + STRICT_HINT
        )
        # Refused before anything was sent: neither item was made.
        assert k("get", "cm,svc", "-n", lns, "-l", "set=lists", "-o", "name").stdout == ""

    # Warn: kubectl cannot warn on the client, so the server does, and drops the field.
    proc = k("apply", "--validate=warn", "-n", lns, "-f", str(bad))
    assert 'Warning: unknown field "bogus"' in proc.stderr
    assert proc.stdout.splitlines() == ["configmap/v-cm created", "service/v-svc created"]
    assert "bogus" not in get(k, lns, "configmap/v-cm")


GROUP = "lists.example.com"
CRD = f"""\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{GROUP}
spec:
  group: {GROUP}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget}}
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
            required: [size]
            properties:
              size: {{type: integer, minimum: 1}}
              color: {{type: string, enum: [red, blue]}}
              free:
                type: object
                x-kubernetes-preserve-unknown-fields: true
                properties:
                  known: {{type: string}}
              either:
                x-kubernetes-int-or-string: true
                anyOf: [{{type: integer}}, {{type: string}}]
              note:
                type: string
                nullable: true
"""


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": name, "labels": {"set": "lists"}},
        "spec": {"size": 2, **spec},
    }


def test_a_list_with_a_custom_resource(k: Kubectl, lns: str, tmp_path: Path) -> None:
    k("apply", "-f", "-", stdin=CRD)
    try:
        k("wait", "--for=condition=Established", f"crd/widgets.{GROUP}", "--timeout=60s")
        good = tmp_path / "good.yaml"
        # What the v3 schema allows, the v2 models kubectl checks with allow too: unknown
        # fields under x-kubernetes-preserve-unknown-fields, int-or-string, a null.
        item = widget(
            "w1", color="red", free={"known": "k", "other": {"x": 1}}, either=3, note=None
        )
        good.write_text(a_list(item, configmap("w-cm")))
        out = k("create", "--validate=strict", "-n", lns, "-f", str(good)).stdout
        assert out.splitlines() == [f"widget.{GROUP}/w1 created", "configmap/w-cm created"]
        assert get(k, lns, "widget/w1")["spec"]["free"]["other"] == {"x": 1}

        bad = tmp_path / "bad.yaml"
        bad.write_text(a_list(widget("w2", bogus=True), configmap("w-cm2")))
        proc = k("apply", "--validate=strict", "-n", lns, "-f", str(bad), check=False)
        assert proc.returncode == 1
        assert proc.stderr.strip() == (
            f'error: error validating "{bad}": error validating data: '
            'ValidationError(Widget.spec): unknown field "bogus" in '
            f"com.example.lists.v1.Widget.spec; {STRICT_HINT}"
        )
        names = k("get", f"widgets.{GROUP},cm", "-n", lns, "-o", "name").stdout.split()
        assert f"widget.{GROUP}/w2" not in names and "configmap/w-cm2" not in names

        # A value of the wrong type is refused on the client too, as upstream.
        wrong = tmp_path / "wrong.yaml"
        wrong.write_text(a_list(widget("w3", size="big")))
        proc = k("create", "-n", lns, "-f", str(wrong), check=False)
        assert proc.returncode == 1
        assert (
            "ValidationError(Widget.spec.size): invalid type for "
            'com.example.lists.v1.Widget.spec.size: got "string", expected "integer"' in proc.stderr
        )
    finally:
        k("delete", "crd", f"widgets.{GROUP}", "--wait=true")
