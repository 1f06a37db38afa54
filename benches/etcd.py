"""Pod creates per second and latency with 50 clients: RocksDB vs single-member etcd, one run.

Both API servers run on this machine with the same load generator (benches/create.py's),
one after the other; etcd is a real `etcd` process (Debian's etcd-server) on loopback with
its data dir in tmp, fsyncing its WAL as RocksDB does.

Run: .venv/bin/python benches/etcd.py [--requests 10000] [--clients 50] [--runs 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness
from create import load

from tests.etcd_server import start_etcd


def measure(backend: str, base: Path, requests: int, clients: int, run: int) -> dict[str, float]:
    data = base / f"{backend}{run}"
    etcd = start_etcd(base / f"etcd{run}") if backend == "etcd3" else None
    try:
        extra = ["--storage-backend=etcd3", f"--etcd-servers={etcd.url}"] if etcd else []
        server = harness.start_apiserver(data, *extra)
        try:
            return load(server, data / "pki", requests, clients, f"{backend}{run}")
        finally:
            server.stop()
    finally:
        if etcd is not None:
            etcd.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=10000)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--runs", type=int, default=1)
    a = p.parse_args()
    results: dict[str, list[dict[str, float]]] = {"rocksdb": [], "etcd3": []}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(a.runs):
            for backend in results:
                results[backend].append(measure(backend, Path(tmp), a.requests, a.clients, run))
    med = {
        backend: {k: harness.median([r[k] for r in runs]) for k in runs[0]}
        for backend, runs in results.items()
    }
    for backend, m in med.items():
        print(
            f"{backend}: {m['per_s']:.0f} creates/s p50 {m['p50_ms']:.1f} ms "
            f"p99 {m['p99_ms']:.1f} ms (errors {m['errors']:.0f})"
        )
    ratio = med["etcd3"]["per_s"] / med["rocksdb"]["per_s"]
    print(f"etcd / RocksDB create rate: {ratio:.2f}")
    harness.emit(
        {
            "bench": "etcd",
            "clients": a.clients,
            "requests": a.requests,
            "runs": a.runs,
            "rocksdb_creates_per_s": round(med["rocksdb"]["per_s"]),
            "rocksdb_p99_ms": round(med["rocksdb"]["p99_ms"], 1),
            "etcd_creates_per_s": round(med["etcd3"]["per_s"]),
            "etcd_p99_ms": round(med["etcd3"]["p99_ms"], 1),
            "etcd_errors": round(med["etcd3"]["errors"]),
            "etcd_to_rocksdb": round(ratio, 3),
        }
    )


if __name__ == "__main__":
    main()
