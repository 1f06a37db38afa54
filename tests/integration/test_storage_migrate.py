"""`k8slite storage migrate` between a real RocksDB and a real etcd: every object and uid kept
through a round trip, served by real API servers; refusals of a non-empty target and of a data
dir whose API server is running."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from k8slite._native import dumps, loads
from k8slite.storage import Op, RocksStore, Store
from k8slite.storage.etcd import EtcdStore
from tests.conftest import ServerHandle, start_apiserver
from tests.etcd_server import EtcdProcess, start_etcd
from tests.integration.kubelet_harness import kubectl
from tests.polling import wait_for

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                        },
                    }
                },
            }
        ],
    },
}
DEPLOYMENT = {
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]},
        },
    },
}
# What the test creates, by list URL: each object is checked after every migration.
URLS = [
    "/api/v1/namespaces",
    "/api/v1/namespaces/shop/configmaps",
    "/api/v1/namespaces/shop/secrets",
    "/apis/apps/v1/namespaces/shop/deployments",
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    "/apis/example.com/v1/namespaces/shop/widgets",
    "/api/v1/namespaces/shop/events",
    "/apis/coordination.k8s.io/v1/namespaces/shop/leases",
]
EVENT = {
    "metadata": {"name": "cm0.1"},
    "involvedObject": {"kind": "ConfigMap", "namespace": "shop", "name": "cm0"},
    "reason": "Migrated",
    "message": "an Event, kept with an etcd lease of --event-ttl",
    "type": "Normal",
}


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdProcess]:
    server = start_etcd(tmp_path / "etcd", tls=True)
    yield server
    server.stop()


def migrate(etcd: EtcdProcess, *args: str) -> subprocess.CompletedProcess[str]:
    assert etcd.tls is not None
    tls = etcd.tls
    argv = [sys.executable, "-m", "k8slite.cmd.k8slite", "storage", "migrate", *args]
    argv += [f"--etcd-servers={etcd.url}", f"--etcd-cafile={tls.cafile}"]
    argv += [f"--etcd-certfile={tls.certfile}", f"--etcd-keyfile={tls.keyfile}"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def populate(api: httpx.Client) -> None:
    def created(url: str, body: dict[str, Any]) -> None:
        r = api.post(url, json=body)
        assert r.status_code == 201, r.text

    created("/api/v1/namespaces", {"metadata": {"name": "shop"}})
    created("/api/v1/namespaces", {"metadata": {"name": "other"}})
    for i in range(5):
        created(URLS[1], {"metadata": {"name": f"cm{i}"}, "data": {"k": f"v{i}", "text": "ü✓"}})
    created(URLS[6], EVENT)
    lease = {
        "metadata": {"name": "leader"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
    }
    created(URLS[7], lease)
    created(URLS[2], {"metadata": {"name": "token"}, "stringData": {"password": "s3cr3t"}})
    created(URLS[3], DEPLOYMENT)
    created(URLS[4], CRD)
    # Served once Established; until then creating a widget answers 404.
    wait_for(lambda: api.get(URLS[5]).status_code == 200, what="the Widget CRD to be served")
    created(
        URLS[5],
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w1"},
            "spec": {"size": 3, "ratio": 0.5},
        },
    )


def objects(api: httpx.Client) -> dict[tuple[str, str], dict[str, Any]]:
    """Every object of URLS by (url, name), resourceVersion left out."""
    out = {}
    for url in URLS:
        r = api.get(url)
        assert r.status_code == 200, r.text
        for item in r.json()["items"]:
            item["metadata"].pop("resourceVersion")
            out[url, item["metadata"]["name"]] = item
    return out


def normalized(data: bytes) -> bytes:
    """Stored bytes with metadata.resourceVersion blanked (only when they re-encode exactly)."""
    obj = loads(data)
    if isinstance(obj, dict) and "resourceVersion" in obj.get("metadata", {}):
        assert dumps(obj) == data
        obj["metadata"]["resourceVersion"] = ""
        return bytes(dumps(obj))
    return data


def stored(store: Store) -> dict[str, bytes]:
    async def scan() -> dict[str, bytes]:
        async with store:
            return {key: normalized(data) for key, data, _ in store.scan("")}

    return trio.run(scan)


def etcd_store(etcd: EtcdProcess) -> EtcdStore:
    return EtcdStore([etcd.url], tls=etcd.tls, compaction_interval=0)


KINDS = {URLS[1]: "ConfigMap", URLS[2]: "Secret", URLS[3]: "Deployment", URLS[5]: "Widget"}


def check_served(server: ServerHandle, expected: dict[tuple[str, str], dict[str, Any]]) -> None:
    with server.client() as api:
        # The CRD's kind is served again once the new server has established it.
        wait_for(lambda: api.get(URLS[5]).status_code == 200, what="widgets to be served")
        got = objects(api)
    assert got == expected
    # The real kubectl sees the same objects, with the same uids, through the new server.
    shown = kubectl(
        server, "get", "deployments,configmaps,secrets,widgets", "-n", "shop", "-o=json"
    )
    assert shown.returncode == 0, shown.stderr
    uids = {
        (i["kind"], i["metadata"]["name"], i["metadata"]["uid"])
        for i in json.loads(shown.stdout)["items"]
    }
    in_shop = {
        (url, name): obj for (url, name), obj in expected.items() if "/namespaces/shop/" in url
    }
    assert {
        (o.get("kind") or KINDS[url], name, o["metadata"]["uid"])
        for (url, name), o in in_shop.items()
        if url in KINDS
    } == uids
    # shop, other, 5 ConfigMaps, Secret, Deployment, CRD, CR, Event, Lease
    assert len(expected) >= 13


def test_round_trip_rocksdb_etcd_rocksdb(tmp_path: Path, etcd: EtcdProcess) -> None:
    first = tmp_path / "first"
    server = start_apiserver(first)
    try:
        with server.client() as api:
            populate(api)
            before = objects(api)
    finally:
        server.stop()
    on_rocks = stored(RocksStore(first / "db"))

    result = migrate(etcd, "--from", "rocksdb", "--to", "etcd", f"--data-dir={first}")
    assert result.returncode == 0, result.stderr
    assert "resourceVersion changed" in result.stdout and "relist" in result.stdout
    assert "configmaps  " in result.stdout and "widgets.example.com" in result.stdout
    # Every key, byte for byte but its resourceVersion.
    assert stored(etcd_store(etcd)) == on_rocks
    # Events live by an etcd lease there, as the API server on etcd writes them, at
    # upstream's key (/registry/events/..., no group segment).
    event_key = base64.b64encode(b"/registry/events/shop/cm0.1").decode()
    with etcd.client() as c:
        kvs = c.post("/v3/kv/range", json={"key": event_key}).json()["kvs"]
    assert int(kvs[0].get("lease", 0)) != 0

    server = start_apiserver(first, *etcd.flags)  # same PKI, now on etcd
    try:
        check_served(server, before)
    finally:
        server.stop()

    # Back to a fresh data dir holding only the PKI.
    second = tmp_path / "second"
    second.mkdir()
    shutil.copytree(first / "pki", second / "pki")
    on_etcd = stored(etcd_store(etcd))
    result = migrate(etcd, "--from", "etcd", "--to", "rocksdb", f"--data-dir={second}")
    assert result.returncode == 0, result.stderr
    assert stored(RocksStore(second / "db")) == on_etcd
    server = start_apiserver(second)
    try:
        check_served(server, before)
    finally:
        server.stop()


def test_refuses_a_non_empty_target_unless_forced(tmp_path: Path, etcd: EtcdProcess) -> None:
    data = tmp_path / "data"
    start_apiserver(data).stop()  # a cluster's bootstrap objects
    assert migrate(etcd, "--from", "rocksdb", "--to", "etcd", f"--data-dir={data}").returncode == 0
    in_etcd = stored(etcd_store(etcd))
    revision = trio.run(_revision, etcd_store(etcd))

    again = migrate(etcd, "--from", "rocksdb", "--to", "etcd", f"--data-dir={data}")
    assert again.returncode == 1
    assert f"is not empty: it holds {len(in_etcd)} keys; use --force" in again.stderr
    assert trio.run(_revision, etcd_store(etcd)) == revision  # nothing written

    forced = migrate(etcd, "--from", "rocksdb", "--to", "etcd", f"--data-dir={data}", "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"deleted {len(in_etcd)} keys from the target (--force)" in forced.stdout
    assert stored(etcd_store(etcd)) == in_etcd


async def _revision(store: EtcdStore) -> int:
    async with store:
        return store.revision()


def test_refuses_a_data_dir_whose_apiserver_runs(tmp_path: Path, etcd: EtcdProcess) -> None:
    data = tmp_path / "data"
    server = start_apiserver(data)
    try:
        result = migrate(etcd, "--from", "rocksdb", "--to", "etcd", f"--data-dir={data}")
    finally:
        server.stop()
    assert result.returncode == 1
    assert "is locked: an API server of data dir" in result.stderr, result.stderr
    assert stored(etcd_store(etcd)) == {}


def fill(db: Path, names: int, last: tuple[str, bytes]) -> None:
    """A RocksDB of `names` ConfigMaps written by our encoder, then the raw key `last`."""

    async def write() -> None:
        async with RocksStore(db) as store:
            for i in range(names):
                body = dumps({"metadata": {"name": f"a{i:03}", "resourceVersion": "0"}})
                key = f"/registry/core/configmaps/x/a{i:03}"
                await store.txn([Op("create", key, stamp(body))])
            await store.txn([Op("create", last[0], lambda _rv: last[1])])

    trio.run(write)


def stamp(body: bytes) -> Any:
    def encode(rv: int) -> bytes:
        obj = loads(body)
        obj["metadata"]["resourceVersion"] = str(rv)
        return bytes(dumps(obj))

    return encode


def test_a_value_that_cannot_be_copied_exactly_stops_before_any_write(
    tmp_path: Path, etcd: EtcdProcess
) -> None:
    data = tmp_path / "data"
    # Not our encoder's bytes (spaces): re-encoding it would change more than its RV.
    odd = b'{"metadata": {"name": "zz", "resourceVersion": "151"}}'
    fill(data / "db", 150, ("/registry/core/configmaps/x/zz", odd))
    result = migrate(etcd, "--from", "rocksdb", "--to", "etcd", f"--data-dir={data}")
    assert result.returncode == 1
    assert "/registry/core/configmaps/x/zz: its stored bytes do not re-encode" in result.stderr
    assert "nothing was written to the target" in result.stderr
    assert stored(etcd_store(etcd)) == {}


def test_a_failed_write_says_what_the_target_holds(tmp_path: Path, etcd: EtcdProcess) -> None:
    """etcd refuses a value over its request size limit (1.5 MiB) after the others are in."""
    data = tmp_path / "data"
    big = b'{"data":"' + b"x" * (2 << 20) + b'"}'
    fill(data / "db", 150, ("/registry/core/configmaps/x/zz", big))
    result = migrate(etcd, "--from", "rocksdb", "--to", "etcd", f"--data-dir={data}")
    assert result.returncode == 1
    assert "failed after writing only the 150 objects above" in result.stderr, result.stderr
    assert "configmaps  150" in result.stdout
    in_etcd = stored(etcd_store(etcd))
    assert len(in_etcd) == 150 and "/registry/core/configmaps/x/zz" not in in_etcd
