"""Idle footprint of a `k8slite up` cluster: the memory of every component once it settles.

Run: .venv/bin/python benches/footprint.py [--runs 3] [--single-process] [--runtime fake]

Each run starts `k8slite up` on a temporary data directory of its own (free ports, a node
name and a Docker network of its own, no upstream resolvers, as tests/e2e/cluster.py runs
it), waits for the cluster to be ready, then until the summed memory stops moving, reads
every process of the cluster, and stops it. The proxy runs as `make up` runs it (when root,
unless --no-proxy), holding the host-network lock the tests hold while they route the
service range on the host.

Per process it reads VmRSS (/proc/PID/status) and Pss (/proc/PID/smaps_rollup): RSS counts
the interpreter and the shared libraries once per process, PSS shares them out among the
processes that map them, so the PSS sum is what the cluster costs the machine. Every
descendant of a component (a kubelet's process-runtime shims) counts as that component's;
the supervisor (`k8slite up` itself, which serves the dashboard) counts as "supervisor".

It prints a table per run, then the median over the runs, with the JSON line last.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.e2e.cluster import host_network_lock

BIN = Path(sys.executable).parent
_MIB = 1024.0
# The cluster has settled when its summed RSS moved less than this over the window.
_STEADY_KIB = 1024
_STEADY_WINDOW = 3
_SAMPLE_EVERY = 5.0


def _kib(path: Path, key: str) -> int:
    """A "Key:   123 kB" line of a /proc file, in KiB (0 when the process is gone)."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _children() -> dict[int, list[int]]:
    """Every live process's children, from /proc/PID/stat."""
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def _descendants(pid: int, tree: dict[int, list[int]]) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += tree.get(p, [])
    return out


