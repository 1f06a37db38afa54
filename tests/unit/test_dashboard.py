"""The dashboard's guard (session cookie, same origin, Host), its trimmed objects and its
packaged static files."""

from __future__ import annotations

from importlib import resources

from k8slite.component.serving import Request
from k8slite.dashboard import trim
from k8slite.dashboard.app import PAGES, _static
from k8slite.dashboard.security import COOKIE, SessionGuard

HOST = "127.0.0.1:8001"
GUARD = SessionGuard("s3cret", frozenset({HOST, "localhost:8001"}))


def _req(path: str = "/cluster", method: str = "GET", query: str = "", **headers: str) -> Request:
    head = {"host": HOST, **{k.replace("_", "-"): v for k, v in headers.items()}}
    q = {query.split("=")[0]: [query.split("=")[1]]} if query else {}
    return Request(method, path, q, head)


async def _status(req: Request) -> int:
    refused = await GUARD.authorize(req)
    return 200 if refused is None else refused.status


async def test_the_secret_or_its_cookie_is_needed() -> None:
    assert await _status(_req()) == 403
    assert await _status(_req("/", query="session=wrong")) == 403
    assert await _status(_req("/", query="session=s3cret")) == 200
    assert await _status(_req(cookie=f"{COOKIE}=s3cret")) == 200
    assert await _status(_req(cookie=f"{COOKIE}=other")) == 403
    assert await _status(_req(cookie='bad"cookie')) == 403
    assert await _status(_req("/healthz")) == 200


async def test_other_origins_sites_and_hosts_are_refused() -> None:
    ok = {"cookie": f"{COOKIE}=s3cret"}
    assert await _status(_req(**ok, origin="http://evil.test")) == 403
    assert await _status(_req(**ok, origin=f"http://{HOST}")) == 200
    assert await _status(_req(**ok, sec_fetch_site="cross-site")) == 403
    assert await _status(_req(**ok, sec_fetch_site="same-site")) == 403
    assert await _status(_req(**ok, sec_fetch_site="same-origin")) == 200
    assert await _status(_req(**{**ok, "host": "evil.test:8001"})) == 403
    # A POST must name its origin (browsers always do).
    assert await _status(_req("/api/scale", "POST", **ok)) == 403
    assert await _status(_req("/api/scale", "POST", **ok, origin=f"http://{HOST}")) == 200


def test_login_sets_a_strict_http_only_cookie_and_drops_the_secret_from_the_url() -> None:
    response = GUARD.login()
    assert response.status == 303 and response.headers["location"] == "/cluster"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=s3cret;")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert response.headers["referrer-policy"] == "no-referrer"


def test_pods_and_nodes_are_trimmed_to_what_the_pages_show() -> None:
    pod = {
        "metadata": {
            "name": "web-1",
            "namespace": "default",
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web", "controller": True}],
            "annotations": {"big": "x" * 1000},
        },
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff"}}}],
        },
    }
    assert trim.pod(pod) == {
        "namespace": "default",
        "name": "web-1",
        "node": "n1",
        "status": "ImagePullBackOff",
        "ready": False,
        "owner": "ReplicaSet/web",
    }
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert trim.pod_status(pod) == "Terminating"
    node = {"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "2"}}}
    assert trim.node(node)["ready"] == "Unknown"


def test_the_pages_and_their_scripts_ship_in_the_package() -> None:
    static = resources.files("k8slite.dashboard").joinpath("static")
    assert static.is_dir()
    files = _static()
    for page in PAGES:
        body, content_type = files[f"{page}.html"]
        assert content_type.startswith("text/html")
        # The CSP allows no inline script: every script is a file of ours.
        assert b"<script>" not in body and f'src="/static/{page}.js"'.encode() in body
        assert f"{page}.js" in files
    assert "common.js" in files and "style.css" in files
