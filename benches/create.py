"""Pod creates per second and latency, 50 concurrent HTTPS keep-alive clients, vs an empty handler.

Run: .venv/bin/python benches/create.py [--requests 20000] [--clients 50] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness

# Client threads run in this many processes so the load generator is not one GIL.
_PROCESSES = 2


def _worker(args: tuple[str, int, Path, int, int, str, int]) -> tuple[list[float], int]:
    host, port, pki, threads, per_thread, prefix, proc = args
    import threading

    ctx = harness.tls_context(pki)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def run(t: int) -> None:
        conn = harness.Connection(host, port, ctx)
        mine = []
        for i in range(per_thread):
            body = json.dumps(harness.realistic_pod(f"{prefix}-{proc}-{t}-{i}")).encode()
            start = time.perf_counter()
            status, _ = conn.request("POST", "/api/v1/namespaces/default/pods", body)
            mine.append(time.perf_counter() - start)
            if status != 201:
                errors[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return latencies, errors[0]


def load(
    server: harness.Server, pki: Path, requests: int, clients: int, prefix: str
) -> dict[str, float]:
    per_proc = clients // _PROCESSES
    per_thread = requests // clients
    jobs = [
        (server.host, server.port, pki, per_proc, per_thread, prefix, p) for p in range(_PROCESSES)
    ]
    with mp.get_context("fork").Pool(_PROCESSES) as pool:
        start = time.perf_counter()
        results = pool.map(_worker, jobs)
        elapsed = time.perf_counter() - start
    latencies = [x for lat, _ in results for x in lat]
    failures = sum(e for _, e in results)
    return {
        "per_s": len(latencies) / elapsed,
        "p50_ms": harness.percentile(latencies, 0.5) * 1e3,
        "p99_ms": harness.percentile(latencies, 0.99) * 1e3,
        "errors": failures,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    creates, empties = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(a.runs):
            data = Path(tmp) / f"api{run}"
            server = harness.start_apiserver(data)
            try:
                creates.append(load(server, data / "pki", a.requests, a.clients, f"r{run}"))
            finally:
                server.stop()
            edata = Path(tmp) / f"empty{run}"
            empty = harness.start(
                [sys.executable, str(Path(__file__).with_name("empty_server.py")), str(edata)],
                edata,
            )
            try:
                empties.append(load(empty, edata / "pki", a.requests, a.clients, f"e{run}"))
            finally:
                empty.stop()
    med = {k: harness.median([r[k] for r in creates]) for k in creates[0]}
    emed = {k: harness.median([r[k] for r in empties]) for k in empties[0]}
    print(
        f"creates: {med['per_s']:.0f}/s p50 {med['p50_ms']:.1f} ms p99 {med['p99_ms']:.1f} ms "
        f"(errors {med['errors']:.0f})"
    )
    print(
        f"empty handler: {emed['per_s']:.0f}/s p50 {emed['p50_ms']:.1f} ms "
        f"p99 {emed['p99_ms']:.1f} ms"
    )
    print(f"creates / empty-handler ceiling: {med['per_s'] / emed['per_s']:.2f}")
    harness.emit(
        {
            "bench": "create",
            "clients": a.clients,
            "requests": a.requests,
            "runs": a.runs,
            "creates_per_s": round(med["per_s"]),
            "p50_ms": round(med["p50_ms"], 1),
            "p99_ms": round(med["p99_ms"], 1),
            "empty_handler_per_s": round(emed["per_s"]),
            "empty_p99_ms": round(emed["p99_ms"], 1),
            "ratio_to_ceiling": round(med["per_s"] / emed["per_s"], 3),
        }
    )


if __name__ == "__main__":
    main()
