"""The dashboard's Cluster page at scale: first view of 1,000 nodes and 30,000 pods in
headless Chromium, and how long 1,000 pod deletions take to show.

Run: .venv/bin/python benches/dashboard.py [--nodes 1000] [--pods 30000] [--deletes 1000]
Nodes and pods (bound to the nodes, no kubelets) are written straight into RocksDB; a fresh
API server serves them; `k8slite dashboard` lists and watches them with the admin
kubeconfig; the browser opens the printed address. Needs Debian's chromium and
chromium-driver (hack/install-deps) and selenium.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import trio
import yaml

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
import harness

from k8slite import pki
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.registry import encoder
from k8slite.client import ApiClient, load_kubeconfig
from k8slite.client.resource import PODS
from k8slite.storage import Op, RocksStore
from tests.integration.dashboard_harness import chromium

_BATCH = 1000


def _node(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"}},
    }


async def populate(db: Path, nodes: int, pods: int) -> None:
    async with RocksStore(db) as store:
        core = ApiCore(store)  # type: ignore[arg-type]
        core.warm()
        await core.ensure_system_namespaces()
        node_reg, pod_reg = core.registries[("", "nodes")], core.registries[("", "pods")]
        ops = []
        for i in range(nodes):
            obj = node_reg.prepare_new(None, _node(f"hollow-{i:05}"))
            ops.append(Op("create", node_reg.key(None, obj["metadata"]["name"]), encoder(obj)))
        await store.txn(ops)
        for first in range(0, pods, _BATCH):
            ops = []
            for i in range(first, min(first + _BATCH, pods)):
                pod = harness.realistic_pod(f"web-{i:07}")
                pod["spec"]["nodeName"] = f"hollow-{i % nodes:05}"
                obj = pod_reg.prepare_new("default", pod)
                ops.append(
                    Op("create", pod_reg.key("default", obj["metadata"]["name"]), encoder(obj))
                )
            await store.txn(ops)


def kubeconfig_for(server: harness.Server, data: Path) -> Path:
    doc = yaml.safe_load(pki.kubeconfig_path(data / "pki", "admin").read_text())
    for cluster in doc["clusters"]:
        cluster["cluster"]["server"] = server.url
    path = data / "admin.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


_MARKS = """
const t = performance.timing;
const out = {loaded: t.domContentLoadedEventEnd - t.navigationStart};
for (const m of performance.getEntriesByType("mark")) out[m.name.replace("k8slite-", "")] =
  Math.round(m.startTime);
return out;
"""


def summary(driver: object) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, "summary").text)  # type: ignore[attr-defined]


def wait_summary(driver: object, want: str, timeout: float = 300) -> float:
    start = time.perf_counter()
    while want not in summary(driver) or "loading" in summary(driver):
        if time.perf_counter() - start > timeout:
            raise AssertionError(f"the page never showed {want!r}: {summary(driver)!r}")
        time.sleep(0.02)
    return time.perf_counter() - start


async def delete_pods(kubeconfig: Path, count: int) -> None:
    async with ApiClient(load_kubeconfig(kubeconfig)) as client:
        limit = trio.CapacityLimiter(16)

        async def one(i: int) -> None:
            async with limit:
                await client.delete(
                    PODS, f"web-{i:07}", namespace="default", grace_period_seconds=0
                )

        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(one, i)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--pods", type=int, default=30_000)
    p.add_argument("--deletes", type=int, default=1000)
    a = p.parse_args()
    from tests.integration.dashboard_harness import running_dashboard

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        pki.ensure_pki(data / "pki")
        trio.run(populate, data / "db", a.nodes, a.pods)
        server = harness.start_apiserver(data)
        try:
            kubeconfig = kubeconfig_for(server, data)

            class _Handle:  # what running_dashboard reads of a test's ServerHandle
                pass

            handle = _Handle()
            handle.kubeconfig = kubeconfig  # type: ignore[attr-defined]
            with running_dashboard(handle, data / "dashboard.log") as dash:  # type: ignore[arg-type]
                driver = chromium()
                try:
                    # The dashboard's own list first (its informers sync in the background).
                    start = time.perf_counter()
                    driver.get(dash.url)
                    first = time.perf_counter() - start
                    first += wait_summary(driver, f"{a.nodes} nodes")
                    first += wait_summary(driver, f"{a.pods} pods")
                    # Where the cold first view's time went, from the page's own marks
                    # (ms since the navigation started): the page loaded, the stream's
                    # snapshot, each kind's list arriving, the whole cluster drawn.
                    marks = driver.execute_script(_MARKS)
                    # Once warm: a reload is the first view a second visitor gets.
                    start = time.perf_counter()
                    driver.refresh()
                    wait_summary(driver, f"{a.pods} pods")
                    warm = time.perf_counter() - start
                    start = time.perf_counter()
                    trio.run(delete_pods, kubeconfig, a.deletes)
                    deleted = time.perf_counter() - start
                    lag = wait_summary(driver, f"{a.pods - a.deletes} pods")
                    dom = driver.execute_script("return document.getElementsByTagName('*').length")
                finally:
                    driver.quit()
        finally:
            server.stop()
    print(
        f"{a.nodes} nodes, {a.pods} pods: first view {first:.2f} s (dashboard cold, its "
        f"informers listing), {warm:.2f} s warm (reload); {a.deletes} deletions took "
        f"{deleted:.1f} s through the API and showed {lag:.2f} s after the last; {dom} DOM nodes"
    )
    print(f"cold first view, ms after navigation: {marks}")
    harness.emit(
        {
            "bench": "dashboard",
            "nodes": a.nodes,
            "pods": a.pods,
            "first_view_cold_s": round(first, 2),
            "first_view_warm_s": round(warm, 2),
            "deletes": a.deletes,
            "deletes_api_s": round(deleted, 1),
            "deletes_shown_after_s": round(lag, 2),
            "dom_nodes": dom,
            "cold_marks_ms": marks,
        }
    )


if __name__ == "__main__":
    main()
