"""The REST client against a real API server over mutual TLS."""

from __future__ import annotations

import dataclasses
import itertools
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from k8slite.client import (
    AlreadyExists,
    ApiClient,
    ApiConnectionError,
    ClientConfig,
    Conflict,
    Gone,
    Invalid,
    KubeconfigError,
    NotFound,
    Watch,
    _json,
    load_kubeconfig,
)
from k8slite.client.resource import CONFIGMAPS, DEPLOYMENTS, NAMESPACES, PODS, Resource
from tests.conftest import ServerHandle, start_apiserver
from tests.integration.client_helpers import TcpProxy, server_config


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels or {}},
        "data": data,
    }


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
    }


@pytest.fixture
def config(apiserver: ServerHandle) -> ClientConfig:
    return server_config(apiserver)


@pytest.fixture
async def kube(config: ClientConfig) -> AsyncIterator[ApiClient]:
    async with ApiClient(config) as client:
        yield client


async def test_kubeconfig_gives_mutual_tls(
    config: ClientConfig, apiserver: ServerHandle, kube: ApiClient
) -> None:
    loaded = load_kubeconfig(apiserver.kubeconfig)
    assert urlsplit(loaded.server).hostname == urlsplit(apiserver.url).hostname
    assert loaded.namespace == "default" and loaded.token is None
    assert isinstance(config.ssl_context, ssl.SSLContext)
    assert config.ssl_context.verify_mode == ssl.CERT_REQUIRED
    version = await kube.request("GET", "/version")
    assert version["gitVersion"].startswith("v1.")


async def test_kubeconfig_with_files_and_context(
    apiserver: ServerHandle, tmp_path: Path, kube: ApiClient
) -> None:
    # The same credentials as file references, relative to the kubeconfig, under a
    # non-current context.
    pki = apiserver.pki
    for name in ("ca.pem", "client-admin.pem", "client-admin.key"):
        (tmp_path / name).write_bytes((pki / name).read_bytes())
    (tmp_path / "kc").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: other\n"
        f"clusters:\n- name: c\n  cluster:\n    server: {apiserver.url}\n"
        "    certificate-authority: ca.pem\n"
        "users:\n- name: u\n  user:\n    client-certificate: client-admin.pem\n"
        "    client-key: client-admin.key\n"
        "contexts:\n- name: mine\n  context: {cluster: c, user: u, namespace: team}\n"
        "- name: other\n  context: {cluster: nope, user: u}\n"
    )
    cfg = load_kubeconfig(tmp_path / "kc", context="mine")
    assert cfg.namespace == "team"
    async with ApiClient(cfg) as client:
        assert (await client.request("GET", "/version"))["major"] == "1"


def test_kubeconfig_errors(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError):
        load_kubeconfig(tmp_path / "missing")
    (tmp_path / "kc").write_text(
        "clusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\n"
        "contexts:\n- name: x\n  context: {cluster: c}\n"
    )
    with pytest.raises(KubeconfigError, match="no context given"):
        load_kubeconfig(tmp_path / "kc")
    with pytest.raises(KubeconfigError, match="no context named 'y'"):
        load_kubeconfig(tmp_path / "kc", context="y")
    plain = load_kubeconfig(tmp_path / "kc", context="x")
    assert plain.server == "https://127.0.0.1:1" and plain.ssl_context is not None


async def test_http2(config: ClientConfig) -> None:
    async with ApiClient(dataclasses.replace(config, http2=True)) as client:
        assert (await client.list(NAMESPACES))["kind"] == "NamespaceList"


