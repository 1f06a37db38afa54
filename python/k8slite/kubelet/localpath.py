"""The node's half of the local-path provisioner: the directory it advertises, and removal of
volume directories whose PersistentVolume is gone.

Volume directories are made by the hostPath mount (DirectoryOrCreate) when a pod first uses
the volume. A directory is named pvc-<uid>_<namespace>_<claim> after its volume pvc-<uid>;
once the API server answers that volume is not found (the provisioner deleted it under
reclaim policy Delete), the directory and its data are removed. A kubelet may only GET
volumes, not watch them, so this is a periodic look.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import trio

from k8slite.client import ApiClient, ApiConnectionError, ApiError, NotFound
from k8slite.client.resource import PERSISTENTVOLUMES

log = logging.getLogger(__name__)

# How often the directories are checked against the API.
CLEANUP_PERIOD = 5.0


def local_path_dir(root_dir: Path) -> Path:
    return Path(root_dir).resolve() / "local-path"


def volume_of(directory: Path) -> str | None:
    """The PV name a local-path directory belongs to, or None for anything else."""
    name = directory.name
    if not name.startswith("pvc-") or "_" not in name or not directory.is_dir():
        return None
    return name.split("_", 1)[0]


async def remove_orphaned(client: ApiClient, base: Path) -> list[str]:
    """Remove the directories whose volume no longer exists; returns their names."""
    try:
        entries = sorted(base.iterdir())
    except FileNotFoundError:
        return []
    removed = []
    for directory in entries:
        volume = volume_of(directory)
        if volume is None:
            continue
        try:
            await client.get(PERSISTENTVOLUMES, volume)
            continue
        except NotFound:
            pass
        await trio.to_thread.run_sync(shutil.rmtree, directory, True)
        log.info("removed local-path directory %s: volume %s is gone", directory, volume)
        removed.append(directory.name)
    return removed


async def cleanup_loop(client: ApiClient, base: Path, period: float = CLEANUP_PERIOD) -> None:
    while True:
        try:
            await remove_orphaned(client, base)
        except (ApiError, ApiConnectionError) as e:
            log.info("local-path cleanup postponed: %s", e)
        await trio.sleep(period)
