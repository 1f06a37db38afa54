"""REST semantics of the API server over real HTTPS, on real RocksDB."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BACKENDS, ServerHandle, apiserver_on


@pytest.fixture(scope="module", params=BACKENDS)
def apiserver(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerHandle]:
    """This module's API server, once on each storage backend (RocksDB, a real etcd)."""
    with apiserver_on(request.param, tmp_path_factory.mktemp(request.param)) as server:
        yield server


def pod(
    name: str, labels: dict[str, str] | None = None, node: str | None = None, **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}], **spec},
    }
    if node:
        body["spec"]["nodeName"] = node
    return body


def pods(ns: str) -> str:
    return f"/api/v1/namespaces/{ns}/pods"


def assert_status(r: httpx.Response, code: int, reason: str) -> dict[str, Any]:
    assert r.status_code == code, r.text
    status = r.json()
    assert status["kind"] == "Status" and status["apiVersion"] == "v1"
    assert status["status"] == "Failure"
    assert status["reason"] == reason
    assert status["code"] == code
    return status


def names(body: dict[str, Any]) -> list[str]:
    return [item["metadata"]["name"] for item in body["items"]]


def current_rv(api: httpx.Client) -> int:
    return int(api.get("/api/v1/namespaces").json()["metadata"]["resourceVersion"])


# ------------------------------------------------------------------ basics


def test_system_namespaces_exist(api: httpx.Client) -> None:
    r = api.get("/api/v1/namespaces")
    assert r.status_code == 200
    body = r.json()
    assert body["kind"] == "NamespaceList" and body["apiVersion"] == "v1"
    system = {"default", "kube-system", "kube-public", "kube-node-lease"}
    assert system <= set(names(body))
    for item in body["items"]:
        if item["metadata"]["name"] in system:
            assert item["status"]["phase"] == "Active"


def test_health_and_version(api: httpx.Client) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        assert api.get(path).text == "ok"
    version = api.get("/version").json()
    assert version["major"] == "1" and version["gitVersion"].startswith("v1.35")


def test_create_get_defaults(api: httpx.Client, namespace: str) -> None:
    r = api.post(pods(namespace), json=pod("web", {"app": "web"}))
    assert r.status_code == 201, r.text
    created = r.json()
    m = created["metadata"]
    assert m["namespace"] == namespace and m["uid"] and m["creationTimestamp"]
    assert int(m["resourceVersion"]) > 0 and m["generation"] == 1
    spec = created["spec"]
    assert spec["restartPolicy"] == "Always" and spec["schedulerName"] == "default-scheduler"
    assert spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert created["status"]["phase"] == "Pending"
    got = api.get(f"{pods(namespace)}/web")
    assert got.status_code == 200 and got.json() == created
    assert list(created)[:3] == ["kind", "apiVersion", "metadata"]


def test_generate_name(api: httpx.Client, namespace: str) -> None:
    body = pod("")
    body["metadata"] = {"generateName": "gen-"}
    r = api.post(pods(namespace), json=body)
    assert r.status_code == 201, r.text
    name = r.json()["metadata"]["name"]
    assert name.startswith("gen-") and len(name) == len("gen-") + 5


def test_not_found_and_already_exists(api: httpx.Client, namespace: str) -> None:
    status = assert_status(api.get(f"{pods(namespace)}/nope"), 404, "NotFound")
    assert status["message"] == 'pods "nope" not found'
    assert status["details"] == {"name": "nope", "kind": "pods"}
    assert api.post(pods(namespace), json=pod("dup")).status_code == 201
    status = assert_status(api.post(pods(namespace), json=pod("dup")), 409, "AlreadyExists")
    assert status["message"] == 'pods "dup" already exists'


def test_missing_and_terminating_namespace(api: httpx.Client) -> None:
    status = assert_status(api.post(pods("no-such-ns"), json=pod("x")), 404, "NotFound")
    assert status["message"] == 'namespaces "no-such-ns" not found'
    assert api.post("/api/v1/namespaces", json={"metadata": {"name": "doomed"}}).status_code == 201
    r = api.delete("/api/v1/namespaces/doomed")
    assert r.status_code == 200 and r.json()["status"]["phase"] == "Terminating"
    status = assert_status(api.post(pods("doomed"), json=pod("x")), 403, "Forbidden")
    assert "because it is being terminated" in status["message"]


