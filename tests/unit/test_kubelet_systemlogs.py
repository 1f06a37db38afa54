"""The kubelet's /logs/: listings, files, redirects, and nothing outside its directory."""

from __future__ import annotations

from pathlib import Path

from k8slite.component.serving import Request, Response
from k8slite.kubelet.systemlogs import SystemLogs


async def _get(logs: SystemLogs, path: str) -> tuple[Response, bytes]:
    response = await logs.serve(Request("GET", path, {}, {}))
    body = response.body
    if isinstance(body, bytes):
        return response, body
    return response, b"".join([chunk async for chunk in body])


async def test_listing_files_and_confinement(tmp_path: Path) -> None:
    root = tmp_path / "log"
    (root / "containers").mkdir(parents=True)
    (root / "syslog").write_text("line\n")
    (root / "a b.log").write_text("spaced\n")
    (tmp_path / "secret").write_text("outside\n")
    (root / "escape").symlink_to(tmp_path / "secret")
    logs = SystemLogs(root)

    response, body = await _get(logs, "/logs/")
    assert (response.status, response.content_type) == (200, "text/html; charset=utf-8")
    assert body.decode().splitlines()[2:] == [
        "<pre>",
        '<a href="a%20b.log">a b.log</a>',
        '<a href="containers/">containers/</a>',
        '<a href="escape">escape</a>',
        '<a href="syslog">syslog</a>',
        "</pre>",
    ]
    response, body = await _get(logs, "/logs/syslog")
    assert (response.status, body) == (200, b"line\n")
    assert response.content_type == "text/plain; charset=utf-8"
    response, _ = await _get(logs, "/logs/containers")
    assert (response.status, response.headers) == (301, {"location": "containers/"})
    response, _ = await _get(logs, "/logs")
    assert (response.status, response.headers) == (301, {"location": "/logs/"})
    for outside in ("/logs/../secret", "/logs/escape", "/logs/missing"):
        response, body = await _get(logs, outside)
        assert (response.status, body) == (404, b"404 page not found\n"), outside
