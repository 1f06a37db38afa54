"""Where a create's CPU goes: py-spy on one API server under benches/create.py's load.

Run: .venv/bin/pip install py-spy   (a tool, once)
     .venv/bin/python benches/create_profile.py [--requests 10000] [--empty] [--out FILE]

It starts a bare API server (or, with --empty, benches/empty_server.py), warms it with
1,000 creates, then samples it with `py-spy record --native --threads` (200 Hz) while 50
clients send --requests more, and reads the server's CPU time from /proc. Each sample is
put in the first category below whose pattern its stack matches; a category's share of
the samples times the CPU per request is its microseconds per request. Sampling adds
some CPU of its own, so the total is a little above an unprofiled run's
(docs/performance.md has both).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import create
import harness

# First match wins, so the order matters: garbage collection anywhere is the collector's,
# TLS inside hypercorn's writes is TLS, our handlers' parts before the handler as a whole.
CATEGORIES = [
    ("garbage collection", r"gc_collect_main"),
    (
        "TLS: encrypt + send(2)",
        r"SSLStream\.send_all|DirectChunks\._write_locked.*"
        r"(_ssl|libssl|libcrypto|os_write|write \(libc|SSLObject)",
    ),
    ("TLS: receive(2) + decrypt", r"SSLStream\.receive_some"),
    (
        "hypercorn + h11: write the response",
        r"H11Protocol\.stream_send|HTTPStream\.app_send|protocol_send|_send_closed|DirectChunks",
    ),
    ("hypercorn + h11: read the request", r"_read_data|H11Protocol\.handle|HTTPStream\.handle"),
    ("filters: authentication", r"authn\.py|tokenauth"),
    ("filters: impersonation", r"impersonat"),
    ("filters: priority and fairness", r"flowcontrol/"),
    ("filters: audit", r"audit\.py|_audit"),
    (
        "filters: authorization",
        r"authz/|NodeRestriction|EscalationCheck|CertificateAdmission|check_body_depth",
    ),
    ("create: managedFields", r"record_update|fieldsets\.py|apply\.py"),
    ("create: validation", r"validate_body|_validate|fieldvalidation|validation"),
    ("create: defaulting", r"\.default |default_pod|defaults"),
    ("create: admission", r"admission|webhooks"),
    ("create: storage commit (event loop side)", r"MeteredStore|storage/"),
    ("create: watch fan-out", r"watch|broadcast|cache\.py"),
    ("create: decoding", r"decode_body|loads|check_type_meta"),
    ("create: encoding", r"dumps|encode"),
    ("create: names, uid, timestamps", r"prepare_new|prepare_create|Registry\.create"),
    (
        "routing, request object, metrics",
        r"requestinfo|app\.py|http\.py|is_resource_path|handler\.py",
    ),
    ("filters: the chain itself (body read, deadline)", r"filters\.py"),
    ("ASGI wrappers, per-request task", r"tls\.py.*__call__|app_wrappers|task_group"),
    ("Trio scheduler", r"trio/"),
]
OTHER = "other (event loop)"
THREADS = "other threads (storage: RocksDB write, fsync)"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def breakdown(raw: Path) -> tuple[dict[str, int], int]:
    """Samples per category from py-spy's raw (collapsed) output."""
    compiled = [(name, re.compile(pattern)) for name, pattern in CATEGORIES]
    counts: dict[str, int] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        total += int(n)
        if not stack.startswith("thread") or "MainThread" not in stack.split(";", 1)[0]:
            counts[THREADS] += int(n)
            continue
        name = next((name for name, rx in compiled if rx.search(stack)), OTHER)
        counts[name] += int(n)
    return counts, total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=10000)
    p.add_argument("--empty", action="store_true", help="profile the empty handler instead")
    p.add_argument("--out", type=Path, help="keep py-spy's raw samples here")
    a = p.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "api"
        raw = a.out or Path(tmp) / "samples.txt"
        if a.empty:
            argv = [sys.executable, str(Path(__file__).with_name("empty_server.py")), str(data)]
            server = harness.start(argv, data)
        else:
            server = harness.start_apiserver(data)
        try:
            create.load(server, data / "pki", 1000, 50, "warm")
            record = subprocess.Popen(
                [spy, "record", "--native", "--threads", "-r", "200", "-f", "raw"]
                + ["-o", str(raw), "-p", str(server.proc.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.5)  # py-spy attaches
            before = cpu_seconds(server.proc.pid)
            figures = create.load(server, data / "pki", a.requests, 50, "prof")
            used = cpu_seconds(server.proc.pid) - before
            record.send_signal(2)
            record.wait()
        finally:
            server.stop()
        counts, total = breakdown(raw)
    per_request = used * 1e6 / a.requests
    print(
        f"{figures['per_s']:.0f}/s under the profiler, p99 {figures['p99_ms']:.0f} ms; "
        f"server CPU {per_request:.0f} µs per request; load {os.getloadavg()[0]:.1f}"
    )
    print("| where | share | µs per request |\n| --- | ---: | ---: |")
    for name in [name for name, _ in CATEGORIES] + [OTHER, THREADS]:
        if counts[name]:
            share = counts[name] / total
            print(f"| {name} | {100 * share:.1f}% | {share * per_request:.0f} |")
    harness.emit(
        {
            "bench": "create_profile",
            "cpu_us_per_request": round(per_request),
            "samples": total,
            "shares": {k: round(v / total, 4) for k, v in counts.items()},
        }
    )


if __name__ == "__main__":
    main()
