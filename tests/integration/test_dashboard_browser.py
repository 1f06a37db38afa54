"""`k8slite dashboard` in a real browser against a real cluster: API server, controller
manager, scheduler and two fake-runtime kubelets. Headless Chromium (Debian's) through
Selenium sees a Deployment's pods land on the node tiles without a reload, scales it from
the Workloads page (the API changes), and filters the Events page; requests without the
session secret, or from another origin, are refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from k8slite.client import ApiClient
from k8slite.client.resource import DEPLOYMENTS
from k8slite.dashboard.main import serve_beside
from k8slite.dashboard.security import cookie_name
from tests.conftest import ServerHandle
from tests.integration.cluster_harness import nodes_with_control_plane, ready_nodes
from tests.integration.controller_harness import (
    admin_config,
    create_namespace,
    kubectl,
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


@pytest.fixture(scope="module")
def cluster(
    module_apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    workdir = tmp_path_factory.mktemp("dashboard")
    with nodes_with_control_plane(module_apiserver, workdir, "dash") as nodes:
        yield nodes


@pytest.fixture(scope="module")
def dashboard(
    module_apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DashboardProcess]:
    log = tmp_path_factory.mktemp("dashboard-log") / "dashboard.log"
    with running_dashboard(module_apiserver, log) as process:
        yield process


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


def test_requests_without_the_session_or_from_elsewhere_are_refused(
    dashboard: DashboardProcess,
) -> None:
    base, secret = dashboard.base, dashboard.secret
    host = base.removeprefix("http://")
    with httpx.Client(timeout=30, follow_redirects=False) as plain:
        # No cookie, a wrong secret: refused.
        for path in ("/cluster", "/static/cluster.js", "/api/stream?kinds=pods", "/?session=x"):
            assert plain.get(base + path).status_code == 403, path
        assert (
            plain.post(
                base + "/api/scale",
                json={"kind": "deployments", "namespace": "a", "name": "b", "replicas": 1},
                headers={"origin": base},
            ).status_code
            == 403
        )
        # The secret is exchanged for an HttpOnly, SameSite=Strict cookie.
        login = plain.get(f"{base}/?session={secret}")
        assert login.status_code == 303 and login.headers["location"] == "/cluster"
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie, cookie
        assert "script-src 'self'" in login.headers["content-security-policy"]
    with httpx.Client(timeout=30, cookies={cookie_name(secret): secret}) as session:
        page = session.get(base + "/cluster")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "unsafe-inline" not in csp
        assert "<script>" not in page.text  # scripts are files, allowed by 'self' only
        # With the cookie, but started by another site's page: refused.
        assert (
            session.get(base + "/cluster", headers={"origin": "http://evil.test"}).status_code
            == 403
        )
        assert (
            session.get(base + "/cluster", headers={"sec-fetch-site": "cross-site"}).status_code
            == 403
        )
        # A DNS-rebinding page reaches us under its own host name: refused.
        assert (
            session.get(
                base + "/cluster", headers={"host": f"evil.test:{host.split(':')[1]}"}
            ).status_code
            == 403
        )
        scale = {"kind": "deployments", "namespace": "a", "name": "b", "replicas": 1}
        assert (
            session.post(
                base + "/api/scale", json=scale, headers={"origin": "http://evil.test"}
            ).status_code
            == 403
        )
        # A POST without Origin did not come from a browser page of ours.
        assert session.post(base + "/api/scale", json=scale).status_code == 403
        # Same origin and the cookie: it reaches the API server (no such deployment there).
        missing = session.post(base + "/api/scale", json=scale, headers={"origin": base})
        assert missing.status_code == 404, missing.text


async def _replicas(server: ServerHandle, ns: str) -> int:
    out = await kubectl(server, "get", "deployment", "web", "-n", ns, "-o", "json")
    return int(json.loads(out)["spec"]["replicas"])


async def test_cluster_workloads_and_events_pages_follow_the_cluster_live(
    module_apiserver: ServerHandle,
    cluster: list[str],
    dashboard: DashboardProcess,
    browser: Any,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    async with ApiClient(admin_config(module_apiserver)) as kube:
        await wait_for(lambda: ready_nodes(kube, cluster), DEADLINE, message="nodes Ready")
        ns = await create_namespace(kube, "dash")

    wait = waiter(browser)
    browser.get(dashboard.url)
    wait.until(lambda d: d.current_url.endswith("/cluster"))
    # The secret left the address bar; the cookie carries the session.
    assert "session=" not in browser.current_url
    for node in cluster:
        wait.until(
            lambda d, n=node: (
                "Ready" in d.find_element(By.CSS_SELECTOR, f'[data-node="{n}"] .state').text
            )
        )
    # A marker a reload would wipe: the pods must appear while it is still there.
    browser.execute_script("window.notReloaded = true;")

    await kubectl(
        module_apiserver,
        "create",
        "deployment",
        "web",
        "--image=busybox:1.35",
        "--replicas=2",
        "-n",
        ns,
        "--",
        "sleep",
        "3600",
    )

    def running_web_pods(driver: Any) -> list[dict[str, Any]] | None:
        cells = read_live(driver, f'[data-node]:not([data-node=""]) [data-pod^="{ns}/web-"]')
        running = [c for c in cells if c["status"] == "Running"]
        return running if len(running) == 2 else None

    cells = wait.until(running_web_pods)
    assert all(c["label"].endswith("Running, ready") for c in cells), cells
    assert browser.execute_script("return window.notReloaded === true;")
    screenshot(browser, tmp_path, "cluster")

    # Workloads: scale the Deployment to 3 from the page.
    browser.find_element(By.LINK_TEXT, "Workloads").click()
    row_css = f'tr[data-key="deployments/{ns}/web"]'
    row = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, row_css))
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, row_css).text.split()[2:4] == ["2", "2"])
    field = row.find_element(By.CSS_SELECTOR, "input[type=number]")
    field.clear()
    field.send_keys("3")
    row.find_element(By.XPATH, ".//button[text()='Scale']").click()
    wait.until(
        lambda d: (
            "Scaled" in d.find_element(By.ID, "scale-result").text
            or "Could not" in d.find_element(By.ID, "scale-result").text
        )
    )
    assert browser.find_element(By.ID, "scale-result").text == f"Scaled {ns}/web to 3."
    assert await _replicas(module_apiserver, ns) == 3
    # The page follows the controllers: 3 desired, 3 ready, shown as Ready.
    wait.until(
        lambda d: (
            d.find_element(By.CSS_SELECTOR, row_css).text.split()[2:7]
            == ["3", "3", "3", "3", "Ready"]
        )
    )
    screenshot(browser, tmp_path, "workloads")

    # Events: filter by type and reason.
    browser.find_element(By.LINK_TEXT, "Events").click()
    wait.until(
        lambda d: any(
            o["text"] == "ScalingReplicaSet" for o in read_live(d, "#filter-reason option")
        )
    )

    def choose(select_id: str, value: str) -> None:
        """Pick an option as a user would; the reason list is redrawn as reasons arrive."""

        def pick(d: Any) -> bool:
            Select(d.find_element(By.ID, select_id)).select_by_value(value)
            return bool(d.find_element(By.ID, select_id).get_attribute("value") == value)

        wait.until(pick)

    choose("filter-type", "Normal")
    choose("filter-reason", "ScalingReplicaSet")

    def filtered_rows(driver: Any) -> list[dict[str, Any]] | None:
        rows = read_live(driver, "#events tbody tr")
        ours = [r for r in rows if "Deployment/web" in r["text"] and ns in r["text"]]
        return rows if len(ours) >= 2 else None  # scaled up to 2, then to 3

    rows = wait.until(filtered_rows)
    assert all(r["reason"] == "ScalingReplicaSet" for r in rows), rows
    assert all(r["type"] == "Normal" for r in rows), rows
    # Other reasons exist (Scheduled, at least) and come back when the filter is cleared.
    choose("filter-reason", "")
    wait.until(lambda d: any(r["reason"] == "Scheduled" for r in read_live(d, "#events tbody tr")))
    choose("filter-reason", "ScalingReplicaSet")
    wait.until(
        lambda d: all(r["reason"] == "ScalingReplicaSet" for r in read_live(d, "#events tbody tr"))
    )
    screenshot(browser, tmp_path, "events")

    async with ApiClient(admin_config(module_apiserver)) as kube:
        await kube.delete(DEPLOYMENTS, "web", namespace=ns)


async def test_up_serves_the_dashboard_beside_the_cluster_and_survives_a_taken_port(
    module_apiserver: ServerHandle,
) -> None:
    """The hook `k8slite up` uses: the URL with the secret, or None (and the caller goes on)
    when the port is taken."""
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_beside, module_apiserver.kubeconfig, 0)
        assert url is not None and "?session=" in url
        base = url.split("/?", 1)[0]
        async with httpx.AsyncClient(timeout=30) as web:
            assert (await web.get(f"{base}/cluster")).status_code == 403
            assert (await web.get(url)).status_code == 303
        taken = int(base.rsplit(":", 1)[1])
        assert await nursery.start(serve_beside, module_apiserver.kubeconfig, taken) is None
        nursery.cancel_scope.cancel()
