"""The dashboard's Pods, Workloads (rollouts) and Metrics pages in headless Chromium against a
real cluster: API server, controller manager, scheduler and a process-runtime kubelet (pods
are host processes, so logs and exec are real without Docker).

Through the page, with the dashboard's credentials: pods filtered by namespace, label
selector and status; a pod's YAML and events; its log followed live; an exec session that
runs a shell command; a Deployment restarted (new pods replace the old, drawn changing over)
and its rollout undone; the Metrics page's plots drawn from the API server's and the
scheduler's Prometheus metrics.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from k8slite.client import ApiClient
from k8slite.client.resource import DEPLOYMENTS, PODS
from k8slite.dashboard.security import cookie_name
from tests.conftest import ServerHandle
from tests.integration.cluster_harness import ready_nodes
from tests.integration.controller_harness import (
    admin_config,
    create_namespace,
    start_controller_manager,
    wait_for,
)
from tests.integration.dashboard_harness import (
    DEADLINE,
    DashboardProcess,
    chromium,
    read_live,
    running_dashboard,
    screenshot,
    waiter,
)
from tests.integration.kubelet_harness import kubelet_of_its_own, unique_node
from tests.integration.test_scheduler import start_scheduler

TICKER = "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.2; done"


@pytest.fixture(scope="module")
def cluster(
    module_apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, DashboardProcess]]:
    """One process-runtime node with the control plane, and the dashboard sampling the API
    server's and the scheduler's metrics every second."""
    workdir = tmp_path_factory.mktemp("dash-pods")
    manager = start_controller_manager(module_apiserver)
    scheduler = None
    try:
        scheduler = start_scheduler(module_apiserver, workdir / "scheduler.log")
        node = unique_node("dashp")
        (workdir / "k").mkdir()
        with (
            kubelet_of_its_own(module_apiserver, node, "process", workdir / "k"),
            running_dashboard(
                module_apiserver,
                workdir / "dashboard.log",
                "--scheduler-metrics",
                f"{scheduler.url}/metrics",
                "--metrics-interval",
                "1",
            ) as dashboard,
        ):
            yield node, dashboard
    finally:
        if scheduler is not None:
            scheduler.stop()
        manager.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


def _deployment(name: str, replicas: int, script: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "main",
                            "image": "busybox:1.35",
                            "command": ["sh", "-c", script],
                            "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}},
                        }
                    ],
                },
            },
        },
    }


async def _setup(server: ServerHandle, node: str, prefix: str) -> tuple[ApiClient, str]:
    kube = ApiClient(admin_config(server))
    await wait_for(lambda: ready_nodes(kube, [node]), DEADLINE, message="node Ready")
    return kube, await create_namespace(kube, prefix)


async def _running_pods(kube: ApiClient, ns: str, app: str, count: int) -> list[str] | None:
    listed = await kube.list(PODS, namespace=ns, label_selector=f"app={app}")
    running = [
        p["metadata"]["name"]
        for p in listed["items"]
        if (p.get("status") or {}).get("phase") == "Running"
        and not p["metadata"].get("deletionTimestamp")
    ]
    return running if len(running) == count and len(listed["items"]) == count else None


def _login(driver: Any, dashboard: DashboardProcess, page: str) -> None:
    driver.get(dashboard.url)
    waiter(driver).until(lambda d: d.current_url.endswith("/cluster"))
    driver.get(f"{dashboard.base}/{page}")


async def test_pods_page_filters_and_shows_yaml_events_live_logs_and_exec(
    module_apiserver: ServerHandle,
    cluster: tuple[str, DashboardProcess],
    browser: Any,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    node, dashboard = cluster
    kube, ns = await _setup(module_apiserver, node, "dpods")
    async with kube:
        await kube.create(DEPLOYMENTS, _deployment("ticker", 1, TICKER), namespace=ns)
        await kube.create(DEPLOYMENTS, _deployment("quiet", 1, "sleep 600"), namespace=ns)
        ticker = (await wait_for(lambda: _running_pods(kube, ns, "ticker", 1), DEADLINE))[0]
        await wait_for(lambda: _running_pods(kube, ns, "quiet", 1), DEADLINE)

        wait = waiter(browser)
        _login(browser, dashboard, "pods")

        def choose(select_id: str, value: str) -> None:
            def pick(d: Any) -> bool:
                Select(d.find_element(By.ID, select_id)).select_by_value(value)
                return bool(d.find_element(By.ID, select_id).get_attribute("value") == value)

            wait.until(pick)

        def rows(driver: Any) -> list[str]:
            return [r["text"] for r in read_live(driver, "#pods tbody tr")]

        choose("filter-namespace", ns)
        wait.until(lambda d: len(rows(d)) == 2)
        labels = browser.find_element(By.ID, "filter-labels")
        labels.send_keys("app=ticker")
        wait.until(lambda d: len(rows(d)) == 1 and ticker in rows(d)[0])
        labels.clear()
        labels.send_keys("app notin (ticker),app")
        wait.until(lambda d: len(rows(d)) == 1 and "quiet-" in rows(d)[0])
        labels.clear()
        labels.send_keys("app in (")  # not a selector: said so, the list left as it was
        wait.until(lambda d: "Label selector" in d.find_element(By.ID, "selector-error").text)
        labels.clear()
        labels.send_keys("app")
        choose("filter-status", "Running")
        wait.until(lambda d: len(rows(d)) == 2)

        # The pod: its YAML, read from the API server.
        browser.find_element(By.CSS_SELECTOR, f'a[data-open="{ns}/{ticker}"]').click()
        wait.until(lambda d: f"name: {ticker}" in d.find_element(By.ID, "pod-yaml").text)
        assert "kind: Pod" in browser.find_element(By.ID, "pod-yaml").text
        assert browser.current_url.endswith(f"#{ns}/{ticker}")

        # Its events (the scheduler's and the kubelet's), from the page's own stream.
        browser.find_element(By.ID, "tab-events").click()
        wait.until(
            lambda d: (
                {"Scheduled", "Started"}
                <= {r["reason"] for r in read_live(d, "#pod-events tbody tr")}
            )
        )

        # Its log, followed: lines keep arriving without a reload.
        browser.find_element(By.ID, "tab-logs").click()

        def last_tick(driver: Any) -> int | None:
            found = re.findall(r"tick (\d+)", driver.find_element(By.ID, "pod-log").text)
            return int(found[-1]) if found else None

        first = wait.until(last_tick)
        wait.until(lambda d: (last_tick(d) or 0) >= first + 3)
        assert browser.find_element(By.ID, "log-state").text == "Following"
        screenshot(browser, tmp_path, "pods")

        # Exec: a shell through pods/exec, one line at a time.
        browser.find_element(By.ID, "tab-exec").click()
        browser.find_element(By.ID, "exec-connect").click()
        line = wait.until(lambda d: d.find_element(By.ID, "exec-input").is_enabled() or None)
        line = browser.find_element(By.ID, "exec-input")
        line.send_keys("echo hello-$((40+2)); echo oops >&2", Keys.ENTER)
        wait.until(lambda d: "hello-42" in d.find_element(By.ID, "exec-output").text)
        wait.until(lambda d: read_live(d, "#exec-output .stderr"))
        assert "oops" in " ".join(s["text"] for s in read_live(browser, "#exec-output .stderr"))
        line.send_keys("exit 3", Keys.ENTER)
        wait.until(lambda d: "Exited with code 3" in d.find_element(By.ID, "exec-state").text)
        screenshot(browser, tmp_path, "pods-exec")

        # The cluster page: the node filled by its pods' requests (2 x 250m of its CPU).
        browser.get(f"{dashboard.base}/cluster")
        wait.until(
            lambda d: any(
                "CPU 0.5 of" in t["text"] for t in read_live(d, f'[data-node="{node}"] .alloc')
            )
        )
        screenshot(browser, tmp_path, "cluster-allocation")
        for name in ("ticker", "quiet"):
            await kube.delete(DEPLOYMENTS, name, namespace=ns)


_WATCH_CHANGEOVER = """
window.sawBoth = false;
new MutationObserver(() => {
  if (document.querySelector('.rs-old .pod') && document.querySelector('.rs-new .pod'))
    window.sawBoth = true;
}).observe(document.body, {subtree: true, childList: true});
"""


async def test_rollout_restart_replaces_the_pods_and_undo_rolls_back(
    module_apiserver: ServerHandle,
    cluster: tuple[str, DashboardProcess],
    browser: Any,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By

    node, dashboard = cluster
    kube, ns = await _setup(module_apiserver, node, "droll")
    async with kube:
        await kube.create(DEPLOYMENTS, _deployment("roll", 2, "sleep 600"), namespace=ns)
        before = set(await wait_for(lambda: _running_pods(kube, ns, "roll", 2), DEADLINE))

        wait = waiter(browser)
        _login(browser, dashboard, "workloads")
        row = f'tr[data-key="deployments/{ns}/roll"]'

        def groups(driver: Any) -> list[dict[str, Any]]:
            return list(
                driver.execute_script(
                    """return Array.from(document.querySelectorAll(arguments[0] + ' .rs'))
                      .map((g) => ({cls: g.className, revision: g.dataset.revision,
                                    pods: Array.from(g.querySelectorAll('.pod'))
                                      .map((p) => p.dataset.pod)}));""",
                    row,
                )
            )

        wait.until(lambda d: [(g["revision"], len(g["pods"])) for g in groups(d)] == [("1", 2)])
        browser.execute_script(_WATCH_CHANGEOVER)
        browser.find_element(
            By.CSS_SELECTOR, f'{row} button[aria-label="Restart {ns}/roll"]'
        ).click()
        wait.until(lambda d: d.find_element(By.ID, "scale-result").text)
        assert browser.find_element(By.ID, "scale-result").text == "deployment.apps/roll restarted"

        # New pods of revision 2 replace the old ones, and the page drew both at once.
        def settled(revision: str) -> Any:
            def check(d: Any) -> bool:
                g = groups(d)
                return len(g) == 1 and g[0]["revision"] == revision and len(g[0]["pods"]) == 2

            return check

        wait.until(settled("2"))
        assert browser.execute_script("return window.sawBoth;") is True
        after = set(await wait_for(lambda: _running_pods(kube, ns, "roll", 2), DEADLINE))
        assert not before & after, (before, after)
        restarted = await kube.get(DEPLOYMENTS, "roll", namespace=ns)
        annotations = restarted["spec"]["template"]["metadata"].get("annotations") or {}
        assert "kubectl.kubernetes.io/restartedAt" in annotations
        screenshot(browser, tmp_path, "workloads-rollout")

        # Undo: back to revision 1's template (no restartedAt), rolled out as revision 3.
        browser.find_element(
            By.CSS_SELECTOR, f'{row} button[aria-label="Undo the last rollout of {ns}/roll"]'
        ).click()
        wait.until(
            lambda d: (
                d.find_element(By.ID, "scale-result").text == "deployment.apps/roll rolled back"
            )
        )
        wait.until(settled("3"))
        undone = await kube.get(DEPLOYMENTS, "roll", namespace=ns)
        assert "kubectl.kubernetes.io/restartedAt" not in (
            undone["spec"]["template"]["metadata"].get("annotations") or {}
        )
        assert undone["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        await kube.delete(DEPLOYMENTS, "roll", namespace=ns)


async def test_metrics_page_plots_the_api_server_and_scheduler_live(
    module_apiserver: ServerHandle,
    cluster: tuple[str, DashboardProcess],
    browser: Any,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By

    _, dashboard = cluster
    wait = waiter(browser)
    _login(browser, dashboard, "metrics")

    def points(driver: Any, plot: str) -> int:
        graph = driver.find_element(By.CSS_SELECTOR, f"#plot-{plot} svg")
        return int(graph.get_attribute("data-points") or 0)

    # Points keep arriving (pushed, no reload) and are drawn as lines.
    wait.until(lambda d: points(d, "api-rate") >= 2)
    seen = points(browser, "api-rate")
    wait.until(lambda d: points(d, "api-rate") > seen)
    assert browser.find_elements(By.CSS_SELECTOR, "#plot-api-rate polyline")
    wait.until(lambda d: points(d, "api-latency") >= 2)
    wait.until(lambda d: points(d, "sched-rate") >= 2)
    label = browser.find_element(By.CSS_SELECTOR, "#plot-api-rate svg").get_attribute("aria-label")
    assert re.search(r"requests [0-9.]+ req/s", label), label
    # The kubelet's metrics come through the API server's nodes/<name>/proxy.
    wait.until(lambda d: "kubelets: 1 of 1 answered" in d.find_element(By.ID, "sources").text)
    sources = browser.find_element(By.ID, "sources").text
    assert "apiserver: ok" in sources and "scheduler: ok" in sources, sources
    screenshot(browser, tmp_path, "metrics")


def test_exec_and_rollout_refuse_other_origins_and_sessionless_requests(
    cluster: tuple[str, DashboardProcess],
) -> None:
    """The exec WebSocket is a GET upgrade: the same guard as every page (cookie, Origin,
    Host); rollout is a POST like scale."""
    import httpx
    import websocket

    _, dashboard = cluster
    base, secret = dashboard.base, dashboard.secret
    ws_url = base.replace("http://", "ws://") + "/api/exec?namespace=a&name=b"
    cookie = f"{cookie_name(secret)}={secret}"
    for options in ({"origin": base}, {"cookie": cookie, "origin": "http://evil.test"}):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(ws_url, timeout=30, **options)
        assert refused.value.status_code == 403, options
    # Our origin and the cookie: accepted, and the API server's answer comes back in words.
    ws = websocket.create_connection(ws_url, cookie=cookie, origin=base, timeout=30)
    try:
        message = json.loads(ws.recv())
    finally:
        ws.close()
    assert message == {"exit": None, "message": 'pods "b" not found'}, message
    body = {"action": "restart", "kind": "deployments", "namespace": "a", "name": "b"}
    with httpx.Client(timeout=30, cookies={cookie_name(secret): secret}) as session:
        assert session.post(f"{base}/api/rollout", json=body).status_code == 403  # no Origin
        evil = session.post(f"{base}/api/rollout", json=body, headers={"origin": "http://x.test"})
        assert evil.status_code == 403
        missing = session.post(f"{base}/api/rollout", json=body, headers={"origin": base})
        assert missing.status_code == 404, missing.text
        odd = session.post(
            f"{base}/api/rollout", json={**body, "action": "pause"}, headers={"origin": base}
        )
        assert odd.status_code == 400
