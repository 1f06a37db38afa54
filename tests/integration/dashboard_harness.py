"""`k8slite dashboard` as a child process, and headless Chromium to look at it."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import ServerHandle
from tests.launch import after, launch, stop

REPO = Path(__file__).resolve().parents[2]
DOCS_SCREENSHOTS = REPO / "docs" / "dashboard"
# Generous: a loaded 2-core machine, a browser and a cluster of five processes.
DEADLINE = 120
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@dataclass
class DashboardProcess:
    url: str  # the printed address, with the session secret

    @property
    def base(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def secret(self) -> str:
        return urlsplit(self.url).query.split("=", 1)[1]


@contextmanager
def running_dashboard(server: ServerHandle, log: Path, *extra: str) -> Iterator[DashboardProcess]:
    argv = [
        sys.executable,
        "-m",
        "k8slite.cmd.k8slite",
        "dashboard",
        "--port",
        "0",
        "--kubeconfig",
        str(server.kubeconfig),
        *extra,
    ]
    marker = "Dashboard: "
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc, line = launch(argv, log, marker, what="dashboard", timeout=60, env=env)
    try:
        yield DashboardProcess(after(line, marker))
    finally:
        stop(proc)


def chromium() -> Any:
    """Headless Chromium through Debian's chromedriver; skips the test when either is absent.

    Both paths are given, so Selenium Manager has nothing to look up or download.
    """
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists() and shutil.which("chromedriver")):
        pytest.skip("chromium and chromium-driver are not installed (hack/install-deps)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespace sandbox
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--no-proxy-server",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))


def waiter(driver: Any) -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.wait import WebDriverWait

    # The pages redraw live: an element found a moment ago may have been replaced since.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, DEADLINE, poll_frequency=0.2, ignored_exceptions=ignored)


_READ = """
return Array.from(document.querySelectorAll(arguments[0])).map((e) => ({
  text: e.textContent, status: e.dataset.status, label: e.getAttribute("aria-label"),
  type: e.dataset.type, reason: e.dataset.reason}));
"""


def read_live(driver: Any, css: str) -> list[dict[str, Any]]:
    """The elements matching `css`, read in one script: a consistent view of a live page."""
    return list(driver.execute_script(_READ, css))


def screenshot(driver: Any, tmp_path: Path, name: str) -> None:
    """Into the test's directory; also into docs/dashboard/ for docs/dashboard.md when
    K8SLITE_DOCS_SCREENSHOTS=1 (so that `make test` leaves the tree as it found it)."""
    shot = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(shot)), f"no screenshot of {name}"
    if os.environ.get("K8SLITE_DOCS_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOTS / f"{name}.png")
