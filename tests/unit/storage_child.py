"""Crash-test child: writes to a RocksStore forever, printing each acknowledged write."""

from __future__ import annotations

import json
import sys
from itertools import count

import trio

from k8slite.storage import Op, RocksStore
from k8slite.storage.base import Encoder


def encoder(key: str) -> Encoder:
    pad = "x" * 300  # about the size of a small object
    return lambda rv: json.dumps({"key": key, "rv": rv, "pad": pad}).encode()


def ack(verb: str, key: str, rv: int) -> None:
    # One write per line with flush: the parent must see each acknowledgement as it happens.
    sys.stdout.write(f"{verb} {key} {rv}\n")
    sys.stdout.flush()


async def writer(store: RocksStore, name: int) -> None:
    """Create a key and its shadow together, update the key, delete every other shadow."""
    for i in count():
        key, shadow = f"/registry/test/{name}/{i}", f"/registry/test/{name}/{i}/shadow"
        rv, _ = await store.txn(
            [Op("create", key, encoder(key)), Op("create", shadow, encoder(shadow))]
        )
        ack("put", key, rv)
        ack("put", shadow, rv)
        updated, _ = await store.txn([Op("update", key, encoder(key), expected_rv=rv)])
        ack("put", key, updated)
        if i % 2 == 0:
            deleted, _ = await store.txn([Op("delete", shadow, encoder(shadow), expected_rv=rv)])
            ack("del", shadow, deleted)


async def main(path: str, writers: int) -> None:
    async with RocksStore(path) as store, trio.open_nursery() as nursery:
        for name in range(writers):
            nursery.start_soon(writer, store, name)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]))
