"""PersistentVolumes, claims and StorageClasses through the real kubectl: defaults, the
default class, validation and `kubectl get pv,pvc,sc` columns."""

from __future__ import annotations

import json
import os

from tests.conformance.conftest import Kubectl, rows


def _pv(name: str, size: str = "1Gi", cls: str = "manual") -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": cls,
                "hostPath": {"path": f"/tmp/{name}"},
            },
        }
    )


def _pvc(name: str, size: str = "1Gi", cls: str | None = None) -> str:
    spec: dict[str, object] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    }
    if cls is not None:
        spec["storageClassName"] = cls
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def test_default_storage_class_printed(kubectl: Kubectl) -> None:
    out = kubectl("get", "sc").stdout
    table = rows(out)
    assert table[0] == [
        "NAME",
        "PROVISIONER",
        "RECLAIMPOLICY",
        "VOLUMEBINDINGMODE",
        "ALLOWVOLUMEEXPANSION",
        "AGE",
    ]
    assert table[1][:5] == [
        "local-path (default)",
        "rancher.io/local-path",
        "Delete",
        "WaitForFirstConsumer",
        "true",
    ]


def test_claim_gets_default_class_and_columns(kubectl: Kubectl, ns: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", stdin=_pvc("data"))
    claim = json.loads(kubectl("get", "pvc", "data", "-n", ns, "-o", "json").stdout)
    assert claim["spec"]["storageClassName"] == "local-path"
    assert claim["spec"]["volumeMode"] == "Filesystem"
    assert claim["status"]["phase"] == "Pending"
    assert claim["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    table = rows(kubectl("get", "pvc", "-n", ns).stdout)
    assert table[0] == [
        "NAME",
        "STATUS",
        "VOLUME",
        "CAPACITY",
        "ACCESS MODES",
        "STORAGECLASS",
        "VOLUMEATTRIBUTESCLASS",
        "AGE",
    ]
    assert table[1][:4] == ["data", "Pending", "local-path", "<unset>"]
    # An explicit empty class stays empty: the claim binds only to class-less volumes.
    kubectl("apply", "-n", ns, "-f", "-", stdin=_pvc("none", cls=""))
    claim = json.loads(kubectl("get", "pvc", "none", "-n", ns, "-o", "json").stdout)
    assert claim["spec"]["storageClassName"] == ""


def test_pv_defaults_and_columns(kubectl: Kubectl) -> None:
    name = "pv-" + os.urandom(3).hex()
    kubectl("apply", "-f", "-", stdin=_pv(name, "2Gi"))
    pv = json.loads(kubectl("get", "pv", name, "-o", "json").stdout)
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["volumeMode"] == "Filesystem"
    assert pv["status"]["phase"] == "Pending"
    # StorageObjectInUseProtection admission; the protection controller (not running with
    # this API server alone) removes it once the volume is not bound.
    assert pv["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
    out = kubectl("get", "pv", name).stdout
    table = rows(out)
    assert table[0] == [
        "NAME",
        "CAPACITY",
        "ACCESS MODES",
        "RECLAIM POLICY",
        "STATUS",
        "CLAIM",
        "STORAGECLASS",
        "VOLUMEATTRIBUTESCLASS",
        "REASON",
        "AGE",
    ]
    kubectl("delete", "pv", name, "--wait=false")


def test_validation_messages(kubectl: Kubectl, ns: str) -> None:
    bad = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "bad"},
            "spec": {"resources": {"requests": {}}},
        }
    )
    proc = kubectl("apply", "-n", ns, "-f", "-", stdin=bad, check=False)
    assert proc.returncode != 0
    assert "spec.accessModes: Required value: at least 1 access mode is required" in proc.stderr
    assert "spec.resources[storage]: Required value" in proc.stderr
    proc = kubectl(
        "apply",
        "-f",
        "-",
        stdin=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": "no-source"},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]},
            }
        ),
        check=False,
    )
    assert "spec: Required value: must specify a volume type" in proc.stderr
    # A claim that is not bound may not grow (PersistentVolumeClaimResize admission).
    kubectl("apply", "-n", ns, "-f", "-", stdin=_pvc("grow"))
    proc = kubectl(
        "patch",
        "pvc",
        "grow",
        "-n",
        ns,
        "-p",
        '{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}',
        check=False,
    )
    assert "only dynamically provisioned pvc can be resized" in proc.stderr
    proc = kubectl(
        "patch",
        "pvc",
        "grow",
        "-n",
        ns,
        "-p",
        '{"spec":{"accessModes":["ReadWriteMany"]}}',
        check=False,
    )
    assert "spec is immutable after creation" in proc.stderr