def sample(info: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each component's RSS and PSS in MiB (with its descendants), and the supervisor's."""
    tree = _children()
    out: dict[str, dict[str, float]] = {}
    component_pids = {rec["pid"] for rec in info["components"].values()}
    owners = {name: rec["pid"] for name, rec in info["components"].items()}
    for name, pid in sorted(owners.items()):
        pids = _descendants(pid, tree)
        out[name] = _measure(pids)
    sup = info["pid"]
    # The supervisor alone: its components are counted above.
    out["supervisor"] = _measure([sup] + [p for p in tree.get(sup, []) if p not in component_pids])
    return out


def _measure(pids: list[int]) -> dict[str, float]:
    rss = sum(_kib(Path(f"/proc/{p}/status"), "VmRSS") for p in pids)
    pss = sum(_kib(Path(f"/proc/{p}/smaps_rollup"), "Pss") for p in pids)
    return {"rss": rss / _MIB, "pss": pss / _MIB}


def _total(per: dict[str, dict[str, float]], key: str) -> float:
    return sum(v[key] for v in per.values())


def _wait_ready(data_dir: Path, proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    state = data_dir / "cluster.json"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"k8slite up exited ({proc.returncode}); see {data_dir}/up.log")
        with contextlib.suppress(OSError, ValueError):
            info: dict[str, Any] = json.loads(state.read_text())
            if info.get("state") == "ready":
                return info
        time.sleep(0.2)
    raise RuntimeError(f"k8slite up was not ready within {timeout:.0f} s; see {data_dir}")


def one_run(args: argparse.Namespace, proxy: bool) -> dict[str, Any]:
    """Start a cluster, let it settle, measure it, stop it."""
    suffix = uuid.uuid4().hex[:6]
    tmp = Path(tempfile.mkdtemp(prefix="k8slite-footprint-"))
    data_dir = tmp / "data"
    network = f"k8slite-fp-{suffix}"
    argv = [
        str(BIN / "k8slite"),
        "up",
        "--data-dir",
        str(data_dir),
        "--port",
        "0",
        "--node-name",
        f"fp-{suffix}",
        "--docker-network",
        network,
        "--upstream-dns",
        "",
        *(["--runtime", args.runtime] if args.runtime else []),
        *([] if proxy else ["--no-proxy"]),
        *(["--single-process"] if args.single_process else []),
    ]
    data_dir.mkdir(parents=True)
    with (tmp / "up.log").open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log)
    try:
        began = time.monotonic()
        info = _wait_ready(data_dir, proc, 240.0)
        ready_after = time.monotonic() - began
        # Settled: at least --settle seconds after ready, then the summed RSS steady over
        # the last few samples (or --max-settle passed).
        time.sleep(args.settle)
        totals: list[float] = []
        deadline = time.monotonic() + args.max_settle
        while True:
            per = sample(info)
            totals.append(_total(per, "rss") * _MIB)
            recent = totals[-_STEADY_WINDOW:]
            steady = len(recent) == _STEADY_WINDOW and max(recent) - min(recent) < _STEADY_KIB
            if steady or time.monotonic() > deadline:
                break
            time.sleep(_SAMPLE_EVERY)
        return {
            "components": per,
            "rss": _total(per, "rss"),
            "pss": _total(per, "pss"),
            "ready_s": ready_after,
            "settled_s": time.monotonic() - began - ready_after,
            "runtime": info["runtime"],
            "proxy": info["proxy"],
        }
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if shutil.which("docker"):
            subprocess.run(["docker", "network", "rm", network], capture_output=True, check=False)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}", file=sys.stderr)


def _table(per: dict[str, dict[str, float]]) -> str:
    rows = [f"{'component':<20} {'RSS MiB':>8} {'PSS MiB':>8}"]
    for name, v in per.items():
        rows.append(f"{name:<20} {v['rss']:8.1f} {v['pss']:8.1f}")
    rows.append(f"{'total':<20} {_total(per, 'rss'):8.1f} {_total(per, 'pss'):8.1f}")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument(
        "--single-process",
        action="store_true",
        help="`k8slite up --single-process`: every component in one child",
    )
    p.add_argument("--runtime", choices=("docker", "process", "fake"), help="default as make up")
    p.add_argument("--no-proxy", dest="proxy", action="store_false")
    p.add_argument(
        "--settle", type=float, default=20.0, help="seconds to wait after ready (default 20)"
    )
    p.add_argument("--max-settle", type=float, default=120.0)
    p.add_argument("--keep", action="store_true", help="keep each run's data directory")
    args = p.parse_args()
    proxy = args.proxy and os.geteuid() == 0
    runs = []
    with host_network_lock() if proxy else contextlib.nullcontext():
        for i in range(args.runs):
            run = one_run(args, proxy)
            runs.append(run)
            print(
                f"run {i + 1}: ready in {run['ready_s']:.1f} s, settled {run['settled_s']:.0f} s "
                f"later ({run['runtime']} runtime, proxy {run['proxy']})",
                flush=True,
            )
            print(_table(run["components"]), flush=True)
    names = list(runs[0]["components"])
    median = {
        name: {
            key: statistics.median(r["components"].get(name, {}).get(key, 0.0) for r in runs)
            for key in ("rss", "pss")
        }
        for name in names
    }
    mode = "single-process" if args.single_process else "process-per-component"
    print(f"median of {len(runs)} ({mode}):")
    print(_table(median))
    rss = statistics.median(r["rss"] for r in runs)
    pss = statistics.median(r["pss"] for r in runs)
    print(
        json.dumps(
            {
                "bench": "footprint",
                "mode": mode,
                "runs": len(runs),
                "runtime": runs[0]["runtime"],
                "proxy": runs[0]["proxy"],
                "rss_mib": round(rss, 1),
                "pss_mib": round(pss, 1),
                "rss_runs": [round(r["rss"], 1) for r in runs],
                "components_rss_mib": {n: round(v["rss"], 1) for n, v in median.items()},
                "components_pss_mib": {n: round(v["pss"], 1) for n, v in median.items()},
                "loadavg": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
