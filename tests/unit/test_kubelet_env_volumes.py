"""Container env (env, envFrom, downward API, service links) and volume files on the host."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from k8slite.kubelet.config import Taint, parse_key_values, parse_taints
from k8slite.kubelet.envvars import ConfigError, container_env, service_env
from k8slite.kubelet.lifecycle import should_restart
from k8slite.kubelet.volumes import VolumeError, VolumeManager, write_atomic

OBJECTS: dict[tuple[str, str, str], dict[str, Any]] = {
    ("ConfigMap", "ns", "cm"): {"data": {"a": "1", "b": "2", "bad=key": "x"}},
    ("Secret", "ns", "sec"): {"data": {"pw": base64.b64encode(b"hunter2").decode()}},
}


async def get(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return OBJECTS.get((kind, namespace, name))


POD = {
    "metadata": {
        "name": "web",
        "namespace": "ns",
        "uid": "u-1",
        "labels": {"app": "web"},
        "annotations": {"note": "hi"},
    },
    "spec": {
        "nodeName": "n1",
        "serviceAccountName": "sa",
        "volumes": [{"name": "cfg", "configMap": {"name": "cm"}}],
    },
}


def svc(name: str, ns: str, ip: str | None, ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip, "ports": ports}}


async def test_env_sources_in_upstream_order() -> None:
    container = {
        "name": "c",
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "CM_a", "value": "overridden"},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
            {"name": "REF", "value": "$(PW)-$(UNKNOWN)-$$(PW)"},
            {"name": "LBL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        ],
        "resources": {},
    }
    env = await container_env(
        POD,
        container,
        get=get,
        services=[],
        pod_ips=["10.0.0.5"],
        host_ip="127.0.0.1",
        allocatable={"cpu": "3500m"},
    )
    values = dict(env)
    assert [k for k, _ in env][:2] == ["CM_a", "CM_b"]
    assert "CM_bad=key" not in values
    assert values["CM_a"] == "overridden" and values["PW"] == "hunter2"
    assert values["REF"] == "hunter2-$(UNKNOWN)-$(PW)"
    assert values["LBL"] == "web" and values["IPS"] == "10.0.0.5"
    assert values["CPU"] == "4"  # the node's allocatable, rounded up


async def test_missing_references_are_config_errors() -> None:
    for ref, message in (
        ({"configMapKeyRef": {"name": "nope", "key": "a"}}, 'configmap "nope" not found'),
        (
            {"configMapKeyRef": {"name": "cm", "key": "zz"}},
            "couldn't find key zz in ConfigMap ns/cm",
        ),
        ({"secretKeyRef": {"name": "nope", "key": "a"}}, 'secret "nope" not found'),
    ):
        container = {"name": "c", "env": [{"name": "X", "valueFrom": ref}]}
        with pytest.raises(ConfigError, match=message):
            await container_env(
                POD, container, get=get, services=[], pod_ips=[], host_ip="", allocatable={}
            )
    optional = {
        "name": "c",
        "env": [
            {
                "name": "X",
                "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "a", "optional": True}},
            }
        ],
    }
    assert (
        await container_env(
            POD, optional, get=get, services=[], pod_ips=[], host_ip="", allocatable={}
        )
        == []
    )


async def test_service_links() -> None:
    services = [
        svc(
            "my-db",
            "ns",
            "10.96.0.10",
            [
                {"name": "sql", "port": 5432, "protocol": "TCP"},
                {"name": "admin", "port": 9000, "protocol": "UDP"},
            ],
        ),
        svc("headless", "ns", "None", [{"port": 80}]),
        svc("kubernetes", "default", "10.96.0.1", [{"name": "https", "port": 443}]),
        svc("elsewhere", "other", "10.96.0.11", [{"port": 80}]),
    ]
    env = dict(
        await container_env(
            POD, {"name": "c"}, get=get, services=services, pod_ips=[], host_ip="", allocatable={}
        )
    )
    assert env["MY_DB_SERVICE_HOST"] == "10.96.0.10"
    assert env["MY_DB_SERVICE_PORT"] == "5432" and env["MY_DB_SERVICE_PORT_ADMIN"] == "9000"
    assert env["MY_DB_PORT"] == "tcp://10.96.0.10:5432"
    assert env["MY_DB_PORT_9000_UDP"] == "udp://10.96.0.10:9000"
    assert env["MY_DB_PORT_9000_UDP_PROTO"] == "udp"
    assert env["MY_DB_PORT_5432_TCP_ADDR"] == "10.96.0.10"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert not any(k.startswith(("HEADLESS", "ELSEWHERE")) for k in env)
    no_links = {**POD, "spec": {**POD["spec"], "enableServiceLinks": False}}
    env = dict(
        await container_env(
            no_links,
            {"name": "c"},
            get=get,
            services=services,
            pod_ips=[],
            host_ip="",
            allocatable={},
        )
    )
    assert "MY_DB_SERVICE_HOST" not in env and "KUBERNETES_SERVICE_HOST" in env
    assert service_env([]) == {}


def test_write_atomic_swaps_contents(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    assert write_atomic(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})
    assert (target / "a").read_bytes() == b"1" and (target / "dir" / "b").read_bytes() == b"2"
    assert (target / "a").is_symlink()
    assert os.stat(target / "dir" / "b").st_mode & 0o777 == 0o600
    first = os.readlink(target / "..data")
    assert not write_atomic(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})
    assert write_atomic(target, {"a": (b"changed", 0o644)})
    assert (target / "a").read_bytes() == b"changed"
    assert not (target / "dir").exists() and not (target / first).exists()


async def test_volume_manager(tmp_path: Path) -> None:
    manager = VolumeManager(tmp_path, get)
    host = tmp_path / "hostdir"
    pod = {
        **POD,
        "spec": {
            **POD["spec"],
            "volumes": [
                {
                    "name": "cfg",
                    "configMap": {
                        "name": "cm",
                        "items": [{"key": "a", "path": "x/a"}],
                        "defaultMode": 0o640,
                    },
                },
                {"name": "tmp", "emptyDir": {}},
                {"name": "host", "hostPath": {"path": str(host), "type": "DirectoryOrCreate"}},
                {
                    "name": "info",
                    "downwardAPI": {
                        "items": [
                            {"path": "ann", "fieldRef": {"fieldPath": "metadata.annotations"}}
                        ]
                    },
                },
            ],
        },
    }
    paths = await manager.setup(pod, pod_ips=["10.0.0.1"], host_ip="h", allocatable={})
    assert Path(paths["cfg"], "x", "a").read_text() == "1"
    assert os.stat(Path(paths["cfg"], "x", "a")).st_mode & 0o777 == 0o640
    assert host.is_dir() and paths["host"] == str(host)
    assert Path(paths["info"], "ann").read_text() == 'note="hi"'
    mounts = manager.mounts(
        {
            "name": "c",
            "volumeMounts": [
                {"name": "cfg", "mountPath": "/etc/cfg"},
                {"name": "tmp", "mountPath": "/data", "subPath": "sub"},
            ],
        },
        paths,
        pod,
    )
    assert mounts[0].read_only and not mounts[1].read_only
    assert mounts[1].host_path == str(Path(paths["tmp"]) / "sub")
    with pytest.raises(VolumeError, match="invalid subPath"):
        manager.mounts(
            {"name": "c", "volumeMounts": [{"name": "tmp", "mountPath": "/d", "subPath": "../x"}]},
            paths,
            pod,
        )
    bad = {**POD, "spec": {"volumes": [{"name": "v", "configMap": {"name": "nope"}}]}}
    with pytest.raises(VolumeError, match='configmap "nope" not found'):
        await manager.setup(bad, pod_ips=[], host_ip="", allocatable={})
    missing = {
        **POD,
        "spec": {
            "volumes": [
                {"name": "v", "hostPath": {"path": str(tmp_path / "absent"), "type": "Directory"}}
            ]
        },
    }
    with pytest.raises(VolumeError, match="is not a directory"):
        await manager.setup(missing, pod_ips=[], host_ip="", allocatable={})
    manager.cleanup("u-1")
    assert not manager.pod_dir("u-1").exists() and host.exists()


def test_flags_and_rules() -> None:
    assert parse_key_values("a=1,b=") == {"a": "1", "b": ""}
    assert parse_taints("dedicated=gpu:NoSchedule,spot:PreferNoSchedule") == [
        Taint("dedicated", "gpu", "NoSchedule"),
        Taint("spot", "", "PreferNoSchedule"),
    ]
    with pytest.raises(ValueError):
        parse_taints("x=y:Sometimes")
    assert should_restart("Always", 0) and not should_restart("Never", 1)
    assert should_restart("OnFailure", 1) and not should_restart("OnFailure", 0)
    assert should_restart("Never", 0, sidecar=True)
