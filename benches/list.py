"""LIST latency of 10,000 and 100,000 pods over HTTPS, served from the watch cache.

Run: .venv/bin/python benches/list.py [--sizes 10000 100000] [--runs 5]
The pods are written straight into RocksDB (as the API server would store them), then a
fresh API server warms its cache from the store and serves LIST to a lean HTTPS client.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))
import harness

from k8slite import pki
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.registry import encoder
from k8slite.storage import Op, RocksStore

_BATCH = 1000


async def populate(db: Path, count: int) -> None:
    async with RocksStore(db) as store:
        core = ApiCore(store)  # type: ignore[arg-type]
        core.warm()
        await core.ensure_system_namespaces()
        pods = core.registries[("", "pods")]
        for first in range(0, count, _BATCH):
            ops = []
            for i in range(first, min(first + _BATCH, count)):
                obj = pods.prepare_new("default", harness.realistic_pod(f"web-{i:07}"))
                ops.append(Op("create", pods.key("default", obj["metadata"]["name"]), encoder(obj)))
            await store.txn(ops)


def measure(server: harness.Server, pki_dir: Path, runs: int) -> tuple[list[float], int]:
    conn = harness.Connection(server.host, server.port, harness.tls_context(pki_dir))
    times, size = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        status, body = conn.request("GET", "/api/v1/namespaces/default/pods")
        times.append(time.perf_counter() - start)
        assert status == 200, body[:200]
        size = len(body)
    conn.close()
    return times, size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    figures: dict[str, object] = {"bench": "list", "runs": a.runs}
    for size in a.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp)
            pki.ensure_pki(data / "pki")
            trio.run(populate, data / "db", size)
            start = time.perf_counter()
            server = harness.start_apiserver(data)
            startup = time.perf_counter() - start
            try:
                times, nbytes = measure(server, data / "pki", a.runs)
                rss = server.rss_mib()
            finally:
                server.stop()
        med = harness.median(times)
        print(
            f"LIST {size} pods: median {med * 1e3:.0f} ms ({nbytes / 1e6:.1f} MB, "
            f"{nbytes / med / 1e6:.0f} MB/s); server start with warm-up {startup:.1f} s; "
            f"RSS {rss:.0f} MiB"
        )
        figures[f"list_{size}_ms"] = round(med * 1e3, 1)
        figures[f"list_{size}_mb"] = round(nbytes / 1e6, 1)
        figures[f"startup_{size}_s"] = round(startup, 2)
        figures[f"rss_{size}_mib"] = round(rss)
    harness.emit(figures)


if __name__ == "__main__":
    main()
