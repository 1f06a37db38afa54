"""Fixtures for driving the real kubectl against the session's API server."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerHandle, kubectl_path

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def kubectl(apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    """Runs the real kubectl with the admin kubeconfig; asserts success unless check=False."""
    binary = kubectl_path()
    if not binary.exists():
        pytest.skip("kubectl is not installed (hack/get-kubectl installs it into .venv/bin)")
    cache = tmp_path_factory.mktemp("kubectl-cache")
    home = tmp_path_factory.mktemp("kubectl-home")

    def run(
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [
            str(binary),
            "--kubeconfig",
            str(apiserver.kubeconfig),
            "--cache-dir",
            str(cache),
            *args,
        ]
        full_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), **(env or {})}
        proc = subprocess.run(
            cmd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            check=False,
        )
        if check:
            assert proc.returncode == 0, f"{' '.join(args)}: {proc.stderr}"
        return proc

    return run


@pytest.fixture(scope="module")
def k(module_apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    """kubectl against this module's own API server (its CRDs change discovery for all)."""
    binary = kubectl_path()
    if not binary.exists():
        pytest.skip("kubectl is not installed (hack/get-kubectl installs it into .venv/bin)")
    cache = tmp_path_factory.mktemp("kubectl-cache")
    home = tmp_path_factory.mktemp("kubectl-home")

    def run(
        *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60, **_: Any
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(binary), "--kubeconfig", str(module_apiserver.kubeconfig)]
        proc = subprocess.run(
            [*cmd, "--cache-dir", str(cache), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(home)},
            check=False,
        )
        if check:
            assert proc.returncode == 0, f"{' '.join(args)}: {proc.stderr}"
        return proc

    return run


@pytest.fixture
def ns(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, made with kubectl."""
    name = (
        "k-"
        + request.node.name.lower().replace("_", "-")[:40].strip("-")
        + "-"
        + os.urandom(2).hex()
    )
    kubectl("create", "namespace", name)
    yield name


def rows(output: str) -> list[list[str]]:
    """kubectl's table output split into cells (columns are separated by 2+ spaces)."""
    import re

    return [re.split(r"\s{2,}", line.strip()) for line in output.strip().splitlines()]


@pytest.fixture
def http(apiserver: ServerHandle) -> Iterator[httpx.Client]:
    with apiserver.client() as client:
        yield client


def write_file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