async def test_crud_and_typed_errors(kube: ApiClient, namespace: str) -> None:
    created = await kube.create(CONFIGMAPS, configmap("one", a="1"), namespace=namespace)
    assert created["metadata"]["namespace"] == namespace
    assert created["metadata"]["uid"]

    with pytest.raises(AlreadyExists) as exists:
        await kube.create(CONFIGMAPS, configmap("one"), namespace=namespace)
    assert exists.value.code == 409 and exists.value.reason == "AlreadyExists"
    assert exists.value.status["kind"] == "Status"

    got = await kube.get(CONFIGMAPS, "one", namespace=namespace)
    assert got["data"] == {"a": "1"}

    got["data"]["a"] = "2"
    updated = await kube.update(CONFIGMAPS, got)
    assert updated["data"]["a"] == "2"
    assert updated["metadata"]["resourceVersion"] != got["metadata"]["resourceVersion"]

    # The stale resourceVersion loses the optimistic lock.
    got["data"]["a"] = "3"
    with pytest.raises(Conflict) as conflict:
        await kube.update(CONFIGMAPS, got)
    assert conflict.value.code == 409 and conflict.value.reason == "Conflict"

    with pytest.raises(NotFound) as missing:
        await kube.get(CONFIGMAPS, "nope", namespace=namespace)
    assert missing.value.code == 404 and missing.value.reason == "NotFound"
    assert missing.value.details.get("name") == "nope"

    with pytest.raises(Invalid) as invalid:
        await kube.create(CONFIGMAPS, configmap("Not_A_Name"), namespace=namespace)
    assert invalid.value.code == 422 and invalid.value.reason == "Invalid"
    assert invalid.value.details.get("causes")

    # Dry run validates and answers but stores nothing.
    await kube.create(CONFIGMAPS, configmap("dry"), namespace=namespace, dry_run=True)
    with pytest.raises(NotFound):
        await kube.get(CONFIGMAPS, "dry", namespace=namespace)

    deleted = await kube.delete(CONFIGMAPS, "one", namespace=namespace)
    assert deleted["kind"] in ("ConfigMap", "Status")
    with pytest.raises(NotFound):
        await kube.delete(CONFIGMAPS, "one", namespace=namespace)


async def test_patch_types(kube: ApiClient, namespace: str) -> None:
    await kube.create(CONFIGMAPS, configmap("p", a="1"), namespace=namespace)
    merged = await kube.patch(CONFIGMAPS, "p", {"data": {"b": "2", "a": None}}, namespace=namespace)
    assert merged["data"] == {"b": "2"}
    jsonp = await kube.patch(
        CONFIGMAPS,
        "p",
        [{"op": "add", "path": "/data/c", "value": "3"}],
        namespace=namespace,
        patch_type="json",
    )
    assert jsonp["data"] == {"b": "2", "c": "3"}
    strategic = await kube.patch(
        CONFIGMAPS,
        "p",
        {"metadata": {"labels": {"x": "y"}}},
        namespace=namespace,
        patch_type="strategic",
    )
    assert strategic["metadata"]["labels"] == {"x": "y"}
    with pytest.raises(ValueError):
        await kube.patch(CONFIGMAPS, "p", {}, namespace=namespace, patch_type="bogus")  # type: ignore[arg-type]


async def test_server_side_apply(kube: ApiClient, namespace: str) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "applied", "namespace": namespace},
        "data": {"k": "v"},
    }
    applied = await kube.apply(CONFIGMAPS, body, field_manager="test-client")
    assert applied["data"] == {"k": "v"}
    body["data"] = {"k": "w"}
    again = await kube.apply(CONFIGMAPS, body, field_manager="test-client", force=True)
    assert again["data"] == {"k": "w"}


