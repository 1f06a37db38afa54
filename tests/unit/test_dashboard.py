"""The dashboard's guard (session cookie, same origin, Host), its trimmed objects and its
packaged static files."""

from __future__ import annotations

from importlib import resources

from k8slite.component.serving import Request
from k8slite.dashboard import metrics, trim
from k8slite.dashboard.app import PAGES, _static
from k8slite.dashboard.hub import TrimmedCache
from k8slite.dashboard.security import SessionGuard, cookie_name

HOST = "127.0.0.1:8001"
GUARD = SessionGuard("s3cret", frozenset({HOST, "localhost:8001"}))
COOKIE = cookie_name("s3cret")


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
        "spec": {
            "nodeName": "n1",
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}},
                },
                {"name": "d", "image": "busybox", "resources": {"requests": {"cpu": "1"}}},
            ],
        },
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [
                {"restartCount": 2, "state": {"waiting": {"reason": "ImagePullBackOff"}}}
            ],
        },
    }
    assert trim.pod(pod) == {
        "namespace": "default",
        "name": "web-1",
        "node": "n1",
        "status": "ImagePullBackOff",
        "ready": False,
        "owner": "ReplicaSet/web",
        "labels": {},
        "restarts": 2,
        "created": "",
        "ip": "",
        "containers": ["c", "d"],
        "cpuM": 1250,
        "memB": 64 * 2**20,
    }
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert trim.pod_status(pod) == "Terminating"
    node = {"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "2"}}}
    assert trim.node(node)["ready"] == "Unknown"
    assert (trim.node(node)["cpuM"], trim.node(node)["memB"]) == (2000, 0)


def test_requests_count_as_the_scheduler_counts_them() -> None:
    def c(cpu: str, mem: str) -> dict[str, object]:
        return {"resources": {"requests": {"cpu": cpu, "memory": mem}}}

    # The larger of the containers' sum and the largest init container, plus overhead.
    spec = {
        "containers": [c("100m", "1Mi"), c("200m", "1Mi")],
        "initContainers": [c("500m", "1Ki"), c("50m", "1Ki")],
        "overhead": {"cpu": "10m", "memory": "1Ki"},
    }
    assert trim.requests(spec) == (510, 2 * 2**20 + 1024)
    assert trim.requests({"containers": [{"name": "x"}, c("bogus", "1Gi")]}) == (0, 2**30)


def test_metrics_rates_means_and_quantiles_from_two_scrapes() -> None:
    def page(count: int, duration_sum: float, buckets: tuple[int, int, int]) -> str:
        lines = [
            "# TYPE apiserver_request_total counter",
            f'apiserver_request_total{{verb="GET",code="200"}} {count}',
            f'apiserver_request_total{{verb="LIST",code="200"}} {count}',
            f'apiserver_request_duration_seconds_bucket{{verb="GET",le="0.1"}} {buckets[0]}',
            f'apiserver_request_duration_seconds_bucket{{verb="GET",le="1"}} {buckets[1]}',
            f'apiserver_request_duration_seconds_bucket{{verb="GET",le="+Inf"}} {buckets[2]}',
            f'apiserver_request_duration_seconds_sum{{verb="GET"}} {duration_sum}',
            f'apiserver_request_duration_seconds_count{{verb="GET"}} {buckets[2]}',
        ]
        return "\n".join(lines)

    names = (["apiserver_request_total"], ["apiserver_request_duration_seconds"])
    before = metrics.parse(page(10, 1.0, (10, 10, 10)), *names)
    after = metrics.parse(page(60, 11.0, (10, 110, 110)), *names)
    assert metrics._rate(before, after, "apiserver_request_total", 10.0) == 10.0
    h0 = before.histograms["apiserver_request_duration_seconds"]
    h1 = after.histograms["apiserver_request_duration_seconds"]
    assert metrics.mean(h0, h1) == 0.1
    # All 100 new requests fell in (0.1, 1]: the 99th percentile is interpolated in it.
    p99 = metrics.quantile(0.99, h0, h1)
    assert p99 is not None and abs(p99 - (0.1 + 0.9 * 0.99)) < 1e-9
    assert metrics.quantile(0.99, h1, h1) is None
    scheduled = metrics.parse(
        'scheduler_schedule_attempts_total{profile="p",result="scheduled"} 7\n'
        'scheduler_schedule_attempts_total{profile="p",result="error"} 3\n',
        ["scheduler_schedule_attempts_total"],
        [],
        match='result="scheduled"',
    )
    assert scheduled.counters == {"scheduler_schedule_attempts_total": 7.0}


def test_a_cache_publishes_a_whole_list_once_then_only_real_changes() -> None:
    seen: list[dict[str, object]] = []
    cache = TrimmedCache("pods", trim.pod, seen.append)
    pod = {"metadata": {"name": "a", "namespace": "n", "resourceVersion": "1"}, "spec": {}}
    cache.replace([pod], "1")
    assert [c["op"] for c in seen] == ["reset"] and cache.synced
    # A new resourceVersion with nothing the pages show changed: not sent.
    cache.apply("MODIFIED", {**pod, "metadata": {**pod["metadata"], "resourceVersion": "2"}})
    assert len(seen) == 1
    cache.apply("MODIFIED", {**pod, "spec": {"nodeName": "x"}})
    cache.apply("DELETED", pod)
    assert [c["op"] for c in seen] == ["reset", "put", "delete"] and cache.objects == {}


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
