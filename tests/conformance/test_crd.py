"""CustomResourceDefinitions driven by the real kubectl: apply, get (columns), describe,
explain, patch (merge, JSON, server-side apply), scale, validation, pruning, defaulting,
cluster scope, two versions, and CRD deletion taking its objects and endpoints along."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conformance.conftest import Kubectl, rows
from tests.conftest import ServerHandle
from tests.polling import wait_for

GROUP = "stable.example.com"
SCHEMA = """\
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [cronSpec]
              properties:
                cronSpec:
                  type: string
                  pattern: '^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$'
                image:
                  type: string
                replicas:
                  type: integer
                  minimum: 1
                  maximum: 10
                  default: 1
                ports:
                  type: array
                  x-kubernetes-list-type: map
                  x-kubernetes-list-map-keys: [name]
                  items:
                    type: object
                    required: [name]
                    properties:
                      name: {type: string}
                      port: {type: integer}
            status:
              type: object
              properties:
                replicas: {type: integer}
                selector: {type: string}
"""
CRD = f"""\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.{GROUP}
spec:
  group: {GROUP}
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    schema:
{SCHEMA}
    subresources:
      status: {{}}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - name: Spec
      type: string
      description: The cron spec defining the interval a CronJob is run
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Image
      type: string
      priority: 1
      jsonPath: .spec.image
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
  - name: v1beta1
    served: true
    storage: false
    schema:
{SCHEMA}
"""
CLUSTER_CRD = f"""\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: clusterthings.{GROUP}
spec:
  group: {GROUP}
  scope: Cluster
  names:
    plural: clusterthings
    kind: ClusterThing
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
            x-kubernetes-preserve-unknown-fields: true
