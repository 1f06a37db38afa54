"""benches/density.py at a tiny size, so that the bench cannot rot: it runs end to end,
its figures are all there and --record writes a table row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.launch import REPO


def density(table: Path, *flags: str) -> dict[str, Any]:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benches" / "density.py"),
            *("--nodes", "10", "--pods", "100", "--qps", "50"),
            # Only the controllers the bench needs: a quicker start.
            "--controllers=deployment,replicaset,namespace,garbagecollector",
            *("--record", str(table)),
            *flags,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "density"
    return figures


def test_density_bench_runs_at_a_tiny_size(tmp_path: Path) -> None:
    table = tmp_path / "scale.md"
    figures = density(table, "--timeout", "120")
    assert figures["unfinished"] is None
    assert figures["pods"] == 100 and figures["pod_startup"]["pods"] == 100
    assert figures["deployments"] > 3  # sizes vary: medium and small ones at this size
    startup = figures["pod_startup"]["startup_s"]
    assert 0 < startup["p50"] <= startup["p90"] <= startup["p99"]
    for cls in ("mutating", "get", "namespace_list", "cluster_list"):
        assert figures["api"][cls]["worst_p99_s"] is not None, cls
    assert figures["watch_lag_s"]["samples"] > 0
    for name in ("apiserver", "manager", "scheduler", "hollow"):
        assert figures["rss_peak_mib"][name] > 0
        assert figures["cpu_s"][name]["create"] >= 0
    assert figures["data_dir_all_running_mib"] > 0
    assert figures["create_all_s"] > 0 and figures["delete_all_s"] > 0
    text = table.read_text()
    assert "| date (UTC) | machine | nodes | pods |" in text
    assert "| 10 | 100 |" in text


def test_a_run_out_of_time_reports_what_it_saw(tmp_path: Path) -> None:
    """--deadline ends the run in the phase it reaches, and the report and the row say so."""
    table = tmp_path / "scale.md"
    # Over at once: the create phase's first look comes right after the last Deployment's
    # create, whose pods cannot all be Running yet (none exist yet).
    figures = density(table, "--deadline", "0.001", "--timeout", "120")
    assert figures["unfinished"].startswith("all pods Running: not done in"), figures
    assert figures["create_all_s"] is None and figures["scale_down_s"] is None
    assert figures["creates_issued_s"] > 0  # the creates were all made
    assert figures["pod_startup"]["pods"] < 100
    assert set(figures["cpu_s"]["apiserver"]) == {"create"}
    assert figures["api"]["mutating"]["worst_p99_s"] is not None
    row = table.read_text().splitlines()[-1]
    assert "**not finished**" in row and "(stopped: all pods Running" in row
