"""Private data directories: 0700 directories and 0600 files, as etcd keeps its data dir."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
# What no one but the owner may have: the group's and others' read, write and search bits.
_OPEN = 0o077


def private_dir(path: Path) -> None:
    """Create `path` 0700 (missing parents too), or take an existing one's group and other bits.

    Parents that already exist are left as they are: they may be anybody's (/tmp, $HOME).
    """
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _tighten(path)


def private_tree(path: Path) -> None:
    """`path` and everything under it readable by the owner alone: 0700 dirs, 0600 files.

    Modes are only ever narrowed (an owner-executable file stays so); symlinks are skipped.
    """
    private_dir(path)
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            _tighten(Path(root, name))


def private_data_dir(path: Path) -> None:
    """A component's data directory: warned about when others can get in, then made 0700."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = None
    if mode is not None and mode & _OPEN:
        # etcd's words for its data dir; here it is fixed as well as reported.
        log.warning(
            "data directory %s exists, but its permission is %#o: others can read what it "
            "holds (Secrets included); setting %#o to prevent unprivileged access to the data",
            path,
            mode,
            DIR_MODE,
        )
    private_dir(path)


def _tighten(path: Path) -> None:
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        return
    mode = stat.S_IMODE(st.st_mode)
    if mode & _OPEN:
        os.chmod(path, mode & ~_OPEN)
