"""The API server keeps its data directory to its owner: 0700 directories, 0600 files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.launch import launch, stop


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _start(data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    # umask 022, the usual default, under which new files come out world-readable.
    with _umask(0o022):
        proc, _ = launch(
            [
                sys.executable,
                "-m",
                "k8slite.cmd.apiserver",
                "--data-dir",
                str(data_dir),
                "--secure-port",
                "0",
            ],
            log,
            "listening on ",
            what="apiserver",
        )
    return proc


def _assert_private(data_dir: Path) -> None:
    assert _mode(data_dir) == 0o700
    for sub in ("db", "pki"):
        assert _mode(data_dir / sub) == 0o700, sub
    db_files = [p for p in (data_dir / "db").rglob("*") if p.is_file()]
    assert db_files, "RocksDB wrote nothing"
    for path in [*db_files, *(data_dir / "pki").glob("*.key")]:
        assert _mode(path) & 0o077 == 0, f"{path} is {_mode(path):#o}"


def test_data_dir_is_private_when_fresh_and_made_so_when_open(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "apiserver.log"
    proc = _start(data_dir, log)
    try:
        _assert_private(data_dir)
    finally:
        stop(proc)
    assert "permission" not in log.read_text()

    # A data directory from before, or copied about: everything readable by everyone.
    for path in [data_dir, *data_dir.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    proc = _start(data_dir, log)
    try:
        _assert_private(data_dir)
    finally:
        stop(proc)
    text = log.read_text()
    assert f"data directory {data_dir} exists, but its permission is 0o755" in text
