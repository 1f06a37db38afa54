"""Wire-level features the clients rely on: discovery forms, OpenAPI, tables, warnings."""

from __future__ import annotations

import json

import httpx

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def test_aggregated_and_legacy_discovery(http: httpx.Client) -> None:
    r = http.get("/apis", headers={"Accept": AGGREGATED + ",application/json"})
    assert r.headers["content-type"] == AGGREGATED
    body = r.json()
    assert body["kind"] == "APIGroupDiscoveryList"
    apps = next(i for i in body["items"] if i["metadata"]["name"] == "apps")
    deploy = next(
        res for res in apps["versions"][0]["resources"] if res["resource"] == "deployments"
    )
    assert deploy["scope"] == "Namespaced" and deploy["shortNames"] == ["deploy"]
    scale = next(s for s in deploy["subresources"] if s["subresource"] == "scale")
    assert scale["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    assert http.get("/apis").json()["kind"] == "APIGroupList"
    assert http.get("/api").json()["versions"] == ["v1"]
    core = http.get("/api/v1").json()
    names = {r["name"]: r for r in core["resources"]}
    assert names["pods"]["shortNames"] == ["po"] and names["pods"]["namespaced"] is True
    assert names["pods/status"]["verbs"] == ["get", "patch", "update"]
    assert http.get("/apis/apps").json()["preferredVersion"]["groupVersion"] == "apps/v1"
    assert http.get("/apis/nope/v1").status_code == 404


def test_openapi_documents(http: httpx.Client) -> None:
    root = http.get("/openapi/v3").json()["paths"]
    url = root["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=")
    r = http.get(url)
    assert r.headers["cache-control"] == "public, immutable"
    doc = r.json()
    spec = doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]
    assert spec["containers"]["x-kubernetes-patch-merge-key"] == "name"
    assert spec["containers"]["x-kubernetes-list-map-keys"] == ["name"]
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "apps",
        "kind": "Deployment",
        "version": "v1",
    }
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
    v2 = http.get("/openapi/v2").json()
    deployment = v2["definitions"]["io.k8s.api.apps.v1.Deployment"]
    assert deployment["x-kubernetes-group-version-kind"][0]["kind"] == "Deployment"
    json_etag = http.get("/openapi/v2").headers["etag"]
    pb = http.get(
        "/openapi/v2",
        headers={"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"},
    )
    assert pb.status_code == 200
    assert (
        pb.headers["content-type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    )
    assert pb.content.startswith(b"\x0a\x032.0")  # Document.swagger (field 1) = "2.0"
    assert pb.headers["etag"] != json_etag  # each form has its own
    again = http.get(
        "/openapi/v2",
        headers={
            "Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
            "If-None-Match": pb.headers["etag"],
        },
    )
    assert (again.status_code, again.content) == (304, b"")
    assert http.get("/openapi/v2", headers={"Accept": "application/yaml"}).status_code == 406


def test_table_and_partial_metadata(http: httpx.Client, ns: str) -> None:
    http.post(
        f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "c"}, "data": {"a": "1"}}
    )
    r = http.get(f"/api/v1/namespaces/{ns}/configmaps", headers={"Accept": TABLE})
    assert r.headers["content-type"] == TABLE
    table = r.json()
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert table["rows"][0]["cells"][:2] == ["c", 1]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    full = http.get(
        f"/api/v1/namespaces/{ns}/configmaps/c?includeObject=Object", headers={"Accept": TABLE}
    ).json()
    assert full["rows"][0]["object"]["data"] == {"a": "1"}
    partial = http.get(
        f"/api/v1/namespaces/{ns}/configmaps",
        headers={"Accept": "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"},
    ).json()
    assert partial["kind"] == "PartialObjectMetadataList"
    assert (
        http.get(
            f"/api/v1/namespaces/{ns}/configmaps",
            headers={"Accept": "application/json;as=Table;v=v9;g=meta.k8s.io"},
        ).status_code
        == 406
    )
    plain = http.get(f"/api/v1/namespaces/{ns}/configmaps/c")
    assert plain.json()["kind"] == "ConfigMap"
    pretty = http.get(f"/api/v1/namespaces/{ns}/configmaps/c?pretty=true").text
    assert pretty.startswith('{\n  "kind": "ConfigMap"')


def test_field_validation_directives(http: httpx.Client, ns: str) -> None:
    body = {"metadata": {"name": "v"}, "data": {"a": "1"}, "bogus": 1}
    url = f"/api/v1/namespaces/{ns}/configmaps"
    warn = http.post(url, json=body)
    assert warn.status_code == 201
    assert warn.headers["warning"] == '299 - "unknown field \\"bogus\\""'
    assert "bogus" not in warn.json()
    strict = http.post(url + "?fieldValidation=Strict", json={**body, "metadata": {"name": "w"}})
    assert strict.status_code == 400
    assert strict.json()["message"] == (
        'ConfigMap in version "v1" cannot be handled as a '
        "ConfigMap: strict decoding error: unknown field "
        '"bogus"'
    )
    ignored = http.post(url + "?fieldValidation=Ignore", json={**body, "metadata": {"name": "x"}})
    assert ignored.status_code == 201 and "warning" not in ignored.headers
    mistyped = http.post(url, json={"metadata": {"name": "y"}, "data": {"a": 1}})
    assert mistyped.status_code == 400
    assert (
        "json: cannot unmarshal number into Go struct field ConfigMap.data.a of type "
        "string" in mistyped.json()["message"]
    )
    bad = http.post(url + "?fieldValidation=Loud", json={"metadata": {"name": "z"}})
    assert bad.status_code == 422
    patch = http.patch(
        url + "/v?fieldValidation=Strict",
        content=json.dumps({"nope": 1}),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patch.status_code == 422
    assert 'strict decoding error: unknown field \\"nope\\"' in patch.text


def test_apply_patch_yaml_keeps_timestamps_as_strings(http: httpx.Client, ns: str) -> None:
    """Upstream reads YAML as JSON: an unquoted date is the string it was written as."""
    url = f"/api/v1/namespaces/{ns}/configmaps/dated?fieldManager=tester"
    config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dated\ndata:\n  day: 2024-01-02\n"
    r = http.patch(url, content=config, headers={"Content-Type": "application/apply-patch+yaml"})
    assert r.status_code == 201, r.text
    assert r.json()["data"] == {"day": "2024-01-02"}


def test_apply_patch_creates_and_records_manager(http: httpx.Client, ns: str) -> None:
    url = f"/api/v1/namespaces/{ns}/configmaps/applied?fieldManager=tester"
    config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: '1'\n"
    r = http.patch(url, content=config, headers={"Content-Type": "application/apply-patch+yaml"})
    assert r.status_code == 201, r.text
    managed = r.json()["metadata"]["managedFields"]
    assert managed[0]["manager"] == "tester" and managed[0]["operation"] == "Apply"
    assert managed[0]["fieldsV1"] == {"f:data": {"f:a": {}}}
    no_manager = http.patch(
        url.split("?")[0], content=config, headers={"Content-Type": "application/apply-patch+yaml"}
    )
    assert no_manager.status_code == 422
    assert "fieldManager: Required value" in no_manager.json()["message"]
