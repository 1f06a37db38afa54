"""The pure parts of `k8slite storage migrate`: resources of keys, restamping, batching."""

from __future__ import annotations

import pytest

from k8slite._native import dumps
from k8slite.storage.base import Op
from k8slite.storage.migrate import BATCH_OPS, MigrationError, batches, resource_of, restamp


@pytest.mark.parametrize(
    ("key", "resource"),
    [
        ("/registry/core/configmaps/ns/a", "configmaps"),
        ("/registry/core/namespaces/a", "namespaces"),
        ("/registry/apps/deployments/ns/web", "deployments.apps"),
        ("/registry/example.com/widgets/ns/w1", "widgets.example.com"),
        ("/registry/masterleases/10.0.0.1:6443", "masterleases"),
    ],
)
def test_resource_of(key: str, resource: str) -> None:
    assert resource_of(key) == resource


def test_restamp_changes_only_the_resource_version() -> None:
    obj = {
        "metadata": {"name": "a", "uid": "u-1", "resourceVersion": "7"},
        "involvedObject": {"resourceVersion": "7"},
        "data": {"x": "7", "n": 1.5},
    }
    data = dumps(obj)
    encode = restamp("/registry/core/events/ns/a", data, 7)
    expected = dict(obj, metadata={"name": "a", "uid": "u-1", "resourceVersion": "1234"})
    assert encode(1234) == dumps(expected)


def test_restamp_copies_values_that_are_not_objects_verbatim() -> None:
    claim = b'{"parentRef":{"resource":"services","namespace":"default","name":"k"}}'
    assert restamp("/registry/networking.k8s.io/ipaddresses/10.96.0.1", claim, 3)(99) == claim
    assert restamp("/registry/x/y/z", b"not json", 3)(99) == b"not json"


def test_restamp_refuses_bytes_it_would_change() -> None:
    with pytest.raises(MigrationError, match="do not re-encode identically"):
        restamp("/registry/core/configmaps/ns/a", b'{"metadata": {"resourceVersion": "3"}}', 3)
    # A resourceVersion other than the key's revision: not what our encoder stored.
    with pytest.raises(MigrationError):
        restamp("/registry/core/configmaps/ns/a", dumps({"metadata": {"resourceVersion": "2"}}), 3)


def test_batches_respect_etcd_limits() -> None:
    ops = [(Op("create", f"/k{i}", lambda _rv: b""), 10) for i in range(BATCH_OPS + 5)]
    assert [len(b) for b in batches(ops)] == [BATCH_OPS, 5]
    big = [(Op("create", f"/b{i}", lambda _rv: b""), 300 << 10) for i in range(3)]
    assert [len(b) for b in batches(big)] == [1, 1, 1]
