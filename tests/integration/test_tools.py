"""Tests of the dev tooling: kubectl and helm in .venv/bin, and the locally built images."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
BUSYBOX = "busybox:1.35"
PAUSE = "k8slite/pause:1.0"
APPLETS = (
    *("sh", "httpd", "wget", "sleep", "hostname", "cat", "echo", "env", "ls", "nc", "ps"),
    *("kill", "true", "false", "mkdir", "rm", "cp", "mv", "grep", "sed", "awk", "head"),
    *("tail", "wc", "date", "id", "whoami", "nslookup", "ip", "ping", "timeout", "test"),
)


def run(*args: str | Path, check: bool = True, timeout: float = 120) -> str:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(f"{args} exited {result.returncode}: {result.stdout}{result.stderr}")
    return result.stdout


def _docker_answers() -> bool:
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


needs_docker = pytest.mark.skipif(not _docker_answers(), reason="no Docker engine answers")


def tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run hack/get-kubectl (make test does)")
    return path


def test_kubectl_is_v1_35() -> None:
    out = json.loads(run(tool("kubectl"), "version", "--client", "-o", "json"))
    assert out["clientVersion"]["gitVersion"].startswith("v1.35.")


def test_helm_is_v4_or_v3() -> None:
    assert re.match(r"v[34]\.\d+\.\d+", run(tool("helm"), "version", "--short"))


def test_get_kubectl_is_idempotent() -> None:
    tool("kubectl")
    assert "already in" in run(REPO / "hack" / "get-kubectl")


@needs_docker
def test_build_images_is_idempotent() -> None:
    out = run(REPO / "hack" / "build-images", timeout=600)
    # Either built just now (a fresh machine) or found current; both list the images.
    for ref in (BUSYBOX, "busybox:latest", PAUSE):
        assert ref in out
    assert "up to date" in run(REPO / "hack" / "build-images")


@needs_docker
def test_busybox_image() -> None:
    config = json.loads(run("docker", "image", "inspect", BUSYBOX))[0]["Config"]
    assert config["Cmd"] == ["sh"]
    assert run("docker", "image", "inspect", "-f", "{{.Id}}", "busybox:latest") == run(
        "docker", "image", "inspect", "-f", "{{.Id}}", BUSYBOX
    )
    script = (
        "echo ok; busybox | head -n 1; wget --help >/dev/null 2>&1 || exit 3; "
        "httpd --help >/dev/null 2>&1 || exit 4; stat -c %a /tmp; "
        + "; ".join(f"command -v {a} >/dev/null || echo missing {a}" for a in APPLETS)
    )
    out = run("docker", "run", "--rm", "--network", "none", BUSYBOX, "sh", "-c", script)
    lines = out.splitlines()
    assert lines[0] == "ok"
    assert lines[1].startswith("BusyBox v1.35.")
    assert lines[2] == "1777"
    assert lines[3:] == []


@needs_docker
def test_busybox_httpd_serves_wget() -> None:
    # What e2e tests do with it: a web server in one container, a client on loopback.
    script = (
        "mkdir -p /tmp/www && echo hello > /tmp/www/index.html && "
        "httpd -p 127.0.0.1:8080 -h /tmp/www && "
        "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://127.0.0.1:8080/ && exit 0; "
        "sleep 0.5; done; exit 1"
    )
    out = run("docker", "run", "--rm", "--network", "none", BUSYBOX, "sh", "-c", script)
    assert out.strip() == "hello"


@needs_docker
def test_pause_exits_cleanly_on_sigterm() -> None:
    cid = run("docker", "run", "-d", "--network", "none", PAUSE).strip()
    try:
        # Without a SIGTERM handler PID 1 ignores the signal, and docker stop would end it
        # with SIGKILL after the grace period: exit code 137 instead of 0.
        run("docker", "stop", "-t", "30", cid)
        state = json.loads(run("docker", "inspect", cid))[0]["State"]
        assert (state["Status"], state["ExitCode"]) == ("exited", 0)
    finally:
        run("docker", "rm", "-f", cid, check=False)


@needs_docker
def test_pause_exits_cleanly_on_sigint() -> None:
    cid = run("docker", "run", "-d", "--network", "none", PAUSE).strip()
    try:
        run("docker", "kill", "-s", "INT", cid)
        assert run("docker", "wait", cid).strip() == "0"
    finally:
        run("docker", "rm", "-f", cid, check=False)


@needs_docker
def test_pause_reaps_orphans_in_a_shared_pid_namespace() -> None:
    cid = run("docker", "run", "-d", "--network", "none", PAUSE).strip()
    try:
        # The subshell exits at once, so its `sleep` is reparented to PID 1 (pause); once
        # that sleep ends it is a zombie unless pause reaps it.
        script = "(sleep 1 &); (sleep 1 &); sleep 3; ps -o pid,stat,comm"
        pid_ns = f"--pid=container:{cid}"
        out = run("docker", "run", "--rm", "--network", "none", pid_ns, BUSYBOX, "sh", "-c", script)
        rows = [line.split() for line in out.splitlines()[1:]]
        assert rows[0][2] == "pause"
        assert not [row for row in rows if row[1].startswith("Z")], out
    finally:
        run("docker", "rm", "-f", cid, check=False)