async def test_list_selectors_and_pages(kube: ApiClient, namespace: str) -> None:
    for i in range(7):
        labels = {"tier": "web" if i % 2 else "db"}
        await kube.create(CONFIGMAPS, configmap(f"cm-{i}", labels), namespace=namespace)
    web = await kube.list(CONFIGMAPS, namespace=namespace, label_selector={"tier": "web"})
    assert sorted(o["metadata"]["name"] for o in web["items"]) == ["cm-1", "cm-3", "cm-5"]
    by_field = await kube.list(CONFIGMAPS, namespace=namespace, field_selector="metadata.name=cm-4")
    assert [o["metadata"]["name"] for o in by_field["items"]] == ["cm-4"]

    page = await kube.list(CONFIGMAPS, namespace=namespace, limit=3)
    assert len(page["items"]) == 3 and page["metadata"].get("continue")
    rest = await kube.list(
        CONFIGMAPS, namespace=namespace, limit=3, continue_=page["metadata"]["continue"]
    )
    assert len(rest["items"]) == 3

    everything = await kube.list_all(CONFIGMAPS, namespace=namespace, page_size=2)
    names = [o["metadata"]["name"] for o in everything["items"]]
    assert names == sorted(f"cm-{i}" for i in range(7))
    assert everything["metadata"]["resourceVersion"]
    assert "continue" not in everything["metadata"]

    gone = await kube.delete_collection(CONFIGMAPS, namespace=namespace, label_selector="tier=db")
    assert gone["kind"] in ("ConfigMapList", "Status")
    left = await kube.list(CONFIGMAPS, namespace=namespace)
    assert sorted(o["metadata"]["name"] for o in left["items"]) == ["cm-1", "cm-3", "cm-5"]


async def test_delete_options(kube: ApiClient, namespace: str) -> None:
    cm = await kube.create(CONFIGMAPS, configmap("guarded"), namespace=namespace)
    with pytest.raises(Conflict):
        await kube.delete(
            CONFIGMAPS,
            "guarded",
            namespace=namespace,
            preconditions={"uid": "00000000-0000-0000-0000-000000000000"},
        )
    await kube.delete(
        CONFIGMAPS,
        "guarded",
        namespace=namespace,
        preconditions={"uid": cm["metadata"]["uid"]},
        propagation_policy="Background",
        grace_period_seconds=0,
    )
    with pytest.raises(NotFound):
        await kube.get(CONFIGMAPS, "guarded", namespace=namespace)


async def test_subresources(kube: ApiClient, namespace: str) -> None:
    p = await kube.create(PODS, pod("web"), namespace=namespace)
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "web", "namespace": namespace},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"},
    }
    await kube.create(PODS, binding, subresource="binding")
    bound = await kube.get(PODS, "web", namespace=namespace)
    assert bound["spec"]["nodeName"] == "node-1"

    status = await kube.get(PODS, "web", namespace=namespace, subresource="status")
    status["status"] = {**status.get("status", {}), "phase": "Running"}
    await kube.update_status(PODS, status)
    patched = await kube.patch(
        PODS, "web", {"status": {"podIP": "10.0.0.9"}}, namespace=namespace, subresource="status"
    )
    assert patched["status"]["phase"] == "Running"
    assert patched["status"]["podIP"] == "10.0.0.9"
    assert patched["metadata"]["uid"] == p["metadata"]["uid"]

    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "d"}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
            },
        },
    }
    await kube.create(DEPLOYMENTS, deploy, namespace=namespace)
    scale = await kube.get(DEPLOYMENTS, "d", namespace=namespace, subresource="scale")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 1
    scale["spec"]["replicas"] = 4
    await kube.update(DEPLOYMENTS, scale, namespace=namespace, subresource="scale")
    assert (await kube.get(DEPLOYMENTS, "d", namespace=namespace))["spec"]["replicas"] == 4


async def test_watch_frames(kube: ApiClient, namespace: str) -> None:
    listed = await kube.list(CONFIGMAPS, namespace=namespace)
    rv = listed["metadata"]["resourceVersion"]
    seen: list[tuple[str, str]] = []
    async with kube.watch(
        CONFIGMAPS, namespace=namespace, resource_version=rv, timeout_seconds=30
    ) as events:
        await kube.create(CONFIGMAPS, configmap("w", a="1"), namespace=namespace)
        await kube.patch(CONFIGMAPS, "w", {"data": {"a": "2"}}, namespace=namespace)
        await kube.delete(CONFIGMAPS, "w", namespace=namespace)
        with trio.fail_after(20):
            async for event_type, obj in events:
                if event_type == "BOOKMARK":
                    continue
                seen.append((event_type, obj["data"]["a"]))
                if event_type == "DELETED":
                    break
    assert seen == [("ADDED", "1"), ("MODIFIED", "2"), ("DELETED", "2")]


