"""StatefulSets against a real API server and controller manager (a fake kubelet runs the
pods), with the real kubectl for scale and the rollout commands."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trio

from k8slite.client import ApiClient, NotFound, SharedInformer
from k8slite.client.resource import (
    CONTROLLERREVISIONS,
    ENDPOINTSLICES,
    EVENTS,
    PERSISTENTVOLUMECLAIMS,
    PODS,
    SERVICES,
    STATEFULSETS,
)
from k8slite.component.objects import Obj
from tests.conftest import ServerHandle, kubectl_path
from tests.integration.controller_harness import (
    FakeKubelet,
    ManagerHandle,
    admin_config,
    create_namespace,
    is_ready,
    kubectl,
    pods_of,
    start_controller_manager,
    wait_for,
)

NEVER_READY = "never-ready:1"


@pytest.fixture(scope="module")
def manager(module_apiserver: ServerHandle) -> Iterator[ManagerHandle]:
    handle = start_controller_manager(module_apiserver)
    yield handle
    handle.stop()


@pytest.fixture
async def kube(module_apiserver: ServerHandle, manager: ManagerHandle) -> AsyncIterator[ApiClient]:
    async with ApiClient(admin_config(module_apiserver)) as client:
        yield client


@pytest.fixture
async def ns(kube: ApiClient) -> str:
    return await create_namespace(kube, "sts")


@pytest.fixture
async def kubelet(kube: ApiClient, ns: str, nursery: trio.Nursery) -> FakeKubelet:
    fake = FakeKubelet(
        kube, ns, ["node-1", "node-2"], ready_delay=0.3, never_ready=frozenset({NEVER_READY})
    )
    await nursery.start(fake.run)
    return fake


def statefulset(
    name: str = "web", replicas: int = 3, image: str = "busybox:1.35", **spec: Any
) -> Obj:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            **spec,
        },
    }


class PodLog:
    """Pod events in the order the API server sent them, with each pod's readiness at
    the time (so a test can see what was Ready when the next pod appeared)."""

    def __init__(self, client: ApiClient, ns: str) -> None:
        self.informer = SharedInformer(client, PODS, namespace=ns)
        self.created: list[str] = []
        self.deleting: list[str] = []
        self.ready: set[str] = set()
        self.ready_at_create: dict[str, set[str]] = {}
        self.informer.add_event_handler(self._added, self._updated, self._gone)

    def _added(self, pod: Obj) -> None:
        name = pod["metadata"]["name"]
        self.ready_at_create[name] = set(self.ready)
        self.created.append(name)
        self._updated(pod, pod)

    def _updated(self, old: Obj, new: Obj) -> None:
        name = new["metadata"]["name"]
        if new["metadata"].get("deletionTimestamp"):
            self.ready.discard(name)
            if name not in self.deleting:
                self.deleting.append(name)
        elif is_ready(new):
            self.ready.add(name)

    def _gone(self, pod: Any) -> None:
        obj = getattr(pod, "obj", pod)
        self.ready.discard(obj["metadata"]["name"])
        if obj["metadata"]["name"] not in self.deleting:
            self.deleting.append(obj["metadata"]["name"])

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.informer.run)
            await self.informer.wait_synced()
            task_status.started()


async def active_pods(kube: ApiClient, ns: str) -> dict[str, Obj]:
    items = pods_of((await kube.list(PODS, namespace=ns))["items"])
    return {p["metadata"]["name"]: p for p in items}


async def all_ready(kube: ApiClient, ns: str, names: list[str]) -> bool:
    pods = await active_pods(kube, ns)
    return sorted(pods) == sorted(names) and all(is_ready(p) for p in pods.values())


async def sts_status(kube: ApiClient, ns: str, name: str = "web") -> Obj:
    return (await kube.get(STATEFULSETS, name, namespace=ns)).get("status") or {}


# ---------------------------------------------------------------------- tests


async def test_ordered_create_and_scale_down(
    kube: ApiClient,
    ns: str,
    kubelet: FakeKubelet,
    module_apiserver: ServerHandle,
    nursery: trio.Nursery,
) -> None:
    log = PodLog(kube, ns)
    await nursery.start(log.run)
    await kube.create(STATEFULSETS, statefulset(), namespace=ns)
    names = ["web-0", "web-1", "web-2"]
    await wait_for(lambda: all_ready(kube, ns, names), message="3 ready pods")
    # Each ordinal appeared only once every lower one was Ready.
    assert log.created == names
    assert "web-0" in log.ready_at_create["web-1"]
    assert {"web-0", "web-1"} <= log.ready_at_create["web-2"]

    pod = (await active_pods(kube, ns))["web-1"]
    assert pod["spec"]["hostname"] == "web-1"
    assert pod["spec"]["subdomain"] == "web"
    labels = pod["metadata"]["labels"]
    assert labels["statefulset.kubernetes.io/pod-name"] == "web-1"
    assert labels["apps.kubernetes.io/pod-index"] == "1"
    status = await wait_for(
        lambda: _status_if(kube, ns, lambda s: s.get("readyReplicas") == 3), message="status"
    )
    assert status["replicas"] == 3 and status["availableReplicas"] == 3
    assert (
        status["currentRevision"] == status["updateRevision"] == labels["controller-revision-hash"]
    )
    assert status["updatedReplicas"] == 3 and status["currentReplicas"] == 3

    out = await kubectl(module_apiserver, "get", "sts", "-n", ns, "-o", "wide")
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"]
    assert row.split()[:2] == ["web", "3/3"] and row.split()[-1] == "busybox:1.35"

    async def created_event() -> bool:
        events = (await kube.list(EVENTS, namespace=ns))["items"]
        messages = {e["message"] for e in events if e["reason"] == "SuccessfulCreate"}
        return "create Pod web-0 in StatefulSet web successful" in messages

    # Events are written in the background: poll for the one we want.
    await wait_for(created_event, message="the SuccessfulCreate event")

    # A pod whose identity label was changed gets it back.
    await kubectl(
        module_apiserver,
        "label",
        "pod",
        "web-2",
        "-n",
        ns,
        "--overwrite",
        "apps.kubernetes.io/pod-index=9",
    )

    async def relabelled() -> bool:
        found = (await active_pods(kube, ns))["web-2"]
        return found["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "2"

    await wait_for(relabelled, message="web-2's index label restored")

    out = await kubectl(module_apiserver, "scale", "sts", "web", "-n", ns, "--replicas=1")
    assert "statefulset.apps/web scaled" in out
    await wait_for(lambda: all_ready(kube, ns, ["web-0"]), message="one pod left")
    # The highest ordinal went first.
    assert log.deleting == ["web-2", "web-1"]
    await wait_for(lambda: _status_if(kube, ns, lambda s: s.get("replicas") == 1), message="status")


async def _status_if(kube: ApiClient, ns: str, test: Any, name: str = "web") -> Obj | None:
    status = await sts_status(kube, ns, name)
    return status if test(status) else None


async def test_parallel_creates_all_at_once(kube: ApiClient, ns: str, kubelet: FakeKubelet) -> None:
    body = statefulset(image=NEVER_READY, podManagementPolicy="Parallel")
    await kube.create(STATEFULSETS, body, namespace=ns)
    # None of them ever becomes Ready, yet all three are made.
    pods = await wait_for(
        lambda: _pods_named(kube, ns, ["web-0", "web-1", "web-2"]), message="three pods"
    )
    assert not any(is_ready(p) for p in pods.values())


async def test_ordered_waits_for_readiness(kube: ApiClient, ns: str, kubelet: FakeKubelet) -> None:
    await kube.create(STATEFULSETS, statefulset(image=NEVER_READY), namespace=ns)
    await wait_for(lambda: _pods_named(kube, ns, ["web-0"]), message="web-0")
    # web-0 never becomes Ready, so web-1 is never made: give the controller a few syncs.
    for _ in range(10):
        await trio.sleep(0.2)
        assert sorted(await active_pods(kube, ns)) == ["web-0"]


async def _pods_named(kube: ApiClient, ns: str, names: list[str]) -> dict[str, Obj] | None:
    pods = await active_pods(kube, ns)
    return pods if sorted(pods) == sorted(names) else None


def _image(pod: Obj) -> str:
    return str(pod["spec"]["containers"][0]["image"])


async def _images(kube: ApiClient, ns: str) -> dict[str, str]:
    return {n: _image(p) for n, p in (await active_pods(kube, ns)).items()}


async def test_rolling_update_partition_and_rollout_commands(
    kube: ApiClient, ns: str, kubelet: FakeKubelet, module_apiserver: ServerHandle
) -> None:
    await kube.create(STATEFULSETS, statefulset(), namespace=ns)
    names = ["web-0", "web-1", "web-2"]
    await wait_for(lambda: all_ready(kube, ns, names), message="3 ready pods")
    out = await kubectl(module_apiserver, "rollout", "status", "sts/web", "-n", ns, "--timeout=30s")
    # kubectl reports any RollingUpdate set with a partition (defaulted to 0) this way.
    assert "partitioned roll out complete: 3 new pods have been updated" in out

    patch = {
        "spec": {
            "updateStrategy": {"rollingUpdate": {"partition": 2}},
            "template": {"spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}},
        }
    }
    await kubectl(module_apiserver, "patch", "sts", "web", "-n", ns, "-p", json.dumps(patch))

    async def only_web2_updated() -> bool:
        images = await _images(kube, ns)
        ready = await all_ready(kube, ns, names)
        return ready and images == {
            "web-0": "busybox:1.35",
            "web-1": "busybox:1.35",
            "web-2": "busybox:1.36",
        }

    await wait_for(only_web2_updated, message="web-2 updated alone")
    status = await wait_for(
        lambda: _status_if(kube, ns, lambda s: s.get("updatedReplicas") == 1), message="status"
    )
    assert status["currentRevision"] != status["updateRevision"]
    assert status["currentReplicas"] == 2
    out = await kubectl(module_apiserver, "rollout", "status", "sts/web", "-n", ns, "--timeout=30s")
    assert "partitioned roll out complete: 1 new pods have been updated" in out

    await kubectl(
        module_apiserver,
        "patch",
        "sts",
        "web",
        "-n",
        ns,
        "-p",
        '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}',
    )
    out = await kubectl(module_apiserver, "rollout", "status", "sts/web", "-n", ns, "--timeout=45s")
    assert "partitioned roll out complete: 3 new pods have been updated" in out
    assert set((await _images(kube, ns)).values()) == {"busybox:1.36"}

    out = await kubectl(module_apiserver, "rollout", "history", "sts/web", "-n", ns)
    rows = [line.split()[0] for line in out.splitlines()[2:] if line.strip()]
    assert rows == ["1", "2"], out
    out = await kubectl(module_apiserver, "rollout", "history", "sts/web", "-n", ns, "--revision=1")
    assert "busybox:1.35" in out
    out = await kubectl(module_apiserver, "get", "controllerrevisions", "-n", ns)
    assert out.splitlines()[0].split() == ["NAME", "CONTROLLER", "REVISION", "AGE"]
    assert "statefulset.apps/web" in out

    out = await kubectl(module_apiserver, "rollout", "undo", "sts/web", "-n", ns)
    assert "statefulset.apps/web rolled back" in out
    await kubectl(module_apiserver, "rollout", "status", "sts/web", "-n", ns, "--timeout=45s")
    await wait_for(
        lambda: _all_images(kube, ns, names, "busybox:1.35"), message="back to busybox:1.35"
    )
    # The undo reused revision 1's object, renumbered as the newest (3).
    revisions = (await kube.list(CONTROLLERREVISIONS, namespace=ns))["items"]
    assert sorted(r["revision"] for r in revisions) == [2, 3]


async def _all_images(kube: ApiClient, ns: str, names: list[str], image: str) -> bool:
    images = await _images(kube, ns)
    return sorted(images) == sorted(names) and set(images.values()) == {image}


async def test_on_delete(
    kube: ApiClient, ns: str, kubelet: FakeKubelet, module_apiserver: ServerHandle
) -> None:
    body = statefulset(replicas=2, updateStrategy={"type": "OnDelete"})
    await kube.create(STATEFULSETS, body, namespace=ns)
    await wait_for(lambda: all_ready(kube, ns, ["web-0", "web-1"]), message="2 ready pods")

    async def described() -> str | None:
        out = await kubectl(module_apiserver, "describe", "sts", "web", "-n", ns)
        return out if "create Pod web-1 in StatefulSet web successful" in out else None

    out = await wait_for(described, message="describe with the create event")
    assert "Update Strategy:    OnDelete" in out
    assert "Pods Status:        2 Running / 0 Waiting / 0 Succeeded / 0 Failed" in out
    image = {"spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}}
    await kube.patch(
        STATEFULSETS, "web", {"spec": {"template": image}}, namespace=ns, patch_type="strategic"
    )
    await wait_for(
        lambda: _status_if(kube, ns, lambda s: s.get("currentRevision") != s.get("updateRevision")),
        message="a new update revision",
    )
    assert set((await _images(kube, ns)).values()) == {"busybox:1.35"}
    await kube.delete(PODS, "web-1", namespace=ns)

    async def web1_new() -> bool:
        images = await _images(kube, ns)
        return images == {"web-0": "busybox:1.35", "web-1": "busybox:1.36"}

    await wait_for(web1_new, message="web-1 recreated at the new revision")


def _claim_template() -> Obj:
    return {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }


async def _claim_names(kube: ApiClient, ns: str) -> list[str]:
    items = (await kube.list(PERSISTENTVOLUMECLAIMS, namespace=ns))["items"]
    return sorted(
        c["metadata"]["name"] for c in items if not c["metadata"].get("deletionTimestamp")
    )


@pytest.mark.parametrize("when_scaled", ["Retain", "Delete"])
async def test_claims_per_ordinal(
    kube: ApiClient, ns: str, kubelet: FakeKubelet, when_scaled: str
) -> None:
    body = statefulset(
        replicas=2,
        volumeClaimTemplates=[_claim_template()],
        persistentVolumeClaimRetentionPolicy={"whenDeleted": "Retain", "whenScaled": when_scaled},
    )
    await kube.create(STATEFULSETS, body, namespace=ns)
    await wait_for(lambda: all_ready(kube, ns, ["web-0", "web-1"]), message="2 ready pods")
    assert await _claim_names(kube, ns) == ["data-web-0", "data-web-1"]
    pod = (await active_pods(kube, ns))["web-1"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}} in pod["spec"][
        "volumes"
    ]
    claim = await kube.get(PERSISTENTVOLUMECLAIMS, "data-web-1", namespace=ns)
    assert claim["metadata"]["labels"] == {"app": "web"}
    first_uid = claim["metadata"]["uid"]

    await kube.patch(STATEFULSETS, "web", {"spec": {"replicas": 1}}, namespace=ns)
    await wait_for(lambda: all_ready(kube, ns, ["web-0"]), message="one pod left")
    if when_scaled == "Retain":
        for _ in range(5):
            await trio.sleep(0.2)
            assert await _claim_names(kube, ns) == ["data-web-0", "data-web-1"]
    else:
        # The claim was owned by its pod, so the garbage collector took it with the pod.
        await wait_for(
            lambda: _gone(kube, ns, "data-web-1"), message="data-web-1 deleted with web-1"
        )
        assert await _claim_names(kube, ns) == ["data-web-0"]

    # Back at two: Retain reuses the claim, Delete made a fresh one.
    await kube.patch(STATEFULSETS, "web", {"spec": {"replicas": 2}}, namespace=ns)
    await wait_for(lambda: all_ready(kube, ns, ["web-0", "web-1"]), message="web-1 back")
    claim = await kube.get(PERSISTENTVOLUMECLAIMS, "data-web-1", namespace=ns)
    assert (claim["metadata"]["uid"] == first_uid) == (when_scaled == "Retain")
    assert not claim["metadata"].get("ownerReferences")


async def _gone(kube: ApiClient, ns: str, claim: str) -> bool:
    try:
        found = await kube.get(PERSISTENTVOLUMECLAIMS, claim, namespace=ns)
    except NotFound:
        return True
    return bool(found["metadata"].get("deletionTimestamp"))


async def test_claims_deleted_with_the_set(kube: ApiClient, ns: str, kubelet: FakeKubelet) -> None:
    body = statefulset(
        replicas=1,
        volumeClaimTemplates=[_claim_template()],
        persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete", "whenScaled": "Retain"},
    )
    await kube.create(STATEFULSETS, body, namespace=ns)
    await wait_for(lambda: all_ready(kube, ns, ["web-0"]), message="web-0 ready")
    claim = await kube.get(PERSISTENTVOLUMECLAIMS, "data-web-0", namespace=ns)
    owners = claim["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"]) for o in owners] == [("StatefulSet", "web")]
    await kube.delete(STATEFULSETS, "web", namespace=ns)
    await wait_for(lambda: _gone(kube, ns, "data-web-0"), message="claim deleted with the set")


async def test_rollout_restart(
    kube: ApiClient, ns: str, kubelet: FakeKubelet, module_apiserver: ServerHandle
) -> None:
    await kube.create(STATEFULSETS, statefulset(replicas=2), namespace=ns)
    names = ["web-0", "web-1"]
    await wait_for(lambda: all_ready(kube, ns, names), message="2 ready pods")
    before = {n: p["metadata"]["uid"] for n, p in (await active_pods(kube, ns)).items()}
    out = await kubectl(module_apiserver, "rollout", "restart", "sts/web", "-n", ns)
    assert "statefulset.apps/web restarted" in out

    async def replaced() -> bool:
        pods = await active_pods(kube, ns)
        return (
            sorted(pods) == names
            and all(is_ready(p) for p in pods.values())
            and all(p["metadata"]["uid"] != before[n] for n, p in pods.items())
        )

    await wait_for(replaced, message="both pods replaced")
    await kubectl(module_apiserver, "rollout", "status", "sts/web", "-n", ns, "--timeout=30s")


async def test_headless_service_slices_carry_hostnames(
    kube: ApiClient, ns: str, kubelet: FakeKubelet
) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 80}]},
    }
    await kube.create(SERVICES, service, namespace=ns)
    body = statefulset(replicas=2, podManagementPolicy="Parallel")
    await kube.create(STATEFULSETS, body, namespace=ns)

    async def hostnames() -> list[str]:
        slices = (await kube.list(ENDPOINTSLICES, namespace=ns))["items"]
        return sorted(e.get("hostname", "") for s in slices for e in s.get("endpoints") or ())

    # The DNS server answers web-0.web.<ns>.svc.cluster.local from these.
    await wait_for(
        lambda: _equal(hostnames(), ["web-0", "web-1"]), message="slice endpoints' hostnames"
    )


async def _equal(value: Any, wanted: Any) -> bool:
    return bool(await value == wanted)


async def test_orphaned_pods_and_revisions_are_adopted(
    kube: ApiClient, ns: str, kubelet: FakeKubelet, module_apiserver: ServerHandle
) -> None:
    await kube.create(STATEFULSETS, statefulset(replicas=2), namespace=ns)
    names = ["web-0", "web-1"]
    await wait_for(lambda: all_ready(kube, ns, names), message="2 ready pods")
    uids = {n: p["metadata"]["uid"] for n, p in (await active_pods(kube, ns)).items()}
    (revision,) = (await kube.list(CONTROLLERREVISIONS, namespace=ns))["items"]
    await kubectl(module_apiserver, "delete", "sts", "web", "-n", ns, "--cascade=orphan")

    async def orphaned() -> bool:
        items = (await kube.list(CONTROLLERREVISIONS, namespace=ns))["items"]
        return all(not r["metadata"].get("ownerReferences") for r in items)

    await wait_for(orphaned, message="the revision orphaned")
    created = await kube.create(STATEFULSETS, statefulset(replicas=2), namespace=ns)

    async def adopted() -> bool:
        items = (await kube.list(CONTROLLERREVISIONS, namespace=ns))["items"]
        pods = await active_pods(kube, ns)
        owned = [*items, *pods.values()]
        owners = [(o["metadata"].get("ownerReferences") or [{}])[0].get("uid") for o in owned]
        return set(owners) == {created["metadata"]["uid"]}

    await wait_for(adopted, message="pods and revision adopted")
    # Adopted, not remade: the same pods and the same revision.
    assert {n: p["metadata"]["uid"] for n, p in (await active_pods(kube, ns)).items()} == uids
    (again,) = (await kube.list(CONTROLLERREVISIONS, namespace=ns))["items"]
    assert again["metadata"]["uid"] == revision["metadata"]["uid"] and again["revision"] == 1


async def test_explain_and_validation_with_kubectl(module_apiserver: ServerHandle, ns: str) -> None:
    out = await kubectl(module_apiserver, "explain", "sts.spec.updateStrategy")
    assert "type\t<string>\n  enum: OnDelete, RollingUpdate" in out
    out = await kubectl(module_apiserver, "explain", "sts.spec.podManagementPolicy")
    assert "ENUM:\n    OrderedReady\n    Parallel\n" in out
    bad = statefulset()
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    result = await trio.run_process(
        [
            str(kubectl_path()),
            "--kubeconfig",
            str(module_apiserver.kubeconfig),
            "create",
            "-n",
            ns,
            "-f",
            "-",
        ],
        stdin=json.dumps(bad).encode(),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode != 0
    assert 'The StatefulSet "web" is invalid' in result.stderr.decode()
    assert "`selector` does not match template `labels`" in result.stderr.decode()
