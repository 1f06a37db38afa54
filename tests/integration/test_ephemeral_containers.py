"""pods/ephemeralcontainers on the API server: GET, PATCH and PUT, and upstream's refusals.

No kubelet: the pods are never scheduled, only their stored spec is at stake.
"""

from __future__ import annotations

from typing import Any

import httpx

SMP = {"Content-Type": "application/strategic-merge-patch+json"}


def _pod(api: httpx.Client, namespace: str) -> str:
    body = {
        "metadata": {"name": "app"},
        "spec": {
            "containers": [{"name": "main", "image": "busybox:1.35"}],
            "initContainers": [{"name": "setup", "image": "busybox:1.35"}],
        },
    }
    r = api.post(f"/api/v1/namespaces/{namespace}/pods", json=body)
    assert r.status_code == 201, r.text
    return f"/api/v1/namespaces/{namespace}/pods/app"


def _debugger(name: str = "dbg", **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox:1.35", "stdin": True, "tty": True, **extra}


def _patch(api: httpx.Client, url: str, *containers: dict[str, Any]) -> httpx.Response:
    body = {"spec": {"ephemeralContainers": list(containers)}}
    return api.patch(f"{url}/ephemeralcontainers", json=body, headers=SMP)


def _causes(r: httpx.Response) -> list[tuple[str, str, str]]:
    assert r.status_code == 422, r.text
    status = r.json()
    assert status["reason"] == "Invalid" and status["details"]["kind"] == "Pod"
    return [(c["reason"], c["field"], c["message"]) for c in status["details"]["causes"]]


def test_add_get_and_only_ephemeral_containers_change(api: httpx.Client, namespace: str) -> None:
    url = _pod(api, namespace)
    r = _patch(api, url, _debugger(targetContainerName="main", command=["sh"]))
    assert r.status_code == 200, r.text
    (added,) = r.json()["spec"]["ephemeralContainers"]
    # Defaulted like any container.
    assert added["terminationMessagePath"] == "/dev/termination-log"
    assert added["imagePullPolicy"] == "IfNotPresent"
    got = api.get(f"{url}/ephemeralcontainers").json()
    assert got["kind"] == "Pod" and got["spec"]["ephemeralContainers"] == [added]
    # Anything else in the body is ignored: only spec.ephemeralContainers is written.
    body = {
        "metadata": {"labels": {"sneaky": "yes"}},
        "spec": {"activeDeadlineSeconds": 5, "ephemeralContainers": [added, _debugger("two")]},
    }
    r = api.patch(f"{url}/ephemeralcontainers", json=body, headers=SMP)
    assert r.status_code == 200, r.text
    pod = api.get(url).json()
    assert [c["name"] for c in pod["spec"]["ephemeralContainers"]] == ["dbg", "two"]
    assert "sneaky" not in (pod["metadata"].get("labels") or {})
    assert "activeDeadlineSeconds" not in pod["spec"]
    # PUT of the whole pod through the subresource.
    pod["spec"]["ephemeralContainers"].append(_debugger("three"))
    r = api.put(f"{url}/ephemeralcontainers", json=pod)
    assert r.status_code == 200, r.text
    assert len(r.json()["spec"]["ephemeralContainers"]) == 3
    # The pod itself may not change them.
    pod = api.get(url).json()
    pod["spec"]["ephemeralContainers"].append(_debugger("four"))
    r = api.put(url, json=pod)
    assert r.status_code == 422 and "pod updates may not change fields" in r.text


def test_refusals_change_nothing(api: httpx.Client, namespace: str) -> None:
    url = _pod(api, namespace)
    r = _patch(
        api,
        url,
        _debugger(
            ports=[{"containerPort": 80}],
            resources={"limits": {"cpu": "1"}},
            lifecycle={"preStop": {"exec": {"command": ["true"]}}},
            readinessProbe={"exec": {"command": ["true"]}},
            targetContainerName="nope",
        ),
    )
    causes = _causes(r)
    forbidden = "Forbidden: cannot be set for an Ephemeral Container"
    for key in ("ports", "resources", "lifecycle", "readinessProbe"):
        cause = ("FieldValueForbidden", f"spec.ephemeralContainers[0].{key}", forbidden)
        assert cause in causes, causes
    assert any(
        c[0] == "FieldValueNotFound" and c[1] == "spec.ephemeralContainers[0].targetContainerName"
        for c in causes
    ), causes
    assert f"spec.ephemeralContainers[0].ports: {forbidden}" in r.json()["message"]
    # Names are unique across all the pod's containers.
    for taken in ("main", "setup"):
        causes = _causes(_patch(api, url, _debugger(taken)))
        assert ("FieldValueDuplicate", "spec.ephemeralContainers[0].name") in [
            c[:2] for c in causes
        ]
    assert "ephemeralContainers" not in api.get(url).json()["spec"]
    # Once added, neither removed nor changed.
    assert _patch(api, url, _debugger()).status_code == 200
    pod = api.get(url).json()
    pod["spec"]["ephemeralContainers"] = []
    r = api.put(f"{url}/ephemeralcontainers", json=pod)
    assert _causes(r) == [
        (
            "FieldValueForbidden",
            "spec.ephemeralContainers",
            'Forbidden: existing ephemeral containers "dbg" may not be removed\n',
        )
    ]
    pod["spec"]["ephemeralContainers"] = [_debugger(image="busybox:other")]
    causes = _causes(api.put(f"{url}/ephemeralcontainers", json=pod))
    assert causes[0][1] == "spec.ephemeralContainers[dbg]"
    assert causes[0][2].startswith('Forbidden: existing ephemeral containers "dbg" may not be')
    (kept,) = api.get(url).json()["spec"]["ephemeralContainers"]
    assert kept["image"] == "busybox:1.35"
    # Not on create.
    body = {
        "metadata": {"name": "born-with"},
        "spec": {
            "containers": [{"name": "main", "image": "busybox:1.35"}],
            "ephemeralContainers": [_debugger()],
        },
    }
    r = api.post(f"/api/v1/namespaces/{namespace}/pods", json=body)
    assert _causes(r) == [
        ("FieldValueForbidden", "spec.ephemeralContainers", "Forbidden: cannot be set on create")
    ]
