"""Private data directories: modes narrowed to the owner's, never widened, links not followed."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from k8slite import datadir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_tree_narrows_and_never_widens(tmp_path: Path) -> None:
    top = tmp_path / "db"
    (top / "sub").mkdir(parents=True)
    files = {"data.sst": 0o644, "run.sh": 0o755, "sealed": 0o400, "sub/LOG": 0o666}
    for name, mode in files.items():
        (top / name).write_text("x")
        (top / name).chmod(mode)
    outside = tmp_path / "outside"
    outside.write_text("not ours")
    outside.chmod(0o644)
    (top / "link").symlink_to(outside)
    top.chmod(0o755)
    (top / "sub").chmod(0o777)

    datadir.private_tree(top)

    assert _mode(top) == _mode(top / "sub") == 0o700
    assert _mode(top / "data.sst") == 0o600
    assert _mode(top / "run.sh") == 0o700
    assert _mode(top / "sealed") == 0o400
    assert _mode(top / "sub" / "LOG") == 0o600
    assert _mode(outside) == 0o644  # a link's target is not the tree's to change


def test_private_dir_makes_a_missing_one_private(tmp_path: Path) -> None:
    datadir.private_dir(tmp_path / "a" / "kubelet")
    assert _mode(tmp_path / "a" / "kubelet") == 0o700


def test_private_data_dir_warns_only_when_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="k8slite.datadir")
    fresh = tmp_path / "fresh"
    datadir.private_data_dir(fresh)
    assert _mode(fresh) == 0o700
    assert not caplog.records
    fresh.chmod(0o750)
    datadir.private_data_dir(fresh)
    assert _mode(fresh) == 0o700
    assert f"data directory {fresh} exists, but its permission is 0o750" in caplog.text