"""


def crontab(name: str, **spec: Any) -> str:
    body = {"cronSpec": "* * * * */5", "image": "my-cron-image", **spec}
    return json.dumps(
        {"apiVersion": f"{GROUP}/v1", "kind": "CronTab", "metadata": {"name": name}, "spec": body}
    )


@pytest.fixture(scope="module")
def crd(k: Kubectl) -> Iterator[str]:
    k("apply", "-f", "-", stdin=CRD)
    yield "crontabs"


@pytest.fixture
def http(module_apiserver: ServerHandle) -> Iterator[httpx.Client]:
    with module_apiserver.client() as client:
        yield client


def _ns(k: Kubectl, name: str) -> str:
    name = f"{name}-{os.urandom(2).hex()}"
    k("create", "namespace", name)
    return name


def test_crd_established_and_served_at_once(k: Kubectl, crd: str, http: httpx.Client) -> None:
    # kubectl's discovery cache is stale right after the CRD: it must find the kind anyway.
    assert "No resources found" in k("get", crd, "-A").stdout + k("get", crd, "-A").stderr
    conditions = json.loads(k("get", "crd", f"crontabs.{GROUP}", "-o", "json").stdout)["status"]
    by_type = {c["type"]: c for c in conditions["conditions"]}
    assert by_type["Established"]["status"] == "True"
    assert by_type["NamesAccepted"]["reason"] == "NoConflicts"
    assert conditions["acceptedNames"]["shortNames"] == ["ct"]
    assert conditions["storedVersions"] == ["v1"]
    resources = k("api-resources", "--api-group", GROUP).stdout
    assert rows(resources)[1][:5] == ["crontabs", "ct", f"{GROUP}/v1", "true", "CronTab"]
    doc = http.get(f"/apis/{GROUP}/v1").json()
    names = {r["name"]: r for r in doc["resources"]}
    assert set(names) == {"crontabs", "crontabs/status", "crontabs/scale"}
    assert names["crontabs"]["categories"] == ["all"]
    assert names["crontabs/scale"]["kind"] == "Scale"
    assert "crontabs" in k("get", "crd").stdout


def test_create_get_columns_describe_and_explain(k: Kubectl, crd: str) -> None:
    ns = _ns(k, "ct-get")
    k("-n", ns, "apply", "-f", "-", stdin=crontab("my-cron"))
    table = rows(k("-n", ns, "get", "ct").stdout)
    assert table[0] == ["NAME", "SPEC", "REPLICAS", "AGE"]
    assert table[1][:3] == ["my-cron", "* * * * */5", "1"]  # replicas defaulted
    wide = rows(k("-n", ns, "get", "crontabs", "-o", "wide").stdout)
    assert wide[0] == ["NAME", "SPEC", "REPLICAS", "IMAGE", "AGE"]
    assert wide[1][3] == "my-cron-image"
    everything = k("-n", ns, "get", "all").stdout
    assert "crontab.stable.example.com/my-cron" in everything
    described = k("-n", ns, "describe", "ct", "my-cron").stdout
    assert "Kind:         CronTab" in described and "Cron Spec:" in described
    explained = k("explain", "crontabs.spec").stdout
    assert "cronSpec\t<string> -required-" in explained
    assert "replicas\t<integer>" in explained
    obj = json.loads(k("-n", ns, "get", "ct", "my-cron", "-o", "json").stdout)
    assert obj["metadata"]["generation"] == 1
    assert "status" not in obj  # with a status subresource, create sets none


def test_schema_violations_are_refused_and_nothing_stored(k: Kubectl, crd: str) -> None:
    ns = _ns(k, "ct-bad")
    bad = k(
        "-n",
        ns,
        "create",
        "-f",
        "-",
        stdin=crontab("bad", cronSpec="nope", replicas=20),
        check=False,
    )
    assert bad.returncode != 0
    assert 'The CronTab "bad" is invalid:' in bad.stderr
    assert 'spec.cronSpec: Invalid value: "nope": spec.cronSpec in body should match ' in bad.stderr
    assert (
        "spec.replicas: Invalid value: 20: spec.replicas in body should be less than or "
        "equal to 10" in bad.stderr
    )
    typed = k("-n", ns, "create", "-f", "-", stdin=crontab("bad", replicas="three"), check=False)
    assert (
        'spec.replicas: Invalid value: "string": spec.replicas in body must be of type '
        'integer: "string"' in typed.stderr
    )
    missing = json.dumps(
        {"apiVersion": f"{GROUP}/v1", "kind": "CronTab", "metadata": {"name": "bad"}, "spec": {}}
    )
    assert (
        "spec.cronSpec: Required value"
        in k("-n", ns, "create", "-f", "-", stdin=missing, check=False).stderr
    )
    assert "NotFound" in k("-n", ns, "get", "ct", "bad", check=False).stderr


def test_unknown_fields_pruned_warned_or_refused(k: Kubectl, crd: str) -> None:
    ns = _ns(k, "ct-prune")
    extra = crontab("pruned", unknownField="x")
    strict = k("-n", ns, "create", "-f", "-", stdin=extra, check=False)
    assert strict.returncode != 0
    assert (
        'CronTab in version "v1" cannot be handled as a CronTab: strict decoding error: '
        'unknown field "spec.unknownField"' in strict.stderr
    )
    warned = k("-n", ns, "create", "--validate=warn", "-f", "-", stdin=extra)
    assert 'unknown field "spec.unknownField"' in warned.stderr
    spec = json.loads(k("-n", ns, "get", "ct", "pruned", "-o", "json").stdout)["spec"]
    assert spec == {"cronSpec": "* * * * */5", "image": "my-cron-image", "replicas": 1}


def test_patches_scale_and_status(k: Kubectl, crd: str, http: httpx.Client) -> None:
    ns = _ns(k, "ct-patch")
    k("-n", ns, "create", "-f", "-", stdin=crontab("p"))
    k("-n", ns, "patch", "ct", "p", "--type", "merge", "-p", '{"spec":{"image":"merged"}}')
    k(
        "-n",
        ns,
        "patch",
        "ct",
        "p",
        "--type",
        "json",
        "-p",
        '[{"op":"replace","path":"/spec/cronSpec","value":"0 * * * *"}]',
    )
    smp = k("-n", ns, "patch", "ct", "p", "-p", '{"spec":{"image":"smp"}}', check=False)
    assert smp.returncode != 0
    assert "application/strategic-merge-patch+json is not supported" in smp.stderr
    bad = k(
        "-n",
        ns,
        "patch",
        "ct",
        "p",
        "--type",
        "merge",
        "-p",
        '{"spec":{"replicas":0}}',
        check=False,
    )
    assert "should be greater than or equal to 1" in bad.stderr
    k("-n", ns, "scale", "ct", "p", "--replicas", "4")
    obj = json.loads(k("-n", ns, "get", "ct", "p", "-o", "json").stdout)
    assert obj["spec"] == {"cronSpec": "0 * * * *", "image": "merged", "replicas": 4}
    assert obj["metadata"]["generation"] == 4
    path = f"/apis/{GROUP}/v1/namespaces/{ns}/crontabs/p/status"
    r = http.patch(
        path,
        json={"status": {"replicas": 4, "selector": "app=p"}, "spec": {"image": "ignored"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["image"] == "merged"  # a status write leaves spec alone
    assert r.json()["metadata"]["generation"] == 4  # and bumps no generation
    scale = http.get(f"/apis/{GROUP}/v1/namespaces/{ns}/crontabs/p/scale").json()
    assert scale["spec"] == {"replicas": 4}
    assert scale["status"] == {"replicas": 4, "selector": "app=p"}
    # A main-resource write leaves status alone.
    k("-n", ns, "patch", "ct", "p", "--type", "merge", "-p", '{"status":{"replicas":9}}')
    assert json.loads(k("-n", ns, "get", "ct", "p", "-o", "json").stdout)["status"]["replicas"] == 4


def test_server_side_apply_with_list_map(k: Kubectl, crd: str) -> None:
    ns = _ns(k, "ct-ssa")

    def applied(manager: str, ports: list[dict[str, Any]]) -> None:
        k(
            "-n",
            ns,
            "apply",
            "--server-side",
            f"--field-manager={manager}",
            "-f",
            "-",
            stdin=crontab("s", ports=ports),
        )

    applied("one", [{"name": "http", "port": 80}])
    applied("two", [{"name": "metrics", "port": 9090}])
    obj = json.loads(k("-n", ns, "get", "ct", "s", "-o", "json", "--show-managed-fields").stdout)
    # list-type map: each manager owns its own entry, merged by name.
    assert sorted(p["name"] for p in obj["spec"]["ports"]) == ["http", "metrics"]
    managers = {m["manager"] for m in obj["metadata"]["managedFields"]}
    assert managers == {"one", "two"}
    conflict = k(
        "-n",
        ns,
        "apply",
        "--server-side",
        "--field-manager=two",
        "-f",
        "-",
        stdin=crontab("s", image="other", ports=[{"name": "metrics", "port": 9090}]),
        check=False,
    )
    assert conflict.returncode != 0 and "conflict" in conflict.stderr.lower()
    unknown = k(
        "-n",
        ns,
        "apply",
        "--server-side",
        "--field-manager=one",
        "-f",
        "-",
        stdin=crontab("s", bogus=1),
        check=False,
    )
    assert unknown.returncode != 0
    assert ".spec.bogus: field not declared in schema" in unknown.stderr


def test_two_versions_and_cluster_scope(k: Kubectl, crd: str, http: httpx.Client) -> None:
    ns = _ns(k, "ct-versions")
    k("-n", ns, "create", "-f", "-", stdin=crontab("v"))
    beta = http.get(f"/apis/{GROUP}/v1beta1/namespaces/{ns}/crontabs/v").json()
    assert beta["apiVersion"] == f"{GROUP}/v1beta1"
    listed = http.get(f"/apis/{GROUP}/v1beta1/crontabs").json()
    assert {i["apiVersion"] for i in listed["items"]} == {f"{GROUP}/v1beta1"}
    k("apply", "-f", "-", stdin=CLUSTER_CRD)
    thing = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "ClusterThing",
        "metadata": {"name": "global"},
        "spec": {"anything": {"nested": True}},
    }
    k("apply", "-f", "-", stdin=json.dumps(thing))
    got = json.loads(k("get", "clusterthings", "global", "-o", "json").stdout)
    assert got["spec"] == {"anything": {"nested": True}}
    assert "namespace" not in got["metadata"]
    k("delete", "crd", f"clusterthings.{GROUP}")
    assert http.get(f"/apis/{GROUP}/v1/clusterthings").status_code == 404


def test_deleting_the_crd_removes_objects_and_endpoints(
    k: Kubectl, module_apiserver: ServerHandle, tmp_path: Path, http: httpx.Client
) -> None:
    crd = CRD.replace("crontab", "gadget").replace("CronTab", "Gadget").replace("[ct]", "[gd]")
    k("apply", "-f", "-", stdin=crd)
    ns = _ns(k, "gadgets")
    for name in ("a", "b"):
        body = crontab(name).replace("CronTab", "Gadget")
        k("-n", ns, "create", "-f", "-", stdin=body)
    assert len(rows(k("-n", ns, "get", "gadgets").stdout)) == 3
    k("delete", "crd", f"gadgets.{GROUP}", timeout=60)
    wait_for(
        lambda: http.get(f"/apis/{GROUP}/v1/gadgets").status_code == 404,
        what="the gadgets endpoints to go",
    )
    resources = http.get(f"/apis/{GROUP}/v1").json()["resources"]
    assert "gadgets" not in {r["name"] for r in resources}
    # Recreated, the kind starts empty: the old objects were deleted, not hidden.
    k("apply", "-f", "-", stdin=crd)
    wait_for(
        lambda: http.get(f"/apis/{GROUP}/v1/namespaces/{ns}/gadgets").status_code == 200,
        what="gadgets served again",
    )
    assert http.get(f"/apis/{GROUP}/v1/namespaces/{ns}/gadgets").json()["items"] == []


def test_invalid_crds_refused_and_name_conflicts_not_served(k: Kubectl, http: httpx.Client) -> None:
    no_storage = CLUSTER_CRD.replace("storage: true", "storage: false")
    refused = k("apply", "-f", "-", stdin=no_storage, check=False)
    assert refused.returncode != 0
    assert (
        'spec.versions: Invalid value: "v1": must have exactly one version marked as storage '
        "version" in refused.stderr
    )
    misnamed = CLUSTER_CRD.replace(f"name: clusterthings.{GROUP}", f"name: things.{GROUP}")
    assert (
        'must be spec.names.plural+"."+spec.group'
        in k("apply", "-f", "-", stdin=misnamed, check=False).stderr
    )
    # CEL rules are stored (not evaluated yet): such a CRD is accepted.
    cel = (
        CLUSTER_CRD.replace(
            "x-kubernetes-preserve-unknown-fields: true",
            "x-kubernetes-preserve-unknown-fields: true\n"
            "            x-kubernetes-validations:\n"
            "            - rule: self.size() > 0",
        )
        .replace("clusterthings", "celthings")
        .replace("ClusterThing", "CelThing")
    )
    k("apply", "-f", "-", stdin=cel)
    # Another CRD of the group wanting an accepted plural waits, unserved, with the reason.
    rival = cel.replace(f"name: celthings.{GROUP}", f"name: celthings2.{GROUP}").replace(
        "kind: CelThing", "kind: OtherThing"
    )
    rival = rival.replace("plural: celthings", "plural: celthings2\n    singular: celthing")
    k("apply", "-f", "-", stdin=rival)

    def accepted() -> dict[str, Any] | None:
        crd = http.get(
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/celthings2.{GROUP}"
        ).json()
        found = {c["type"]: c for c in crd.get("status", {}).get("conditions", [])}
        return found.get("NamesAccepted")

    condition = wait_for(accepted, what="the NamesAccepted condition")
    assert (condition["status"], condition["reason"], condition["message"]) == (
        "False",
        "SingularConflict",
        '"celthing" is already in use',
    )
    assert http.get(f"/apis/{GROUP}/v1/celthings2").status_code == 404
    k("delete", "crd", f"celthings2.{GROUP}", f"celthings.{GROUP}")
