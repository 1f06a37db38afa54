"""Benchmark RocksStore: synced txns/s for 1 and 50 writers, and reopen time at scale."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import trio

from k8slite.storage import Op, RocksStore
from k8slite.storage.base import Encoder

# About the size of a small pod as served by the API server.
_PAD = "x" * 1000


def pod(key: str) -> Encoder:
    return lambda rv: json.dumps({"key": key, "resourceVersion": str(rv), "pad": _PAD}).encode()


async def write_run(path: Path, writers: int, txns: int) -> tuple[float, float]:
    """Txns/s of `writers` concurrent creators, and txns per synced write."""
    per_writer = txns // writers

    async def writer(store: RocksStore, name: int) -> None:
        for i in range(per_writer):
            key = f"/registry/pods/ns{name}/pod-{i}"
            await store.txn([Op("create", key, pod(key))])

    async with RocksStore(path) as store:
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for name in range(writers):
                nursery.start_soon(writer, store, name)
        elapsed = time.perf_counter() - start
        done = per_writer * writers
        return done / elapsed, done / store.synced_writes


async def reopen_run(path: Path, keys: int) -> tuple[float, float]:
    """Seconds to reopen (rebuilding the index) and to scan `keys` keys."""
    async with RocksStore(path) as store:
        for first in range(0, keys, 1000):
            names = [f"/registry/pods/default/pod-{i:07}" for i in range(first, first + 1000)]
            await store.txn([Op("create", key, pod(key)) for key in names])
    start = time.perf_counter()
    async with RocksStore(path) as store:
        opened = time.perf_counter() - start
        start = time.perf_counter()
        scanned = sum(1 for _ in store.scan("/registry/pods/"))
        assert scanned == keys
        return opened, time.perf_counter() - start


def median_writes(writers: int, txns: int, runs: int) -> dict[str, float]:
    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(trio.run(write_run, Path(tmp), writers, txns))
    return {
        "txns_per_s": round(statistics.median(r[0] for r in results)),
        "txns_per_sync": round(statistics.median(r[1] for r in results), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--txns", type=int, default=5000, help="transactions per run")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure; median shown")
    parser.add_argument("--keys", type=int, default=150_000, help="keys for the reopen figure")
    args = parser.parse_args()

    figures: dict[str, object] = {}
    for writers in (1, 50):
        figures[f"writers_{writers}"] = median_writes(writers, args.txns, args.runs)
        print(f"{writers:>3} writers: {figures[f'writers_{writers}']}")
    with tempfile.TemporaryDirectory() as tmp:
        opened, scanned = trio.run(reopen_run, Path(tmp), args.keys)
    figures["reopen"] = {"keys": args.keys, "open_s": round(opened, 2), "scan_s": round(scanned, 2)}
    print(f"reopen with {args.keys} keys: open {opened:.2f}s (index rebuild), scan {scanned:.2f}s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
