"""Resource usage figures: Docker's stats documents (cgroup v1 and v2), the process runtime's
/proc reading, and the fake runtime's synthetic usage."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from k8slite.kubelet.runtime.docker_documents import container_stats_of
from k8slite.kubelet.runtime.fake import SyntheticUsage
from k8slite.kubelet.runtime.process import group_stats
from tests.polling import wait_for


def test_docker_stats_cgroup_v1_and_v2() -> None:
    v1 = container_stats_of(
        {
            "read": "2026-12-07T05:00:00.5Z",
            "cpu_stats": {"cpu_usage": {"total_usage": 1_500_000_000}},
            "memory_stats": {
                "usage": 10_000_000,
                "stats": {"total_inactive_file": 4_000_000, "total_rss": 5_000_000},
            },
        }
    )
    assert (v1.cpu_usage_ns, v1.memory_usage, v1.memory_working_set, v1.memory_rss) == (
        1_500_000_000,
        10_000_000,
        6_000_000,
        5_000_000,
    )
    assert v1.timestamp % 1 == 0.5
    v2 = container_stats_of(
        {
            "read": "2026-12-07T05:00:00Z",
            "cpu_stats": {"cpu_usage": {"total_usage": 7}},
            "memory_stats": {"usage": 100, "stats": {"inactive_file": 200, "anon": 50}},
        }
    )
    # More inactive file pages than usage (racy counters): never a negative working set.
    assert (v2.cpu_usage_ns, v2.memory_working_set, v2.memory_rss) == (7, 0, 50)


def test_process_group_stats_count_the_whole_group() -> None:
    spin = "import time\nend = time.time() + 30\nwhile time.time() < end: pass"
    proc = subprocess.Popen([sys.executable, "-c", spin], start_new_session=True)
    try:
        stats = wait_for(
            lambda: (s := group_stats(proc.pid)).cpu_usage_ns > 200_000_000 and s,
            30,
            what="CPU time of the spinning group",
        )
        assert stats.memory_working_set > 1024 * 1024
        assert group_stats(os.getpgrp() + 10_000_000).cpu_usage_ns == 0  # no such group
    finally:
        proc.kill()
        proc.wait()


def test_synthetic_usage_parse() -> None:
    base = SyntheticUsage.parse({"cpu": "100m", "memory": "32Mi"})
    assert base == SyntheticUsage(100, 32 * 1024 * 1024)
    assert SyntheticUsage.parse({"cpu": "1.5"}, base) == SyntheticUsage(1500, 32 * 1024 * 1024)
    with pytest.raises(ValueError, match="unknown resource"):
        SyntheticUsage.parse({"gpu": "1"})
    with pytest.raises(ValueError):
        SyntheticUsage.parse({"cpu": "lots"})