async def test_watch_ends_at_timeout_and_iterates_bare(kube: ApiClient, namespace: str) -> None:
    await kube.create(CONFIGMAPS, configmap("pre"), namespace=namespace)
    events = []
    with trio.fail_after(20):
        # Without a resourceVersion the watch starts with the current state as ADDED events.
        async for event_type, obj in kube.watch(CONFIGMAPS, namespace=namespace, timeout_seconds=1):
            events.append((event_type, obj["metadata"]["name"]))
    assert ("ADDED", "pre") in events


async def test_watch_from_expired_version(tmp_path: Path) -> None:
    server = start_apiserver(
        tmp_path / "data", "--watch-cache-size", "3", "--watch-cache-window", "0"
    )
    try:
        async with ApiClient(server_config(server)) as client:
            ns = "expiry"
            await client.create(NAMESPACES, {"metadata": {"name": ns}})
            first = await client.create(CONFIGMAPS, configmap("c0"), namespace=ns)
            for i in range(1, 10):
                await client.create(CONFIGMAPS, configmap(f"c{i}"), namespace=ns)
            old_rv = first["metadata"]["resourceVersion"]
            # Upstream answers an expired start either as HTTP 410 or as an ERROR frame.
            try:
                with trio.fail_after(20):
                    async with client.watch(
                        CONFIGMAPS, namespace=ns, resource_version=old_rv, timeout_seconds=10
                    ) as events:
                        event_type, obj = await events.__anext__()
                assert event_type == "ERROR"
                assert obj["code"] == 410 and obj["reason"] in ("Expired", "Gone")
            except Gone as e:
                assert e.code == 410
    finally:
        server.stop()


async def test_retries_over_a_broken_connection(
    config: ClientConfig, kube: ApiClient, namespace: str
) -> None:
    target = urlsplit(config.server)
    async with trio.open_nursery() as nursery:
        proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 443)
        await nursery.start(proxy.run)
        cfg = dataclasses.replace(config, server=proxy.url, max_retries=3)
        async with ApiClient(cfg) as client:
            await client.create(CONFIGMAPS, configmap("via-proxy"), namespace=namespace)
            proxy.cut()
            # Refused connections are retried (even for POST: nothing was sent) ...
            with pytest.raises(ApiConnectionError):
                await client.get(CONFIGMAPS, "via-proxy", namespace=namespace)

            # ... and succeed once the server is reachable again within the retries.
            async def restore_soon() -> None:
                await trio.sleep(0.3)
                await proxy.restore()

            nursery.start_soon(restore_soon)
            created = await client.create(CONFIGMAPS, configmap("after-cut"), namespace=namespace)
            assert created["metadata"]["name"] == "after-cut"
        proxy.close()


async def test_resource_paths() -> None:
    assert PODS.path("ns", "p", "status") == "/api/v1/namespaces/ns/pods/p/status"
    assert Resource("apps", "v1", "deployments").path() == "/apis/apps/v1/deployments"
    assert Resource("", "v1", "nodes").path(None, "n1") == "/api/v1/nodes/n1"
    assert DEPLOYMENTS.api_version == "apps/v1" and PODS.api_version == "v1"
    with pytest.raises(ValueError):
        PODS.path("ns", None, "status")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    st.lists(st.text(max_size=30), min_size=1, max_size=8),
)
def test_watch_framing_survives_any_chunking(cuts: list[int], names: list[str]) -> None:
    frames = [{"type": "ADDED", "object": {"metadata": {"name": n, "note": "a\nb"}}} for n in names]
    stream = b"".join(_json.dumps(f) + b"\n" for f in frames)
    bounds = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    watch = Watch(None, "/x", {}, httpx.Timeout(1))  # type: ignore[arg-type]
    for lo, hi in itertools.pairwise(bounds):
        watch._feed(stream[lo:hi])
    got = [watch._parse(line) for line in watch._frames]
    assert got == [("ADDED", f["object"]) for f in frames]
    assert not watch._buffer