# ------------------------------------------------------------------ update


def test_update_conflict_and_generation(api: httpx.Client, namespace: str) -> None:
    url = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]},
            },
        },
    }
    created = api.post(url, json=dep).json()
    assert created["metadata"]["generation"] == 1
    assert created["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == "25%"
    # a label change is not a spec change
    created["metadata"]["labels"] = {"tier": "web"}
    labelled = api.put(f"{url}/d", json=created)
    assert labelled.status_code == 200, labelled.text
    assert labelled.json()["metadata"]["generation"] == 1
    # a stale resourceVersion is refused and changes nothing
    stale = dict(created)
    stale["spec"] = dict(created["spec"], replicas=5)
    status = assert_status(api.put(f"{url}/d", json=stale), 409, "Conflict")
    assert status["message"] == (
        'Operation cannot be fulfilled on deployments.apps "d": the '
        "object has been modified; please apply your changes to the "
        "latest version and try again"
    )
    assert api.get(f"{url}/d").json() == labelled.json()
    fresh = labelled.json()
    fresh["spec"]["replicas"] = 3
    fresh["status"] = {"replicas": 99}
    updated = api.put(f"{url}/d", json=fresh).json()
    assert updated["metadata"]["generation"] == 2
    assert updated["status"] == {}  # writes to the main resource leave status alone
    # the status subresource writes status only
    updated["status"] = {"replicas": 3, "observedGeneration": 2}
    updated["spec"]["replicas"] = 7
    after = api.put(f"{url}/d/status", json=updated).json()
    assert after["status"] == {"replicas": 3, "observedGeneration": 2}
    assert after["spec"]["replicas"] == 3 and after["metadata"]["generation"] == 2


def test_noop_update_keeps_resource_version(api: httpx.Client, namespace: str) -> None:
    url = f"/api/v1/namespaces/{namespace}/configmaps"
    cm = api.post(url, json={"metadata": {"name": "cm"}, "data": {"a": "1"}}).json()
    again = api.put(f"{url}/cm", json=cm).json()
    assert again["metadata"]["resourceVersion"] == cm["metadata"]["resourceVersion"]


def test_patch_merge_and_json(api: httpx.Client, namespace: str) -> None:
    url = f"/api/v1/namespaces/{namespace}/configmaps"
    api.post(url, json={"metadata": {"name": "p"}, "data": {"a": "1", "b": "2"}})
    r = api.patch(
        f"{url}/p",
        content=json.dumps({"data": {"a": None, "c": "3"}}),
        headers={"content-type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"b": "2", "c": "3"}
    ops = [{"op": "add", "path": "/data/d", "value": "4"}, {"op": "remove", "path": "/data/b"}]
    r = api.patch(
        f"{url}/p", content=json.dumps(ops), headers={"content-type": "application/json-patch+json"}
    )
    assert r.json()["data"] == {"c": "3", "d": "4"}
    bad = [{"op": "test", "path": "/data/c", "value": "nope"}]
    r = api.patch(
        f"{url}/p", content=json.dumps(bad), headers={"content-type": "application/json-patch+json"}
    )
    assert r.status_code == 422
    r = api.patch(f"{url}/p", content=b"{}", headers={"content-type": "text/plain"})
    assert_status(r, 415, "UnsupportedMediaType")


# -------------------------------------------------------------------- errors


def test_bad_requests_change_nothing(api: httpx.Client, namespace: str) -> None:
    before = current_rv(api)
    r = api.post(
        pods(namespace), content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_status(r, 400, "BadRequest")
    r = api.post(
        pods(namespace),
        content=b"x" * (3 * 1024 * 1024 + 1),
        headers={"content-type": "application/json"},
    )
    assert_status(r, 413, "RequestEntityTooLarge")
    r = api.post(pods(namespace), content=b"{}", headers={"content-type": "text/plain"})
    assert_status(r, 415, "UnsupportedMediaType")
    assert_status(api.put(pods(namespace), json=pod("x")), 405, "MethodNotAllowed")
    assert_status(api.get("/api/v1/nosuchthings"), 404, "NotFound")
    bad = pod("Bad_Name", {"bad key!": "v"})
    bad["spec"]["containers"][0]["image"] = ""
    status = assert_status(api.post(pods(namespace), json=bad), 422, "Invalid")
    fields = {c["field"] for c in status["details"]["causes"]}
    assert {"metadata.name", "metadata.labels", "spec.containers[0].image"} <= fields
    assert status["message"].startswith(
        'Pod "Bad_Name" is invalid: [metadata.name: Invalid '
        'value: "Bad_Name": a lowercase RFC 1123 subdomain'
    )
    quantity = pod("q")
    quantity["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "lots"}}
    status = assert_status(api.post(pods(namespace), json=quantity), 422, "Invalid")
    assert "quantities must match the regular expression" in status["message"]
    # Nothing was written: no event since `before` (not the global revision, which other
    # writers move on etcd, as upstream: the API servers' leases are renewed every 10 s).
    assert read_events(api, pods(namespace), {"resourceVersion": str(before)}, 1, 1.0) == []
    assert api.get(pods(namespace)).json()["items"] == []


# ------------------------------------------------------------------- list


def test_list_selectors(api: httpx.Client, namespace: str) -> None:
    api.post(pods(namespace), json=pod("a", {"app": "web", "tier": "fe"}, node="n1"))
    api.post(pods(namespace), json=pod("b", {"app": "web"}))
    api.post(pods(namespace), json=pod("c", {"app": "db"}, node="n2"))

    def select(**params: str) -> list[str]:
        r = api.get(pods(namespace), params=params)
        assert r.status_code == 200, r.text
        assert r.json()["kind"] == "PodList"
        return names(r.json())

    assert select(labelSelector="app=web") == ["a", "b"]
    assert select(labelSelector="app in (web,db),!tier") == ["b", "c"]
    assert select(labelSelector="app!=web") == ["c"]
    assert select(labelSelector="tier") == ["a"]
    assert select(fieldSelector="spec.nodeName=n1") == ["a"]
    assert select(fieldSelector="spec.nodeName=") == ["b"]
    assert select(fieldSelector="status.phase=Pending,metadata.name!=a") == ["b", "c"]
    assert select(labelSelector="app=web", fieldSelector="spec.nodeName!=n1") == ["b"]
    status = assert_status(
        api.get(pods(namespace), params={"labelSelector": "app in (x"}), 400, "BadRequest"
    )
    assert status["message"]
    status = assert_status(
        api.get(pods(namespace), params={"fieldSelector": "spec.foo=x"}), 400, "BadRequest"
    )
    assert status["message"] == "field label not supported: spec.foo"
    all_ns = api.get("/api/v1/pods", params={"labelSelector": "app=web"}).json()
    assert {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in all_ns["items"]} >= {
        (namespace, "a"),
        (namespace, "b"),
    }


def test_pagination_is_a_consistent_snapshot(api: httpx.Client, namespace: str) -> None:
    for i in range(7):
        api.post(pods(namespace), json=pod(f"p{i}"))
    first = api.get(pods(namespace), params={"limit": "3"}).json()
    assert names(first) == ["p0", "p1", "p2"]
    assert first["metadata"]["remainingItemCount"] == 4
    token = first["metadata"]["continue"]
    # changes after the first page do not show in later pages
    api.post(pods(namespace), json=pod("p3a"))
    api.delete(f"{pods(namespace)}/p5")
    second = api.get(pods(namespace), params={"limit": "3", "continue": token}).json()
    assert names(second) == ["p3", "p4", "p5"]
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    third = api.get(
        pods(namespace), params={"limit": "3", "continue": second["metadata"]["continue"]}
    ).json()
    assert names(third) == ["p6"] and "continue" not in third["metadata"]
    assert_status(api.get(pods(namespace), params={"continue": "garbage!"}), 400, "BadRequest")


def test_list_at_exact_resource_version(api: httpx.Client, namespace: str) -> None:
    url = f"/api/v1/namespaces/{namespace}/configmaps"
    api.post(url, json={"metadata": {"name": "x"}, "data": {"v": "1"}})
    rv = api.get(url).json()["metadata"]["resourceVersion"]
    api.patch(
        f"{url}/x",
        content=b'{"data":{"v":"2"}}',
        headers={"content-type": "application/merge-patch+json"},
    )
    old = api.get(url, params={"resourceVersion": rv, "resourceVersionMatch": "Exact"}).json()
    assert old["items"][0]["data"] == {"v": "1"}
    assert api.get(url).json()["items"][0]["data"] == {"v": "2"}
    status = assert_status(
        api.get(
            url, params={"resourceVersion": "999999999", "resourceVersionMatch": "NotOlderThan"}
        ),
        504,
        "Timeout",
    )
    assert status["message"].startswith("Too large resource version: 999999999")


# ------------------------------------------------------------------ watch


def read_events(
    client: httpx.Client, url: str, params: dict[str, str], count: int, timeout: float = 10.0
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    params = {"watch": "1", "timeoutSeconds": str(int(timeout)), **params}
    with client.stream("GET", url, params=params) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line:
                events.append(json.loads(line))
            if len(events) >= count:
                break
    return events


def test_watch_with_selectors_and_resume(
    api: httpx.Client, apiserver: ServerHandle, namespace: str
) -> None:
    start = str(current_rv(api))
    got: list[dict[str, Any]] = []

    def watch() -> None:
        with apiserver.client() as c:
            got.extend(
                read_events(
                    c,
                    pods(namespace),
                    {
                        "resourceVersion": start,
                        "labelSelector": "app=web",
                        "fieldSelector": "spec.nodeName=n1",
                    },
                    3,
                )
            )

    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.5)
    api.post(pods(namespace), json=pod("w1", {"app": "web"}, node="n1"))
    api.post(pods(namespace), json=pod("w2", {"app": "db"}, node="n1"))  # filtered out
    api.patch(
        f"{pods(namespace)}/w1",
        content=b'{"metadata":{"labels":{"x":"y"}}}',
        headers={"content-type": "application/merge-patch+json"},
    )
    api.patch(
        f"{pods(namespace)}/w1",
        content=b'{"metadata":{"labels":{"app":"other"}}}',
        headers={"content-type": "application/merge-patch+json"},
    )
    t.join(15)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in got] == [
        ("ADDED", "w1"),
        ("MODIFIED", "w1"),
        ("DELETED", "w1"),
    ]
    # the object that left the selection is sent in its last matching state
    left = got[2]["object"]
    assert left["metadata"]["labels"]["app"] == "web"
    assert int(left["metadata"]["resourceVersion"]) > int(
        got[1]["object"]["metadata"]["resourceVersion"]
    )
    # resume from the first event's rv: the rest replays
    resumed = read_events(
        api,
        pods(namespace),
        {"resourceVersion": got[0]["object"]["metadata"]["resourceVersion"]},
        3,
    )
    assert [e["type"] for e in resumed] == ["ADDED", "MODIFIED", "MODIFIED"]
    assert [e["object"]["metadata"]["name"] for e in resumed] == ["w2", "w1", "w1"]


def test_watch_without_rv_starts_with_current_state(api: httpx.Client, namespace: str) -> None:
    api.post(pods(namespace), json=pod("s1"))
    api.post(pods(namespace), json=pod("s2"))
    events = read_events(api, pods(namespace), {}, 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "s1"),
        ("ADDED", "s2"),
    ]


def test_watch_timeout_and_bookmark_for_initial_events(api: httpx.Client, namespace: str) -> None:
    api.post(pods(namespace), json=pod("b1"))
    params = {
        "watch": "1",
        "timeoutSeconds": "1",
        "allowWatchBookmarks": "true",
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
    }
    t0 = time.monotonic()
    with api.stream("GET", pods(namespace), params=params) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert time.monotonic() - t0 < 5
    assert lines[0]["type"] == "ADDED"
    assert lines[1]["type"] == "BOOKMARK"
    assert lines[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_watch_too_old_is_gone(tmp_path: Path, backend: str) -> None:
    with (
        apiserver_on(
            backend, tmp_path, "--watch-cache-size", "5", "--watch-cache-window", "0"
        ) as server,
        server.client() as api,
    ):
        url = "/api/v1/namespaces/default/configmaps"
        first = api.post(url, json={"metadata": {"name": "c0"}}).json()
        for i in range(1, 12):
            api.post(url, json={"metadata": {"name": f"c{i}"}})
        events = read_events(api, url, {"resourceVersion": first["metadata"]["resourceVersion"]}, 1)
        assert events[0]["type"] == "ERROR"
        status = events[0]["object"]
        assert status["code"] == 410 and status["reason"] == "Expired"
        assert status["message"].startswith("too old resource version: ")


# ------------------------------------------------------------------ delete


def test_delete_immediate_and_graceful(api: httpx.Client, namespace: str) -> None:
    url = f"/api/v1/namespaces/{namespace}/configmaps"
    api.post(url, json={"metadata": {"name": "gone"}})
    r = api.delete(f"{url}/gone")
    assert r.status_code == 200
    assert r.json()["status"] == "Success" and r.json()["details"]["name"] == "gone"
    assert api.get(f"{url}/gone").status_code == 404
    # a pod on a node waits for its kubelet
    api.post(pods(namespace), json=pod("g", node="n1"))
    r = api.delete(f"{pods(namespace)}/g")
    assert r.status_code == 200
    m = r.json()["metadata"]
    assert m["deletionTimestamp"] and m["deletionGracePeriodSeconds"] == 30
    assert api.get(f"{pods(namespace)}/g").status_code == 200
    r = api.delete(f"{pods(namespace)}/g", params={"gracePeriodSeconds": "0"})
    assert r.status_code == 200
    assert api.get(f"{pods(namespace)}/g").status_code == 404
    # an unscheduled pod goes at once
    api.post(pods(namespace), json=pod("u"))
    assert api.delete(f"{pods(namespace)}/u").status_code == 200
    assert api.get(f"{pods(namespace)}/u").status_code == 404


def test_finalizers_and_propagation_policy(api: httpx.Client, namespace: str) -> None:
    url = f"/api/v1/namespaces/{namespace}/configmaps"
    api.post(url, json={"metadata": {"name": "f", "finalizers": ["example.com/hold"]}})
    r = api.request(
        "DELETE",
        f"{url}/f",
        content=json.dumps(
            {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Orphan"}
        ),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 200
    held = api.get(f"{url}/f").json()
    assert held["metadata"]["deletionTimestamp"]
    assert held["metadata"]["finalizers"] == ["example.com/hold", "orphan"]
    held["metadata"]["finalizers"] = ["example.com/hold", "example.com/more"]
    assert_status(api.put(f"{url}/f", json=held), 422, "Invalid")
    held["metadata"]["finalizers"] = []
    assert api.put(f"{url}/f", json=held).status_code == 200
    assert api.get(f"{url}/f").status_code == 404
    # foreground deletion of an object without finalizers is recorded and answered 202
    api.post(url, json={"metadata": {"name": "fg"}})
    r = api.delete(f"{url}/fg", params={"propagationPolicy": "Foreground"})
    assert r.status_code == 202
    assert api.get(f"{url}/fg").json()["metadata"]["finalizers"] == ["foregroundDeletion"]


def test_delete_preconditions_and_collection(api: httpx.Client, namespace: str) -> None:
    url = f"/api/v1/namespaces/{namespace}/configmaps"
    for name, tier in (("k1", "a"), ("k2", "a"), ("k3", "b")):
        api.post(url, json={"metadata": {"name": name, "labels": {"tier": tier}}})
    r = api.request(
        "DELETE",
        f"{url}/k3",
        content=json.dumps({"preconditions": {"uid": "not-the-uid"}}),
        headers={"content-type": "application/json"},
    )
    assert_status(r, 409, "Conflict")
    r = api.delete(url, params={"labelSelector": "tier=a"})
    assert r.status_code == 200 and r.json()["kind"] == "ConfigMapList"
    assert sorted(names(r.json())) == ["k1", "k2"]
    assert names(api.get(url).json()) == ["k3"]


# --------------------------------------------------------- subresources


def test_binding_and_scale(api: httpx.Client, namespace: str) -> None:
    api.post(pods(namespace), json=pod("bind-me"))
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "bind-me"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"},
    }
    r = api.post(f"{pods(namespace)}/bind-me/binding", json=binding)
    assert r.status_code == 201, r.text
    bound = api.get(f"{pods(namespace)}/bind-me").json()
    assert bound["spec"]["nodeName"] == "node-a"
    assert bound["status"]["conditions"][0]["type"] == "PodScheduled"
    status = assert_status(
        api.post(f"{pods(namespace)}/bind-me/binding", json=binding), 409, "Conflict"
    )
    assert "is already assigned to node" in status["message"]
    url = f"/apis/apps/v1/namespaces/{namespace}/replicasets"
    rs = {
        "metadata": {"name": "rs"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i:1"}]},
            },
        },
    }
    assert api.post(url, json=rs).status_code == 201
    scale = api.get(f"{url}/rs/scale").json()
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2
    assert scale["status"]["selector"] == "a=b"
    scale["spec"]["replicas"] = 4
    assert api.put(f"{url}/rs/scale", json=scale).json()["spec"]["replicas"] == 4
    r = api.patch(
        f"{url}/rs/scale",
        content=b'{"spec":{"replicas":1}}',
        headers={"content-type": "application/merge-patch+json"},
    )
    assert r.json()["spec"]["replicas"] == 1
    assert api.get(f"{url}/rs").json()["spec"]["replicas"] == 1


def test_concurrent_bindings_each_commit_with_a_revision_and_event_of_their_own(
    api: httpx.Client, apiserver: ServerHandle, namespace: str
) -> None:
    """Bindings that arrive together share the store's group commit, yet each is its own
    write: its own resourceVersion, its own MODIFIED event, in revision order."""
    count = 20
    for i in range(count):
        assert api.post(pods(namespace), json=pod(f"cb-{i}")).status_code == 201
    r = api.patch(
        f"{pods(namespace)}/cb-0/status",
        json={
            "status": {
                "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"},
                    {"type": "example.com/gate", "status": "True"},
                ]
            }
        },
        headers={"content-type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    start = current_rv(api)

    def bind(i: int) -> int:
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": f"cb-{i}"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": f"node-{i % 3}"},
        }
        with apiserver.client() as c:
            return c.post(f"{pods(namespace)}/cb-{i}/binding", json=binding).status_code

    with ThreadPoolExecutor(10) as pool:
        assert list(pool.map(bind, range(count))) == [201] * count
    events = read_events(api, pods(namespace), {"resourceVersion": str(start)}, count)
    assert {e["type"] for e in events} == {"MODIFIED"}
    assert sorted(e["object"]["metadata"]["name"] for e in events) == sorted(
        f"cb-{i}" for i in range(count)
    )
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(set(rvs)) and rvs[0] > start
    for e in events:
        i = int(e["object"]["metadata"]["name"].removeprefix("cb-"))
        assert e["object"]["spec"]["nodeName"] == f"node-{i % 3}"
    conditions = api.get(f"{pods(namespace)}/cb-0").json()["status"]["conditions"]
    assert [(c["type"], c["status"]) for c in conditions] == [
        ("PodScheduled", "True"),
        ("example.com/gate", "True"),
    ]


def test_metrics(api: httpx.Client) -> None:
    name = f"metrics-{uuid.uuid4().hex[:8]}"
    cm = {"metadata": {"name": name}, "data": {"a": "1"}}
    path = "/api/v1/namespaces/default/configmaps"
    assert api.post(path, json=cm).status_code == 201
    assert api.put(f"{path}/{name}", json=cm).status_code == 200
    assert api.delete(f"{path}/{name}").status_code == 200
    assert api.get(path).status_code == 200
    text = api.get("/metrics").text
    assert "apiserver_request_total{" in text
    # Upstream's verb labels: the HTTP method, LIST for collections (dashboards and
    # clusterloader2's SLO queries match on them).
    # A create's scope is "resource" (one object), as upstream's CleanScope says.
    for verb, scope in (("POST", "resource"), ("PUT", "resource"), ("DELETE", "resource")):
        assert re.search(
            rf'apiserver_request_duration_seconds_count\{{[^}}]*resource="configmaps"'
            rf'[^}}]*scope="{scope}"[^}}]*verb="{verb}"',
            text,
        ), verb
    assert 'verb="LIST"' in text
    assert 'verb="CREATE"' not in text and 'verb="UPDATE"' not in text
    assert "apiserver_request_duration_seconds_bucket{" in text
    assert "etcd_request_duration_seconds_bucket{" in text
    assert 'apiserver_storage_objects{resource="namespaces"}' in text


@pytest.mark.parametrize(
    "path",
    ["/api/v1/namespaces/default/pods/x/nosuch", "/apis/apps/v1/namespaces/default/nothings"],
)
def test_unknown_paths(api: httpx.Client, path: str) -> None:
    assert api.get(path).status_code == 404
