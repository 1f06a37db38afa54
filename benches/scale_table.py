"""The table of measured density runs in docs/scale.md: one row per run of
`benches/density.py --record FILE`, newest first, made from the run's figures."""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path
from typing import Any

TABLE_HEAD = (
    "| date (UTC) | machine | nodes | pods | load avg (mean/max) | create all | "
    "pod start-up p50/p90/p99 | worst mutating p99 | worst GET p99 | worst ns LIST p99 | "
    "worst cluster LIST p99 | watch lag p99 | scale down | delete all | peak RSS MiB "
    "(apiserver/cm/sched/hollow) | data dir | command |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | "
    "--- | --- | --- |\n"
)


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / (1 << 20)
    return f"{os.cpu_count()} cores {cpu}, {mem:.0f} GiB, Python {platform.python_version()}"


def row(f: dict[str, Any], command: str) -> str:
    s = f["pod_startup"]["startup_s"]
    api = f["api"]

    def worst(cls: str) -> str:
        v = api[cls]["worst_p99_s"]
        mark = " **over**" if v is not None and v > api[cls]["slo_s"] else ""
        return f"{v} s ({api[cls]['worst']}){mark}" if v is not None else "-"

    # From the figures, as worst() reads its SLOs: density.py, where POD_STARTUP_SLO is,
    # imports this module.
    over = " **over**" if s["p99"] > f["pod_startup_slo_s"] else ""
    rss = f["rss_peak_mib"]
    cells = [
        dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        machine(),
        f"{f['nodes']:,}",
        f"{f['pods']:,}",
        f"{f['load_average_mean']}/{f['load_average_max']}",
        (
            f"{f['create_all_s']} s ({f['pods_per_s']} pods/s)"
            if f["create_all_s"] is not None
            else "**not finished**"
        ),
        f"{s['p50']}/{s['p90']}/{s['p99']} s{over}",
        worst("mutating"),
        worst("get"),
        worst("namespace_list"),
        worst("cluster_list"),
        f"{f['watch_lag_s']['p99']} s",
        seconds(f["scale_down_s"]),
        seconds(f["delete_all_s"]),
        "/".join(str(round(rss[k])) for k in ("apiserver", "manager", "scheduler", "hollow")),
        f"{f['data_dir_all_running_mib']} MiB",
        f"`{command}`",
    ]
    if f["unfinished"]:
        cells[-1] += f" (stopped: {f['unfinished']})"
    return "| " + " | ".join(cells) + " |\n"


def seconds(v: float | None) -> str:
    return f"{v} s" if v is not None else "not reached"


def record(path: Path, figures: dict[str, Any], command: str) -> None:
    """Add a row to the measured-runs table in path (made with the header if missing)."""
    marker = "<!-- density rows: benches/density.py --record adds one here -->\n"
    text = path.read_text() if path.exists() else f"# Scale\n\n{marker}"
    if TABLE_HEAD not in text:
        text = text.replace(marker, marker + TABLE_HEAD)
    head_end = text.index(TABLE_HEAD) + len(TABLE_HEAD)
    path.write_text(text[:head_end] + row(figures, command) + text[head_end:])
