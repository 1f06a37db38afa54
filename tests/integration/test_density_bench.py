"""benches/density.py at a tiny size, so that the bench cannot rot: it runs end to end,
its figures are all there and --record writes a table row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.launch import REPO


def test_density_bench_runs_at_a_tiny_size(tmp_path: Path) -> None:
    table = tmp_path / "scale.md"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benches" / "density.py"),
            *("--nodes", "10", "--pods", "100", "--qps", "50"),
            # Only the controllers the bench needs: a quicker start.
            "--controllers=deployment,replicaset,namespace,garbagecollector",
            *("--record", str(table), "--timeout", "120"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "density"
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
