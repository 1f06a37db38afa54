"""k8slite storage migrate: copy a stopped cluster's objects between RocksDB and etcd."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import trio

from k8slite.apiserver.peers import LEASE_TTL
from k8slite.cmd.common import report_fatal
from k8slite.component.flags import duration
from k8slite.datadir import private_data_dir
from k8slite.storage import RocksStore, StorageError, Store, StoreUnavailable
from k8slite.storage.etcd import DEFAULT_PREFIX, EtcdStore, EtcdTLS
from k8slite.storage.migrate import (
    Copy,
    MigrationError,
    check_all,
    clear,
    copy_all,
    count_keys,
    etcd_ttls,
)

PROG = "k8slite storage"
BACKENDS = ("rocksdb", "etcd")


class Refused(Exception):
    """Nothing was written: the migration would be unsafe as asked."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=f"{PROG} migrate", description=__doc__)
    p.add_argument("--from", dest="source", choices=BACKENDS, required=True)
    p.add_argument("--to", dest="target", choices=BACKENDS, required=True)
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".k8slite"),
        help="the data directory whose DIR/db is the RocksDB side (default ./.k8slite)",
    )
    p.add_argument("--etcd-servers", default="", help="comma-separated etcd URLs")
    p.add_argument("--etcd-cafile", type=Path, help="CA bundle that verifies etcd")
    p.add_argument("--etcd-certfile", type=Path, help="client certificate for etcd")
    p.add_argument("--etcd-keyfile", type=Path, help="key of --etcd-certfile")
    p.add_argument("--etcd-prefix", default=DEFAULT_PREFIX, help="the prefix of every key in etcd")
    p.add_argument(
        "--event-ttl",
        type=duration,
        default=3600.0,
        help="TTL of the Events written to etcd, from the migration (default 1h0m0s)",
    )
    p.add_argument(
        "--force", action="store_true", help="delete whatever the target holds, then copy"
    )
    a = p.parse_args(argv)
    if a.source == a.target:
        p.error(f"--from and --to are both {a.source}: one side must be rocksdb, the other etcd")
    if not a.etcd_servers:
        p.error("--etcd-servers must be specified")
    if bool(a.etcd_certfile) != bool(a.etcd_keyfile):
        p.error("--etcd-certfile and --etcd-keyfile go together")
    return a


def _etcd(a: argparse.Namespace) -> EtcdStore:
    tls = None
    if a.etcd_cafile or a.etcd_certfile:
        tls = EtcdTLS(a.etcd_cafile, a.etcd_certfile, a.etcd_keyfile)
    servers = [s.strip() for s in a.etcd_servers.split(",") if s.strip()]
    # No compaction from here: the tool must leave etcd's history as it found it.
    return EtcdStore(servers, prefix=a.etcd_prefix, tls=tls, compaction_interval=0)


async def _open(stack: AsyncExitStack, store: Store, a: argparse.Namespace) -> Store:
    try:
        return await stack.enter_async_context(store)
    except StoreUnavailable as e:
        raise Refused(f"cannot reach etcd at {a.etcd_servers}: {e}") from None
    except Exception as e:
        if isinstance(store, RocksStore) and "lock" in str(e).lower():
            raise Refused(
                f"the RocksDB in {store.path} is locked: an API server of data dir "
                f"{a.data_dir} is running; stop it first (k8slite stop --data-dir "
                f"{a.data_dir}) and migrate a stopped cluster"
            ) from None
        raise


def _describe(store: Store, a: argparse.Namespace) -> str:
    if isinstance(store, RocksStore):
        return f"rocksdb {store.path}"
    return f"etcd {a.etcd_servers} (prefix {a.etcd_prefix})"


async def migrate(a: argparse.Namespace, copy: Copy) -> None:
    db = a.data_dir / "db"
    if a.source == "rocksdb" and not db.is_dir():
        raise Refused(f"no RocksDB at {db}: is --data-dir the stopped cluster's data directory?")
    if a.target == "rocksdb":
        private_data_dir(a.data_dir)
    rocks = RocksStore(db)
    source, target = (rocks, _etcd(a)) if a.source == "rocksdb" else (_etcd(a), rocks)
    async with AsyncExitStack() as stack:
        await _open(stack, source, a)
        await _open(stack, target, a)
        print(f"migrating from {_describe(source, a)} to {_describe(target, a)}")
        held = count_keys(target)
        if held and not a.force:
            raise Refused(
                f"the target {_describe(target, a)} is not empty: it holds {held} keys; "
                "use --force to delete them and migrate anyway"
            )
        check_all(source)  # a value that cannot be copied stops us before any write
        if held:
            copy.cleared = await clear(target)
            print(f"deleted {copy.cleared} keys from the target (--force)")
        ttls = etcd_ttls(round(a.event_ttl), LEASE_TTL) if a.target == "etcd" else None
        await copy_all(source, target, copy, ttls)


def _report(copy: Copy) -> None:
    width = max((len(r) for r in copy.written), default=8)
    print(f"{'RESOURCE':<{width}}  OBJECTS")
    for resource, n in sorted(copy.written.items()):
        print(f"{resource:<{width}}  {n}")


def migrate_main(argv: list[str]) -> int:
    a = parse_args(argv)
    # RocksDB creates its files under the process umask: 077 makes them 0600, as etcd's.
    os.umask(0o077)
    copy = Copy()

    def run() -> int:
        try:
            trio.run(migrate, a, copy)
        except (MigrationError, StorageError, StoreUnavailable):
            if copy.total or copy.cleared:
                _report(copy)
                print(
                    f"{PROG}: error: failed after writing only the {copy.total} objects above "
                    f"(and deleting {copy.cleared} keys first): the target is partial; fix "
                    "the cause and rerun with --force",
                    file=sys.stderr,
                )
            else:
                print(f"{PROG}: error: nothing was written to the target", file=sys.stderr)
            raise
        _report(copy)
        print(
            f"migrated {copy.total} objects; uids and contents are unchanged, but every "
            "resourceVersion changed (the target's revisions, as after an etcd restore): "
            "clients and controllers must relist"
        )
        return 0

    return report_fatal(PROG, (Refused, MigrationError, StorageError, StoreUnavailable), run)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {PROG} migrate --from rocksdb|etcd --to etcd|rocksdb [flags]")
        print("  migrate: copy every object of a stopped cluster between RocksDB and etcd")
        return 0 if argv else 2
    if argv[0] != "migrate":
        print(f"{PROG}: error: unknown command {argv[0]!r} (known: migrate)", file=sys.stderr)
        return 2
    return migrate_main(argv[1:])
